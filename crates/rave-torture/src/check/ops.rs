//! Operations, start to end, per process; what became of each process (its fate); and the
//! hang rule: an operation that never ended in a process that was still alive at the end.

use std::collections::{HashMap, HashSet};

use super::{Input, Report};
use crate::history::{Event, NemEvent, Op};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fate {
    /// Exited 0 after SIGTERM.
    Clean,
    /// Killed by the nemesis (or by SIGTERM before its handler was in place).
    Killed,
    /// Still alive at the end and killed then.
    Hung,
    /// Died on its own.
    Crashed,
}

/// Each process's fate, the time of the first SIGKILL sent to it (by the nemesis or at the
/// end), which ends a leader term at the latest, and the processes that SIGKILLed themselves at
/// the after-commit fault point (started armed, died of SIGKILL nobody sent): killed, too.
pub(super) fn fates(
    nemesis: &[(u64, NemEvent)],
) -> (HashMap<u32, Fate>, HashMap<u32, u64>, HashSet<u32>) {
    let armed: HashSet<u32> = nemesis
        .iter()
        .filter_map(|(_, e)| match e {
            NemEvent::Spawn {
                pid, fault: true, ..
            } => Some(*pid),
            _ => None,
        })
        .collect();
    let mut self_killed = HashSet::new();
    let mut killed = HashMap::new();
    let mut any_kill = HashMap::new();
    let mut hung = HashSet::new();
    let mut termed = HashSet::new();
    let mut exits = HashMap::new();
    for (t, ev) in nemesis {
        match ev {
            NemEvent::Kill { pid, target, .. } => {
                any_kill.entry(*pid).or_insert(*t);
                if target == "end" {
                    hung.insert(*pid);
                } else {
                    killed.entry(*pid).or_insert(*t);
                }
            }
            NemEvent::Term { pid } => {
                termed.insert(*pid);
            }
            NemEvent::Exit { pid, status } => {
                exits.insert(*pid, status.clone());
            }
            _ => {}
        }
    }
    let mut out = HashMap::new();
    let pids: HashSet<u32> = exits
        .keys()
        .chain(killed.keys())
        .chain(hung.iter())
        .copied()
        .collect();
    for pid in pids {
        let status = exits.get(&pid).map(String::as_str);
        let fate = if hung.contains(&pid) {
            Fate::Hung
        } else if killed.contains_key(&pid) {
            Fate::Killed
        } else if status == Some("code:0") {
            Fate::Clean
        } else if termed.contains(&pid) && status == Some("signal:15") {
            Fate::Killed
        } else if armed.contains(&pid) && status == Some("signal:9") {
            self_killed.insert(pid);
            Fate::Killed
        } else {
            Fate::Crashed
        };
        out.insert(pid, fate);
    }
    (out, any_kill, self_killed)
}

/// One operation, start to end.
#[derive(Clone, Debug)]
pub(super) struct OpRec {
    pub(super) pid: u32,
    pub(super) file: usize,
    pub(super) start: u64,
    pub(super) end: Option<u64>,
    pub(super) op: Op,
    pub(super) outcome: String,
    pub(super) epoch: Option<u64>,
    pub(super) result: String,
}

impl OpRec {
    pub(super) fn ok(&self) -> bool {
        self.end.is_some() && self.outcome == "ok"
    }
}

/// Pairs every start with its end, counts errors, and reports hung operations and crashed
/// processes.
pub(super) fn collect(report: &mut Report, input: &Input, fate: &HashMap<u32, Fate>) -> Vec<OpRec> {
    // Operations, per process.
    let mut ops: Vec<OpRec> = Vec::new();
    for (fi, p) in input.procs.iter().enumerate() {
        let mut open: HashMap<u64, usize> = HashMap::new();
        for (t, ev) in &p.events {
            match ev {
                Event::Start { id, op } => {
                    open.insert(*id, ops.len());
                    ops.push(OpRec {
                        pid: p.pid,
                        file: fi,
                        start: *t,
                        end: None,
                        op: op.clone(),
                        outcome: String::new(),
                        epoch: None,
                        result: String::new(),
                    });
                }
                Event::End {
                    id,
                    outcome,
                    epoch,
                    result,
                } => {
                    if let Some(i) = open.remove(id) {
                        let o = &mut ops[i];
                        o.end = Some(*t);
                        o.outcome = outcome.clone();
                        o.epoch = *epoch;
                        o.result = result.clone();
                    }
                }
                _ => {}
            }
        }
        let f = fate.get(&p.pid).copied().unwrap_or(Fate::Crashed);
        if f == Fate::Crashed {
            report.crashed += 1;
            report.example(format!(
                "crashed: {} (pid {}) died without being killed or stopped cleanly",
                p.file, p.pid
            ));
        }
        let mut pending: Vec<usize> = open.into_values().collect();
        pending.sort_unstable();
        for i in pending {
            match f {
                Fate::Killed | Fate::Crashed => report.indeterminate += 1,
                Fate::Clean | Fate::Hung => {
                    report.hung += 1;
                    let o = &ops[i];
                    report.example(format!(
                        "hung: {} (pid {}) {:?} started at {} never ended ({:?})",
                        p.file, p.pid, o.op, o.start, f
                    ));
                }
            }
        }
    }
    for o in &ops {
        if let Some(end) = o.end {
            report.ops += 1;
            report.max_op_ms = report.max_op_ms.max((end - o.start.min(end)) as f64 / 1e6);
            if o.outcome != "ok" {
                *report.errors.entry(o.outcome.clone()).or_insert(0) += 1;
            }
        }
    }
    ops
}
