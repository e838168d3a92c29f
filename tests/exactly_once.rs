//! Exactly once across leader changes, with real processes: four loops of short-lived
//! `rave DIR clear --limit 1` processes (each leads for a moment, then exits and hands over),
//! with and without long-lived leaders killed by SIGKILL meanwhile. Every acknowledged clear
//! removes exactly one key; a clear that failed may or may not have applied, so the count of
//! removed keys must lie between the acknowledged clears and the acknowledged plus failed ones.

#[macro_use]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Engine, Proc, run_rave, tempdir, within};
use rave::{KvStore, Range, Rave, RaveOptions};

per_engine!(
    short_lived_clears_remove_one_key_each,
    clears_stay_exact_while_leaders_are_killed,
    counter_increments_stay_exact_while_leaders_are_killed,
);

const KEYS: usize = 2000;
const LOOPS: usize = 4;
const CLEARS_PER_LOOP: usize = 25;

async fn fill<B: Engine>(dir: &Path) {
    let input: String = (0..KEYS).map(|i| format!("put\tk{i:05}\tv\n")).collect();
    run_rave::<B>(&[], dir, &["batch"], Some(input.as_bytes()))
        .await
        .assert_code(0, "fill the directory");
}

async fn count_keys<B: Engine>(dir: &Path) -> usize {
    let db = Rave::<B>::open_engine(dir, RaveOptions::default()).expect("open");
    let mut iter = db.iterator(Range::all().keys_only()).await.expect("scan");
    let n = iter.collect_all().await.expect("scan").len();
    db.close().await.expect("close");
    n
}

/// Runs the four loops; returns (acknowledged, failed) clears.
async fn clear_loops<B: Engine>(dir: &Path) -> (usize, usize) {
    let mut loops = Vec::new();
    for _ in 0..LOOPS {
        let dir = dir.to_path_buf();
        loops.push(tokio::spawn(async move {
            let (mut acked, mut failed) = (0, 0);
            for _ in 0..CLEARS_PER_LOOP {
                let out = run_rave::<B>(&[], &dir, &["clear", "--limit", "1"], None).await;
                if out.status.code() == Some(0) {
                    acked += 1;
                } else {
                    eprintln!("a clear failed: {}", out.stderr);
                    failed += 1;
                }
            }
            (acked, failed)
        }));
    }
    let mut totals = (0, 0);
    for one in loops {
        let (acked, failed) = one.await.expect("a clear loop");
        totals.0 += acked;
        totals.1 += failed;
    }
    totals
}

fn check(removed: usize, acked: usize, failed: usize) {
    eprintln!("clears: acknowledged {acked}, failed {failed}; keys removed {removed}");
    assert!(
        removed >= acked,
        "{acked} clears were acknowledged but only {removed} keys were removed (a write was lost)"
    );
    assert!(
        removed <= acked + failed,
        "{removed} keys were removed by {acked} acknowledged and {failed} failed clears of one \
         key each: a clear was applied twice"
    );
    assert!(
        acked > 0,
        "no clear was acknowledged: the test checked nothing"
    );
}

async fn short_lived_clears_remove_one_key_each<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    fill::<B>(dir).await;
    let (acked, failed) = within(
        "the clear loops",
        Duration::from_secs(300),
        clear_loops::<B>(dir),
    )
    .await;
    check(KEYS - count_keys::<B>(dir).await, acked, failed);
}

/// Long-lived holders that keep becoming leader and are killed with SIGKILL, one after the
/// other, until `stop`; the task returns how many it killed.
fn spawn_leader_killer<B: Engine>(
    dir: &std::path::Path,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    let dir = dir.to_path_buf();
    tokio::spawn(async move {
        let mut kills = 0;
        while !stop.load(Ordering::SeqCst) {
            let mut holder = Proc::rave::<B>(&[], &dir, &["hold"]);
            let _ = holder.next_line(Duration::from_secs(10)).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
            holder.kill();
            kills += 1;
        }
        kills
    })
}

async fn clears_stay_exact_while_leaders_are_killed<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path().to_path_buf();
    fill::<B>(&dir).await;
    let stop = Arc::new(AtomicBool::new(false));
    let killer = spawn_leader_killer::<B>(&dir, stop.clone());
    let (acked, failed) = within(
        "the clear loops",
        Duration::from_secs(300),
        clear_loops::<B>(&dir),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let kills = killer.await.expect("the killer");
    eprintln!("holders killed: {kills}");
    assert!(kills > 0, "no leader was killed: the test checked nothing");
    check(KEYS - count_keys::<B>(&dir).await, acked, failed);
}

/// Four processes increment one counter with compare-and-swap loops (`examples/counter.rs`)
/// while leaders are killed with SIGKILL: the counter ends at least at the acknowledged
/// increments (none lost) and at most at those plus the attempts that failed (none applied
/// twice: a compare-and-swap re-sent after its leader died must not apply again and then
/// count as a conflict, which would make its loop increment a second time).
async fn counter_increments_stay_exact_while_leaders_are_killed<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path().to_path_buf();
    let counter = common::example("counter");
    // The example opens whatever engine the directory holds: make it this one.
    run_rave::<B>(&[], &dir, &["put", "n", "0"], None)
        .await
        .assert_code(0, "create the directory");
    let stop = Arc::new(AtomicBool::new(false));
    let killer = spawn_leader_killer::<B>(&dir, stop.clone());
    let mut counters = Vec::new();
    for i in 0..4 {
        let mut command = std::process::Command::new(&counter);
        command.arg(&dir).arg("300").env("RAVE_LOG", "warn");
        counters.push(Proc::spawn(format!("counter {i}"), command, None));
    }
    let (mut acked, mut failed) = (0u64, 0u64);
    for mut one in counters {
        let out = one.finish(Duration::from_secs(300)).await;
        let text = out.text();
        acked += text.lines().filter(|l| *l == "ok").count() as u64;
        failed += text.lines().filter(|l| l.starts_with("error")).count() as u64;
        assert_eq!(
            out.status.code(),
            Some(0),
            "a counter process failed: {out:?}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let kills = killer.await.expect("the killer");
    let db = Rave::<B>::open_engine(&dir, RaveOptions::default()).expect("open");
    let value: u64 = db
        .get(b"n")
        .await
        .expect("read the counter")
        .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0);
    db.close().await.expect("close");
    eprintln!("counter {value}: acknowledged {acked}, failed {failed}, leaders killed {kills}");
    assert!(kills > 0, "no leader was killed: the test checked nothing");
    assert!(
        value >= acked,
        "{acked} increments acknowledged, counter at {value}: one was lost"
    );
    assert!(
        value <= acked + failed,
        "counter at {value} after {acked} acknowledged and {failed} failed increments: an \
         increment was applied twice"
    );
}
