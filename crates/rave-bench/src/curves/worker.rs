//! The helper process of the curves: holds rave handles (or one SQLite connection) and runs
//! timed loops on command, again and again, so that one set of processes serves every point
//! of a curve instead of being spawned anew for each.
//!
//! It prints `ready <role>` once its first handles are open, then obeys, one per line:
//!
//! - `open <k>`: opens `k` more follower handles, each with its own connection and one get
//!   done; answers `opened <handles>`;
//! - `count`: answers `count <n>`, the follower connections the leader serves;
//! - `get <seconds> <keys>`: gets random keys of the point data set, 1 in flight, for
//!   `seconds`; answers `done <ops> <nanos> <errors>`;
//! - `put <seconds> <value-size> <round>`: puts distinct keys (`round` keeps them apart from
//!   earlier rounds), 1 in flight, for `seconds`; answers `done <ops> <nanos> <errors>`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rave::{Backend, Error, Rave, RaveOptions, Result, Role};

use crate::cli::runtime;
use crate::engines::{self, EngineName, KeyGen, with_engine};
use crate::helper::{command, say, sqlite_connect, sqlite_put};

/// What a worker talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// rave handles on a directory.
    Rave,
    /// One SQLite connection (WAL, synchronous=FULL) on a database file; `put` only.
    Sqlite,
}

/// A worker process of the curves.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    #[arg(long, value_enum)]
    system: System,
    /// The engine (rave only).
    #[arg(long)]
    backend: Option<EngineName>,
    /// The database: a directory for rave, a file for SQLite.
    #[arg(long)]
    path: PathBuf,
    /// This process's number, part of every key it writes.
    #[arg(long, default_value_t = 0)]
    id: usize,
    /// rave handles to open before `ready` (0 for a worker that only opens on `open`).
    #[arg(long, default_value_t = 1)]
    handles: usize,
    /// Open with `sync(true)`: a leader then makes every commit durable.
    #[arg(long)]
    sync: bool,
    /// The first handle must lead (the worker is started before anyone else opens `path`);
    /// otherwise every handle must follow.
    #[arg(long)]
    lead: bool,
}

/// The arguments of a worker (after `helper`).
pub fn args(
    system: &str,
    engine: Option<EngineName>,
    path: &Path,
    id: usize,
    handles: usize,
    flags: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "curve-worker".to_string(),
        "--system".into(),
        system.into(),
        "--path".into(),
        path.display().to_string(),
        "--id".into(),
        id.to_string(),
        "--handles".into(),
        handles.to_string(),
    ];
    if let Some(engine) = engine {
        args.extend(["--backend".into(), engine.to_string()]);
    }
    args.extend(flags.iter().map(|f| f.to_string()));
    args
}

/// Runs the worker until its stdin closes.
pub fn run(args: &WorkerArgs) -> Result<()> {
    match args.system {
        System::Rave => {
            let engine = args
                .backend
                .ok_or_else(|| Error::invalid("a rave worker needs --backend"))?;
            with_engine!(engine, B => rave_worker::<B>(args))
        }
        System::Sqlite => sqlite_worker(args),
    }
}

/// The outcome of one timed loop.
struct Tally {
    ops: u64,
    errors: u64,
    elapsed: Duration,
}

impl Tally {
    fn say(&self) {
        say(&format!(
            "done {} {} {}",
            self.ops,
            self.elapsed.as_nanos(),
            self.errors
        ));
    }
}

fn word<T: std::str::FromStr>(words: &[&str], i: usize, what: &str) -> Result<T> {
    words
        .get(i)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| Error::invalid(format!("command {words:?} lacks {what}")))
}

fn seconds(words: &[&str]) -> Result<Duration> {
    let s: f64 = word(words, 1, "seconds")?;
    Ok(Duration::from_secs_f64(s.max(0.0)))
}

/// The key of the `n`-th put of worker `id` in `round`.
fn put_key(round: u64, id: usize, n: u64) -> Vec<u8> {
    format!("c{round:03}-{id:03}-{n:010}").into_bytes()
}

async fn open_one<B: Backend + Default>(args: &WorkerArgs, want: Role) -> Result<Rave<B>> {
    let options = RaveOptions::default().sync(args.sync);
    let db = Rave::<B>::open_engine(&args.path, options)?;
    let role = db.ready().await?;
    if role != want {
        return Err(Error::other(format!(
            "expected to be {want} of {}, but this handle is {role}",
            args.path.display()
        )));
    }
    // One round trip, so that connecting is never part of a measurement.
    db.get(&engines::key(0)).await?;
    Ok(db)
}

fn rave_worker<B: Backend + Default>(args: &WorkerArgs) -> Result<()> {
    let rt = runtime()?;
    let mut handles: Vec<Rave<B>> = Vec::new();
    for i in 0..args.handles {
        let want = if args.lead && i == 0 {
            Role::Leader
        } else {
            Role::Follower
        };
        handles.push(rt.block_on(open_one::<B>(args, want))?);
    }
    say(&format!(
        "ready {}",
        handles.first().map_or(Role::Follower, |h| h.role())
    ));
    let mut round_keys = KeyGen::new(args.id as u64 + 1);
    while let Some(line) = command() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("open") => {
                let k: usize = word(&words, 1, "a count")?;
                for _ in 0..k {
                    handles.push(rt.block_on(open_one::<B>(args, Role::Follower))?);
                }
                say(&format!("opened {}", handles.len()));
            }
            Some("count") => {
                let db = handles
                    .first()
                    .ok_or_else(|| Error::invalid("count needs an open handle"))?;
                let n = rt.block_on(db.connected_followers())?.unwrap_or(0);
                say(&format!("count {n}"));
            }
            Some("get") => {
                let limit = seconds(&words)?;
                let keys: usize = word(&words, 2, "a key count")?;
                let db = handles
                    .first()
                    .cloned()
                    .ok_or_else(|| Error::invalid("get needs an open handle"))?;
                let seed = round_keys.below(usize::MAX) as u64;
                // From a task of the runtime, where server code calls rave from (as P2).
                let tally = rt.block_on(async move {
                    tokio::spawn(async move {
                        let mut keygen = KeyGen::new(seed);
                        timed(limit, |_| {
                            let key = engines::key(keygen.below(keys));
                            let db = db.clone();
                            async move { db.get(&key).await.map(|_| ()) }
                        })
                        .await
                    })
                    .await
                    .map_err(|e| Error::other(format!("the get task failed: {e}")))
                })?;
                tally.say();
            }
            Some("put") => {
                let limit = seconds(&words)?;
                let value = engines::value(word(&words, 2, "a value size")?);
                let round: u64 = word(&words, 3, "a round")?;
                let id = args.id;
                let db = handles
                    .first()
                    .cloned()
                    .ok_or_else(|| Error::invalid("put needs an open handle"))?;
                let tally = rt.block_on(async move {
                    tokio::spawn(async move {
                        timed(limit, |n| {
                            let (db, value) = (db.clone(), value.clone());
                            async move { db.put(&put_key(round, id, n), &value).await }
                        })
                        .await
                    })
                    .await
                    .map_err(|e| Error::other(format!("the put task failed: {e}")))
                })?;
                tally.say();
            }
            other => say(&format!("error unknown command {other:?}")),
        }
    }
    for db in handles {
        rt.block_on(db.close())?;
    }
    Ok(())
}

/// Runs `op(n)` one at a time for `limit`; counts successes and failures.
async fn timed<F, Fut>(limit: Duration, mut op: F) -> Tally
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let started = Instant::now();
    let (mut ops, mut errors) = (0u64, 0u64);
    while started.elapsed() < limit {
        match op(ops + errors).await {
            Ok(()) => ops += 1,
            Err(e) => {
                tracing::warn!(%e, "operation failed");
                errors += 1;
            }
        }
    }
    Tally {
        ops,
        errors,
        elapsed: started.elapsed(),
    }
}

fn sqlite_worker(args: &WorkerArgs) -> Result<()> {
    let conn = sqlite_connect(&args.path)?;
    say("ready sqlite");
    while let Some(line) = command() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("put") => {
                let limit = seconds(&words)?;
                let value = engines::value(word(&words, 2, "a value size")?);
                let round: u64 = word(&words, 3, "a round")?;
                let started = Instant::now();
                let (mut ops, mut errors) = (0u64, 0u64);
                while started.elapsed() < limit {
                    match sqlite_put(&conn, &put_key(round, args.id, ops + errors), &value) {
                        Ok(()) => ops += 1,
                        Err(e) => {
                            tracing::warn!(%e, "put failed");
                            errors += 1;
                        }
                    }
                }
                Tally {
                    ops,
                    errors,
                    elapsed: started.elapsed(),
                }
                .say();
            }
            other => say(&format!("error unknown command {other:?}")),
        }
    }
    Ok(())
}
