//! P1 to P3: a follower's `get`, against a raw unix-socket ping-pong and against Redis.
//!
//! One leader process holds the data; this process follows it. Each run measures, back to back:
//! sequential gets through the follower from a task of the runtime, where server code calls
//! rave from (P1 latency, P2 throughput; the same from the `block_on` thread is a breakdown
//! row), the raw ping-pong with the
//! same request and reply sizes (P1 baseline), the same ping-pong on tokio (information: the
//! runtime's share), `redis-benchmark -c 1 -P 1` (P2 baseline), 32 gets in flight on one handle
//! (P3) and `redis-benchmark -c 1 -P 32` (P3 baseline).

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use rave::{Backend, Error, KvStore, Rave, RaveOptions, Result};
use rave_transport::wire::{self, ClientMessage, Op, Reply, ServerMessage};
use rave_transport::{Client, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::child::{Helper, SHORT, follow, temp_dir};
use crate::cli::Sizes;
use crate::engines::{self, EngineName, KeyGen, with_engine};
use crate::redis::{self, Redis};
use crate::report::{Figure, Target};
use crate::stats::percentile;

/// Measures P1, P2 and P3 for `engine`.
pub async fn measure(engine: EngineName, sizes: &Sizes) -> Result<Vec<Figure>> {
    with_engine!(engine, B => measure_with::<B>(engine, sizes).await)
}

/// The sizes, in bytes, of a follower's `get` frame and of the leader's reply (length prefix
/// included), so that the ping-pong moves exactly as many bytes.
pub fn frame_sizes(value_size: usize) -> Result<(usize, usize)> {
    // A representative request id: ids count up from 1 per connection.
    let id = 100_000;
    let request = wire::encode(&ClientMessage::Request {
        id,
        op: Op::Get {
            key: engines::key(0),
        },
    })?;
    let reply = wire::encode(&ServerMessage::Response {
        id,
        result: Ok(Reply::Value(Some(engines::value(value_size)))),
    })?;
    Ok((request.len() + 4, reply.len() + 4))
}

struct Run {
    rave_lat: Vec<f64>,
    rave_ops: f64,
    raw_lat: Vec<f64>,
    tokio_lat: Vec<f64>,
    redis1: Option<redis::Measured>,
    rave_pipelined: f64,
    redis32: Option<redis::Measured>,
    client_ping_lat: Vec<f64>,
    client_get_lat: Vec<f64>,
    current_thread_lat: Vec<f64>,
    main_thread_lat: Vec<f64>,
}

/// Starts the raw ping-pong server helper on `socket`, answering `request`-byte frames with
/// `response`-byte ones, once it is ready.
pub(crate) async fn spawn_ping_server(
    name: impl Into<String>,
    socket: &Path,
    request: usize,
    response: usize,
) -> Result<Helper> {
    let mut ping = Helper::spawn(
        name,
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
    Ok(ping)
}

async fn measure_with<B: Backend + Default>(
    engine: EngineName,
    sizes: &Sizes,
) -> Result<Vec<Figure>> {
    let tmp = temp_dir()?;
    let dir = tmp.path().join("db");
    let mut leader = Helper::leader(engine, &dir, &sizes.point_data())?;
    leader.expect("ready", SHORT).await?;
    let db = follow::<B>(&dir, RaveOptions::default()).await?;

    let (request, response) = frame_sizes(sizes.value_size)?;
    let socket = tmp.path().join("ping.sock");
    let ping = spawn_ping_server("ping server", &socket, request, response).await?;

    let redis_missing = redis::missing();
    let redis = match &redis_missing {
        None => {
            let redis = Redis::start(tmp.path()).await?;
            redis.populate(sizes.keys, sizes.value_size).await?;
            Some(redis)
        }
        Some(why) => {
            eprintln!("rave-bench: skipping the Redis baselines: {why}");
            None
        }
    };

    // Warm-up: connections, caches, the engine's pages.
    sequential_gets(&db, sizes.keys.min(2_000), sizes.keys, 99).await?;
    raw_ping_pong(&socket, 1_000.min(sizes.latency_ops), request, response).await?;

    let mut runs = Vec::new();
    for run in 0..sizes.runs {
        let seed = run as u64 + 1;
        let (rave_lat, rave_secs) =
            gets_in_a_task(&db, sizes.latency_ops, sizes.keys, seed).await?;
        let raw_lat = raw_ping_pong(&socket, sizes.latency_ops, request, response).await?;
        let tokio_lat = tokio_ping_pong(&socket, sizes.latency_ops, request, response).await?;
        let redis1 = match &redis {
            Some(r) => Some(
                r.get(sizes.latency_ops, sizes.keys, sizes.value_size, 1)
                    .await?,
            ),
            None => None,
        };
        let rave_pipelined =
            concurrent_gets(&db, sizes.pipelined_ops, sizes.in_flight, sizes.keys, seed).await?;
        let redis32 = match &redis {
            Some(r) => Some(
                r.get(
                    sizes.pipelined_ops,
                    sizes.keys,
                    sizes.value_size,
                    sizes.in_flight,
                )
                .await?,
            ),
            None => None,
        };
        // The breakdown: the transport's client alone (no facade), without the engine (Ping),
        // and the whole follower on a current-thread runtime.
        let client = connect_client(&db).await?;
        let client_ping_lat = client_pings(&client, sizes.latency_ops).await?;
        let (client_get_lat, _) =
            sequential_gets(&client, sizes.latency_ops, sizes.keys, seed).await?;
        client.close().await?;
        let current_thread_lat =
            current_thread_gets::<B>(&dir, sizes.latency_ops, sizes.keys, seed).await?;
        let (main_thread_lat, _) =
            sequential_gets(&db, sizes.latency_ops, sizes.keys, seed).await?;
        runs.push(Run {
            main_thread_lat,
            client_ping_lat,
            client_get_lat,
            current_thread_lat,
            rave_ops: sizes.latency_ops as f64 / rave_secs,
            rave_lat,
            raw_lat,
            tokio_lat,
            redis1,
            rave_pipelined,
            redis32,
        });
    }

    db.close().await?;
    if let Some(r) = redis {
        r.stop().await;
    }
    ping.stop().await;
    leader.stop().await;
    Ok(figures(&runs, request, response, sizes, redis_missing))
}

fn figures(
    runs: &[Run],
    request: usize,
    response: usize,
    sizes: &Sizes,
    redis_missing: Option<String>,
) -> Vec<Figure> {
    let col = |f: &dyn Fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let raw = format!(
        "raw unix-socket ping-pong of the same sizes ({request} B out, {response} B back), \
         blocking std sockets, 2 processes"
    );
    let follower = "rave follower get, 1 in flight, from a task of a multi-thread tokio runtime";
    let redis1 = "redis-benchmark -c 1 -P 1 -t get over a unix socket";
    // A figure that sets one latency's p50 beside the raw ping-pong's p50, with no target.
    let p50_vs_raw = |id: &str, name: &str, subject: &str, lat: fn(&Run) -> &Vec<f64>| {
        Figure::new(id, name, "µs")
            .subject(subject, col(&|r| percentile(lat(r), 50.0)))
            .baseline(&raw, col(&|r| percentile(&r.raw_lat, 50.0)))
    };
    let mut out = vec![
        Figure::new("P1", "follower get latency, p50", "µs")
            .subject(follower, col(&|r| percentile(&r.rave_lat, 50.0)))
            .baseline(&raw, col(&|r| percentile(&r.raw_lat, 50.0)))
            .target(Target::ratio_at_most(1.3)),
        Figure::new("P1", "follower get latency, p99", "µs")
            .subject(follower, col(&|r| percentile(&r.rave_lat, 99.0)))
            .baseline(&raw, col(&|r| percentile(&r.raw_lat, 99.0)))
            .target(Target::ratio_at_most(1.3)),
        p50_vs_raw(
            "P1·i",
            "tokio ping-pong latency, p50",
            "the same ping-pong with the client on tokio (multi-thread runtime): \
             the runtime's share of a round trip",
            |r| &r.tokio_lat,
        ),
        p50_vs_raw(
            "P1·d",
            "breakdown: transport client, Ping, p50",
            "rave_transport::Client::ping on its own connection: the protocol round trip \
             without the engine and without the facade",
            |r| &r.client_ping_lat,
        ),
        p50_vs_raw(
            "P1·d",
            "breakdown: transport client, get, p50",
            "rave_transport::Client::get on its own connection: the engine added, \
             the facade left out",
            |r| &r.client_get_lat,
        ),
        p50_vs_raw(
            "P1·d",
            "breakdown: follower called from the block_on thread, p50",
            "rave follower get, 1 in flight, awaited by the multi-thread runtime's \
             `block_on` thread (e.g. `#[tokio::main]`'s body) instead of a task: each \
             reply wakes that thread from a worker, one thread hand-off more",
            |r| &r.main_thread_lat,
        ),
        p50_vs_raw(
            "P1·d",
            "breakdown: follower on a current-thread runtime, p50",
            "rave follower get, 1 in flight, the follower's handle on a current-thread \
             tokio runtime",
            |r| &r.current_thread_lat,
        ),
    ];
    let mut more = vec![
        Figure::new("P1·r", "follower get latency p50 vs Redis", "µs")
            .subject(follower, col(&|r| percentile(&r.rave_lat, 50.0)))
            .baseline(
                format!("{redis1}, its p50"),
                col(&|r| r.redis1.map_or(0.0, |m| m.p50_us)),
            ),
        Figure::new("P1·r", "follower get latency p99 vs Redis", "µs")
            .subject(follower, col(&|r| percentile(&r.rave_lat, 99.0)))
            .baseline(
                format!("{redis1}, its p99"),
                col(&|r| r.redis1.map_or(0.0, |m| m.p99_us)),
            ),
        Figure::new("P2", "follower get throughput, 1 in flight", "ops/s")
            .higher_is_better()
            .subject(follower, col(&|r| r.rave_ops))
            .baseline(redis1, col(&|r| r.redis1.map_or(0.0, |m| m.rps)))
            .target(Target::ratio_at_least(1.0)),
        Figure::new(
            "P3",
            format!("follower get throughput, {} in flight", sizes.in_flight),
            "ops/s",
        )
        .higher_is_better()
        .subject(
            format!(
                "rave follower, {} concurrent tasks on one handle",
                sizes.in_flight
            ),
            col(&|r| r.rave_pipelined),
        )
        .baseline(
            format!(
                "redis-benchmark -c 1 -P {} -t get over a unix socket",
                sizes.in_flight
            ),
            col(&|r| r.redis32.map_or(0.0, |m| m.rps)),
        )
        .target(Target::ratio_at_least(0.8)),
    ];
    if let Some(why) = redis_missing {
        for fig in &mut more {
            fig.skip(format!("skipped: {why}"));
        }
    }
    out.extend(more);
    out
}

/// `n` gets of random keys, one at a time; returns each latency (µs) and the total seconds.
async fn sequential_gets<S: KvStore>(
    db: &S,
    n: usize,
    keys: usize,
    seed: u64,
) -> Result<(Vec<f64>, f64)> {
    let mut keygen = KeyGen::new(seed);
    let keys: Vec<Vec<u8>> = (0..n).map(|_| engines::key(keygen.below(keys))).collect();
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for key in &keys {
        let t = Instant::now();
        let value = db.get(key).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        if value.is_none() {
            return Err(Error::other("a key of the data set is missing"));
        }
    }
    Ok((lat, started.elapsed().as_secs_f64()))
}

/// A transport client of its own on the leader `db` follows.
async fn connect_client<B: Backend>(db: &Rave<B>) -> Result<Client> {
    let path = db.socket_path()?;
    let stream = tokio::net::UnixStream::connect(&path)
        .await
        .map_err(|e| Error::io("connect to the leader", &e))?;
    let (client, _) = Client::connect(stream, Limits::default()).await?;
    Ok(client)
}

/// `n` pings, one at a time; latencies in µs.
async fn client_pings(client: &Client, n: usize) -> Result<Vec<f64>> {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.ping().await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(lat)
}

/// Sequential gets through a follower handle of its own opened with `op_timeout(None)`;
/// latencies in µs.
/// [`sequential_gets`] in a task of the multi-thread runtime, where server code calls rave from.
async fn gets_in_a_task<B: Backend>(
    db: &Rave<B>,
    n: usize,
    keys: usize,
    seed: u64,
) -> Result<(Vec<f64>, f64)> {
    let db = db.clone();
    tokio::spawn(async move { sequential_gets(&db, n, keys, seed).await })
        .await
        .map_err(|e| Error::other(format!("the get task failed: {e}")))?
}

/// Sequential gets through a follower handle of its own, on a current-thread runtime on a
/// thread of its own; latencies in µs.
async fn current_thread_gets<B: Backend + Default>(
    dir: &Path,
    n: usize,
    keys: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("start a current-thread runtime", &e))?;
        rt.block_on(async {
            let db = follow::<B>(&dir, RaveOptions::default()).await?;
            sequential_gets(&db, n.min(1_000), keys, seed + 1).await?;
            let (lat, _) = sequential_gets(&db, n, keys, seed).await?;
            db.close().await?;
            Ok(lat)
        })
    })
    .await
    .map_err(|e| Error::other(format!("the current-thread follower failed: {e}")))?
}

/// `n` gets of random keys from `tasks` concurrent tasks on clones of one handle; ops/s.
async fn concurrent_gets<B: Backend>(
    db: &Rave<B>,
    n: usize,
    tasks: usize,
    keys: usize,
    seed: u64,
) -> Result<f64> {
    let tasks = tasks.max(1);
    let per_task = n / tasks;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let db = db.clone();
        let mut keygen = KeyGen::new(seed * 1000 + t as u64);
        set.spawn(async move {
            for _ in 0..per_task {
                db.get(&engines::key(keygen.below(keys))).await?;
            }
            Ok::<(), Error>(())
        });
    }
    while let Some(done) = set.join_next().await {
        done.map_err(|e| Error::other(format!("a get task failed: {e}")))??;
    }
    Ok((per_task * tasks) as f64 / started.elapsed().as_secs_f64())
}

/// `n` blocking round trips on a std unix socket (on a blocking thread); latencies in µs.
pub(crate) async fn raw_ping_pong(
    socket: &Path,
    n: usize,
    request: usize,
    response: usize,
) -> Result<Vec<f64>> {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&socket)
            .map_err(|e| Error::io("connect to the ping server", &e))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| Error::io("set a socket timeout", &e))?;
        let req = vec![1u8; request];
        let mut reply = vec![0u8; response];
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            s.write_all(&req)
                .and_then(|()| s.read_exact(&mut reply))
                .map_err(|e| Error::io("ping-pong", &e))?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(lat)
    })
    .await
    .map_err(|e| Error::other(format!("the ping-pong thread failed: {e}")))?
}

/// The same round trips from a tokio task; latencies in µs.
async fn tokio_ping_pong(
    socket: &Path,
    n: usize,
    request: usize,
    response: usize,
) -> Result<Vec<f64>> {
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| Error::io("connect to the ping server", &e))?;
    let req = vec![1u8; request];
    let mut reply = vec![0u8; response];
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&req)
            .await
            .map_err(|e| Error::io("ping-pong", &e))?;
        s.read_exact(&mut reply)
            .await
            .map_err(|e| Error::io("ping-pong", &e))?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(lat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_plausible_sizes() {
        let (request, response) = frame_sizes(100).unwrap();
        assert!((20..100).contains(&request), "{request}");
        assert!((100..200).contains(&response), "{response}");
    }
}
