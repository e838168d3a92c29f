//! `rave-torture run` and `rave-torture check`: set up, torture, read the final state, check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rave::{Backend, BatchOp, KvStore, OpenOptions, Range, Rave, RaveOptions, Role};

use crate::check::{Input, Report, check, load};
use crate::nemesis::{Config, Nemesis};
use crate::schema::{frozen_key, frozen_value};
use crate::with_backend;

/// Options of `rave-torture run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The engine: redb, leveldb or rocksdb (it must be compiled in: `--features leveldb`).
    #[arg(long, default_value = "redb")]
    pub backend: String,
    /// Leader SIGKILLs to perform.
    #[arg(long, default_value_t = 100)]
    pub kills: u64,
    /// Writer processes (kept constant: killed ones are restarted).
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Reader processes (kept constant).
    #[arg(long, default_value_t = 2)]
    pub readers: usize,
    /// Watcher processes (kept constant; a restarted one resumes where its predecessor's
    /// history ends).
    #[arg(long, default_value_t = 3)]
    pub watchers: usize,
    /// The nemesis's seed (default: from the clock; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Work directory (database and histories), kept afterwards; default: a temporary one,
    /// removed when every check passed.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Stop the nemesis after this many seconds even if fewer kills were done.
    #[arg(long, default_value_t = 3600.0)]
    pub max_seconds: f64,
    /// Keys in the frozen prefix the readers iterate over.
    #[arg(long, default_value_t = 3000)]
    pub frozen: u32,
    /// The workers' RaveOptions::op_timeout, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub op_timeout_ms: u64,
    /// The workers' RaveOptions::election_timeout, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub election_timeout_ms: u64,
    /// Most microseconds a worker pauses between operations.
    #[arg(long, default_value_t = 2000)]
    pub pace_us: u64,
    /// Share of the worker processes started with rave-api's after-commit fault point armed
    /// (a leader SIGKILLs itself between an engine commit and its replies).
    #[arg(long, default_value_t = 0.2)]
    pub fault_share: f64,
    /// The armed processes' probability of that kill per commit (0 turns the fault point off).
    #[arg(long, default_value_t = 0.02)]
    pub fault_p: f64,
}

/// Options of `rave-torture check`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// The work directory of a finished `run --dir`.
    #[arg(long)]
    pub dir: PathBuf,
}

const META: &str = "torture.meta";

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("rave-torture: {msg}");
    ExitCode::from(2)
}

/// `rave-torture run`.
pub fn run(args: RunArgs) -> ExitCode {
    let backend = args.backend.clone();
    with_backend!(
        backend.as_str(),
        B => run_with::<B>(args),
        fail(format!(
            "engine {backend:?} is not compiled in (build with --features {backend})"
        ))
    )
}

/// `rave-torture check`.
pub fn check_again(args: CheckArgs) -> ExitCode {
    let meta = match std::fs::read_to_string(args.dir.join(META)) {
        Ok(m) => m,
        Err(e) => return fail(format!("read {}: {e}", args.dir.join(META).display())),
    };
    let field = |name: &str| {
        meta.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_string))
            .unwrap_or_default()
    };
    let backend = field("backend");
    let seed: u64 = field("seed").parse().unwrap_or(0);
    let frozen: u32 = field("frozen").parse().unwrap_or(0);
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    with_backend!(
        backend.as_str(),
        B => finish::<B>(&runtime, &args.dir, &backend, seed, frozen).0,
        fail(format!("engine {backend:?} is not compiled in"))
    )
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail(format!("no runtime: {e}")))
}

fn run_with<B: Backend + Default>(args: RunArgs) -> ExitCode {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    println!(
        "rave-torture: backend={} kills={} writers={} readers={} watchers={} fault_share={} fault_p={} seed={seed}",
        args.backend,
        args.kills,
        args.writers,
        args.readers,
        args.watchers,
        args.fault_share,
        args.fault_p
    );
    let (temp, work) = match &args.dir {
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return fail(format!("create {}: {e}", dir.display()));
            }
            (None, dir.clone())
        }
        None => match tempfile::Builder::new().prefix("rave-torture-").tempdir() {
            Ok(t) => {
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
            Err(e) => return fail(format!("temporary directory: {e}")),
        },
    };
    let db = work.join("db");
    let hist = work.join("hist");
    if db.exists() || hist.exists() {
        return fail(format!(
            "{} already holds a run: give an empty --dir",
            work.display()
        ));
    }
    if let Err(e) = std::fs::create_dir_all(&hist) {
        return fail(format!("create {}: {e}", hist.display()));
    }
    let meta = format!(
        "backend={} seed={seed} frozen={} kills={} writers={} readers={} watchers={}\n",
        args.backend, args.frozen, args.kills, args.writers, args.readers, args.watchers
    );
    if let Err(e) = std::fs::write(work.join(META), meta) {
        return fail(format!("write {META}: {e}"));
    }
    // Workers run from a private copy of this binary: a rebuild in the target directory
    // during a long run must not change (or remove) the program restarted workers run.
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return fail(format!("find this executable: {e}")),
    };
    let exe_copy = work.join("rave-torture");
    if let Err(e) = std::fs::copy(&exe, &exe_copy) {
        return fail(format!(
            "copy {} to {}: {e}",
            exe.display(),
            exe_copy.display()
        ));
    }
    let exe = exe_copy;
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };

    // The frozen prefix, written once and verified before anyone else opens the directory.
    if let Err(e) = runtime.block_on(write_frozen::<B>(&db, args.frozen)) {
        return fail(format!("frozen prefix: {e}"));
    }

    let started = Instant::now();
    let cfg = Config {
        exe,
        backend: args.backend.clone(),
        db: db.clone(),
        hist: hist.clone(),
        writers: args.writers,
        readers: args.readers,
        watchers: args.watchers,
        frozen: args.frozen,
        op_timeout_ms: args.op_timeout_ms,
        election_timeout_ms: args.election_timeout_ms,
        pace_us: args.pace_us,
        fault_share: args.fault_share.clamp(0.0, 1.0),
        fault_p: args.fault_p.clamp(0.0, 1.0),
    };
    let mut nemesis = match Nemesis::new(cfg, ChaCha8Rng::seed_from_u64(seed)) {
        Ok(n) => n,
        Err(e) => return fail(format!("nemesis log: {e}")),
    };
    nemesis.start();
    let until = started + Duration::from_secs_f64(args.max_seconds.max(0.0));
    nemesis.run(args.kills, until);
    let grace = Duration::from_millis(args.op_timeout_ms + args.election_timeout_ms + 5000);
    nemesis.shutdown(grace);
    drop(nemesis);
    let torture_secs = started.elapsed().as_secs_f64();

    let (code, report) = finish::<B>(&runtime, &work, &args.backend, seed, args.frozen);
    println!("rave-torture: {torture_secs:.1} s of torture");
    match (temp, report.is_some_and(|r| r.ok())) {
        (Some(t), true) => drop(t),
        (Some(t), false) => {
            let kept = t.keep();
            println!(
                "rave-torture: histories and database kept in {}",
                kept.display()
            );
        }
        (None, _) => println!("rave-torture: histories and database in {}", work.display()),
    }
    code
}

/// Reads the final state, checks, prints; the exit code and the report.
fn finish<B: Backend + Default>(
    runtime: &tokio::runtime::Runtime,
    work: &Path,
    backend: &str,
    seed: u64,
    frozen: u32,
) -> (ExitCode, Option<Report>) {
    let db = work.join("db");
    let mut finals = Vec::new();
    let mut mismatches = 0;
    match runtime.block_on(read_via_rave::<B>(&db)) {
        Ok((map, bad)) => {
            mismatches += bad;
            finals.push(("rave".to_string(), map));
        }
        Err(e) => return (fail(format!("final read through rave: {e}")), None),
    }
    match runtime.block_on(read_direct::<B>(&db)) {
        Ok(map) => finals.push(("direct".to_string(), map)),
        Err(e) => return (fail(format!("final read of the engine: {e}")), None),
    }
    let (procs, nemesis) = match load(&work.join("hist")) {
        Ok(h) => h,
        Err(e) => return (fail(format!("read the histories: {e}")), None),
    };
    let input = Input {
        procs,
        nemesis,
        frozen,
        finals,
    };
    let mut report = check(&input);
    if mismatches > 0 {
        report.corrupt += mismatches;
        report.examples.push(format!(
            "corrupt (rave): {mismatches} key(s) whose get_many disagrees with the iterator"
        ));
    }
    for example in &report.examples {
        println!("torture-violation: {example}");
    }
    println!("{}", report.details());
    println!("{}", report.watch_details());
    println!("{}", report.summary(backend, seed));
    let code = if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    (code, Some(report))
}

async fn write_frozen<B: Backend + Default>(db: &Path, n: u32) -> Result<(), String> {
    let handle = Rave::<B>::open_engine(db, RaveOptions::default()).map_err(|e| e.to_string())?;
    let role = handle.ready().await.map_err(|e| e.to_string())?;
    if role != Role::Leader {
        return Err(format!(
            "expected to lead a fresh directory, but became {role}"
        ));
    }
    let all: Vec<u32> = (0..n).collect();
    for chunk in all.chunks(500) {
        let ops = chunk
            .iter()
            .map(|&i| BatchOp::put(frozen_key(i), frozen_value(i)))
            .collect();
        handle.batch(ops).await.map_err(|e| e.to_string())?;
    }
    for reverse in [false, true] {
        let mut range = Range::prefix("f/");
        if reverse {
            range = range.reverse();
        }
        let entries = handle
            .iterator(range)
            .await
            .map_err(|e| e.to_string())?
            .collect_all()
            .await
            .map_err(|e| e.to_string())?;
        let mut want: Vec<u32> = (0..n).collect();
        if reverse {
            want.reverse();
        }
        let complete = entries.len() == want.len()
            && entries.iter().zip(&want).all(|(e, &i)| {
                e.key == frozen_key(i).into_bytes() && e.value == frozen_value(i).into_bytes()
            });
        if !complete {
            return Err(format!(
                "the frozen prefix reads back incomplete ({} of {n} entries, reverse={reverse})",
                entries.len()
            ));
        }
    }
    handle.close().await.map_err(|e| e.to_string())
}

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Everything, through a fresh rave handle (it leads: nobody else is left); point reads of every
/// key must agree with the iterator.
async fn read_via_rave<B: Backend + Default>(db: &Path) -> Result<(Map, u64), String> {
    let handle = Rave::<B>::open_engine(db, RaveOptions::default()).map_err(|e| e.to_string())?;
    handle.ready().await.map_err(|e| e.to_string())?;
    let entries = handle
        .iterator(Range::all())
        .await
        .map_err(|e| e.to_string())?
        .collect_all()
        .await
        .map_err(|e| e.to_string())?;
    let mut mismatches = 0;
    for chunk in entries.chunks(1024) {
        let keys: Vec<Vec<u8>> = chunk.iter().map(|e| e.key.clone()).collect();
        let values = handle.get_many(&keys).await.map_err(|e| e.to_string())?;
        mismatches += chunk
            .iter()
            .zip(values)
            .filter(|(e, v)| v.as_ref() != Some(&e.value))
            .count() as u64;
    }
    handle.close().await.map_err(|e| e.to_string())?;
    Ok((
        entries.into_iter().map(|e| (e.key, e.value)).collect(),
        mismatches,
    ))
}

/// Everything, with the engine opened directly (no rave, no lock, no socket).
async fn read_direct<B: Backend + Default>(db: &Path) -> Result<Map, String> {
    let options = OpenOptions {
        create_if_missing: false,
        ..OpenOptions::default()
    };
    let store = B::default().open(db, &options).map_err(|e| e.to_string())?;
    let entries = store
        .iterator(Range::all())
        .await
        .map_err(|e| e.to_string())?
        .collect_all()
        .await
        .map_err(|e| e.to_string())?;
    store.close().await.map_err(|e| e.to_string())?;
    Ok(entries.into_iter().map(|e| (e.key, e.value)).collect())
}
