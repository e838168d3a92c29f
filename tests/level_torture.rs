//! The mixed Node/Rust torture: Node (rave-level 1.0.0) and Rust (rave `--level-compat`) writer
//! and reader processes on one LevelDB directory; the leader, of whichever kind, SIGKILLed
//! again and again and replaced by a fresh worker of the same kind. Checked at the end:
//!
//! - `lost`: writes a writer acknowledged (`ack N`) that the directory does not hold;
//! - `dup` / `skip`: keys a Rust reader's scan of the frozen prefix saw twice, or missed (or saw
//!   out of order), across the failovers its scans lived through (forward and reverse);
//! - Node readers' scans (forward: rave-level's reverse resume skips keys) must skip nothing;
//!   their duplicates are counted apart (`node_guest_dup`): many-level's guest re-delivers the
//!   entries it had buffered when it resumes (shared/reference/rave-level-behaviour.md §3.8,
//!   measured with Node leaders only), whatever leads next.
//!
//! Kills: `RAVE_LEVEL_KILLS` (default 6; RELIABILITY.md has a 200-kill run). Needs node and the
//! pinned npm packages (`scripts/level-suite --install`), like tests/level_interop.rs.

#![cfg(all(unix, feature = "leveldb"))]

#[macro_use]
#[allow(unused_macros)]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rave::backends::LevelDbBackend;

use crate::common::{Proc, node, rave_cmd, run_rave, tempdir};

const FROZEN: u32 = 3000;
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    Node,
    Rust,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    Writer,
    Reader,
}

struct Worker {
    lang: Lang,
    job: Job,
    prefix: String,
    proc: Proc,
    led: bool,
}

impl Worker {
    fn start(lang: Lang, job: Job, n: usize, dir: &Path, modules: &Path) -> Worker {
        let prefix = format!("{}{n:04}", if lang == Lang::Node { "n" } else { "r" });
        let d = dir.to_str().unwrap();
        let proc = match lang {
            Lang::Node => {
                let script = if job == Job::Writer {
                    "writer.js"
                } else {
                    "reader.js"
                };
                let second = if job == Job::Writer {
                    prefix.clone()
                } else {
                    FROZEN.to_string()
                };
                node(
                    modules,
                    script,
                    &[d, &second],
                    &[("PACE_MS", "3"), ("PAUSE_MS", "2")],
                )
            }
            Lang::Rust => {
                let kind = if job == Job::Writer {
                    "writer"
                } else {
                    "reader"
                };
                let frozen = FROZEN.to_string();
                let args = [
                    "level-worker",
                    "--kind",
                    kind,
                    "--prefix",
                    &prefix,
                    "--frozen",
                    &frozen,
                ];
                let command = rave_cmd::<LevelDbBackend>(&["--level-compat"], dir, &args);
                Proc::spawn(format!("rave level-worker {kind} {prefix}"), command, None)
            }
        };
        Worker {
            lang,
            job,
            prefix,
            proc,
            led: false,
        }
    }

    /// Reads what it printed; true when it has just said `leader`.
    fn poll(&mut self) -> bool {
        let became = self.proc.drain_lines().iter().any(|l| l == "leader");
        self.led |= became;
        became
    }

    fn acks(&self) -> BTreeSet<u64> {
        self.proc
            .seen()
            .iter()
            .filter_map(|l| l.strip_prefix("ack ")?.parse().ok())
            .collect()
    }
}

#[derive(Default, Debug)]
struct Tally {
    kills_node: u32,
    kills_rust: u32,
    acked: usize,
    lost: usize,
    scans_ok: usize,
    scans_bad: Vec<String>,
    node_guest_dup: usize,
    failover_ms: Vec<u128>,
}

/// Waits until a live worker says `leader`; returns its index and how long it took.
async fn next_leader(workers: &mut [Worker]) -> usize {
    let deadline = Instant::now() + LIMIT;
    loop {
        for (i, w) in workers.iter_mut().enumerate() {
            if w.poll() && w.proc.try_status().is_none() {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no new leader within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the live writers have acknowledged `more` writes in all.
async fn progress(workers: &mut [Worker], more: usize) {
    let count = |ws: &mut [Worker]| -> usize {
        ws.iter_mut()
            .map(|w| {
                w.poll();
                w.acks().len()
            })
            .sum()
    };
    let start = count(workers);
    let deadline = Instant::now() + LIMIT;
    while count(workers) < start + more {
        assert!(Instant::now() < deadline, "the writers stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_node_and_rust_leaders_killed() {
    let Some(modules) = common::level_node_modules() else {
        common::skip_or_fail(
            "mixed_node_and_rust_leaders_killed",
            "node or rave-level is missing: run `scripts/level-suite --install` first",
        );
        return;
    };
    let kills: u32 = std::env::var("RAVE_LEVEL_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(6);
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    // Values of 100 bytes: a scan spans several read-ahead windows, so failovers interrupt it.
    let value = "v".repeat(100);
    let frozen: String = (0..FROZEN)
        .map(|i| format!("put\tf/{i:04}\t{value}\n"))
        .collect();
    run_rave::<LevelDbBackend>(
        &["--level-compat"],
        &dir,
        &["batch"],
        Some(frozen.as_bytes()),
    )
    .await
    .assert_code(0, "rave batch (the frozen keys)");

    let plan = [
        (Lang::Node, Job::Writer),
        (Lang::Rust, Job::Writer),
        (Lang::Node, Job::Writer),
        (Lang::Rust, Job::Writer),
        (Lang::Node, Job::Reader),
        (Lang::Rust, Job::Reader),
        (Lang::Rust, Job::Reader),
    ];
    let mut next = 0;
    let mut workers: Vec<Worker> = Vec::new();
    for (lang, job) in plan {
        workers.push(Worker::start(lang, job, next, &dir, &modules));
        next += 1;
    }
    let mut leader = next_leader(&mut workers).await;
    let mut done: Vec<Worker> = Vec::new();
    let mut tally = Tally::default();
    for k in 0..kills {
        // Long enough between kills for scans to finish, and to span the next kill.
        let pause = tokio::time::sleep(Duration::from_millis(250));
        progress(&mut workers, 20).await;
        pause.await;
        let lang = workers[leader].lang;
        match lang {
            Lang::Node => tally.kills_node += 1,
            Lang::Rust => tally.kills_rust += 1,
        }
        // Node candidates retry LevelDB's lock at once and usually win the election: every
        // third kill of a Node leader takes its whole side, so that Rust leaders are killed too.
        let whole_side = lang == Lang::Node && k % 3 == 2;
        let mut victims = vec![workers.swap_remove(leader)];
        if whole_side {
            let (side, rest): (Vec<_>, Vec<_>) = workers.drain(..).partition(|w| w.lang == lang);
            victims.extend(side);
            workers = rest;
        }
        let started = Instant::now();
        for victim in &mut victims {
            victim.proc.kill();
            victim.poll();
        }
        if !whole_side {
            // A fresh worker of the same kind, so both kinds keep running for election.
            workers.push(Worker::start(lang, victims[0].job, next, &dir, &modules));
            next += 1;
        }
        leader = next_leader(&mut workers).await;
        tally.failover_ms.push(started.elapsed().as_millis());
        // The side that was killed whole comes back (to follow, this time).
        for victim in &victims[usize::from(!whole_side)..] {
            workers.push(Worker::start(victim.lang, victim.job, next, &dir, &modules));
            next += 1;
        }
        done.extend(victims);
    }
    progress(&mut workers, 20).await;
    for w in &mut workers {
        w.proc.signal(libc::SIGTERM);
    }
    for mut w in workers {
        w.proc.finish(LIMIT).await;
        w.poll();
        done.push(w);
    }

    // Every acknowledged write, read by one rave process (it leads now).
    let out =
        run_rave::<LevelDbBackend>(&["--level-compat"], &dir, &["scan", "--keys-only"], None).await;
    out.assert_code(0, "rave scan");
    let stored: BTreeSet<String> = out.text().lines().map(str::to_string).collect();
    for w in &done {
        match w.job {
            Job::Writer => {
                let acked = w.acks();
                tally.acked += acked.len();
                tally.lost += acked
                    .iter()
                    .filter(|i| !stored.contains(&format!("{}/{i:08}", w.prefix)))
                    .count();
            }
            Job::Reader => {
                for line in w.proc.seen() {
                    if line.starts_with("err") || line.starts_with("error") {
                        eprintln!("{:?} reader {}: {line}", w.lang, w.prefix);
                    }
                    if line.starts_with("scan ok") {
                        tally.scans_ok += 1;
                    } else if let Some(bad) = line.strip_prefix("scan bad ") {
                        let field = |name: &str| -> usize {
                            bad.split(' ')
                                .find_map(|f| f.strip_prefix(name)?.parse().ok())
                                .unwrap_or(usize::MAX)
                        };
                        // Node's guest: duplicates (each one also out of order) are upstream's.
                        let upstream = w.lang == Lang::Node
                            && field("skip=") == 0
                            && field("order=") <= field("dup=");
                        if upstream {
                            tally.node_guest_dup += field("dup=");
                        } else {
                            tally
                                .scans_bad
                                .push(format!("{:?} {}: {line}", w.lang, w.prefix));
                        }
                    }
                }
            }
        }
    }
    tally.failover_ms.sort_unstable();
    let p = |q: usize| tally.failover_ms[(tally.failover_ms.len() - 1) * q / 100];
    println!(
        "level-torture: kills={} (node {} rust {}) acked={} lost={} scans_ok={} dup_or_skip={} \
         node_guest_dup={} failover_p50_ms={} failover_p99_ms={}",
        kills,
        tally.kills_node,
        tally.kills_rust,
        tally.acked,
        tally.lost,
        tally.scans_ok,
        tally.scans_bad.len(),
        tally.node_guest_dup,
        if kills > 0 { p(50) } else { 0 },
        if kills > 0 { p(99) } else { 0 },
    );
    assert_eq!(tally.lost, 0, "acknowledged writes lost");
    assert!(
        tally.scans_bad.is_empty(),
        "bad scans: {:#?}",
        tally.scans_bad
    );
    assert!(tally.acked > 0 && tally.scans_ok > 0);
}
