//! The helper modes: the other processes of a figure, run from this same binary.
//!
//! Each mode prints `ready ...` once set up, then obeys commands on stdin, one per line, and
//! answers on stdout (`error <message>` on failure). Every mode ends when its stdin closes, so a
//! helper never outlives the harness.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Subcommand;
use rave::{
    Backend, BatchOp, DEFAULT_CHUNK, Error, KvStore, Range, Rave, RaveOptions, Result, Role,
};

use crate::cli::runtime;
use crate::engines::{self, EngineName, with_engine};
use crate::tally::mono_ns;

/// A helper process's job.
#[derive(Subcommand, Debug, Clone)]
pub enum Mode {
    /// Leads `dir`: fills it, then serves followers; `scan` scans everything through this
    /// handle and answers `scan <entries> <nanos>`.
    Leader {
        #[arg(long)]
        backend: EngineName,
        #[arg(long)]
        dir: PathBuf,
        /// Keys of the point-operation data set to write first.
        #[arg(long, default_value_t = 0)]
        keys: usize,
        #[arg(long, default_value_t = 100)]
        value_size: usize,
        /// Entries of the scan data set to write first.
        #[arg(long, default_value_t = 0)]
        small: usize,
    },
    /// Answers every `request`-byte message with a `response`-byte one, on a unix socket, with
    /// blocking reads and writes: the floor of a local round trip.
    PingServer {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        request: usize,
        #[arg(long)]
        response: usize,
    },
    /// Follows `dir`, reads one key, then idles (for its resident memory).
    IdleFollower {
        #[arg(long)]
        backend: EngineName,
        #[arg(long)]
        dir: PathBuf,
    },
    /// A process with a tokio runtime and nothing else (the floor of resident memory).
    Idle,
    /// Durable puts through rave: `go` starts `writers` tasks putting for `seconds`, then
    /// answers `done <ops> <nanos> <errors>`.
    RaveWriter {
        #[arg(long)]
        backend: EngineName,
        /// Open with the default options instead of `sync(true)` (W2 measures the default).
        #[arg(long)]
        default_options: bool,
        #[command(flatten)]
        job: WriterJob,
    },
    /// Durable puts into SQLite (WAL, synchronous=FULL, autocommit), one connection per thread.
    SqliteWriter {
        #[command(flatten)]
        job: WriterJob,
    },
    /// Durable puts into LMDB (heed), one write transaction per put.
    LmdbWriter {
        #[command(flatten)]
        job: WriterJob,
    },
    /// Durable puts into redb in its multi-writer (multi-process) mode, one transaction per put.
    RedbWriter {
        #[command(flatten)]
        job: WriterJob,
    },
    /// Watches the `w` prefix and records when each put arrives (W1, W2).
    Watcher(crate::watch_helper::WatcherArgs),
    /// Puts `w:<index>` keys one at a time, recording start and acknowledgement (W1).
    PutLoop(crate::watch_helper::PutLoopArgs),
    /// Subscribes to Redis channel `w` and records when each message arrives (W1, W2).
    RedisSubscriber(crate::pubsub::SubscriberArgs),
    /// PUBLISHes one message at a time, recording start and reply (W1).
    RedisPublisher(crate::pubsub::PublisherArgs),
    /// PUBLISHes as fast as it can, pipelined (W2).
    RedisFlood(crate::pubsub::FloodArgs),
    /// Point gets through a rave follower or straight from a redb file, on command (R1, R2).
    PointReader(crate::redb_readers::ReaderArgs),
    /// Holds or takes redb's write lock on command, in its multi-writer mode (R3).
    RedbLockHolder(crate::redb_readers::HolderArgs),
    /// Holds rave handles (or an SQLite connection) and runs timed loops on command (curves).
    CurveWorker(crate::curves::worker::WorkerArgs),
}

/// What a writer process does.
#[derive(clap::Args, Debug, Clone)]
pub struct WriterJob {
    /// The database (directory for rave and LMDB, file for SQLite and redb).
    #[arg(long)]
    pub path: PathBuf,
    /// This process's number, part of every key it writes.
    #[arg(long)]
    pub id: usize,
    /// Concurrent writers in this process.
    #[arg(long)]
    pub writers: usize,
    #[arg(long)]
    pub seconds: f64,
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
}

impl WriterJob {
    fn key(&self, writer: usize, n: u64) -> Vec<u8> {
        format!("w{:02}-{writer:03}-{n:010}", self.id).into_bytes()
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.max(0.0))
    }
}

/// Runs a helper mode to completion.
pub fn run(mode: Mode) -> Result<()> {
    let result = match mode {
        Mode::Leader {
            backend,
            dir,
            keys,
            value_size,
            small,
        } => with_engine!(backend, B => leader::<B>(&dir, keys, value_size, small)),
        Mode::PingServer {
            socket,
            request,
            response,
        } => ping_server(&socket, request, response),
        Mode::IdleFollower { backend, dir } => with_engine!(backend, B => idle_follower::<B>(&dir)),
        Mode::Idle => idle(),
        Mode::RaveWriter {
            backend,
            default_options,
            job,
        } => with_engine!(backend, B => rave_writer::<B>(&job, default_options)),
        Mode::SqliteWriter { job } => sqlite_writer(&job),
        Mode::LmdbWriter { job } => lmdb_writer(&job),
        Mode::RedbWriter { job } => redb_writer(&job),
        Mode::Watcher(args) => crate::watch_helper::watcher(&args),
        Mode::PutLoop(args) => crate::watch_helper::put_loop(&args),
        Mode::RedisSubscriber(args) => crate::pubsub::subscriber(&args),
        Mode::RedisPublisher(args) => crate::pubsub::publisher(&args),
        Mode::RedisFlood(args) => crate::pubsub::flood(&args),
        Mode::PointReader(args) => crate::redb_readers::reader(&args),
        Mode::RedbLockHolder(args) => crate::redb_readers::holder(&args),
        Mode::CurveWorker(args) => crate::curves::worker::run(&args),
    };
    if let Err(e) = &result {
        // The harness reads this line; the exit code alone would not say why.
        say(&format!("error {e}"));
    }
    result
}

/// Prints one answer line and flushes it at once (stdout is a pipe: block-buffered).
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The next command on stdin; `None` at EOF.
pub(crate) fn command() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    }
}

/// Blocks until stdin closes.
pub(crate) fn wait_for_eof() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
}

async fn open_as<B: Backend + Default>(dir: &Path, want: Role) -> Result<Rave<B>> {
    let db = Rave::<B>::open_engine(dir, RaveOptions::default())?;
    let role = db.ready().await?;
    if role != want {
        return Err(Error::other(format!(
            "expected to be {want} of {}, but this handle is {role}",
            dir.display()
        )));
    }
    Ok(db)
}

/// Writes entries `key(i) -> value` for `i < n` in batches.
pub async fn fill(
    db: &dyn KvStore,
    n: usize,
    key: impl Fn(usize) -> Vec<u8>,
    value: &[u8],
) -> Result<()> {
    const BATCH: usize = 10_000;
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let ops = (i..end).map(|j| BatchOp::put(key(j), value)).collect();
        db.batch(ops).await?;
        i = end;
    }
    Ok(())
}

/// Reads every entry of `db` in `DEFAULT_CHUNK`s (as `collect_all` would, without keeping
/// them); returns the count.
pub async fn scan_all(db: &dyn KvStore) -> Result<u64> {
    let mut iter = db.iterator(Range::all()).await?;
    let mut n = 0u64;
    loop {
        let chunk = iter.next_chunk(DEFAULT_CHUNK).await?;
        if chunk.is_empty() {
            return Ok(n);
        }
        n += chunk.len() as u64;
    }
}

fn leader<B: Backend + Default>(
    dir: &Path,
    keys: usize,
    value_size: usize,
    small: usize,
) -> Result<()> {
    let rt = runtime()?;
    let db = rt.block_on(async {
        let db = open_as::<B>(dir, Role::Leader).await?;
        fill(&db, keys, engines::key, &engines::value(value_size)).await?;
        fill(&db, small, engines::small_key, engines::SMALL_VALUE).await?;
        Ok::<_, Error>(db)
    })?;
    say(&format!("ready {}", std::process::id()));
    while let Some(line) = command() {
        match line.as_str() {
            "scan" => {
                let started = Instant::now();
                let n = rt.block_on(scan_all(&db))?;
                say(&format!("scan {n} {}", started.elapsed().as_nanos()));
            }
            "exit" => break,
            other => say(&format!("error unknown command {other:?}")),
        }
    }
    rt.block_on(db.close())
}

fn ping_server(socket: &Path, request: usize, response: usize) -> Result<()> {
    let listener = std::os::unix::net::UnixListener::bind(socket)
        .map_err(|e| Error::io(format!("listen on {}", socket.display()), &e))?;
    // The accept loop runs on its own thread; the main thread waits for stdin to close.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut req = vec![0u8; request.max(1)];
                let reply = vec![0u8; response.max(1)];
                while stream.read_exact(&mut req).is_ok() {
                    if stream.write_all(&reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    say("ready");
    wait_for_eof();
    let _ = std::fs::remove_file(socket);
    Ok(())
}

fn idle_follower<B: Backend + Default>(dir: &Path) -> Result<()> {
    let rt = runtime()?;
    let db = rt.block_on(async {
        let db = open_as::<B>(dir, Role::Follower).await?;
        db.get(&engines::key(0)).await?;
        Ok::<_, Error>(db)
    })?;
    say(&format!("ready {}", std::process::id()));
    wait_for_eof();
    rt.block_on(db.close())
}

fn idle() -> Result<()> {
    let rt = runtime()?;
    rt.block_on(tokio::task::yield_now());
    say(&format!("ready {}", std::process::id()));
    wait_for_eof();
    Ok(())
}

/// Waits for `go`; anything else (or EOF) aborts.
pub(crate) fn wait_for_go() -> Result<()> {
    match command().as_deref() {
        Some("go") => Ok(()),
        other => Err(Error::other(format!("expected `go`, got {other:?}"))),
    }
}

/// Reports a writer process's totals (`done <ops> <nanos> <errors> <start>`, the start in
/// [`mono_ns`] nanoseconds), then waits for the harness to close stdin.
fn report_done(ops: u64, elapsed: Duration, errors: u64, start_ns: u64) {
    say(&format!(
        "done {ops} {} {errors} {start_ns}",
        elapsed.as_nanos()
    ));
}

fn rave_writer<B: Backend + Default>(job: &WriterJob, default_options: bool) -> Result<()> {
    let rt = runtime()?;
    // Durable against power loss, as SQLite's synchronous=FULL is (redb syncs every commit
    // anyway; LevelDB needs the option).
    let options = if default_options {
        RaveOptions::default()
    } else {
        RaveOptions::default().sync(true)
    };
    let db = rt.block_on(async {
        let db = Rave::<B>::open_engine(&job.path, options)?;
        let role = db.ready().await?;
        // One round trip before the clock starts, so that connecting is not measured.
        db.get(b"warm-up").await?;
        Ok::<_, Error>((db, role))
    });
    let (db, role) = db?;
    say(&format!("ready {role}"));
    wait_for_go()?;
    let value = engines::value(job.value_size);
    let errors = Arc::new(AtomicU64::new(0));
    let start_ns = mono_ns();
    let started = Instant::now();
    let deadline = started + job.duration();
    let ops = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..job.writers.max(1) {
            let db = db.clone();
            let value = value.clone();
            let job = job.clone();
            let errors = errors.clone();
            tasks.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    match db.put(&job.key(writer, n), &value).await {
                        Ok(()) => n += 1,
                        Err(e) => {
                            tracing::warn!(%e, "put failed");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                n
            });
        }
        let mut total = 0;
        while let Some(done) = tasks.join_next().await {
            total += done.unwrap_or(0);
        }
        total
    });
    report_done(
        ops,
        started.elapsed(),
        errors.load(Ordering::Relaxed),
        start_ns,
    );
    wait_for_eof();
    rt.block_on(db.close())
}

/// Runs `writers` threads, each doing `put` until the job's time is up; returns the totals.
fn run_threads<S, F>(job: &WriterJob, setup: S) -> Result<()>
where
    S: Fn() -> Result<F> + Sync,
    F: FnMut(&[u8], &[u8]) -> Result<()> + Send,
{
    let value = engines::value(job.value_size);
    // Open everything first, so that only the puts are timed.
    let mut puts = Vec::new();
    for _ in 0..job.writers.max(1) {
        puts.push(setup()?);
    }
    say("ready");
    wait_for_go()?;
    let started = Instant::now();
    let deadline = started + job.duration();
    let errors = AtomicU64::new(0);
    let start_ns = mono_ns();
    let ops: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = puts
            .into_iter()
            .enumerate()
            .map(|(writer, mut put)| {
                let value = &value;
                let errors = &errors;
                scope.spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        match put(&job.key(writer, n), value) {
                            Ok(()) => n += 1,
                            Err(e) => {
                                tracing::warn!(%e, "put failed");
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    report_done(
        ops,
        started.elapsed(),
        errors.load(Ordering::Relaxed),
        start_ns,
    );
    wait_for_eof();
    Ok(())
}

fn sqlite_error(e: rusqlite::Error) -> Error {
    Error::other(format!("sqlite: {e}"))
}

/// Creates the SQLite database of the durable-put comparison (WAL mode is persistent).
pub fn sqlite_create(path: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open(path).map_err(sqlite_error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sqlite_error)?;
    conn.execute_batch("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL)")
        .map_err(sqlite_error)
}

/// Opens a writer's connection to the database of [`sqlite_create`]: `synchronous=FULL`, a
/// long busy timeout, and checked to be in WAL mode.
pub fn sqlite_connect(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path).map_err(sqlite_error)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite_error)?;
    conn.busy_timeout(Duration::from_secs(60))
        .map_err(sqlite_error)?;
    // Checked: the benchmark is only fair if every process writes through the WAL.
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .map_err(sqlite_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::other(format!(
            "sqlite journal_mode is {mode}, not wal"
        )));
    }
    Ok(conn)
}

/// One durable put: an autocommit `INSERT OR REPLACE`, its own transaction.
pub fn sqlite_put(conn: &rusqlite::Connection, k: &[u8], v: &[u8]) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)")
        .and_then(|mut stmt| stmt.execute((k, v)))
        .map(|_| ())
        .map_err(sqlite_error)
}

fn sqlite_writer(job: &WriterJob) -> Result<()> {
    run_threads(job, || {
        let conn = sqlite_connect(&job.path)?;
        Ok(move |k: &[u8], v: &[u8]| sqlite_put(&conn, k, v))
    })
}

fn lmdb_error(e: heed::Error) -> Error {
    Error::other(format!("lmdb: {e}"))
}

type LmdbDb = heed::Database<heed::types::Bytes, heed::types::Bytes>;

/// Opens (creating) the LMDB environment in directory `path` and its unnamed database.
pub fn lmdb_open(path: &Path) -> Result<(heed::Env, LmdbDb)> {
    std::fs::create_dir_all(path).map_err(|e| Error::io("create the LMDB directory", &e))?;
    // SAFETY: the environment's files are used only by LMDB itself, in processes of this
    // benchmark that all open it the same way (default flags, so LMDB's own lock file
    // coordinates them); nothing else maps, truncates or modifies them.
    let env = unsafe {
        heed::EnvOpenOptions::new()
            .map_size(4 << 30)
            .max_readers(256)
            .open(path)
    }
    .map_err(lmdb_error)?;
    let mut txn = env.write_txn().map_err(lmdb_error)?;
    let db: LmdbDb = env.create_database(&mut txn, None).map_err(lmdb_error)?;
    txn.commit().map_err(lmdb_error)?;
    Ok((env, db))
}

fn lmdb_writer(job: &WriterJob) -> Result<()> {
    let (env, db) = lmdb_open(&job.path)?;
    run_threads(job, || {
        let env = env.clone();
        Ok(move |k: &[u8], v: &[u8]| {
            // One write transaction per put; LMDB syncs on every commit by default.
            let mut txn = env.write_txn().map_err(lmdb_error)?;
            db.put(&mut txn, k, v).map_err(lmdb_error)?;
            txn.commit().map_err(lmdb_error)
        })
    })
}

/// The table of every redb file of the comparisons (P5, R1, R2).
pub(crate) const REDB_TABLE: redb_baseline::TableDefinition<&[u8], &[u8]> =
    redb_baseline::TableDefinition::new("kv");

fn redb_error(e: impl std::fmt::Display) -> Error {
    Error::other(format!("redb: {e}"))
}

/// Opens (creating) the redb file of the comparison in multi-writer mode: any number of
/// processes may open it for writing at once, one write transaction at a time.
pub fn redb_open(path: &Path) -> Result<redb_baseline::Database> {
    let db = redb_baseline::Builder::new()
        .set_concurrency_mode(redb_baseline::ConcurrencyMode::MultiWriter)
        .create(path)
        .map_err(redb_error)?;
    let txn = db.begin_write().map_err(redb_error)?;
    txn.open_table(REDB_TABLE).map_err(redb_error)?;
    txn.commit().map_err(redb_error)?;
    Ok(db)
}

fn redb_writer(job: &WriterJob) -> Result<()> {
    let db = Arc::new(redb_open(&job.path)?);
    run_threads(job, || {
        let db = db.clone();
        Ok(move |k: &[u8], v: &[u8]| {
            // The default durability (Immediate): fsync before the commit returns.
            let txn = db.begin_write().map_err(redb_error)?;
            {
                let mut table = txn.open_table(REDB_TABLE).map_err(redb_error)?;
                table.insert(k, v).map_err(redb_error)?;
            }
            txn.commit().map_err(redb_error)
        })
    })
}
