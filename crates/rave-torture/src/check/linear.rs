//! The independent cross-check: per-key histories handed to an existing linearizability checker
//! written by others, stateright's `LinearizabilityTester` (an exhaustive search for a legal
//! order that respects real time), so the rules of this checker are not judged by themselves.
//!
//! Two kinds of histories: each linearizability register `l/WINDOW/K` (puts of unique values and
//! gets, as stateright's own `Register`), and each writer's drain (its fill, its limited clears
//! and the count of keys left, as a small counter specification below). Acknowledged
//! operations are invoked at their recorded start and return at their recorded end; a write
//! that failed or was cut short is invoked and never returns (it may or may not take effect);
//! a failed read says nothing and is left out; the final state is read after everything.
//!
//! The search is exponential, so only histories of at most [`MAX_OPS`] operations are checked
//! (windows keep nearly all of them short), each within [`BUDGET`].

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::mpsc;
use std::time::Duration;

use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

use super::ops::OpRec;
use super::writes::Writes;
use super::{Input, Report};
use crate::history::Op;
use crate::schema::{drain_prefix, parse_put_value};

/// Longest per-key history checked.
pub(super) const MAX_OPS: usize = 300;
/// Time allowed per key.
const BUDGET: Duration = Duration::from_secs(10);
/// Searches left running past their budget before the rest is skipped (the machine has 2 cores).
const MAX_RUNAWAY: u64 = 2;

/// One operation of a per-key history; `ret: None` never returns.
#[derive(Clone, Debug)]
pub(super) struct HistOp<O, R> {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) op: O,
    pub(super) ret: Option<R>,
}

/// Whether `ops` form a linearizable history of `init` (`None`: not a well-formed history).
pub(super) fn linearizable<S>(init: S, ops: &[HistOp<S::Op, S::Ret>]) -> Option<bool>
where
    S: SequentialSpec + Clone,
    S::Op: Clone + Debug,
    S::Ret: Clone + Debug + PartialEq,
{
    // Invocations before returns at equal times: treating such a pair as concurrent is the
    // lenient reading of the recorded times.
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.start, 0, i));
        if o.ret.is_some() {
            events.push((o.end, 1, i));
        }
    }
    events.sort_unstable();
    let mut tester = LinearizabilityTester::new(init);
    for (_, kind, i) in events {
        let o = &ops[i];
        let step = match (kind, &o.ret) {
            (0, _) => tester.on_invoke(i, o.op.clone()).map(|_| ()),
            (_, Some(ret)) => tester.on_return(i, ret.clone()).map(|_| ()),
            _ => Ok(()),
        };
        step.ok()?;
    }
    Some(tester.is_consistent())
}

/// A drain as a sequential object: how many keys it holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct DrainSpec(pub(super) u64);

/// What is done to a drain.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum DrainOp {
    /// The batch that fills it with this many keys.
    Fill(u64),
    /// A clear with this limit.
    Clear(u64),
    /// Counting its keys (the final state).
    Count,
}

/// What a drain operation returns.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum DrainRet {
    /// A write's acknowledgement.
    Done,
    /// The keys counted.
    Count(u64),
}

impl SequentialSpec for DrainSpec {
    type Op = DrainOp;
    type Ret = DrainRet;
    fn invoke(&mut self, op: &DrainOp) -> DrainRet {
        match op {
            DrainOp::Fill(n) => {
                self.0 = *n;
                DrainRet::Done
            }
            DrainOp::Clear(limit) => {
                self.0 -= (*limit).min(self.0);
                DrainRet::Done
            }
            DrainOp::Count => DrainRet::Count(self.0),
        }
    }
}

/// Reads of the final state: after everything, one after the other.
fn final_times(view: usize) -> (u64, u64) {
    let start = u64::MAX - 16 + 2 * view as u64;
    (start, start + 1)
}

type RegOp = HistOp<RegisterOp<u64>, RegisterRet<u64>>;
type DrainHist = HistOp<DrainOp, DrainRet>;

/// The per-key histories of the linearizability registers, values interned as numbers (0 is
/// absent, `u64::MAX` a value nobody writes).
pub(super) fn register_histories(input: &Input, ops: &[OpRec]) -> Vec<(String, Vec<RegOp>)> {
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut intern = |id: &str| -> u64 {
        match id {
            "-" => 0,
            "?" => u64::MAX,
            _ => {
                let next = ids.len() as u64 + 1;
                *ids.entry(id.to_string()).or_insert(next)
            }
        }
    };
    let mut by_key: HashMap<String, Vec<RegOp>> = HashMap::new();
    for o in ops {
        let (key, hist) = match &o.op {
            Op::Put { key, uid, seq, pad } if key.starts_with("l/") => {
                let op = RegisterOp::Write(intern(&format!("{uid}:{seq}:{pad}")));
                let ret = o.ok().then_some(RegisterRet::WriteOk);
                (key, (op, ret))
            }
            Op::Get { key } if key.starts_with("l/") && o.ok() => {
                let ret = RegisterRet::ReadOk(intern(&o.result));
                (key, (RegisterOp::Read, Some(ret)))
            }
            _ => continue,
        };
        by_key.entry(key.clone()).or_default().push(HistOp {
            start: o.start,
            end: o.end.unwrap_or(u64::MAX),
            op: hist.0,
            ret: hist.1,
        });
    }
    let mut out: Vec<(String, Vec<RegOp>)> = by_key.into_iter().collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, hist) in &mut out {
        for (view, (_, map)) in input.finals.iter().enumerate() {
            let value = match map.get(key.as_bytes()) {
                None => 0,
                Some(v) => match parse_put_value(v) {
                    Some((uid, seq, pad)) => intern(&format!("{uid}:{seq}:{pad}")),
                    None => u64::MAX,
                },
            };
            let (start, end) = final_times(view);
            hist.push(HistOp {
                start,
                end,
                op: RegisterOp::Read,
                ret: Some(RegisterRet::ReadOk(value)),
            });
        }
    }
    out
}

/// The per-writer histories of the drains whose fill was acknowledged.
pub(super) fn drain_histories(
    input: &Input,
    ops: &[OpRec],
    writes: &Writes,
) -> Vec<(String, Vec<DrainHist>)> {
    let mut by_uid: HashMap<&str, Vec<DrainHist>> = HashMap::new();
    for o in ops {
        let (uid, op) = match &o.op {
            Op::Fill { uid, keys } => (uid, DrainOp::Fill(u64::from(*keys))),
            Op::Clear { uid, limit } => (uid, DrainOp::Clear(u64::from(*limit))),
            _ => continue,
        };
        if writes.drains.get(uid).is_none_or(|d| d.keys == 0) {
            continue;
        }
        by_uid.entry(uid).or_default().push(HistOp {
            start: o.start,
            end: o.end.unwrap_or(u64::MAX),
            op,
            ret: o.ok().then_some(DrainRet::Done),
        });
    }
    let mut out: Vec<(String, Vec<DrainHist>)> = by_uid
        .into_iter()
        .map(|(uid, mut hist)| {
            let prefix = drain_prefix(uid);
            for (view, (_, map)) in input.finals.iter().enumerate() {
                let left = map
                    .range(prefix.clone().into_bytes()..)
                    .take_while(|(k, _)| k.starts_with(prefix.as_bytes()))
                    .count() as u64;
                let (start, end) = final_times(view);
                hist.push(HistOp {
                    start,
                    end,
                    op: DrainOp::Count,
                    ret: Some(DrainRet::Count(left)),
                });
            }
            (format!("d/{uid}"), hist)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What the search said about one key.
enum Verdict {
    Linearizable,
    Not,
    Undecided,
}

/// Runs the search on its own thread, giving up waiting after [`BUDGET`].
fn decide<S>(init: S, ops: Vec<HistOp<S::Op, S::Ret>>) -> Verdict
where
    S: SequentialSpec + Clone + Send + 'static,
    S::Op: Clone + Debug + Send + 'static,
    S::Ret: Clone + Debug + PartialEq + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(linearizable(init, &ops));
    });
    match rx.recv_timeout(BUDGET) {
        Ok(Some(true)) => Verdict::Linearizable,
        Ok(Some(false)) => Verdict::Not,
        Ok(None) | Err(_) => Verdict::Undecided,
    }
}

/// Checks every short enough register and drain history and compares with the other rules.
pub(super) fn check(report: &mut Report, input: &Input, ops: &[OpRec], writes: &Writes) {
    let registers = register_histories(input, ops);
    let drains = drain_histories(input, ops, writes);
    let judge = |report: &mut Report, name: &str, verdict: Verdict| {
        let not = match verdict {
            Verdict::Linearizable => false,
            Verdict::Not => true,
            Verdict::Undecided => {
                report.lin_undecided += 1;
                return;
            }
        };
        report.lin_checked += 1;
        let flagged = report.flagged.contains(name);
        if not {
            report.nonlinear += 1;
            report.example(format!(
                "nonlinear: stateright finds no linearization of {name} (the rules above {} it)",
                if flagged { "flag" } else { "do not flag" }
            ));
        } else {
            report.lin_ok += 1;
        }
        if not != flagged {
            report.lin_disagree += 1;
            report.example(format!(
                "disagree: on {name} stateright says {}, the rules above {}",
                if not {
                    "not linearizable"
                } else {
                    "linearizable"
                },
                if flagged { "flag it" } else { "do not" }
            ));
        }
    };
    for (name, hist) in registers {
        if hist.len() > MAX_OPS || report.lin_undecided >= MAX_RUNAWAY {
            report.lin_skipped += 1;
            continue;
        }
        let verdict = decide(Register(0u64), hist);
        judge(report, &name, verdict);
    }
    for (name, hist) in drains {
        if hist.len() > MAX_OPS || report.lin_undecided >= MAX_RUNAWAY {
            report.lin_skipped += 1;
            continue;
        }
        let verdict = decide(DrainSpec(0), hist);
        judge(report, &name, verdict);
    }
}
