//! The history checker.
//!
//! It reads every worker history and the nemesis log, plus the final contents of the database
//! (read through rave, and read again by opening the engine directly), and verifies:
//! - **lost**: every acknowledged write is in the final state (unique puts, batches, the frozen
//!   prefix), and the final value of each register (hot key, group slot) is not older than an
//!   acknowledged write;
//! - **batches** are all or nothing, in the final state and in every `get_many` of a group slot;
//! - **terms**: leader terms (role `leader` until its close, its SIGKILL as logged by the
//!   nemesis, or its next role change) never overlap, and epochs grow with them;
//! - **iterators** over the frozen prefix deliver exactly the expected keys: no duplicate, no
//!   skipped key, nothing outside the range, in order; iterators over live keys keep strict order;
//! - **reads** never return a value older than one acknowledged before the read began;
//! - **twice**: no write is applied twice: a put's unique value is never read again after a newer
//!   acknowledged put replaced it (after it had been read), and a writer's drain never loses more
//!   keys than the limits of the clears that may have been applied add up to;
//! - **linearizable**: stateright's exhaustive checker finds a linearization of every (short
//!   enough) register and drain history, and agrees with the rules above (`linear.rs`);
//! - **watchers** deliver every commit once, in sequence order shared by all of them, and every
//!   acknowledged write in their range and coverage, with nothing nobody wrote (`watch.rs`,
//!   `watch_views.rs`);
//! - **no hang**: an operation that started and never ended in a process that was still alive at
//!   the end (it ignored SIGTERM past the grace period, or exited without ending it) is hung.
//!
//! "Older" is decided conservatively: every recorded start is before the real issue and every
//! recorded end is after the real acknowledgement, and only acknowledged writes are used as
//! evidence, so a flagged read is a real violation. A write that failed or whose process died
//! mid-operation may have been applied at any moment after its start, so it is never evidence.
//!
//! One file per rule: `ops.rs` (operations per process, hangs and crashes), `writes.rs` (what
//! was written and acknowledged), `reads.rs` (stale and phantom reads, partial `get_many`),
//! `iterators.rs` (dup, skip, stray and disorder), `lost.rs` (the final state: lost writes,
//! partial batches, phantom keys, drains), `linear.rs` (the cross-check by stateright), `terms.rs` (overlapping terms, epochs going back), and
//! `report.rs` (the summary, failover times and nemesis coverage).

mod iterators;
mod linear;
mod lost;
mod ops;
mod reads;
mod report;
mod terms;
#[cfg(test)]
mod tests;
mod watch;
#[cfg(test)]
mod watch_tests;
mod watch_views;
mod writes;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::history::{Event, NemEvent, parse_line, parse_nemesis_line};

pub use report::Report;

/// Final database contents: key to value.
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// The nemesis log: time and event.
pub type NemLog = Vec<(u64, NemEvent)>;

/// One worker's history.
#[derive(Clone, Debug, Default)]
pub struct ProcHistory {
    /// The file it came from.
    pub file: String,
    /// writer / reader / storm.
    pub kind: String,
    /// Incarnation id.
    pub uid: String,
    /// Its pid.
    pub pid: u32,
    /// Its events, in file order.
    pub events: Vec<(u64, Event)>,
}

/// Everything the checker looks at.
#[derive(Clone, Debug, Default)]
pub struct Input {
    /// Worker histories.
    pub procs: Vec<ProcHistory>,
    /// The nemesis log.
    pub nemesis: NemLog,
    /// Size of the frozen prefix.
    pub frozen: u32,
    /// Final database contents, by view (`rave`, `direct`).
    pub finals: Vec<(String, State)>,
}

/// Reads a history directory (`*.log` worker files and `nemesis.log`).
pub fn load(hist: &Path) -> std::io::Result<(Vec<ProcHistory>, NemLog)> {
    let (files, nemesis) = crate::nemesis::history_files(hist)?;
    let mut procs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let mut p = ProcHistory {
            file: file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..ProcHistory::default()
        };
        for line in text.lines() {
            match parse_line(line) {
                Some((t, Event::Hello { kind, uid, pid })) => {
                    p.kind = kind.clone();
                    p.uid = uid.clone();
                    p.pid = pid;
                    p.events.push((t, Event::Hello { kind, uid, pid }));
                }
                Some(ev) => p.events.push(ev),
                None => eprintln!("rave-torture: {}: unreadable line {line:?}", p.file),
            }
        }
        procs.push(p);
    }
    let mut nem = Vec::new();
    if let Ok(text) = std::fs::read_to_string(&nemesis) {
        for line in text.lines() {
            match parse_nemesis_line(line) {
                Some(ev) => nem.push(ev),
                None => eprintln!("rave-torture: nemesis.log: unreadable line {line:?}"),
            }
        }
    }
    // A worker killed before it wrote its first line has an empty history: its pid (and so
    // its fate) comes from the nemesis's spawn record, by the file's name (`UID.log`).
    let spawned: HashMap<&str, u32> = nem
        .iter()
        .filter_map(|(_, e)| match e {
            NemEvent::Spawn { pid, uid, .. } => Some((uid.as_str(), *pid)),
            _ => None,
        })
        .collect();
    for p in &mut procs {
        if p.uid.is_empty() {
            p.uid = p.file.trim_end_matches(".log").to_string();
        }
        if p.pid == 0
            && let Some(pid) = spawned.get(p.uid.as_str())
        {
            p.pid = *pid;
        }
    }
    Ok((procs, nem))
}

/// Runs every check.
pub fn check(input: &Input) -> Report {
    let mut report = Report::default();
    let (fate, mut kill_time, self_killed) = ops::fates(input);
    // A process that killed itself logged nothing after its last line: its term ended then (a
    // lenient bound, by the time between that line and the commit it died after).
    for &i in &self_killed {
        if let Some((t, _)) = input.procs[i].events.last() {
            kill_time.insert(i, *t);
        }
    }
    report.fault_kills = self_killed.len() as u64;
    let ops = ops::collect(&mut report, input, &fate);
    let writes = writes::collect(&mut report, &ops);
    reads::check(&mut report, input, &ops, &writes);
    lost::check(&mut report, input, &writes);
    linear::check(&mut report, input, &ops, &writes);
    terms::check_terms(&mut report, input, &fate, &kill_time);
    terms::check_epochs(&mut report, input);
    watch::check(&mut report, input, &ops);
    report::failover(&mut report, input, &ops);
    report::coverage(&mut report, input, &ops, &kill_time);
    report.stalls = input
        .nemesis
        .iter()
        .filter(|(_, e)| matches!(e, NemEvent::Stall { .. }))
        .count() as u64;
    report
}
