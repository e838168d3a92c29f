//! What was written: unique puts, registers (hot keys and group slots) with the times of their
//! writes, and batches; the evidence the other rules judge reads and the final state against.

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
    /// at `t`: `Err` explains the violation. `Ok(false)` when the value is unknown (phantom).
    pub(super) fn check(&self, seen: Option<&str>, t: u64) -> Result<bool, String> {
        let newest = self.newest_acked_start_before(t);
        match seen {
            None => match newest {
                Some(s) => Err(format!(
                    "absent, but a write that started at {s} was acknowledged before {t}"
                )),
                None => Ok(true),
            },
            Some(id) => {
                let Some(w) = self.writes.get(id) else {
                    return Ok(false);
                };
                match (w.acked_end, newest) {
                    (Some(end), Some(s)) if s > end => Err(format!(
                        "value {id} (acknowledged at {end}) but a write that started later, at \
                         {s}, was acknowledged before {t}"
                    )),
                    _ => Ok(true),
                }
            }
        }
    }
}

pub(super) struct Batch {
    pub(super) uid: String,
    pub(super) n: u64,
    pub(super) keys: u32,
    pub(super) acked: bool,
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
    for o in ops {
        match &o.op {
            Op::Put { key, uid, seq, pad } => {
                let value = put_value(uid, *seq, *pad);
                if o.ok() {
                    report.acked += 1;
                }
                if key.starts_with("h/") {
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
            _ => {}
        }
    }
    for r in registers.values_mut() {
        r.finish();
    }
    Writes {
        puts,
        acked_puts,
        registers,
        batches,
        empty: Register::default(),
    }
}
