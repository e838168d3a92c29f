//! The etcd fault run: `rave-torture etcd --kills 24`.
//!
//! A three-member local etcd cluster (started here, on free localhost ports, each member with
//! its own data directory), writer and reader processes (this binary, `rave-torture
//! etcd-worker`) sharing one namespace through `rave::Rave` (role `Direct`), and a nemesis
//! that SIGKILLs a member every `--every-ms` (every other kill the etcd leader, found by asking
//! each member's status) and restarts it. Then one line:
//!
//! `torture-etcd: members=3 kills=N leader_kills=L acked=A lost=0 twice=0 dup=0 skip=0
//! hung=0 untyped=0 errors=KIND:COUNT,.. op_p99_ms=X max_op_ms=Y`
//!
//! - writers: each write is one batch `u/W/SEQ = SEQ` plus `h/W = SEQ`, stamped by rave;
//!   `lost` counts acknowledged `u/` keys missing at the end; `twice` counts writers whose
//!   final `h/W` is below their last acknowledged SEQ (an older write applied again after a
//!   newer one, the signature of a retried write applied twice);
//! - writers also drain: each fills `d/W/` with `DRAIN` keys at start, and every fifth
//!   operation is a `clear` of that prefix with limit 1; more keys gone than clears sent also
//!   counts in `twice` (a clear applied twice removes two keys);
//! - readers: each read lists one writer's keys with an iterator in chunks of 7, after reading
//!   which SEQs that writer had acknowledged; `dup` counts keys not strictly increasing,
//!   `skip` acknowledged keys the listing missed;
//! - every operation must end (success or a typed error) within the handle's deadline plus
//!   one second of slack: `hung` counts those that did not; `untyped` errors of kind `Other`.
//!
//! It exits non-zero when any of lost, twice, dup, skip, hung or untyped is not zero.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rave::etcd::testing::EtcdCluster;
use rave::etcd::{EtcdBackend, EtcdOptions, EtcdStore};
use rave::{BatchOp, KvStore, Range, Rave, RaveOptions};

/// Options of `rave-torture etcd`.
#[derive(Args, Debug, Clone)]
pub struct EtcdArgs {
    /// Member kills (SIGKILL, then restart).
    #[arg(long, default_value_t = 24)]
    pub kills: u32,
    /// Milliseconds between two kills.
    #[arg(long, default_value_t = 2500)]
    pub every_ms: u64,
    /// Writer processes.
    #[arg(long, default_value_t = 3)]
    pub writers: u32,
    /// Reader processes.
    #[arg(long, default_value_t = 2)]
    pub readers: u32,
    /// Every operation's deadline (RaveOptions::deadline), in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub deadline_ms: u64,
    /// Seed of the nemesis's choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long one etcd request may take before the store abandons it and re-sends it
    /// (EtcdOptions::request_timeout), in milliseconds. A few milliseconds make many requests
    /// that were applied look failed and be re-sent: a stress of exactly once.
    #[arg(long, default_value_t = 2000)]
    pub request_timeout_ms: u64,
}

/// Options of `rave-torture etcd-worker` (started by `etcd`, not by hand).
#[derive(Args, Debug, Clone)]
pub struct EtcdWorkerArgs {
    /// writer or reader.
    #[arg(long)]
    pub kind: String,
    /// This worker's number.
    #[arg(long)]
    pub id: u32,
    /// Writers in the run (readers pick one).
    #[arg(long)]
    pub writers: u32,
    /// The `etcd://` URL of the namespace.
    #[arg(long)]
    pub url: String,
    /// The directory of the histories (and the stop file).
    #[arg(long)]
    pub dir: PathBuf,
    /// RaveOptions::deadline, in milliseconds.
    #[arg(long)]
    pub deadline_ms: u64,
    /// EtcdOptions::request_timeout, in milliseconds.
    #[arg(long)]
    pub request_timeout_ms: u64,
}

const STOP: &str = "stop";

/// Keys each writer's drain starts with (more than the clears a run sends).
const DRAIN: u64 = 5_000;

fn drain_prefix(writer: u32) -> String {
    format!("d/{writer}/")
}

fn history(dir: &Path, kind: &str, id: u32) -> PathBuf {
    dir.join(format!("{kind}-{id}.log"))
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("rave-torture etcd: {msg}");
    ExitCode::from(2)
}

/// Runs the fault run and prints its summary.
pub fn run(args: EtcdArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("no runtime: {e}")),
    };
    let mut cluster = match EtcdCluster::start(3) {
        Ok(c) => c,
        Err(e) => return fail(format!("start etcd (scripts/deps etcd installs it): {e}")),
    };
    let work = match tempfile::Builder::new()
        .prefix("rave-torture-etcd-")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => return fail(format!("temporary directory: {e}")),
    };
    let dir = work.path().to_path_buf();
    let url = cluster.url("torture");
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return fail(format!("own path: {e}")),
    };
    let mut children: Vec<Child> = Vec::new();
    let kinds = (0..args.writers)
        .map(|i| ("writer", i))
        .chain((0..args.readers).map(|i| ("reader", i)));
    for (kind, id) in kinds {
        let child = Command::new(&exe)
            .args(["etcd-worker", "--kind", kind, "--id", &id.to_string()])
            .args(["--writers", &args.writers.to_string(), "--url", &url])
            .arg("--dir")
            .arg(&dir)
            .args(["--deadline-ms", &args.deadline_ms.to_string()])
            .args(["--request-timeout-ms", &args.request_timeout_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        match child {
            Ok(child) => children.push(child),
            Err(e) => return fail(format!("start a worker: {e}")),
        }
    }
    println!(
        "rave-torture etcd: members=3 writers={} readers={} kills={} every_ms={} \
         request_timeout_ms={} seed={}",
        args.writers, args.readers, args.kills, args.every_ms, args.request_timeout_ms, args.seed
    );
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut leader_kills = 0;
    std::thread::sleep(Duration::from_millis(args.every_ms));
    for kill in 0..args.kills {
        let leader = runtime.block_on(leader_of(&cluster));
        let target = match leader {
            Some(i) if kill % 2 == 0 => {
                leader_kills += 1;
                i
            }
            _ => rng.random_range(0..cluster.len()),
        };
        cluster.kill(target);
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1200)));
        if let Err(e) = cluster.restart(target) {
            return fail(format!("restart member {target}: {e}"));
        }
        if let Err(e) = cluster.wait_healthy(Duration::from_secs(60)) {
            return fail(format!("the cluster did not heal after kill {kill}: {e}"));
        }
        std::thread::sleep(Duration::from_millis(args.every_ms));
    }
    if let Err(e) = std::fs::write(dir.join(STOP), b"") {
        return fail(format!("write the stop file: {e}"));
    }
    let mut hung_workers = 0;
    let ends = Instant::now() + Duration::from_millis(args.deadline_ms) + Duration::from_secs(30);
    for child in &mut children {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < ends => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    hung_workers += 1;
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
    let finals = runtime.block_on(read_final(&cluster));
    let finals = match finals {
        Ok(f) => f,
        Err(e) => return fail(format!("read the final state: {e}")),
    };
    let summary = check(&dir, &args, finals, hung_workers, leader_kills);
    println!("{}", summary.line);
    drop(cluster);
    if summary.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The member that leads now, by asking each member's status.
async fn leader_of(cluster: &EtcdCluster) -> Option<usize> {
    let mut ids = Vec::new();
    let mut leader = None;
    for i in 0..cluster.len() {
        let status = async {
            let mut client = etcd_client::Client::connect([cluster.endpoint(i)], None).await?;
            client.status().await
        };
        match tokio::time::timeout(Duration::from_secs(2), status).await {
            Ok(Ok(status)) => {
                ids.push(status.header().map(|h| h.member_id()));
                leader = Some(status.leader());
            }
            _ => ids.push(None),
        }
    }
    let leader = leader?;
    ids.iter().position(|id| *id == Some(leader))
}

/// Every key of the namespace, read with a fresh store.
async fn read_final(cluster: &EtcdCluster) -> rave::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let store =
        EtcdStore::connect(&cluster.endpoints(), b"torture", EtcdOptions::default()).await?;
    let mut iter = store.iterator(Range::all()).await?;
    let entries = iter.collect_all().await?;
    store.close().await?;
    Ok(entries.into_iter().map(|e| (e.key, e.value)).collect())
}

struct Summary {
    line: String,
    ok: bool,
}

fn check(
    dir: &Path,
    args: &EtcdArgs,
    finals: BTreeMap<Vec<u8>, Vec<u8>>,
    hung_workers: u32,
    leader_kills: u32,
) -> Summary {
    let slack = args.deadline_ms + 1000;
    let (mut acked, mut lost, mut twice, mut dup, mut skip, mut hung, mut untyped) =
        (0u64, 0u64, 0u64, 0u64, 0u64, u64::from(hung_workers), 0u64);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut drained = 0u64;
    let mut unfilled = 0u64;
    let mut durations: Vec<u64> = Vec::new();
    let mut tally = |fields: &[&str], durations: &mut Vec<u64>| {
        // `... KIND MS` at the end of every ending line.
        let (Some(kind), Some(ms)) = (fields.get(fields.len().wrapping_sub(2)), fields.last())
        else {
            return;
        };
        let ms: u64 = ms.parse().unwrap_or(u64::MAX);
        durations.push(ms);
        if ms > slack {
            hung += 1;
        }
        if *kind != "ok" {
            *errors.entry((*kind).to_string()).or_default() += 1;
            if *kind == "Other" {
                untyped += 1;
            }
        }
    };
    for w in 0..args.writers {
        let text = std::fs::read_to_string(history(dir, "writer", w)).unwrap_or_default();
        let mut max_acked = 0u64;
        let (mut clears_sent, mut clears_acked) = (0u64, 0u64);
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.first() == Some(&"S") && fields.get(2) == Some(&"clear") {
                clears_sent += 1;
            }
            if fields.first() == Some(&"C") {
                tally(&fields, &mut durations);
                clears_acked += u64::from(fields.get(2) == Some(&"ok"));
                continue;
            }
            if fields.first() != Some(&"E") {
                continue;
            }
            tally(&fields, &mut durations);
            let seq: u64 = fields.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            if fields.get(2) == Some(&"ok") {
                acked += 1;
                max_acked = max_acked.max(seq);
                if !finals.contains_key(unique_key(w, seq).as_slice()) {
                    lost += 1;
                }
            }
        }
        let last = finals
            .get(hot_key(w).as_slice())
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        if last < max_acked {
            twice += 1;
        }
        if !text.lines().any(|l| l == "filled") {
            unfilled += 1; // the writer could not fill its drain: it stopped early
            continue;
        }
        let prefix = drain_prefix(w).into_bytes();
        let left = finals.keys().filter(|k| k.starts_with(&prefix)).count() as u64;
        let removed = DRAIN.saturating_sub(left);
        if removed > clears_sent {
            twice += removed - clears_sent;
        }
        if removed < clears_acked {
            lost += clears_acked - removed;
        }
        drained += removed;
    }
    for r in 0..args.readers {
        let text = std::fs::read_to_string(history(dir, "reader", r)).unwrap_or_default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.first() {
                Some(&"E") => tally(&fields, &mut durations),
                Some(&"dup") => dup += 1,
                Some(&"skip") => skip += 1,
                _ => {}
            }
        }
    }
    hung += unfilled;
    durations.sort_unstable();
    let p99 = durations
        .get(durations.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(0);
    let max = durations.last().copied().unwrap_or(0);
    let errors: Vec<String> = errors.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    let errors = if errors.is_empty() {
        "none".to_string()
    } else {
        errors.join(",")
    };
    let ok =
        lost == 0 && twice == 0 && dup == 0 && skip == 0 && hung == 0 && untyped == 0 && acked > 0;
    Summary {
        line: format!(
            "torture-etcd: members=3 kills={} leader_kills={leader_kills} acked={acked} \
             cleared={drained} lost={lost} twice={twice} dup={dup} skip={skip} hung={hung} untyped={untyped} \
             errors={errors} ops={} op_p99_ms={p99} max_op_ms={max} seed={}",
            args.kills,
            durations.len(),
            args.seed
        ),
        ok,
    }
}

fn unique_key(writer: u32, seq: u64) -> Vec<u8> {
    format!("u/{writer}/{seq:010}").into_bytes()
}

fn hot_key(writer: u32) -> Vec<u8> {
    format!("h/{writer}").into_bytes()
}

/// Appends one line to a history file in one write(2), so it survives the process.
fn note(file: &mut std::fs::File, line: String) {
    let _ = file.write_all(format!("{line}\n").as_bytes());
}

/// One worker process: writes or reads until the stop file appears.
pub fn worker(args: EtcdWorkerArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("no runtime: {e}")),
    };
    match runtime.block_on(work(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn work(args: EtcdWorkerArgs) -> Result<(), String> {
    let deadline = Duration::from_millis(args.deadline_ms);
    let options = EtcdOptions {
        op_timeout: deadline,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        ..EtcdOptions::default()
    };
    let backend = EtcdBackend::from_url(&args.url)
        .map_err(|e| e.to_string())?
        .with_options(options);
    let db = Rave::open_with(backend, "", RaveOptions::default().deadline(deadline))
        .map_err(|e| e.to_string())?;
    let path = history(&args.dir, &args.kind, args.id);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(args.id) * 7919 + 1);
    let stop = args.dir.join(STOP);
    let mut seq = 0u64;
    if args.kind == "writer" {
        for first in (0..DRAIN).step_by(100) {
            let ops = (first..(first + 100).min(DRAIN))
                .map(|i| BatchOp::put(format!("{}{i:08}", drain_prefix(args.id)), ""))
                .collect();
            db.batch(ops)
                .await
                .map_err(|e| format!("fill the drain: {e}"))?;
        }
        note(&mut file, "filled".to_string());
    }
    while !stop.exists() {
        let started = Instant::now();
        if args.kind == "writer" && seq % 5 == 4 {
            seq += 1;
            note(&mut file, format!("S {seq} clear"));
            let result = db
                .clear(Range::prefix(drain_prefix(args.id)).limit(1))
                .await;
            let kind = result
                .as_ref()
                .map_or_else(|e| e.kind().as_str(), |()| "ok");
            note(
                &mut file,
                format!("C {seq} {kind} {}", started.elapsed().as_millis()),
            );
        } else if args.kind == "writer" {
            seq += 1;
            note(&mut file, format!("S {seq}"));
            let ops = vec![
                BatchOp::put(unique_key(args.id, seq), seq.to_string()),
                BatchOp::put(hot_key(args.id), seq.to_string()),
            ];
            let result = db.batch(ops).await;
            let kind = result
                .as_ref()
                .map_or_else(|e| e.kind().as_str(), |()| "ok");
            note(
                &mut file,
                format!("E {seq} {kind} {}", started.elapsed().as_millis()),
            );
        } else {
            let writer = rng.random_range(0..args.writers.max(1));
            let acked = acked_seqs(&history(&args.dir, "writer", writer));
            let result = list(&db, writer).await;
            let kind = match &result {
                Ok(seen) => {
                    let mut previous: Option<u64> = None;
                    for &s in seen {
                        if previous.is_some_and(|p| s <= p) {
                            note(&mut file, format!("dup {writer} {s}"));
                        }
                        previous = Some(s);
                    }
                    let seen: BTreeSet<u64> = seen.iter().copied().collect();
                    for s in acked.difference(&seen) {
                        note(&mut file, format!("skip {writer} {s}"));
                    }
                    "ok"
                }
                Err(e) => e.kind().as_str(),
            };
            note(
                &mut file,
                format!("E {writer} {kind} {}", started.elapsed().as_millis()),
            );
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..50))).await;
        }
    }
    let _ = db.close().await;
    Ok(())
}

/// The SEQs a writer's history says were acknowledged.
fn acked_seqs(path: &Path) -> BTreeSet<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            (fields.next() == Some("E")).then_some(())?;
            let seq = fields.next()?.parse().ok()?;
            (fields.next() == Some("ok")).then_some(seq)
        })
        .collect()
}

/// A writer's SEQs as listed by one iterator, read in chunks of 7.
async fn list(db: &Rave<EtcdBackend>, writer: u32) -> rave::Result<Vec<u64>> {
    let prefix = format!("u/{writer}/");
    let mut iter = db.iterator(Range::prefix(prefix.clone())).await?;
    let mut seqs = Vec::new();
    loop {
        let chunk = iter.next_chunk(7).await?;
        if chunk.is_empty() {
            return Ok(seqs);
        }
        for entry in chunk {
            let seq = std::str::from_utf8(&entry.key[prefix.len()..])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            seqs.push(seq);
        }
    }
}
