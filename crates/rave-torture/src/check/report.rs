//! The summary: what the checker found, with a few examples of each violation, and the
//! measurements that are not verdicts (failover times, how often the nemesis hit the moments
//! that matter).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::Input;
use super::ops::OpRec;
use crate::history::{NemEvent, Op};

/// What the checker found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Leader SIGKILLs.
    pub kills: u64,
    /// Acknowledged writes (puts and batches).
    pub acked: u64,
    /// Acknowledged writes missing from a final view (counted once across views).
    pub lost: u64,
    /// Writes applied twice: a value read again after a newer acknowledged write replaced it,
    /// plus drain keys removed beyond the limits of every clear that may have been applied.
    pub twice: u64,
    /// Pairs of overlapping leader terms, plus terms whose epoch did not grow.
    pub overlapping_terms: u64,
    /// Entries an iterator returned twice.
    pub dup: u64,
    /// Entries an iterator should have returned and did not.
    pub skip: u64,
    /// Operations that never ended in a process alive at the end.
    pub hung: u64,
    /// Reads that returned a value older than one acknowledged before they began.
    pub stale: u64,
    /// Batches seen partly (final state or a get_many of a group slot).
    pub partial: u64,
    /// Values nobody wrote.
    pub phantom: u64,
    /// Iterator entries outside their range.
    pub stray: u64,
    /// Iterator entries out of order.
    pub disorder: u64,
    /// Entries whose value does not match their key.
    pub corrupt: u64,
    /// Epochs that went backwards (in one process, or in the leader record).
    pub epoch_regress: u64,
    /// Workers that exited on their own, not by the nemesis nor cleanly.
    pub crashed: u64,
    /// Times no leader appeared for 20 s after a kill.
    pub stalls: u64,
    /// Operations whose process was killed mid-operation.
    pub indeterminate: u64,
    /// Operations that ended.
    pub ops: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// The longest operation, in ms.
    pub max_op_ms: f64,
    /// Failover times (kill to the first successful operation served by a newer leader), ms.
    pub failovers_ms: Vec<f64>,
    /// Leader terms seen.
    pub terms: u64,
    /// Leaders that SIGKILLed themselves at the after-commit fault point.
    pub fault_kills: u64,
    /// Registers and drains the rules above flagged (compared with the linearizability checker).
    pub flagged: HashSet<String>,
    /// Per-key histories given to the linearizability checker (stateright).
    pub lin_checked: u64,
    /// Of those, the ones it found linearizable.
    pub lin_ok: u64,
    /// Keys it found not linearizable.
    pub nonlinear: u64,
    /// Keys it could not decide within its time budget.
    pub lin_undecided: u64,
    /// Keys left out (history too long, or the budget spent).
    pub lin_skipped: u64,
    /// Checked keys on which it and the rules above disagree.
    pub lin_disagree: u64,
    /// Leader kills that landed while a batch was in flight.
    pub kills_mid_batch: u64,
    /// Leader kills that landed while a frozen-prefix iterator was open.
    pub kills_mid_iter: u64,
    /// Frozen-prefix iterators that completed across at least one leader kill.
    pub iters_across_kills: u64,
    /// Watcher slots (one view each, across its incarnations).
    pub watchers: u64,
    /// Watcher processes (incarnations).
    pub watcher_procs: u64,
    /// Watcher processes the nemesis SIGKILLed (each restarted after its last position).
    pub watcher_kills: u64,
    /// Of those, the ones killed as the leader.
    pub watcher_leader_kills: u64,
    /// Watches opened.
    pub watch_opens: u64,
    /// Of those, resumed from the position the watcher had reached (in-process or by a new
    /// incarnation).
    pub watch_resumes: u64,
    /// Commits delivered to watchers.
    pub watch_events: u64,
    /// Progress marks delivered.
    pub watch_progress: u64,
    /// (watcher, acknowledged write) pairs found delivered exactly once.
    pub watch_acked_seen: u64,
    /// (watcher, acknowledged write) pairs that could not be required (outside the coverage,
    /// or after every probe).
    pub watch_unchecked: u64,
    /// Acknowledged writes a watcher covering them did not deliver.
    pub watch_missed: u64,
    /// Commits another watcher saw that a watcher covering them did not deliver.
    pub watch_gaps: u64,
    /// Commits or writes delivered twice.
    pub watch_dup: u64,
    /// Positions going back, commits at or below the position, resumes not starting where asked.
    pub watch_disorder: u64,
    /// Commit numbers whose changes differ between two watchers.
    pub watch_disagree: u64,
    /// Changes nobody attempted.
    pub watch_phantom: u64,
    /// Batches delivered partly or split across commits.
    pub watch_partial: u64,
    /// Watch streams that failed, by error kind.
    pub watch_errors: BTreeMap<String, u64>,
    /// The first violations, with their evidence.
    pub examples: Vec<String>,
    example_kinds: HashMap<String, usize>,
}

const MAX_PER_KIND: usize = 5;

impl Report {
    /// Keeps `text` as evidence, at most [`MAX_PER_KIND`] per kind of violation (the words
    /// before the first `:`), so one flood does not hide the others.
    pub(super) fn example(&mut self, text: String) {
        let kind = text.split(':').next().unwrap_or("").to_string();
        let n = self.example_kinds.entry(kind).or_insert(0);
        *n += 1;
        if *n <= MAX_PER_KIND {
            self.examples.push(text);
        }
    }

    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        [
            self.lost,
            self.twice,
            self.nonlinear,
            self.overlapping_terms,
            self.dup,
            self.skip,
            self.hung,
            self.stale,
            self.partial,
            self.phantom,
            self.stray,
            self.disorder,
            self.corrupt,
            self.epoch_regress,
            self.crashed,
            self.stalls,
            self.watch_missed,
            self.watch_gaps,
            self.watch_dup,
            self.watch_disorder,
            self.watch_disagree,
            self.watch_phantom,
            self.watch_partial,
        ]
        .iter()
        .all(|&n| n == 0)
    }

    /// A failover percentile (nearest rank), 0 when there is none.
    pub fn failover_percentile(&self, p: f64) -> f64 {
        let mut v = self.failovers_ms.clone();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    /// The final line.
    pub fn summary(&self, backend: &str, seed: u64) -> String {
        format!(
            "torture: backend={backend} kills={} acked={} lost={} twice={} overlapping_terms={} dup={} skip={} hung={} failover_p50_ms={:.0} failover_p99_ms={:.0} watchers={} watch_events={} watch_missed={} watch_dup={} watch_disagree={} seed={seed}",
            self.kills,
            self.acked,
            self.lost,
            self.twice,
            self.overlapping_terms,
            self.dup,
            self.skip,
            self.hung,
            self.failover_percentile(50.0),
            self.failover_percentile(99.0),
            self.watchers,
            self.watch_events,
            self.watch_missed + self.watch_gaps,
            self.watch_dup,
            self.watch_disagree,
        )
    }

    /// The watchers' counters, one line.
    pub fn watch_details(&self) -> String {
        format!(
            "torture-watch: watchers={} procs={} killed={} killed_leading={} opens={} resumes={} events={} progress={} acked_seen={} unchecked={} missed={} gaps={} dup={} disorder={} disagree={} phantom={} partial={} errors={}",
            self.watchers,
            self.watcher_procs,
            self.watcher_kills,
            self.watcher_leader_kills,
            self.watch_opens,
            self.watch_resumes,
            self.watch_events,
            self.watch_progress,
            self.watch_acked_seen,
            self.watch_unchecked,
            self.watch_missed,
            self.watch_gaps,
            self.watch_dup,
            self.watch_disorder,
            self.watch_disagree,
            self.watch_phantom,
            self.watch_partial,
            kinds(&self.watch_errors)
        )
    }

    /// The other counters, one line.
    pub fn details(&self) -> String {
        format!(
            "torture-detail: ops={} terms={} fault_kills={} linearizable={}/{} nonlinear={} lin_undecided={} lin_skipped={} lin_disagree={} kills_mid_batch={} kills_mid_iter={} iters_across_kills={} stale={} partial={} phantom={} stray={} disorder={} corrupt={} epoch_regress={} crashed={} stalls={} indeterminate={} max_op_ms={:.0} errors={}",
            self.ops,
            self.terms,
            self.fault_kills,
            self.lin_ok,
            self.lin_checked,
            self.nonlinear,
            self.lin_undecided,
            self.lin_skipped,
            self.lin_disagree,
            self.kills_mid_batch,
            self.kills_mid_iter,
            self.iters_across_kills,
            self.stale,
            self.partial,
            self.phantom,
            self.stray,
            self.disorder,
            self.corrupt,
            self.epoch_regress,
            self.crashed,
            self.stalls,
            self.indeterminate,
            self.max_op_ms,
            kinds(&self.errors)
        )
    }
}

/// `Kind:N,...` (`-` when empty).
fn kinds(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "-".to_string();
    }
    let all: Vec<String> = counts.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    all.join(",")
}

/// The failover time after each leader kill: until a write or read was served by another
/// process in a later epoch.
pub(super) fn failover(report: &mut Report, input: &Input, ops: &[OpRec]) {
    let mut served: Vec<(u64, u32, u64)> = ops
        .iter()
        .filter(|o| o.ok())
        .filter_map(|o| Some((o.end?, o.pid, o.epoch?)))
        .collect();
    served.sort_unstable();
    for (t, ev) in &input.nemesis {
        let NemEvent::Kill {
            pid,
            epoch: Some(killed),
            target,
            ..
        } = ev
        else {
            continue;
        };
        if target != "leader" {
            continue;
        }
        report.kills += 1;
        let from = served.partition_point(|(end, _, _)| end <= t);
        if let Some((end, _, _)) = served[from..]
            .iter()
            .find(|(_, p, e)| p != pid && e > killed)
        {
            report.failovers_ms.push((end - t) as f64 / 1e6);
        }
    }
}

/// How often the nemesis hit the moments that matter: kills during a batch, during a frozen
/// iterator, and iterators that completed across a kill (so they resumed).
pub(super) fn coverage(
    report: &mut Report,
    input: &Input,
    ops: &[OpRec],
    kill_time: &HashMap<usize, u64>,
) {
    let mut kills: Vec<u64> = input
        .nemesis
        .iter()
        .filter_map(|(t, e)| match e {
            NemEvent::Kill { target, .. } if target == "leader" => Some(*t),
            _ => None,
        })
        .collect();
    kills.sort_unstable();
    let mut mid_batch = HashSet::new();
    let mut mid_iter = HashSet::new();
    for o in ops {
        // An operation cut short by its process's death was in flight until that death.
        let end = o
            .end
            .or_else(|| kill_time.get(&o.file).copied())
            .unwrap_or(u64::MAX);
        let from = kills.partition_point(|k| *k < o.start);
        let to = kills.partition_point(|k| *k <= end);
        match o.op {
            Op::Batch { .. } => mid_batch.extend(from..to),
            Op::Frozen(_) => {
                mid_iter.extend(from..to);
                if to > from && o.ok() {
                    report.iters_across_kills += 1;
                }
            }
            _ => {}
        }
    }
    report.kills_mid_batch = mid_batch.len() as u64;
    report.kills_mid_iter = mid_iter.len() as u64;
}
