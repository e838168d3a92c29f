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
///
/// All by the index of the process's history in `input.procs`, not by pid: a long run reuses
/// pids, so a nemesis event belongs to the incarnation most recently spawned with its pid.
pub(super) fn fates(input: &Input) -> (HashMap<usize, Fate>, HashMap<usize, u64>, HashSet<usize>) {
    let by_uid: HashMap<&str, usize> = input
        .procs
        .iter()
        .enumerate()
        .map(|(i, p)| (p.uid.as_str(), i))
        .collect();
    // Histories whose spawn is not logged (hand-made ones) are found by pid.
    let mut by_pid: HashMap<u32, usize> = HashMap::new();
    for (i, p) in input.procs.iter().enumerate().rev() {
        by_pid.insert(p.pid, i);
    }
    let mut spawned: HashSet<u32> = HashSet::new();
    let mut current: HashMap<u32, usize> = HashMap::new();
    let mut armed = HashSet::new();
    let mut self_killed = HashSet::new();
    let mut killed = HashMap::new();
    let mut any_kill = HashMap::new();
    let mut hung = HashSet::new();
    let mut termed = HashSet::new();
    let mut exits = HashMap::new();
    for (t, ev) in &input.nemesis {
        let pid = match ev {
            NemEvent::Spawn { pid, uid, fault } => {
                spawned.insert(*pid);
                match by_uid.get(uid.as_str()) {
                    Some(&i) => {
                        current.insert(*pid, i);
                        if *fault {
                            armed.insert(i);
                        }
                    }
                    None => {
                        current.remove(pid);
                    }
                }
                continue;
            }
            NemEvent::Kill { pid, .. } | NemEvent::Term { pid } | NemEvent::Exit { pid, .. } => {
                *pid
            }
            _ => continue,
        };
        let proc = match current.get(&pid) {
            Some(&i) => i,
            None if !spawned.contains(&pid) => match by_pid.get(&pid) {
                Some(&i) => i,
                None => continue,
            },
            None => continue,
        };
        match ev {
            NemEvent::Kill { target, .. } => {
                any_kill.entry(proc).or_insert(*t);
                if target == "end" {
                    hung.insert(proc);
                } else {
                    killed.entry(proc).or_insert(*t);
                }
            }
            NemEvent::Term { .. } => {
                termed.insert(proc);
            }
            NemEvent::Exit { status, .. } => {
                exits.insert(proc, status.clone());
            }
            _ => {}
        }
    }
    let mut out = HashMap::new();
    let procs: HashSet<usize> = exits
        .keys()
        .chain(killed.keys())
        .chain(hung.iter())
        .copied()
        .collect();
    for proc in procs {
        let status = exits.get(&proc).map(String::as_str);
        let fate = if hung.contains(&proc) {
            Fate::Hung
        } else if killed.contains_key(&proc) {
            Fate::Killed
        } else if status == Some("code:0") {
            Fate::Clean
        } else if termed.contains(&proc) && status == Some("signal:15") {
            Fate::Killed
        } else if armed.contains(&proc) && status == Some("signal:9") {
            self_killed.insert(proc);
            Fate::Killed
        } else {
            Fate::Crashed
        };
        out.insert(proc, fate);
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
pub(super) fn collect(
    report: &mut Report,
    input: &Input,
    fate: &HashMap<usize, Fate>,
) -> Vec<OpRec> {
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
        let f = fate.get(&fi).copied().unwrap_or(Fate::Crashed);
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
