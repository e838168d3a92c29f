//! Watchers: every commit once, in one order, and every acknowledged write in it.
//!
//! The incarnations of one watcher slot (`vSLOTiN`, each started after the position its
//! predecessor's history ends at) are read as one *view*: what one watcher that survives every
//! kill would have seen. Its *coverage* is the positions it has seen everything up to: from
//! the position a watch started after (0 for the first incarnation) to the last position it
//! recorded; a resume from that position continues it, a restart from now (after `Compacted`)
//! begins another stretch. Rules:
//! - **order** (`disorder`, `dup`): positions never go back, each commit's number is above the
//!   position before it, a watch is resumed from exactly the position reached and begins with a
//!   progress mark there,
//!   and no commit number (nor any write) arrives twice in a view;
//! - **missed**: every acknowledged write in a view's range whose commit is within its coverage
//!   is in exactly one of its commits. A write's commit number is known when any watcher saw it;
//!   when none did, a `seq` probe that began after its acknowledgement bounds it (the number is
//!   then at most the probe's answer), and a view that covered everything up to that bound
//!   missed it. Writes with no such bound are counted as `unchecked`. Also `gaps`: a commit seen
//!   by one watcher inside another's range and coverage that the other did not deliver;
//! - **disagree**: two watchers that saw the same commit number saw the same changes (within
//!   both ranges): with strictly increasing numbers in each view, that is one total order
//!   shared by all;
//! - **phantom**: every change delivered is one some process attempted (a put of an attempted
//!   key and value, a clear inside a drain that was cleared; nobody deletes);
//! - **partial**: a batch (and a drain's fill) arrives whole, in one commit.
//!
//! `watch_views.rs` reads the histories into views and checks the order rules on the way.

use std::collections::{BTreeMap, HashMap, HashSet};

use rave::watch::intersect;
use rave::{Change, Commit};

use super::ops::OpRec;
use super::watch_views::{View, read_views};
use super::{Input, Report};
use crate::history::Op;
use crate::schema::{
    GROUP_KEYS, batch_id, batch_key, drain_key, drain_owner, frozen_key, frozen_value, group_key,
};
use crate::watchlog::{enc_bytes, enc_changes, put_id};

/// A key and a value id.
pub(super) type KeyValue = (Vec<u8>, Vec<u8>);

/// A write some process attempted: its acknowledgement time (if acknowledged) and the
/// operation it belongs to (the keys of one batch share it).
struct Attempt {
    acked_end: Option<u64>,
    op: usize,
}

/// Runs the watcher rules.
pub(super) fn check(report: &mut Report, input: &Input, ops: &[OpRec]) {
    let views = read_views(report, input);
    if views.is_empty() {
        return;
    }
    let (attempts, clear_uids) = attempts(input, ops);
    agreement(report, &views);
    phantoms(report, &views, &attempts, &clear_uids);
    partials(report, &views, &attempts);
    missed(report, ops, &views, &attempts);
}

/// Every write attempted (puts, batches, fills, the frozen prefix) by key and value id, and
/// the writers that cleared their drain.
fn attempts(input: &Input, ops: &[OpRec]) -> (HashMap<KeyValue, Attempt>, HashSet<String>) {
    let mut out = HashMap::new();
    let mut clears = HashSet::new();
    let mut add = |key: String, id: String, o: &OpRec, i: usize| {
        let acked_end = o.end.filter(|_| o.ok());
        out.insert(
            (key.into_bytes(), id.into_bytes()),
            Attempt { acked_end, op: i },
        );
    };
    for (i, o) in ops.iter().enumerate() {
        match &o.op {
            Op::Put { key, uid, seq, pad } => add(key.clone(), put_id(uid, *seq, *pad), o, i),
            Op::Batch { uid, n, keys, slot } => {
                let id = enc_bytes(batch_id(uid, *n).as_bytes());
                for k in 0..*keys {
                    add(batch_key(uid, *n, k), id.clone(), o, i);
                }
                for k in 0..GROUP_KEYS {
                    add(group_key(*slot, k), id.clone(), o, i);
                }
            }
            Op::Fill { uid, keys } => {
                for k in 0..*keys {
                    add(drain_key(uid, k), "d".to_string(), o, i);
                }
            }
            Op::Clear { uid, .. } => {
                clears.insert(uid.clone());
            }
            _ => {}
        }
    }
    // The frozen prefix: written and acknowledged before any worker started.
    for i in 0..input.frozen {
        out.insert(
            (frozen_key(i).into_bytes(), frozen_value(i).into_bytes()),
            Attempt {
                acked_end: Some(0),
                op: usize::MAX,
            },
        );
    }
    (out, clears)
}

/// Watchers that saw the same commit number saw the same changes within both their ranges.
fn agreement(report: &mut Report, views: &[View]) {
    let mut by_seq: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (v, view) in views.iter().enumerate() {
        for &seq in view.commits.keys() {
            by_seq.entry(seq).or_default().push(v);
        }
    }
    for (seq, observers) in &by_seq {
        for (i, &a) in observers.iter().enumerate() {
            for &b in &observers[i + 1..] {
                let common = intersect(&views[a].range, &views[b].range);
                let reduce = |v: usize| {
                    Commit {
                        sequence: *seq,
                        changes: views[v].commits[seq].clone(),
                    }
                    .within(&common)
                };
                if reduce(a) != reduce(b) {
                    report.watch_disagree += 1;
                    report.example(format!(
                        "watch disagree: commit {seq} is {} to {} and {} to {}",
                        enc_changes(&views[a].commits[seq]),
                        views[a].name,
                        enc_changes(&views[b].commits[seq]),
                        views[b].name
                    ));
                }
            }
        }
    }
    // One write in two commits (of one view, or two views) was applied twice.
    let mut at: HashMap<&KeyValue, (u64, &str)> = HashMap::new();
    for view in views {
        for (kv, seqs) in &view.seen {
            let (first, by) = *at.entry(kv).or_insert((seqs[0], &view.name));
            let extra = seqs.len() - 1 + usize::from(first != seqs[0]);
            if extra > 0 {
                report.watch_dup += extra as u64;
                report.example(format!(
                    "watch dup: {} saw the write {:?} = {:?} in commits {seqs:?} ({by} in {first})",
                    view.name,
                    String::from_utf8_lossy(&kv.0),
                    String::from_utf8_lossy(&kv.1),
                ));
            }
        }
    }
}

/// Every change delivered was attempted by someone.
fn phantoms(
    report: &mut Report,
    views: &[View],
    attempts: &HashMap<KeyValue, Attempt>,
    clear_uids: &HashSet<String>,
) {
    for view in views {
        for (seq, changes) in &view.commits {
            for change in changes {
                let fine = match change {
                    Change::Put { key, value } => {
                        attempts.contains_key(&(key.clone(), value.clone()))
                    }
                    Change::Del { .. } => false,
                    Change::Clear { range } => {
                        let owner = |b: std::ops::Bound<&[u8]>| match b {
                            std::ops::Bound::Included(k) | std::ops::Bound::Excluded(k) => {
                                drain_uid(k)
                            }
                            std::ops::Bound::Unbounded => None,
                        };
                        let (lo, hi) = (owner(range.lower()), owner(range.upper()));
                        lo.is_some() && lo == hi && lo.is_some_and(|u| clear_uids.contains(&u))
                    }
                };
                if !fine {
                    report.watch_phantom += 1;
                    report.example(format!(
                        "watch phantom: {} commit {seq} holds {}, which nobody wrote",
                        view.name,
                        enc_changes(std::slice::from_ref(change))
                    ));
                }
            }
        }
    }
}

/// The writer whose drain `key` (a drain key, or its prefix `d/UID/`) belongs to.
fn drain_uid(key: &[u8]) -> Option<String> {
    let rest = std::str::from_utf8(key.strip_prefix(b"d/")?).ok()?;
    let (uid, index) = rest.split_once('/')?;
    (index.is_empty() || drain_owner(key).is_some()).then(|| uid.to_string())
}

/// A batch or fill seen in a view is seen whole (its keys in the view's range), in one commit.
fn partials(report: &mut Report, views: &[View], attempts: &HashMap<KeyValue, Attempt>) {
    for view in views {
        let mut want: HashMap<usize, usize> = HashMap::new();
        for ((key, _), a) in attempts {
            if a.op != usize::MAX && view.range.contains(key) {
                *want.entry(a.op).or_insert(0) += 1;
            }
        }
        let mut got: HashMap<usize, (usize, HashSet<u64>)> = HashMap::new();
        for (kv, seqs) in &view.seen {
            if let Some(a) = attempts.get(kv).filter(|a| a.op != usize::MAX) {
                let entry = got.entry(a.op).or_default();
                entry.0 += 1;
                entry.1.extend(seqs);
            }
        }
        for (op, (n, seqs)) in got {
            if n != want.get(&op).copied().unwrap_or(0) || seqs.len() != 1 {
                report.watch_partial += 1;
                report.example(format!(
                    "watch partial: {} saw {n} of the {} keys of one batch, in commits {seqs:?}",
                    view.name,
                    want.get(&op).copied().unwrap_or(0)
                ));
            }
        }
    }
}

/// Every acknowledged write inside a view's range and coverage is in one of its commits; every
/// commit seen by another watcher there too.
fn missed(
    report: &mut Report,
    ops: &[OpRec],
    views: &[View],
    attempts: &HashMap<KeyValue, Attempt>,
) {
    // Commits one watcher saw that another, covering them, did not deliver.
    for (x, view) in views.iter().enumerate() {
        for (y, other) in views.iter().enumerate() {
            if x == y {
                continue;
            }
            let common = intersect(&view.range, &other.range);
            for (seq, changes) in &other.commits {
                if view.covers(*seq) && !view.commits.contains_key(seq) {
                    let commit = Commit {
                        sequence: *seq,
                        changes: changes.clone(),
                    };
                    if commit.within(&common).is_some() {
                        report.watch_gaps += 1;
                        report.example(format!(
                            "watch gap: {} covered commit {seq} ({} saw it) and did not deliver it",
                            view.name, other.name
                        ));
                    }
                }
            }
        }
    }
    // Upper bounds of the numbers of writes acknowledged before a probe began.
    let mut probes: Vec<(u64, u64)> = ops
        .iter()
        .filter(|o| o.ok() && matches!(o.op, Op::Seq))
        .filter_map(|o| Some((o.start, o.result.trim().parse().ok()?)))
        .collect();
    probes.sort_unstable();
    let mut suffix_min = vec![u64::MAX; probes.len() + 1];
    for i in (0..probes.len()).rev() {
        suffix_min[i] = suffix_min[i + 1].min(probes[i].1);
    }
    let mut at: HashMap<&KeyValue, u64> = HashMap::new();
    for view in views {
        for (kv, seqs) in &view.seen {
            at.entry(kv).or_insert(seqs[0]);
        }
    }
    for (kv, a) in attempts {
        let Some(end) = a.acked_end else { continue };
        let in_range: Vec<&View> = views.iter().filter(|v| v.range.contains(&kv.0)).collect();
        let bound = match at.get(kv) {
            Some(&seq) => Some((seq, true)),
            None => {
                let i = probes.partition_point(|(start, _)| *start <= end);
                (suffix_min[i] != u64::MAX).then_some((suffix_min[i], false))
            }
        };
        let Some((seq, known)) = bound else {
            report.watch_unchecked += in_range.len() as u64;
            continue;
        };
        for view in in_range {
            // Known number: inside the coverage. Bounded number: everything from the start of
            // the run up to the bound was covered.
            let required = if known {
                view.covers(seq)
            } else {
                view.stretches.iter().any(|&(lo, hi)| lo == 0 && hi >= seq)
            };
            if !required {
                report.watch_unchecked += 1;
                continue;
            }
            match view.seen.get(kv).map_or(0, Vec::len) {
                1 => report.watch_acked_seen += 1,
                0 => {
                    report.watch_missed += 1;
                    report.example(format!(
                        "watch missed: {} did not deliver the acknowledged write of {:?} = {:?} (commit {}{seq})",
                        view.name,
                        String::from_utf8_lossy(&kv.0),
                        String::from_utf8_lossy(&kv.1),
                        if known { "" } else { "at most " }
                    ));
                }
                // Counted as dup above.
                _ => {}
            }
        }
    }
}
