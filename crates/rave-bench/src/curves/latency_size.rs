//! C3: latency (p50 and p99) against value size, for a follower's get and its durable put.
//!
//! A leader process opened with `sync(true)` serves this process's follower handle. At each
//! value size the follower first writes 16 keys of that size, then, back to back: gets of
//! them one at a time, the raw unix-socket ping-pong of the same frame sizes (P1's baseline),
//! Redis GETs of 16 keys of that size, durable puts of the same keys one at a time, the same
//! puts into SQLite (WAL, `synchronous=FULL`, one connection in this process), and the floor of
//! a durable write: appending the value to a file and `fdatasync`.
//!
//! Redis is timed by a client of its own here, not by `redis-benchmark`: redis-benchmark
//! stops its clock at the first bytes of a reply, which for a 1 MiB value leaves out most of
//! the transfer.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use rave::{Backend, Error, KvStore, RaveOptions, Result};

use super::worker;
use super::{Curve, CurveSizes, Series, fmt_bytes};
use crate::child::{Helper, SHORT, follow, temp_dir};
use crate::engines::{self, EngineName, with_engine};
use crate::follower::{frame_sizes, raw_ping_pong, spawn_ping_server};
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
        let ping =
            spawn_ping_server(format!("ping server {size} B"), &socket, request, response).await?;
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
        "GET of 16 keys of the size from Redis over its unix socket, 1 in flight, timed to \
         the reply's last byte by a blocking std client in this process",
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
    let mut fsync = Pair::new(
        "fdatasync floor",
        "one thread appending the value to a file and calling fdatasync, same file system: \
         what any durable write of that size costs at least",
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
                redis_get.push(i, &redis_gets(r.socket(), limit, size).await?);
            }
            put.push(i, &follower_puts(&db, limit, &value).await?);
            sqlite_put.push(i, &sqlite_puts(&sqlite, limit, size).await?);
            fsync.push(i, &fsync_latencies(tmp.path(), limit, size).await?);
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
        "{window} The ping-pong does as many round trips as fit the window at a guessed cost."
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
    puts.series = vec![
        put.p50,
        sqlite_put.p50,
        fsync.p50,
        put.p99,
        sqlite_put.p99,
        fsync.p99,
    ];
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

/// GETs of 16 keys of `size` bytes from Redis at `socket`, one at a time, each timed to the
/// reply's last byte; latencies in µs. Sets the keys first.
async fn redis_gets(socket: &Path, limit: Duration, size: usize) -> Result<Vec<f64>> {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let io = |e: std::io::Error| Error::io("talk to redis", &e);
        let stream = std::os::unix::net::UnixStream::connect(&socket).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io)?;
        let mut writer = stream.try_clone().map_err(io)?;
        let mut reader = BufReader::new(stream);
        let value = engines::value(size);
        let command = |args: &[&[u8]]| {
            let mut out = format!("*{}\r\n", args.len()).into_bytes();
            for a in args {
                out.extend(format!("${}\r\n", a.len()).bytes());
                out.extend_from_slice(a);
                out.extend_from_slice(b"\r\n");
            }
            out
        };
        let mut line = String::new();
        for k in 0..KEYS {
            writer
                .write_all(&command(&[b"SET", &engines::key(k), &value]))
                .map_err(io)?;
            line.clear();
            reader.read_line(&mut line).map_err(io)?;
            if line != "+OK\r\n" {
                return Err(Error::protocol(format!("redis answered SET with {line:?}")));
            }
        }
        let requests: Vec<Vec<u8>> = (0..KEYS)
            .map(|k| command(&[b"GET", &engines::key(k)]))
            .collect();
        let mut body = vec![0u8; size + 2];
        let mut lat = Vec::new();
        let started = Instant::now();
        while lat.len() < MIN_OPS || started.elapsed() < limit {
            let t = Instant::now();
            writer.write_all(&requests[lat.len() % KEYS]).map_err(io)?;
            line.clear();
            reader.read_line(&mut line).map_err(io)?;
            if line.trim_end().strip_prefix('$') != Some(size.to_string().as_str()) {
                return Err(Error::protocol(format!("redis answered GET with {line:?}")));
            }
            std::io::Read::read_exact(&mut reader, &mut body).map_err(io)?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(lat)
    })
    .await
    .map_err(|e| Error::other(format!("the Redis client thread failed: {e}")))?
}

/// Appends of `size` bytes to a file in `dir`, each followed by `fdatasync`; latencies in µs.
async fn fsync_latencies(dir: &Path, limit: Duration, size: usize) -> Result<Vec<f64>> {
    let path = dir.join("fsync-floor");
    tokio::task::spawn_blocking(move || {
        let io = |e: std::io::Error| Error::io("append and fdatasync the probe file", &e);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let record = engines::value(size.max(1));
        let mut lat = Vec::new();
        let started = Instant::now();
        while lat.len() < MIN_OPS || started.elapsed() < limit {
            let t = Instant::now();
            file.write_all(&record).map_err(io)?;
            file.sync_data().map_err(io)?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        drop(file);
        // The probe would otherwise grow by every measurement.
        std::fs::remove_file(&path).map_err(io)?;
        Ok(lat)
    })
    .await
    .map_err(|e| Error::other(format!("the fsync thread failed: {e}")))?
}
