//! Leader terms (role `leader` until its close, its SIGKILL as logged by the nemesis, or its
//! next role change) never overlap, and epochs grow with them and never go back.

use std::collections::HashMap;

use super::ops::Fate;
use super::{Input, Report};
use crate::history::{Event, NemEvent, Op};

/// Overlapping terms, and epochs that do not grow from one term to the next.
pub(super) fn check_terms(
    report: &mut Report,
    input: &Input,
    fate: &HashMap<usize, Fate>,
    kill_time: &HashMap<usize, u64>,
) {
    // (start, end, epoch, file)
    let mut terms: Vec<(u64, u64, Option<u64>, &str)> = Vec::new();
    for (fi, p) in input.procs.iter().enumerate() {
        let last_t = p.events.last().map_or(0, |(t, _)| *t);
        let mut open: Option<(u64, Option<u64>)> = None;
        let mut ends: Vec<(u64, Option<u64>, u64)> = Vec::new();
        for (t, ev) in &p.events {
            let stops = match ev {
                Event::Role { role, .. } => role != "leader",
                Event::Start { op: Op::Close, .. } => true,
                _ => false,
            };
            if stops && let Some((s, e)) = open.take() {
                ends.push((s, e, *t));
            }
            if let Event::Role { role, epoch } = ev
                && role == "leader"
                && open.is_none()
            {
                open = Some((*t, *epoch));
            }
        }
        if let Some((s, e)) = open {
            // Still leading when its history stops: the term ended with the process.
            let end = match (kill_time.get(&fi), fate.get(&fi)) {
                (Some(k), _) => (*k).max(s),
                (None, Some(Fate::Crashed) | None) => last_t.max(s),
                _ => u64::MAX,
            };
            ends.push((s, e, end));
        }
        for (s, e, end) in ends {
            // A SIGKILL logged before the role change was recorded (the signal takes a moment
            // to land): the term ends at the kill, or at once.
            let end = match kill_time.get(&fi) {
                Some(k) if *k >= s => end.min(*k),
                _ => end,
            };
            terms.push((s, end, e, p.file.as_str()));
        }
    }
    terms.sort_by_key(|t| (t.0, t.1));
    report.terms = terms.len() as u64;
    let mut max_epoch: Option<u64> = None;
    for j in 0..terms.len() {
        let (sj, _, ej, fj) = terms[j];
        for &(si, endi, ei, fi) in &terms[..j] {
            if endi > sj {
                report.overlapping_terms += 1;
                report.example(format!(
                    "overlapping terms: {fi} led epoch {ei:?} from {si} to {endi}; {fj} led epoch {ej:?} from {sj}"
                ));
            }
        }
        if let Some(e) = ej {
            if max_epoch.is_some_and(|m| e <= m) {
                report.overlapping_terms += 1;
                report.example(format!(
                    "epoch did not grow: {fj} led epoch {e} from {sj} after epoch {max_epoch:?}"
                ));
            }
            max_epoch = Some(max_epoch.map_or(e, |m| m.max(e)));
        }
    }
}

/// Epochs that go back, as a worker saw them or as the nemesis recorded leaders.
pub(super) fn check_epochs(report: &mut Report, input: &Input) {
    for p in &input.procs {
        let mut last: Option<u64> = None;
        for (t, ev) in &p.events {
            let epoch = match ev {
                Event::End { epoch, .. } | Event::Role { epoch, .. } => *epoch,
                _ => None,
            };
            if let Some(e) = epoch {
                if last.is_some_and(|l| e < l) {
                    report.epoch_regress += 1;
                    report.example(format!(
                        "epoch went back: {} saw epoch {e} at {t} after {last:?}",
                        p.file
                    ));
                }
                last = Some(last.map_or(e, |l| l.max(e)));
            }
        }
    }
    let mut last = 0;
    for (t, ev) in &input.nemesis {
        if let NemEvent::Leader { epoch, .. } = ev {
            if *epoch < last {
                report.epoch_regress += 1;
                report.example(format!(
                    "leader record went back from epoch {last} to {epoch} at {t}"
                ));
            }
            last = last.max(*epoch);
        }
    }
}
