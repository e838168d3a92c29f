//! No acknowledged write is lost to a power cut when `sync` is promised, for every engine.
//!
//! A power cut is simulated with `rave-powercut`'s FUSE file system (crates/powercut): the
//! database directory is a FUSE mount over a backing directory, which remembers every write
//! not yet `fsync`ed or `fdatasync`ed and takes them all back on the cut. Each cycle mounts it,
//! starts three real writer processes on the mount with `sync: true` (a leader and two
//! followers, through the unix socket inside the mount; they are this test binary run again as
//! `writer_process`) that put unique keys, alone and in batches, and print each acknowledged
//! one; cuts the power after a random time, or once a few MiB are acknowledged (enough for
//! redb's journal, 1 MiB, to fill and checkpoint more than once); SIGKILLs the writers;
//! unmounts; and opens the backing directory — the disk after the cut — with the engine
//! directly. Every acknowledged key must be there with its value, every key there must hold
//! the value its writer wrote, and a scan must agree with point reads.
//!
//! Mounting needs root: outside CI a non-root run skips, in CI (root) a skip fails. Linux only
//! (FUSE as the crate mounts it).
#![cfg(target_os = "linux")]

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Engine, Proc, is_root, skip_or_fail, tempdir, within};
use rand::Rng;
use rave::{BatchOp, KvStore, OpenOptions, Range, Rave, RaveOptions};
use rave_powercut::PowerCut;

per_engine!(acknowledged_writes_survive_a_power_cut);

/// Cycles per engine, each cut after 0.3–1.5 s of writing: even ones with small values, odd
/// ones with 16–64 KiB values and not before 2–4 MiB are acknowledged.
const CYCLES: usize = 8;

/// Writer processes per cycle: the first to lock the directory leads, the others follow.
const WRITERS: usize = 3;

/// Concurrent writing loops in each writer process (so that commits are grouped).
const LOOPS: usize = 3;

/// Every fifth write of a loop is a batch of this many keys (acknowledged all or none).
const BATCH: usize = 4;

/// A large-value cycle cuts by this time (after its first acknowledged write) even if it has
/// not written its target yet.
const LARGE_CYCLE_LIMIT: Duration = Duration::from_secs(10);

/// How long the writers may take to acknowledge their first write (election, engine open).
const START_LIMIT: Duration = Duration::from_secs(30);

/// Environment of a writer process (see [`writer_process`]).
const ENV_ENGINE: &str = "RAVE_POWERCUT_WRITER";
const ENV_DIR: &str = "RAVE_POWERCUT_DIR";
const ENV_PREFIX: &str = "RAVE_POWERCUT_PREFIX";
const ENV_VALUE: &str = "RAVE_POWERCUT_VALUE";

async fn acknowledged_writes_survive_a_power_cut<B: Engine>() {
    let test = format!("{}::acknowledged_writes_survive_a_power_cut", B::CLI);
    if !is_root() {
        skip_or_fail(&test, "mounting FUSE needs root");
        return;
    }
    if !Path::new("/dev/fuse").exists() {
        skip_or_fail(&test, "no /dev/fuse on this machine");
        return;
    }
    let started = Instant::now();
    let mut journal_wraps = 0;
    for cycle in 0..CYCLES {
        let summary = cycle_once::<B>(cycle, cycle % 2 == 1).await;
        println!("{test}: cycle {cycle}: {summary}");
        if summary.large && summary.acked_bytes > 2 * rave_api_journal_capacity() {
            journal_wraps += 1;
        }
    }
    // The large cycles acknowledged more than the journal holds, more than once: redb's
    // checkpoints (durable redb commits, then the journal starting over) happened under the
    // cut too. The other engines have no journal; the same volume crosses their memtable
    // and log switches.
    assert!(
        journal_wraps >= 1,
        "{test}: no cycle wrote more than twice the journal's capacity before its cut"
    );
    println!("{test}: {CYCLES} cycles in {:?}", started.elapsed());
}

/// redb's journal capacity (rave_api::journal::DEFAULT_CAPACITY; not a dependency of the
/// root crate's tests).
fn rave_api_journal_capacity() -> u64 {
    1 << 20
}

/// What one cycle did.
struct Summary {
    large: bool,
    acked: usize,
    acked_bytes: u64,
    on_disk: usize,
    cut_after: Duration,
    /// How long the cut itself took (waiting for the operation in progress, then undoing).
    cut_took: Duration,
    report: rave_powercut::CutReport,
    stats: rave_powercut::Stats,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} values, cut after {:?} (taking {:?}): {} keys ({} KiB) acknowledged, {} on disk after the cut; \
             undone: {} changes, {} KiB in {} files; syncs: {} fdatasync, {} fsync, {} dir, by \
             file {:?}",
            if self.large { "large" } else { "small" },
            self.cut_after,
            self.cut_took,
            self.acked,
            self.acked_bytes / 1024,
            self.on_disk,
            self.report.changes,
            self.report.bytes_lost / 1024,
            self.report.files,
            self.stats.fdatasyncs,
            self.stats.fsyncs,
            self.stats.dir_syncs,
            self.stats.syncs_by_name,
        )
    }
}

async fn cycle_once<B: Engine>(cycle: usize, large: bool) -> Summary {
    let dir = tempdir();
    let backing = dir.path().join("backing");
    // Short, so that `<mount>/rave.sock` fits a socket path and the socket is on the mount.
    let mountpoint = dir.path().join("m");
    std::fs::create_dir(&backing).expect("create the backing directory");
    std::fs::create_dir(&mountpoint).expect("create the mount point");
    let fs = PowerCut::mount(&backing, &mountpoint).expect("mount the power-cut file system");

    // Each cycle writes for a random time, and a large one also until it has written its
    // target (within LARGE_CYCLE_LIMIT).
    let (size, target_bytes, run_for) = {
        let mut rng = rand::rng();
        let run_for = Duration::from_millis(rng.random_range(300..=1500));
        if large {
            (
                rng.random_range(16 << 10..=64 << 10),
                rng.random_range(2u64 << 20..=4 << 20),
                run_for,
            )
        } else {
            (100, 0, run_for)
        }
    };
    let mut writers: Vec<Proc> = (0..WRITERS)
        .map(|w| spawn_writer::<B>(fs.mountpoint(), &format!("c{cycle}w{w}"), size))
        .collect();

    // Write until the cut is due, counting acknowledgements as they come.
    let mut acked_bytes = 0u64;
    let mut first_ack: Option<Instant> = None;
    let waiting = Instant::now();
    loop {
        for w in &mut writers {
            for line in w.drain_lines() {
                if let Some(keys) = line.strip_prefix("ack ") {
                    first_ack.get_or_insert_with(Instant::now);
                    acked_bytes += keys.split(' ').map(|k| value_size(k) as u64).sum::<u64>();
                }
            }
            if let Some(status) = w.try_status() {
                panic!(
                    "a writer exited before the cut ({status}): stdout {:?}; stderr {}",
                    w.seen().iter().rev().take(5).collect::<Vec<_>>(),
                    w.stderr()
                );
            }
        }
        match first_ack {
            None => assert!(
                waiting.elapsed() < START_LIMIT,
                "no write acknowledged within {START_LIMIT:?}: stderr {:?}",
                writers.iter().map(Proc::stderr).collect::<Vec<_>>()
            ),
            Some(at)
                if at.elapsed() >= LARGE_CYCLE_LIMIT
                    || (at.elapsed() >= run_for && acked_bytes >= target_bytes) =>
            {
                break;
            }
            Some(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cut_after = first_ack.map_or(Duration::ZERO, |at| at.elapsed());

    let cutting = Instant::now();
    let report = fs.cut();
    let cut_took = cutting.elapsed();
    assert!(
        report.errors.is_empty(),
        "the cut could not undo everything: {:?}",
        report.errors
    );
    // Every line printed was printed after its write was acknowledged, so even lines that
    // arrive after the cut name writes that were durable before it.
    let mut acked: BTreeSet<String> = BTreeSet::new();
    for w in &mut writers {
        w.kill();
        let out = within(
            "read the writer's output",
            Duration::from_secs(10),
            w.finish(Duration::from_secs(5)),
        )
        .await;
        for line in out.text().lines() {
            if let Some(keys) = line.strip_prefix("ack ") {
                acked.extend(keys.split(' ').map(str::to_string));
            }
        }
    }
    let stats = fs.stats();
    assert!(
        stats.fdatasyncs + stats.fsyncs > 0,
        "no file was ever synced through the mount: {stats:?}"
    );
    fs.unmount().expect("unmount");
    drop(writers);

    let on_disk = check_backing::<B>(&backing, &acked).await;
    Summary {
        large,
        acked: acked.len(),
        acked_bytes: acked.iter().map(|k| value_size(k) as u64).sum(),
        on_disk,
        cut_after,
        cut_took,
        report,
        stats,
    }
}

/// Opens the backing directory with the engine itself (no FUSE, no election) and checks it
/// against the acknowledged keys; returns how many keys it holds.
async fn check_backing<B: Engine>(backing: &Path, acked: &BTreeSet<String>) -> usize {
    let options = OpenOptions {
        sync: true,
        ..OpenOptions::default()
    };
    let store = B::default()
        .open(backing, &options)
        .unwrap_or_else(|e| panic!("open the directory as the power cut left it: {e}"));
    let mut iter = within(
        "scan",
        Duration::from_secs(30),
        store.iterator(Range::all()),
    )
    .await
    .expect("scan");
    let scanned: BTreeMap<Vec<u8>, Vec<u8>> =
        within("scan", Duration::from_secs(30), iter.collect_all())
            .await
            .expect("scan")
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect();
    drop(iter);

    let missing: Vec<&String> = acked
        .iter()
        .filter(|k| !scanned.contains_key(k.as_bytes()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged keys are lost after the power cut (first: {:?})",
        missing.len(),
        acked.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    );
    // Every key on disk (acknowledged, or in flight at the cut) holds what its writer wrote.
    for (key, value) in &scanned {
        let key = String::from_utf8_lossy(key);
        assert!(
            *value == expected_value(&key),
            "{key} holds a value of {} bytes, not the {} its writer wrote",
            value.len(),
            expected_value(&key).len()
        );
    }
    // Point reads agree with the scan.
    let keys: Vec<Vec<u8>> = scanned.keys().cloned().collect();
    let got = within("get_many", Duration::from_secs(30), store.get_many(&keys))
        .await
        .expect("get_many");
    for (key, value) in keys.iter().zip(got) {
        assert_eq!(
            value.as_ref(),
            scanned.get(key),
            "get and scan disagree on {}",
            String::from_utf8_lossy(key)
        );
    }
    within("close", Duration::from_secs(30), store.close())
        .await
        .expect("close");
    scanned.len()
}

/// The size of the value a writer puts under `key` (`<prefix>-<loop>-<n>-<size>`).
fn value_size(key: &str) -> usize {
    key.rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a writer key ends with its value size: {key:?}"))
}

/// The value a writer puts under `key`: `KEY|` repeated to [`value_size`] bytes, so that a
/// check knows it from the key alone.
fn expected_value(key: &str) -> Vec<u8> {
    let size = value_size(key);
    let pattern = format!("{key}|");
    // `repeat` copies whole slices: a byte-by-byte iterator is slow in a debug build.
    let mut value = pattern.as_bytes().repeat(size / pattern.len() + 1);
    value.truncate(size);
    value
}

/// Starts this test binary as a writer process on `dir` (see [`writer_process`]).
fn spawn_writer<B: Engine>(dir: &Path, prefix: &str, size: usize) -> Proc {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "writer_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ENV_ENGINE, B::CLI)
        .env(ENV_DIR, dir)
        .env(ENV_PREFIX, prefix)
        .env(ENV_VALUE, size.to_string())
        .env("RAVE_LOG", "warn");
    Proc::spawn(format!("writer {prefix}"), command, None)
}

/// Not a test of its own: the writer process of the power-cut cycles, when this binary is run
/// with `RAVE_POWERCUT_WRITER` set (otherwise it returns at once). Opens the directory with
/// `sync: true` and writes unique keys from a few loops until killed, printing `ack KEY...`
/// after each acknowledged put or batch.
#[test]
fn writer_process() {
    let Ok(engine) = std::env::var(ENV_ENGINE) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        match engine.as_str() {
            #[cfg(feature = "redb")]
            "redb" => write_until_killed::<rave::backends::RedbBackend>().await,
            #[cfg(feature = "leveldb")]
            "leveldb" => write_until_killed::<rave::backends::LevelDbBackend>().await,
            #[cfg(feature = "rocksdb")]
            "rocksdb" => write_until_killed::<rave::backends::RocksDbBackend>().await,
            other => panic!("engine {other} is not compiled in"),
        }
    });
}

async fn write_until_killed<B: Engine>() {
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let dir = env(ENV_DIR);
    let prefix = env(ENV_PREFIX);
    let size: usize = env(ENV_VALUE).parse().expect("a value size");
    let db = std::sync::Arc::new(
        Rave::<B>::open_engine(&dir, RaveOptions::default().sync(true)).expect("open"),
    );
    let mut loops = Vec::new();
    for l in 0..LOOPS {
        let db = db.clone();
        let prefix = prefix.clone();
        loops.push(tokio::spawn(async move {
            let key = |n: usize| {
                // Sizes vary a little, so that records and pages do not all line up.
                format!("{prefix}-{l}-{n:07}-{}", size + (n % 7) * 13)
            };
            let mut n = 0;
            loop {
                let keys: Vec<String> = if n % 5 == 4 {
                    (n..n + BATCH).map(key).collect()
                } else {
                    vec![key(n)]
                };
                n += keys.len();
                let result = if keys.len() == 1 {
                    db.put(keys[0].as_bytes(), &expected_value(&keys[0])).await
                } else {
                    let ops = keys
                        .iter()
                        .map(|k| BatchOp::put(k.as_bytes(), expected_value(k)))
                        .collect();
                    db.batch(ops).await
                };
                match result {
                    Ok(()) => println!("ack {}", keys.join(" ")),
                    Err(e) => {
                        // After the cut every write fails: keep trying until killed.
                        eprintln!("write {} failed: {e}", keys[0]);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    for l in loops {
        let _ = l.await;
    }
}
