//! `rave-bench etcd`: get and put through rave on a local etcd, beside `etcd-client` used
//! bare and beside the same operations through a rave follower (redb), in one run.
//!
//! The store under rave is also measured alone (`EtcdStore`, which stamps its own writes), to
//! tell the cost of the handle from the cost of the transaction.
//!
//! One run starts a one-member etcd with fsync on (as deployed; the tests' clusters skip it),
//! then, for each subject in turn, on its own keys: `--ops` sequential puts and gets (latency
//! p50 and p99), and the same number again with `--concurrency` in flight (throughput). Runs
//! alternate the subjects; the report gives each figure's median over the runs.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rave::etcd::EtcdBackend;
use rave::etcd::testing::{ClusterOptions, EtcdCluster};
use rave::{Error, KvStore, Rave, RaveOptions, Result};

use crate::stats::{Summary, percentile};

/// Options of `rave-bench etcd`.
#[derive(clap::Args, Debug, Clone)]
pub struct EtcdBenchArgs {
    /// Operations per measurement.
    #[arg(long, default_value_t = 2000)]
    pub ops: usize,
    /// Operations in flight for the throughput figures.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Runs (each measures every subject).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// One subject's operations.
#[derive(Clone)]
enum Subject {
    Bare(Box<etcd_client::KvClient>),
    Rave(Arc<dyn KvStore>),
}

impl Subject {
    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        match self {
            Subject::Bare(kv) => {
                let mut kv = (**kv).clone();
                kv.put(key, value, None).await.map(drop).map_err(etcd_error)
            }
            Subject::Rave(db) => db.put(&key, &value).await,
        }
    }

    async fn get(&self, key: Vec<u8>) -> Result<()> {
        match self {
            Subject::Bare(kv) => {
                let mut kv = (**kv).clone();
                kv.get(key, None).await.map(drop).map_err(etcd_error)
            }
            Subject::Rave(db) => db.get(&key).await.map(drop),
        }
    }
}

fn etcd_error(e: etcd_client::Error) -> Error {
    Error::other(format!("etcd: {e}"))
}

/// The figures of one subject in one run.
#[derive(Default, Clone)]
struct Figures {
    put_p50_us: f64,
    put_p99_us: f64,
    get_p50_us: f64,
    get_p99_us: f64,
    puts_per_s: f64,
    gets_per_s: f64,
}

const SUBJECTS: [&str; 4] = [
    "etcd-client, bare",
    "EtcdStore (no Rave handle)",
    "rave on etcd (direct)",
    "rave follower (redb, local)",
];

/// Runs the comparison and prints a Markdown table.
pub fn run(args: EtcdBenchArgs) -> Result<()> {
    let runtime = crate::cli::runtime()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: EtcdBenchArgs) -> Result<()> {
    let cluster = EtcdCluster::start_with(
        1,
        ClusterOptions {
            unsafe_no_fsync: false,
            ..ClusterOptions::default()
        },
    )?;
    let endpoints = cluster.endpoints();
    let bare = etcd_client::Client::connect(&endpoints, None)
        .await
        .map_err(etcd_error)?
        .kv_client();
    let direct = Rave::open_with(
        EtcdBackend::new(endpoints.clone(), "bench"),
        "",
        RaveOptions::default(),
    )?;
    let store = rave::etcd::EtcdStore::connect(
        &endpoints,
        b"bench-store",
        rave::etcd::EtcdOptions::default(),
    )
    .await?;
    let dir = tempfile::tempdir().map_err(|e| Error::io("bench dir", &e))?;
    let leader =
        Rave::<rave::backends::RedbBackend>::open_engine(dir.path(), RaveOptions::default())?;
    leader.ready().await?;
    let follower =
        Rave::<rave::backends::RedbBackend>::open_engine(dir.path(), RaveOptions::default())?;
    if follower.ready().await? != rave::Role::Follower {
        return Err(Error::other("the second handle did not follow"));
    }
    let subjects = [
        Subject::Bare(Box::new(bare)),
        Subject::Rave(Arc::new(store.clone())),
        Subject::Rave(Arc::new(direct.clone())),
        Subject::Rave(Arc::new(follower.clone())),
    ];
    let mut results: Vec<Vec<Figures>> = vec![Vec::new(); subjects.len()];
    for run in 0..args.runs {
        for (i, subject) in subjects.iter().enumerate() {
            let prefix = format!("s{i}/r{run}/");
            results[i].push(measure(subject, &prefix, &args).await?);
        }
    }
    println!(
        "rave-bench etcd: one-member etcd {} (fsync on), ops={} concurrency={} value={} B, \
         median of {} runs",
        etcd_version(),
        args.ops,
        args.concurrency,
        args.value_size,
        args.runs
    );
    println!();
    println!(
        "| subject | put p50 µs | put p99 µs | get p50 µs | get p99 µs | puts/s ({} in flight) | gets/s ({} in flight) |",
        args.concurrency, args.concurrency
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, runs) in SUBJECTS.iter().zip(&results) {
        let m =
            |f: fn(&Figures) -> f64| Summary::of(&runs.iter().map(f).collect::<Vec<_>>()).median;
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            m(|f| f.put_p50_us),
            m(|f| f.put_p99_us),
            m(|f| f.get_p50_us),
            m(|f| f.get_p99_us),
            m(|f| f.puts_per_s),
            m(|f| f.gets_per_s)
        );
    }
    store.close().await?;
    direct.close().await?;
    follower.close().await?;
    leader.close().await?;
    drop(cluster);
    Ok(())
}

fn etcd_version() -> String {
    std::process::Command::new(rave::etcd::testing::etcd_bin())
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(|l| l.replace("etcd Version: ", "")))
        .unwrap_or_else(|| "?".into())
}

async fn measure(subject: &Subject, prefix: &str, args: &EtcdBenchArgs) -> Result<Figures> {
    let key = |i: usize| format!("{prefix}{i:08}").into_bytes();
    let value = vec![b'v'; args.value_size];
    let mut put_lat = Vec::with_capacity(args.ops);
    for i in 0..args.ops {
        let started = Instant::now();
        subject.put(key(i), value.clone()).await?;
        put_lat.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let mut get_lat = Vec::with_capacity(args.ops);
    for i in 0..args.ops {
        let started = Instant::now();
        subject.get(key(i)).await?;
        get_lat.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let puts = throughput(args, |i| subject.put(key(args.ops + i), value.clone())).await?;
    let gets = throughput(args, |i| subject.get(key(i % args.ops.max(1)))).await?;
    Ok(Figures {
        put_p50_us: percentile(&put_lat, 50.0),
        put_p99_us: percentile(&put_lat, 99.0),
        get_p50_us: percentile(&get_lat, 50.0),
        get_p99_us: percentile(&get_lat, 99.0),
        puts_per_s: puts,
        gets_per_s: gets,
    })
}

/// Operations per second with `concurrency` in flight.
async fn throughput<F, Fut>(args: &EtcdBenchArgs, op: F) -> Result<f64>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    use futures::stream::{self, StreamExt, TryStreamExt};
    let started = Instant::now();
    stream::iter(0..args.ops)
        .map(&op)
        .buffer_unordered(args.concurrency.max(1))
        .try_collect::<()>()
        .await?;
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    Ok(args.ops as f64 / elapsed.as_secs_f64())
}
