//! The watchers' histories read as views: each slot's incarnations, in order, as one watcher
//! that survives every kill, with its coverage; and the order rules checked on the way (see
//! [`super::watch`]).

use std::collections::{BTreeMap, HashMap};

use rave::{Change, Range};

use super::watch::KeyValue;
use super::{Input, Report};
use crate::history::{Event, NemEvent};

/// Every watcher slot's history, read as one watcher.
#[derive(Default)]
pub(super) struct View {
    /// The slot, `vN`.
    pub(super) name: String,
    /// The range it watched.
    pub(super) range: Range,
    /// The commits it delivered, by number (the first delivery of each).
    pub(super) commits: BTreeMap<u64, Vec<Change>>,
    /// Each put it delivered (key and value id), with the numbers of the commits holding it.
    pub(super) seen: HashMap<KeyValue, Vec<u64>>,
    /// Stretches of coverage: everything in `(start, end]` was delivered.
    pub(super) stretches: Vec<(u64, u64)>,
}

impl View {
    /// Whether it delivered everything up to and including commit `seq`.
    pub(super) fn covers(&self, seq: u64) -> bool {
        self.stretches.iter().any(|&(lo, hi)| lo < seq && seq <= hi)
    }
}

/// The slot (`vN`) and incarnation of a watcher's uid `vNiM`.
pub(super) fn slot_of(uid: &str) -> Option<(String, u64)> {
    let rest = uid.strip_prefix('v')?;
    let (slot, n) = rest.split_once('i')?;
    Some((format!("v{slot}"), n.parse().ok()?))
}

/// Reads each slot's incarnations, in order, into a view, checking the order rules.
pub(super) fn read_views(report: &mut Report, input: &Input) -> Vec<View> {
    let mut slots: BTreeMap<String, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, p) in input.procs.iter().enumerate() {
        if let Some((slot, n)) = slot_of(&p.uid) {
            slots.entry(slot).or_default().push((n, i));
        }
    }
    let mut views = Vec::new();
    for (name, mut incarnations) in slots {
        incarnations.sort_unstable();
        report.watcher_procs += incarnations.len() as u64;
        let mut view = View {
            name: name.clone(),
            ..View::default()
        };
        let mut pos: Option<u64> = None;
        let mut start: Option<u64> = None;
        let mut expect_first: Option<u64> = None;
        for &(_, i) in &incarnations {
            let p = &input.procs[i];
            for (t, ev) in &p.events {
                let first = expect_first.take();
                match ev {
                    Event::WatchOpen { from, range } => {
                        report.watch_opens += 1;
                        view.range = range.clone();
                        if let (Some(f), Some(p)) = (*from, pos)
                            && f != p
                        {
                            // Resumes start exactly where the watcher had got to.
                            report.watch_disorder += 1;
                            report.example(format!(
                                "watch disorder: {} resumed after {f} at {t}, but its position was {p}",
                                input.procs[i].file
                            ));
                        }
                        if from.is_none() || *from != pos {
                            close(&mut view, &mut start, pos);
                            start = *from;
                            pos = *from;
                        } else {
                            report.watch_resumes += 1;
                        }
                        expect_first = *from;
                    }
                    Event::Progress { seq } => {
                        report.watch_progress += 1;
                        if first.is_some_and(|f| f != *seq) || pos.is_some_and(|p| *seq < p) {
                            report.watch_disorder += 1;
                            report.example(format!(
                                "watch disorder: {} progress {seq} at {t} after position {pos:?} (a watch from {first:?})",
                                p.file
                            ));
                        }
                        start = start.or(Some(*seq));
                        pos = Some(pos.map_or(*seq, |p| p.max(*seq)));
                    }
                    Event::Commit { seq, changes } => {
                        report.watch_events += 1;
                        let twice = view.commits.contains_key(seq);
                        if twice || first.is_some() || pos.is_some_and(|p| *seq <= p) {
                            if twice {
                                report.watch_dup += 1;
                            } else {
                                report.watch_disorder += 1;
                            }
                            report.example(format!(
                                "watch {}: {} commit {seq} at {t} after position {pos:?}{}",
                                if twice { "dup" } else { "disorder" },
                                p.file,
                                if twice { ", delivered before" } else { "" }
                            ));
                        }
                        if !view.commits.contains_key(seq) {
                            for change in changes {
                                if let Change::Put { key, value } = change {
                                    view.seen
                                        .entry((key.clone(), value.clone()))
                                        .or_default()
                                        .push(*seq);
                                }
                            }
                            view.commits.insert(*seq, changes.clone());
                        }
                        start = start.or(Some(seq.saturating_sub(1)));
                        pos = Some(pos.map_or(*seq, |p| p.max(*seq)));
                    }
                    Event::WatchError { kind, .. } => {
                        *report.watch_errors.entry(kind.clone()).or_insert(0) += 1;
                        if kind == "Compacted" {
                            close(&mut view, &mut start, pos);
                            pos = None;
                        }
                    }
                    _ => expect_first = first,
                }
            }
        }
        close(&mut view, &mut start, pos);
        views.push(view);
    }
    report.watchers = views.len() as u64;
    kills(report, input);
    views
}

/// How often the nemesis SIGKILLed a watcher process, and how often that watcher was the
/// leader (by the incarnation each pid belonged to when it was killed).
fn kills(report: &mut Report, input: &Input) {
    let mut uid_of: HashMap<u32, &str> = HashMap::new();
    for (_, ev) in &input.nemesis {
        match ev {
            NemEvent::Spawn { pid, uid, .. } => {
                uid_of.insert(*pid, uid);
            }
            NemEvent::Kill { pid, target, .. }
                if target != "end" && uid_of.get(pid).is_some_and(|u| slot_of(u).is_some()) =>
            {
                report.watcher_kills += 1;
                if target == "leader" {
                    report.watcher_leader_kills += 1;
                }
            }
            _ => {}
        }
    }
}

/// Ends the current stretch of coverage at `pos`.
fn close(view: &mut View, start: &mut Option<u64>, pos: Option<u64>) {
    if let (Some(lo), Some(hi)) = (start.take(), pos) {
        view.stretches.push((lo, hi));
    }
}
