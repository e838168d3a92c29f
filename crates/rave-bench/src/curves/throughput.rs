//! C1 and C2: total throughput against the number of follower processes.
//!
//! C1: a leader process holds the point data set; N follower processes each get random keys,
//! one get in flight, for a window; beside `redis-benchmark -c N -P 1 -t get` (N connections
//! from one client process, one request in flight on each).
//!
//! C2: a leader process opened with `sync(true)`, which writes nothing itself; N follower
//! processes each put distinct keys, one put in flight; beside N SQLite processes (WAL,
//! `synchronous=FULL`, autocommit), one put in flight each.
//!
//! The largest N's processes are spawned once and reused at every point (the first N of them
//! work, the others idle), so the spawns cost nothing per point.

use rave::Result;

use super::worker;
use super::{Curve, CurveSizes, Series, kill_all, run_all, spawn_workers};
use crate::child::{Helper, SHORT, temp_dir};
use crate::engines::EngineName;
use crate::helper;
use crate::redis::{self, Redis};

/// Bytes per value of C1's data set and of C2's puts (as P1 to P5).
const VALUE_SIZE: usize = 100;

fn axis(cs: &CurveSizes) -> (Vec<f64>, Vec<String>) {
    (
        cs.processes.iter().map(|&n| n as f64).collect(),
        cs.processes.iter().map(|n| n.to_string()).collect(),
    )
}

/// C1: follower get throughput against follower processes, beside Redis with as many clients.
pub async fn gets(engine: EngineName, cs: &CurveSizes) -> Result<Curve> {
    let tmp = temp_dir()?;
    let dir = tmp.path().join("db");
    let mut leader = Helper::leader(
        engine,
        &dir,
        &[("keys", cs.keys), ("value-size", VALUE_SIZE)],
    )?;
    leader.expect("ready", SHORT).await?;
    let most = cs.processes.iter().copied().max().unwrap_or(1);
    let mut followers = spawn_workers("reader", most, |i| {
        worker::args("rave", Some(engine), &dir, i, 1, &[])
    })
    .await?;

    let redis_missing = redis::missing();
    let redis = match &redis_missing {
        None => {
            let redis = Redis::start(tmp.path()).await?;
            redis.populate(cs.keys, VALUE_SIZE).await?;
            Some(redis)
        }
        Some(why) => {
            eprintln!("rave-bench: C1: skipping the Redis baseline: {why}");
            None
        }
    };

    let points = cs.processes.len();
    let mut rave = Series::new(
        format!("rave follower ({engine})"),
        format!(
            "N follower processes, each one rave handle getting random keys of {} ({VALUE_SIZE} B \
             values), 1 get in flight, from a task of its tokio runtime; a separate leader process",
            cs.keys
        ),
        points,
    );
    let mut baseline = Series::new(
        "Redis",
        format!(
            "redis-benchmark -c N -P 1 -t get over a unix socket, {} requests per point: N \
             connections from one client process, 1 request in flight on each",
            cs.redis_requests
        ),
        points,
    )
    .baseline();
    let mut errors = 0;
    let command = format!("get {} {}", cs.seconds, cs.keys);
    for _run in 0..cs.runs {
        for (i, &n) in cs.processes.iter().enumerate() {
            let (rate, failed) = run_all(&mut followers[..n], &command, cs.seconds).await?;
            rave.runs[i].push(rate);
            errors += failed;
            if let Some(r) = &redis {
                let m = r
                    .get_clients(cs.redis_requests, cs.keys, VALUE_SIZE, n)
                    .await?;
                baseline.runs[i].push(m.rps);
            }
        }
    }
    if let Some(why) = redis_missing {
        baseline.skipped = Some(why);
    }
    kill_all(followers).await;
    if let Some(r) = redis {
        r.stop().await;
    }
    leader.stop().await;

    let (x, x_labels) = axis(cs);
    let mut curve = Curve::new(
        "C1",
        "follower get throughput against follower processes",
        "follower processes (Redis: client connections)",
        x,
        x_labels,
        "ops/s",
    );
    curve.higher_is_better = true;
    curve.note = format!(
        "Total gets per second of all N processes, {} s per point, {} run(s). The processes are \
         spawned once and reused at every point. On a machine with fewer cores than processes \
         the leader shares the CPU with its followers.{}",
        cs.seconds,
        cs.runs,
        failed_note(errors, "gets")
    );
    curve.series = vec![rave, baseline];
    Ok(curve)
}

/// C2: durable-put throughput against writer (follower) processes, beside SQLite processes.
pub async fn puts(engine: EngineName, cs: &CurveSizes) -> Result<Curve> {
    let tmp = temp_dir()?;
    let dir = tmp.path().join("db");
    let sqlite = tmp.path().join("kv.sqlite");
    helper::sqlite_create(&sqlite)?;
    let most = cs.processes.iter().copied().max().unwrap_or(1);
    // The leader is started first, so that it leads; it only serves.
    let mut leader = Helper::spawn(
        "leader",
        worker::args("rave", Some(engine), &dir, 0, 1, &["--sync", "--lead"]),
    )?;
    leader.expect("ready", SHORT).await?;
    let mut writers = spawn_workers("rave writer", most, |i| {
        worker::args("rave", Some(engine), &dir, i + 1, 1, &["--sync"])
    })
    .await?;
    let mut sqlite_writers = spawn_workers("sqlite writer", most, |i| {
        worker::args("sqlite", None, &sqlite, i, 1, &[])
    })
    .await?;

    let points = cs.processes.len();
    let mut rave = Series::new(
        format!("rave follower ({engine}, sync on)"),
        format!(
            "N follower processes, each one rave handle putting distinct keys ({VALUE_SIZE} B \
             values), 1 put in flight; a separate leader process opened with sync(true) \
             (group commit shares each fsync)"
        ),
        points,
    );
    let mut baseline = Series::new(
        "SQLite WAL FULL",
        format!(
            "N processes, each one SQLite connection (bundled; WAL, synchronous=FULL) doing \
             autocommit INSERT OR REPLACE of distinct keys ({VALUE_SIZE} B values), 1 put in flight"
        ),
        points,
    )
    .baseline();
    let mut ceiling = Series::new(
        "fsync ceiling",
        format!(
            "N × this machine's fdatasync rate (one thread appending {VALUE_SIZE} B and syncing, \
             same file system, {} s right before the point's puts): what N processes with one \
             put in flight each reach if every commit carries all N puts and costs one fdatasync",
            ceiling_seconds(cs)
        ),
        points,
    )
    .baseline();
    let mut errors = 0;
    let mut round = 0;
    for _run in 0..cs.runs {
        for (i, &n) in cs.processes.iter().enumerate() {
            // Per point: the shared disk's sync rate changes within minutes.
            let rate = crate::fsync::rate(VALUE_SIZE, ceiling_seconds(cs)).await?;
            ceiling.runs[i].push(rate * n as f64);
            round += 1;
            let command = format!("put {} {VALUE_SIZE} {round}", cs.seconds);
            let (rate, failed) = run_all(&mut writers[..n], &command, cs.seconds).await?;
            rave.runs[i].push(rate);
            errors += failed;
            let (rate, failed) = run_all(&mut sqlite_writers[..n], &command, cs.seconds).await?;
            baseline.runs[i].push(rate);
            errors += failed;
        }
    }
    kill_all(writers).await;
    kill_all(sqlite_writers).await;
    leader.kill_and_reap().await;

    let (x, x_labels) = axis(cs);
    let mut curve = Curve::new(
        "C2",
        "durable-put throughput against writer processes",
        "writer processes",
        x,
        x_labels,
        "puts/s",
    );
    curve.higher_is_better = true;
    // The ceiling runs decades above the measured rates when the disk syncs quickly.
    curve.log_y = true;
    curve.note = format!(
        "Total puts per second of all N processes, {} s per point, {} run(s). One database per \
         system for the whole curve (it grows by every point's puts); the processes are spawned \
         once and reused.{}",
        cs.seconds,
        cs.runs,
        failed_note(errors, "puts")
    );
    curve.series = vec![rave, baseline, ceiling];
    Ok(curve)
}

/// How long C2's fsync ceiling is measured at each point.
fn ceiling_seconds(cs: &CurveSizes) -> f64 {
    cs.seconds / 4.0
}

/// A sentence about failed operations, if any failed.
pub fn failed_note(errors: u64, what: &str) -> String {
    if errors == 0 {
        String::new()
    } else {
        format!(" {errors} {what} failed (see stderr).")
    }
}
