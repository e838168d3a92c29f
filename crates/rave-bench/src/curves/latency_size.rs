//! C3: latency (p50 and p99) against value size, for a follower's get and its durable put.
//!
//! A leader process opened with `sync(true)` serves this process's follower handle. At each
//! value size the follower first writes 16 keys of that size, then, back to back: gets of
//! them one at a time, the raw unix-socket ping-pong of the same frame sizes (P1's baseline),
//! Redis GETs of 16 keys of that size (`redis-benchmark -c 1 -P 1 -d SIZE`), durable puts of
//! the same keys one at a time, and the same puts into SQLite (WAL, `synchronous=FULL`, one
//! connection in this process).

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use rave::{Backend, Error, KvStore, RaveOptions, Result};

use super::worker;
use super::{Curve, CurveSizes, Series, fmt_bytes};
use crate::child::{Helper, SHORT, follow, temp_dir};
use crate::engines::{self, EngineName, with_engine};
use crate::follower::{frame_sizes, raw_ping_pong};
use crate::helper;
use crate::redis::{self, Redis};
use crate::stats::percentile;

/// Keys per value size: few, so that 1 MiB values stay small in every store.
const KEYS: usize = 16;

/// Operations timed at least per measurement, however slow they are.
const MIN_OPS: usize = 20;

/// Measures C3 for `engine`: the get curve and the put curve.
pub async fn measure(engine: EngineName, cs: &CurveSizes) -> Result<Vec<Curve>> {
    with_engine!(engine, B => measure_with::<B>(engine, cs).await)
}

/// A p50 and a p99 series of one thing.
struct Pair {
    p50: Series,
    p99: Series,
}

impl Pair {
    fn new(name: &str, what: &str, points: usize, baseline: bool) -> Self {
        let mut p50 = Series::new(format!("{name} p50"), what, points);
        let mut p99 = Series::new(format!("{name} p99"), what, points);
        p99.secondary = true;
        if baseline {
            p50 = p50.baseline();
            p99 = p99.baseline();
        }
        Pair { p50, p99 }
    }

    fn push(&mut self, point: usize, latencies: &[f64]) {
        self.p50.runs[point].push(percentile(latencies, 50.0));
        self.p99.runs[point].push(percentile(latencies, 99.0));
    }

    fn skip(&mut self, why: &str) {
        self.p50.skipped = Some(why.to_string());
        self.p99.skipped = Some(why.to_string());
    }
}

async fn measure_with<B: Backend + Default>(
    engine: EngineName,
    cs: &CurveSizes,
) -> Result<Vec<Curve>> {
    let tmp = temp_dir()?;
    let dir = tmp.path().join("db");
    let mut leader = Helper::spawn(
        "leader",
        worker::args("rave", Some(engine), &dir, 0, 1, &["--sync", "--lead"]),
    )?;
    leader.expect("ready", SHORT).await?;
    let db = follow::<B>(&dir, RaveOptions::default()).await?;
    let sqlite = tmp.path().join("kv.sqlite");
    helper::sqlite_create(&sqlite)?;

    // One ping server per value size, each answering with that size's reply frame.
    let mut pings = Vec::new();
    for (i, &size) in cs.value_sizes.iter().enumerate() {
        let (request, response) = frame_sizes(size)?;
        let socket = tmp.path().join(format!("ping{i}.sock"));
        let mut ping = Helper::spawn(
            format!("ping server {size} B"),
            [
                "ping-server".to_string(),
                "--socket".into(),
                socket.display().to_string(),
                "--request".into(),
                request.to_string(),
                "--response".into(),
                response.to_string(),
            ],
        )?;
        ping.expect("ready", SHORT).await?;
        pings.push((ping, socket, request, response));
    }
    let redis_missing = redis::missing();
    let redis = match &redis_missing {
        None => Some(Redis::start(tmp.path()).await?),
        Some(why) => {
            eprintln!("rave-bench: C3: skipping the Redis baseline: {why}");
            None
        }
    };

    let points = cs.value_sizes.len();
    let mut get = Pair::new(
        &format!("rave follower get ({engine})"),
        "a rave follower handle in this process, 1 get in flight from a task, 16 keys of the size",
        points,
        false,
    );
    let mut raw = Pair::new(
        "raw ping-pong",
        "raw unix-socket ping-pong of the get's frame sizes (request out, reply with the value \
         back), blocking std sockets, 2 processes",
        points,
        true,
    );
    let mut redis_get = Pair::new(
        "Redis GET",
        "redis-benchmark -c 1 -P 1 -t get -d SIZE over a unix socket, 16 keys of the size",
        points,
        true,
    );
    let mut put = Pair::new(
        &format!("rave follower put ({engine}, sync on)"),
        "a rave follower handle in this process, 1 put in flight from a task, overwriting 16 \
         keys; the leader process is opened with sync(true)",
        points,
        false,
    );
    let mut sqlite_put = Pair::new(
        "SQLite WAL FULL put",
        "one SQLite connection (WAL, synchronous=FULL) in this process, autocommit INSERT OR \
         REPLACE overwriting 16 keys, 1 at a time",
        points,
        true,
    );
    let limit = Duration::from_secs_f64(cs.latency_seconds);
    for _run in 0..cs.runs {
        for (i, &size) in cs.value_sizes.iter().enumerate() {
            let value = engines::value(size);
            for k in 0..KEYS {
                db.put(&engines::key(k), &value).await?;
            }
            // Warm-up: the engine's pages and the connection's buffers at this size.
            for k in 0..KEYS {
                db.get(&engines::key(k)).await?;
            }
            get.push(i, &follower_gets(&db, limit).await?);
            let (_, socket, request, response) = &pings[i];
            let count = ops_for(limit, size);
            raw.push(i, &raw_ping_pong(socket, count, *request, *response).await?);
            if let Some(r) = &redis {
                r.populate(KEYS, size).await?;
                let m = r.get(count, KEYS, size, 1).await?;
                redis_get.p50.runs[i].push(m.p50_us);
                redis_get.p99.runs[i].push(m.p99_us);
            }
            put.push(i, &follower_puts(&db, limit, &value).await?);
            sqlite_put.push(i, &sqlite_puts(&sqlite, limit, size).await?);
        }
    }
    if let Some(why) = &redis_missing {
        redis_get.skip(why);
    }
    db.close().await?;
    if let Some(r) = redis {
        r.stop().await;
    }
    for (ping, ..) in pings {
        ping.stop().await;
    }
    leader.kill_and_reap().await;

    let x: Vec<f64> = cs.value_sizes.iter().map(|&s| s as f64).collect();
    let x_labels: Vec<String> = cs.value_sizes.iter().map(|&s| fmt_bytes(s)).collect();
    let window = format!(
        "{} s per measurement (at least {MIN_OPS} operations), {} run(s).",
        cs.latency_seconds, cs.runs
    );
    let mut gets = Curve::new(
        "C3",
        "follower get latency against value size",
        "value size",
        x.clone(),
        x_labels.clone(),
        "µs",
    );
    gets.slug = "c3-get".into();
    gets.log_y = true;
    gets.note = format!(
        "{window} Redis GETs: as many as the ping-pong does, its p50 and p99 at redis-benchmark's \
         1 µs resolution."
    );
    gets.series = vec![
        get.p50,
        raw.p50,
        redis_get.p50,
        get.p99,
        raw.p99,
        redis_get.p99,
    ];
    let mut puts = Curve::new(
        "C3",
        "follower durable-put latency against value size",
        "value size",
        x,
        x_labels,
        "µs",
    );
    puts.slug = "c3-put".into();
    puts.log_y = true;
    puts.note = window;
    puts.series = vec![put.p50, sqlite_put.p50, put.p99, sqlite_put.p99];
    Ok(vec![gets, puts])
}

/// How many round trips the count-based baselines do at `size`: about `limit` worth at a
/// guessed cost per trip, at least [`MIN_OPS`].
fn ops_for(limit: Duration, size: usize) -> usize {
    // ~40 µs per round trip plus ~1 µs per KiB each way: a guess; only the sample count
    // depends on it.
    let guess_us = 40.0 + size as f64 / 1024.0;
    ((limit.as_secs_f64() * 1e6 / guess_us) as usize).max(MIN_OPS)
}

/// Runs `op` one at a time for `limit` (at least [`MIN_OPS`] times) in a task of the runtime;
/// each latency in µs.
async fn timed<F, Fut>(limit: Duration, op: F) -> Result<Vec<f64>>
where
    F: Fn(usize) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    tokio::spawn(async move {
        let mut lat = Vec::new();
        let started = Instant::now();
        while lat.len() < MIN_OPS || started.elapsed() < limit {
            let t = Instant::now();
            op(lat.len()).await?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(lat)
    })
    .await
    .map_err(|e| Error::other(format!("the timed task failed: {e}")))?
}

async fn follower_gets<S: KvStore + Clone + 'static>(db: &S, limit: Duration) -> Result<Vec<f64>> {
    let db = db.clone();
    timed(limit, move |n| {
        let db = db.clone();
        async move {
            match db.get(&engines::key(n % KEYS)).await? {
                Some(_) => Ok(()),
                None => Err(Error::other("a key of C3's data set is missing")),
            }
        }
    })
    .await
}

async fn follower_puts<S: KvStore + Clone + 'static>(
    db: &S,
    limit: Duration,
    value: &[u8],
) -> Result<Vec<f64>> {
    let (db, value) = (db.clone(), value.to_vec());
    timed(limit, move |n| {
        let (db, value) = (db.clone(), value.clone());
        async move { db.put(&engines::key(n % KEYS), &value).await }
    })
    .await
}

/// Durable puts into SQLite, one at a time, on a blocking thread; latencies in µs.
async fn sqlite_puts(path: &Path, limit: Duration, size: usize) -> Result<Vec<f64>> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let conn = helper::sqlite_connect(&path)?;
        let value = engines::value(size);
        let mut lat = Vec::new();
        let started = Instant::now();
        while lat.len() < MIN_OPS || started.elapsed() < limit {
            let t = Instant::now();
            helper::sqlite_put(&conn, &engines::key(lat.len() % KEYS), &value)?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(lat)
    })
    .await
    .map_err(|e| Error::other(format!("the SQLite thread failed: {e}")))?
}
