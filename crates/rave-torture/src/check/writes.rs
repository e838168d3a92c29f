//! What was written: unique puts, registers (hot keys, linearizability keys and group slots)
//! with the times of their writes, batches, and drains with their clears; the evidence the other
//! rules judge reads and the final state against.

use std::collections::HashMap;

use super::Report;
use super::ops::OpRec;
use crate::history::Op;
use crate::schema::{batch_id, put_value};

/// A write to a register (hot key or group slot), by its value id.
#[derive(Clone, Debug)]
pub(super) struct RegWrite {
    pub(super) start: u64,
    /// `Some` only when acknowledged.
    pub(super) acked_end: Option<u64>,
}

/// The writes of one register and, for the acknowledged ones sorted by end, the running
/// maximum of their starts: "the newest write acknowledged before time t" in a binary search.
#[derive(Default)]
pub(super) struct Register {
    pub(super) writes: HashMap<String, RegWrite>,
    pub(super) by_end: Vec<(u64, u64)>,
    /// By value id: the earliest end of a successful read that returned it (the value was
    /// applied by then, whenever its write was acknowledged).
    pub(super) first_seen: HashMap<String, u64>,
}

/// How a value read from a register (or found in the final state) compares with its writes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// Possible in a linearizable history.
    Fine,
    /// Nobody wrote it.
    Phantom,
    /// Older than an acknowledged write that started after it was acknowledged.
    Stale(String),
    /// Seen again after a newer acknowledged write replaced it: applied twice.
    Twice(String),
}

impl Register {
    pub(super) fn finish(&mut self) {
        let mut acked: Vec<(u64, u64)> = self
            .writes
            .values()
            .filter_map(|w| w.acked_end.map(|e| (e, w.start)))
            .collect();
        acked.sort_unstable();
        let mut max_start = 0;
        for (_, start) in &mut acked {
            max_start = max_start.max(*start);
            *start = max_start;
        }
        self.by_end = acked;
    }

    /// The latest start among writes acknowledged strictly before `t`, if any.
    pub(super) fn newest_acked_start_before(&self, t: u64) -> Option<u64> {
        let n = self.by_end.partition_point(|(end, _)| *end < t);
        n.checked_sub(1).map(|i| self.by_end[i].1)
    }

    /// Checks a value `seen` (a value id, or `None` for absent) read by an operation that began
    /// at `t`.
    ///
    /// Stale: the value's write was acknowledged before another write started, and that one was
    /// acknowledged before `t`. Twice: the value had been read (so applied) before another
    /// write started, that one was acknowledged before `t`, and yet the value is back: the only
    /// single-application explanation is gone, its write took effect a second time (a re-sent
    /// write applied again). Both are sound: recorded starts precede the real ones and
    /// recorded ends follow them.
    pub(super) fn check(&self, seen: Option<&str>, t: u64) -> Seen {
        let newest = self.newest_acked_start_before(t);
        let Some(id) = seen else {
            return match newest {
                Some(s) => Seen::Stale(format!(
                    "absent, but a write that started at {s} was acknowledged before {t}"
                )),
                None => Seen::Fine,
            };
        };
        let Some(w) = self.writes.get(id) else {
            return Seen::Phantom;
        };
        let Some(s) = newest else {
            return Seen::Fine;
        };
        if let Some(end) = w.acked_end
            && s > end
        {
            return Seen::Stale(format!(
                "value {id} (acknowledged at {end}) but a write that started later, at {s}, was \
                 acknowledged before {t}"
            ));
        }
        match self.first_seen.get(id) {
            Some(&seen_at) if s > seen_at => Seen::Twice(format!(
                "value {id} (read by {seen_at}) again, though a write that started later, at \
                 {s}, was acknowledged before {t}"
            )),
            _ => Seen::Fine,
        }
    }
}

pub(super) struct Batch {
    pub(super) uid: String,
    pub(super) n: u64,
    pub(super) keys: u32,
    pub(super) acked: bool,
}

/// A writer's drain: its fill and the clears of it.
#[derive(Default)]
pub(super) struct Drain {
    /// Keys filled (0 when the fill was not acknowledged: then nothing is counted).
    pub(super) keys: u32,
    /// Sum of the limits of the acknowledged clears.
    pub(super) acked: u64,
    /// Sum of the limits of every clear that may have been applied (acknowledged, failed, or cut
    /// short by its process's death).
    pub(super) maybe: u64,
}

/// Every write of the run, by kind.
pub(super) struct Writes {
    /// Unique puts by key: the last value written (acknowledged or not).
    pub(super) puts: HashMap<String, Vec<u8>>,
    /// The acknowledged unique puts.
    pub(super) acked_puts: Vec<(String, Vec<u8>)>,
    /// Registers by name (`h/…` hot keys, `g/SLOT` group slots).
    pub(super) registers: HashMap<String, Register>,
    /// Batches by id.
    pub(super) batches: HashMap<String, Batch>,
    /// Drains by writer.
    pub(super) drains: HashMap<String, Drain>,
    /// What [`Writes::register`] answers for a register nobody wrote.
    pub(super) empty: Register,
}

impl Writes {
    /// The register `name`, empty when nobody wrote it.
    pub(super) fn register(&self, name: &str) -> &Register {
        self.registers.get(name).unwrap_or(&self.empty)
    }
}

/// Collects the writes, counting the acknowledged ones.
pub(super) fn collect(report: &mut Report, ops: &[OpRec]) -> Writes {
    let mut puts: HashMap<String, Vec<u8>> = HashMap::new();
    let mut acked_puts: Vec<(String, Vec<u8>)> = Vec::new();
    let mut registers: HashMap<String, Register> = HashMap::new();
    let mut batches: HashMap<String, Batch> = HashMap::new();
    let mut drains: HashMap<String, Drain> = HashMap::new();
    for o in ops {
        match &o.op {
            Op::Put { key, uid, seq, pad } => {
                let value = put_value(uid, *seq, *pad);
                if o.ok() {
                    report.acked += 1;
                }
                if is_register(key) {
                    registers.entry(key.clone()).or_default().writes.insert(
                        format!("{uid}:{seq}:{pad}"),
                        RegWrite {
                            start: o.start,
                            acked_end: o.end.filter(|_| o.ok()),
                        },
                    );
                } else {
                    if o.ok() {
                        acked_puts.push((key.clone(), value.clone()));
                    }
                    puts.insert(key.clone(), value);
                }
            }
            Op::Batch { uid, n, keys, slot } => {
                if o.ok() {
                    report.acked += 1;
                }
                let bid = batch_id(uid, *n);
                registers
                    .entry(format!("g/{slot}"))
                    .or_default()
                    .writes
                    .insert(
                        bid.clone(),
                        RegWrite {
                            start: o.start,
                            acked_end: o.end.filter(|_| o.ok()),
                        },
                    );
                batches.insert(
                    bid,
                    Batch {
                        uid: uid.clone(),
                        n: *n,
                        keys: *keys,
                        acked: o.ok(),
                    },
                );
            }
            Op::Fill { uid, keys } => {
                let d = drains.entry(uid.clone()).or_default();
                if o.ok() {
                    report.acked += 1;
                    d.keys = *keys;
                }
            }
            Op::Clear { uid, limit } => {
                let d = drains.entry(uid.clone()).or_default();
                if o.ok() {
                    report.acked += 1;
                    d.acked += u64::from(*limit);
                }
                d.maybe += u64::from(*limit);
            }
            _ => {}
        }
    }
    for r in registers.values_mut() {
        r.finish();
    }
    // When each value was first read, as evidence that it had been applied by then.
    for o in ops.iter().filter(|o| o.ok()) {
        let (name, id) = match &o.op {
            Op::Get { key } if is_register(key) => (key.clone(), o.result.as_str()),
            Op::Group { slot } => (
                format!("g/{slot}"),
                o.result.split(',').next().unwrap_or("-"),
            ),
            _ => continue,
        };
        if let (Some(r), Some(end)) = (registers.get_mut(&name), o.end)
            && r.writes.contains_key(id)
        {
            let at = r.first_seen.entry(id.to_string()).or_insert(end);
            *at = (*at).min(end);
        }
    }
    Writes {
        puts,
        acked_puts,
        registers,
        batches,
        drains,
        empty: Register::default(),
    }
}

/// Whether puts to `key` overwrite a register (hot keys and linearizability keys) rather than
/// write a unique key once.
pub(super) fn is_register(key: &str) -> bool {
    key.starts_with("h/") || key.starts_with("l/")
}
