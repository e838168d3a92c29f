//! R1 to R3: point gets from several processes, through rave-redb's single leader against
//! redb's own multi-process mode, where every process opens the file directly; and the SIGKILL
//! of the process holding the write lock, both ways.
//!
//! rave: one leader process holds the point data set; each reader process is a follower that
//! sends its gets to the leader. redb-direct: the same data set in one redb file, opened by
//! each reader process read-only in `ConcurrencyMode::MultiWriter` (a reader must be opened
//! in the writers' mode; redb 4.6 names no read-only mode of its own).
//!
//! Freshness, measured the same for both: rave answers a get from the leader's latest commit,
//! so a get issued after a write's acknowledgement sees it. A redb read transaction is a
//! snapshot taken at `begin_read`, which in a multi-process mode locks the header byte range
//! (shared), reads the header from the file and takes a shared lock on the byte of the
//! snapshot's transaction id (and drops the page cache when another process committed since);
//! only a new transaction sees a newer commit. So the equivalent of rave's guarantee is one read
//! transaction per get, and that is the baseline; one transaction per [`SNAPSHOT_GETS`] gets,
//! which reads a stale snapshot, is given for information, as the price of that guarantee.
//!
//! R1 reads with no writer; R2 the same while one more process writes durable puts, one at a
//! time, as fast as it can (rave: a follower with `sync(true)`; redb: the P5 writer, one
//! `Immediate` transaction per put). Every reader process stays up for the whole figure and
//! is told what to read, one measurement after another.
//!
//! R3: the process holding the write lock is SIGKILLed. redb: a process inside a write
//! transaction (its OFD locks go with it) while another process waits in `begin_write`; timed
//! from the kill to that process's commit. rave: the leader, while this process follows; timed
//! from the kill to this process's put acknowledged by the next leader (itself). Each run then
//! kills the remaining redb writer too, with no transaction open, and records whether a new
//! read-only open succeeds before and after another process opens the file for writing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rave::{Backend, Error, RaveOptions, Result};
use redb_baseline::ReadableDatabase;

use crate::child::{Helper, SHORT, field, follow, temp_dir};
use crate::cli::{Sizes, runtime};
use crate::engines::{self, EngineName, KeyGen, with_engine};
use crate::helper::{REDB_TABLE, command, redb_open, say};
use crate::report::Figure;
use crate::stats::percentile;
use crate::tally::mono_ns;

/// Gets per read transaction in the stale-snapshot variant of redb-direct (information only).
const SNAPSHOT_GETS: usize = 1_000;

/// How a reader process reaches the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// A rave follower of the directory `--path` (its leader is another process).
    Rave,
    /// The redb file `--path`, opened read-only in `ConcurrencyMode::MultiWriter`.
    Redb,
}

/// A reader process of R1, R2: prints `ready`, then answers every
/// `read <workers> <millis> <seed> <gets-per-transaction>` with
/// `done <gets> <nanos> <errors> <p50-µs> <p99-µs>`, until stdin closes.
#[derive(clap::Args, Debug, Clone)]
pub struct ReaderArgs {
    #[arg(long, value_enum)]
    via: Via,
    /// The engine of the rave follower (with `--via rave`).
    #[arg(long, default_value = "redb")]
    backend: EngineName,
    #[arg(long)]
    path: PathBuf,
    /// Keys of the point data set: gets pick `engines::key(i)` for a random `i` below this.
    #[arg(long)]
    keys: usize,
}

/// One `read` command: `workers` concurrent readers (tasks on one rave handle, or threads on one
/// redb handle) getting random keys until `duration` is up.
#[derive(Clone, Copy, Debug)]
struct ReadJob {
    workers: usize,
    duration: Duration,
    seed: u64,
    /// redb only: gets per read transaction (1: a fresh snapshot for every get).
    per_txn: usize,
}

impl ReadJob {
    fn parse(line: &str) -> Result<ReadJob> {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if words.first().map(String::as_str) != Some("read") {
            return Err(Error::invalid(format!("unknown command {line:?}")));
        }
        let millis: u64 = field(&words, 2, "a duration")?;
        Ok(ReadJob {
            workers: field::<usize>(&words, 1, "a worker count")?.max(1),
            duration: Duration::from_millis(millis),
            seed: field(&words, 3, "a seed")?,
            per_txn: field::<usize>(&words, 4, "gets per transaction")?.max(1),
        })
    }
}

/// What one worker read: each get's latency (µs) and the gets that failed.
#[derive(Default)]
struct Worker {
    lat: Vec<f64>,
    errors: u64,
}

/// Sums the workers' counts and answers the `done` line.
fn answer_done(workers: Vec<Worker>, elapsed: Duration) {
    let errors: u64 = workers.iter().map(|w| w.errors).sum();
    let lat: Vec<f64> = workers.into_iter().flat_map(|w| w.lat).collect();
    say(&format!(
        "done {} {} {errors} {} {}",
        lat.len(),
        elapsed.as_nanos(),
        percentile(&lat, 50.0),
        percentile(&lat, 99.0)
    ));
}

/// A redb writer process of R3, on the file `--path` in `ConcurrencyMode::MultiWriter`: prints
/// `ready` once open, then obeys `hold` (begin a write transaction, insert, answer `holding`
/// and keep it open until stdin closes) and `put` (one `Immediate` put; answers `put <ns>`, the
/// [`mono_ns`] time its commit returned).
#[derive(clap::Args, Debug, Clone)]
pub struct HolderArgs {
    #[arg(long)]
    path: PathBuf,
}

/// Runs the lock-holder mode.
pub fn holder(args: &HolderArgs) -> Result<()> {
    let err = |e: redb_baseline::Error| Error::other(format!("redb: {e}"));
    let db = redb_open(&args.path)?;
    say("ready");
    let value = engines::value(100);
    while let Some(line) = command() {
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut table = txn.open_table(REDB_TABLE).map_err(|e| err(e.into()))?;
            table
                .insert(line.as_bytes(), value.as_slice())
                .map_err(|e| err(e.into()))?;
        }
        match line.as_str() {
            "hold" => {
                say("holding");
                // Until SIGKILL (or the harness closes stdin).
                crate::helper::wait_for_eof();
                drop(txn);
                return Ok(());
            }
            "put" => {
                txn.commit().map_err(|e| err(e.into()))?;
                say(&format!("put {}", mono_ns()));
            }
            other => return Err(Error::invalid(format!("unknown command {other:?}"))),
        }
    }
    Ok(())
}

/// Runs the reader mode.
pub fn reader(args: &ReaderArgs) -> Result<()> {
    match args.via {
        Via::Rave => with_engine!(args.backend, B => rave_reader::<B>(args)),
        Via::Redb => redb_reader(args),
    }
}

fn rave_reader<B: Backend + Default>(args: &ReaderArgs) -> Result<()> {
    let rt = runtime()?;
    let db = rt.block_on(follow::<B>(&args.path, RaveOptions::default()))?;
    say("ready");
    while let Some(line) = command() {
        let job = ReadJob::parse(&line)?;
        let started = Instant::now();
        let deadline = started + job.duration;
        let workers = rt.block_on(async {
            // Tasks of the multi-thread runtime, where server code calls rave from.
            let mut tasks = tokio::task::JoinSet::new();
            for w in 0..job.workers {
                let db = db.clone();
                let keys = args.keys;
                tasks.spawn(async move {
                    let mut keygen = KeyGen::new(job.seed * 1_000 + w as u64);
                    let mut out = Worker::default();
                    while Instant::now() < deadline {
                        let key = engines::key(keygen.below(keys));
                        let t = Instant::now();
                        match db.get(&key).await {
                            Ok(Some(_)) => out.lat.push(t.elapsed().as_secs_f64() * 1e6),
                            Ok(None) => out.errors += 1,
                            Err(e) => {
                                tracing::warn!(%e, "get failed");
                                out.errors += 1;
                            }
                        }
                    }
                    out
                });
            }
            let mut workers = Vec::new();
            while let Some(done) = tasks.join_next().await {
                workers.push(done.unwrap_or_default());
            }
            workers
        });
        answer_done(workers, started.elapsed());
    }
    rt.block_on(db.close())
}

fn redb_reader(args: &ReaderArgs) -> Result<()> {
    let opened = redb_baseline::Builder::new()
        .set_concurrency_mode(redb_baseline::ConcurrencyMode::MultiWriter)
        .open_read_only(&args.path);
    let db = match opened {
        Ok(db) => db,
        Err(e) => {
            // Told to the harness only: R3 expects refusals, which should not alarm on stderr.
            say(&format!("error redb: open {}: {e}", args.path.display()));
            return Ok(());
        }
    };
    say("ready");
    while let Some(line) = command() {
        let job = ReadJob::parse(&line)?;
        let started = Instant::now();
        let deadline = started + job.duration;
        let workers = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..job.workers)
                .map(|w| {
                    let db = &db;
                    scope.spawn(move || {
                        let mut keygen = KeyGen::new(job.seed * 1_000 + w as u64);
                        let mut out = Worker::default();
                        while Instant::now() < deadline {
                            if let Err(e) = redb_gets(
                                db,
                                job.per_txn,
                                &mut keygen,
                                args.keys,
                                deadline,
                                &mut out,
                            ) {
                                // Counted, and this worker stops: a failing file fails every get.
                                tracing::warn!(%e, "redb read failed");
                                out.errors += 1;
                                break;
                            }
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect::<Vec<_>>()
        });
        answer_done(workers, started.elapsed());
    }
    Ok(())
}

/// Up to `per_txn` gets in one read transaction (fewer if `deadline` passes). The first get's
/// latency includes beginning the transaction and opening the table, as a lone get's must.
fn redb_gets(
    db: &redb_baseline::ReadOnlyDatabase,
    per_txn: usize,
    keygen: &mut KeyGen,
    keys: usize,
    deadline: Instant,
    out: &mut Worker,
) -> std::result::Result<(), redb_baseline::Error> {
    let mut t = Instant::now();
    let txn = db.begin_read()?;
    let table = txn.open_table(REDB_TABLE)?;
    for i in 0..per_txn {
        if i > 0 {
            if Instant::now() >= deadline {
                break;
            }
            t = Instant::now();
        }
        let key = engines::key(keygen.below(keys));
        // Copied out, as rave's get returns an owned value.
        match table.get(key.as_slice())?.map(|v| v.value().to_vec()) {
            Some(_) => out.lat.push(t.elapsed().as_secs_f64() * 1e6),
            None => out.errors += 1,
        }
    }
    Ok(())
}

/// Writes the point data set into a new redb file at `path` (closed again before returning).
fn redb_fill(path: &Path, keys: usize, value_size: usize) -> Result<()> {
    let err = |e: redb_baseline::Error| Error::other(format!("redb: {e}"));
    let db = redb_open(path)?;
    let value = engines::value(value_size);
    let txn = db.begin_write().map_err(|e| err(e.into()))?;
    {
        let mut table = txn.open_table(REDB_TABLE).map_err(|e| err(e.into()))?;
        for i in 0..keys {
            table
                .insert(engines::key(i).as_slice(), value.as_slice())
                .map_err(|e| err(e.into()))?;
        }
    }
    txn.commit().map_err(|e| err(e.into()))?;
    drop(db);
    Ok(())
}

/// Seconds an R2 writer writes beyond the readers' measurement.
const WRITER_MARGIN: f64 = 0.25;

/// One measurement over a set of reader processes.
#[derive(Clone, Copy, Debug, Default)]
struct Read {
    /// Gets per second, summed over the processes.
    ops_per_sec: f64,
    /// The first process's get latency, p50 and p99 (µs); only read from one-process runs.
    p50: f64,
    p99: f64,
    errors: u64,
}

/// The runs of one configuration.
#[derive(Clone, Debug, Default)]
struct Series(Vec<Read>);

impl Series {
    fn col(&self, f: impl Fn(&Read) -> f64) -> Vec<f64> {
        self.0.iter().map(f).collect()
    }

    fn ops(&self) -> Vec<f64> {
        self.col(|r| r.ops_per_sec)
    }

    fn errors(&self) -> u64 {
        self.0.iter().map(|r| r.errors).sum()
    }
}

/// Everything R1 and R2 measured, run by run.
#[derive(Default)]
struct Results {
    /// R1: rave and redb-direct, 1 process (1 in flight), `n` processes (1 in flight each),
    /// `n` processes with many in flight, and redb-direct's stale-snapshot variant.
    r1_rave_1: Series,
    r1_redb_1: Series,
    r1_snapshot_1: Series,
    r1_rave_n: Series,
    r1_redb_n: Series,
    r1_rave_many: Series,
    /// The better of 1 thread and `threads` threads per process, run by run.
    r1_redb_many: Series,
    /// R2: the same under a writer, and the writer's puts per second during the `n`-process reads.
    r2_rave_1: Series,
    r2_redb_1: Series,
    r2_snapshot_1: Series,
    r2_rave_n: Series,
    r2_redb_n: Series,
    r2_rave_puts: Vec<f64>,
    r2_redb_puts: Vec<f64>,
    /// The same writers' puts per second with no reader.
    r2_rave_alone: Vec<f64>,
    r2_redb_alone: Vec<f64>,
    writer_errors: u64,
    /// R3: milliseconds from the SIGKILL to the next write, run by run.
    r3_rave: Vec<f64>,
    r3_redb: Vec<f64>,
    /// R3: what new read-only opens did once no redb writer was left.
    r3_opens: Opens,
}

/// Outcomes of R3's read-only opens of a redb file.
#[derive(Debug, Default)]
struct Opens {
    /// Opens tried after the last writer process was SIGKILLed, and those refused.
    after_kill: usize,
    refused: usize,
    /// The first refusal's message.
    refusal: Option<String>,
    /// Opens tried once another process had opened the file for writing, and those that worked.
    after_reopen: usize,
    succeeded: usize,
}

/// Measures R1 (when `r1`) and R2 (when `r2`) for `engine`; other engines than redb get the
/// rows, skipped.
pub async fn measure(
    engine: EngineName,
    sizes: &Sizes,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Figure>> {
    let (r1, r2, r3) = (wanted("R1"), wanted("R2"), wanted("R3"));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut res = Results::default();
    if engine != EngineName::Redb {
        // One row per figure says why.
        let names = [
            (r1, "R1", "point gets from several processes vs redb-direct"),
            (r2, "R2", "the same while 1 process writes"),
            (r3, "R3", "the write-lock holder SIGKILLed"),
        ];
        return Ok(names
            .into_iter()
            .filter(|(wanted, _, _)| *wanted)
            .map(|(_, id, name)| {
                let mut f = Figure::new(id, name, "");
                f.skip("skipped: redb's own multi-process mode is compared with rave on redb only");
                f
            })
            .collect());
    }
    if r1 || r2 {
        reads(engine, sizes, threads, r1, r2, &mut res).await?;
    }
    if r3 {
        let tmp = temp_dir()?;
        for run in 0..sizes.runs {
            let dir = tmp.path().join(format!("db{run}"));
            res.r3_rave
                .push(with_engine!(engine, B => leader_killed::<B>(engine, &dir).await)?);
            let file = tmp.path().join(format!("kill{run}.redb"));
            drop(redb_open(&file)?);
            res.r3_redb
                .push(writer_killed(&file, &mut res.r3_opens).await?);
        }
    }
    Ok(figures(engine, sizes, threads, &res, [r1, r2, r3]))
}

/// R1 and R2's measurements, into `res`.
async fn reads(
    engine: EngineName,
    sizes: &Sizes,
    threads: usize,
    r1: bool,
    r2: bool,
    res: &mut Results,
) -> Result<()> {
    let n = sizes.reader_processes.max(1);
    let tmp = temp_dir()?;
    let dir = tmp.path().join("db");
    let file = tmp.path().join("kv.redb");
    let mut leader = Helper::leader(engine, &dir, &sizes.point_data())?;
    redb_fill(&file, sizes.keys, sizes.value_size)?;
    leader.expect("ready", SHORT).await?;
    let mut rave = spawn_readers(Via::Rave, engine, &dir, n, sizes.keys)?;
    let mut redb = spawn_readers(Via::Redb, engine, &file, n, sizes.keys)?;
    for r in rave.iter_mut().chain(redb.iter_mut()) {
        r.expect("ready", SHORT).await?;
    }
    let d = Duration::from_secs_f64(sizes.read_seconds.max(0.01));
    let job = |workers, seed, per_txn| ReadJob {
        workers,
        duration: d,
        seed,
        per_txn,
    };
    // Warm-up: connections, caches, the engines' pages.
    read(&mut rave, job(1, 0, 1)).await?;
    read(&mut redb, job(1, 0, 1)).await?;

    for run in 0..sizes.runs {
        let seed = run as u64 + 1;
        if r1 {
            res.r1_rave_1
                .0
                .push(read(&mut rave[..1], job(1, seed, 1)).await?);
            res.r1_redb_1
                .0
                .push(read(&mut redb[..1], job(1, seed, 1)).await?);
            let snapshot = job(1, seed, SNAPSHOT_GETS);
            res.r1_snapshot_1
                .0
                .push(read(&mut redb[..1], snapshot).await?);
            res.r1_rave_n
                .0
                .push(read(&mut rave, job(1, seed, 1)).await?);
            let one = read(&mut redb, job(1, seed, 1)).await?;
            res.r1_redb_n.0.push(one);
            let many = job(sizes.in_flight, seed, 1);
            res.r1_rave_many.0.push(read(&mut rave, many).await?);
            let more = read(&mut redb, job(threads, seed, 1)).await?;
            res.r1_redb_many
                .0
                .push(if more.ops_per_sec > one.ops_per_sec {
                    more
                } else {
                    one
                });
        }
        if r2 {
            let mut w = Writers {
                engine,
                dir: &dir,
                file: &file,
                sizes,
                next_id: 0,
                errors: 0,
            };
            let fresh = job(1, seed, 1);
            let snapshot = job(1, seed, SNAPSHOT_GETS);
            res.r2_rave_1
                .0
                .push(w.run(Via::Rave, &mut rave[..1], fresh).await?.0);
            res.r2_redb_1
                .0
                .push(w.run(Via::Redb, &mut redb[..1], fresh).await?.0);
            res.r2_snapshot_1
                .0
                .push(w.run(Via::Redb, &mut redb[..1], snapshot).await?.0);
            let (read, puts) = w.run(Via::Rave, &mut rave, fresh).await?;
            res.r2_rave_n.0.push(read);
            res.r2_rave_puts.push(puts);
            let (read, puts) = w.run(Via::Redb, &mut redb, fresh).await?;
            res.r2_redb_n.0.push(read);
            res.r2_redb_puts.push(puts);
            // The writers alone, for what the readers cost them.
            res.r2_rave_alone
                .push(w.run(Via::Rave, &mut [], fresh).await?.1);
            res.r2_redb_alone
                .push(w.run(Via::Redb, &mut [], fresh).await?.1);
            res.writer_errors += w.errors;
        }
    }
    // Closing stdin lets each reader close its handle; the leader last.
    for r in rave.into_iter().chain(redb) {
        r.stop().await;
    }
    leader.stop().await;
    Ok(())
}

fn spawn_readers(
    via: Via,
    engine: EngineName,
    path: &Path,
    n: usize,
    keys: usize,
) -> Result<Vec<Helper>> {
    let via_name = match via {
        Via::Rave => "rave",
        Via::Redb => "redb",
    };
    (0..n)
        .map(|i| {
            Helper::spawn(
                format!("{via_name} reader {i}"),
                [
                    "point-reader".to_string(),
                    "--via".into(),
                    via_name.into(),
                    "--backend".into(),
                    engine.to_string(),
                    "--path".into(),
                    path.display().to_string(),
                    "--keys".into(),
                    keys.to_string(),
                ],
            )
        })
        .collect()
}

/// R2's writers, one per measurement: a rave follower of `dir` (the P5 writer, `sync(true)`),
/// or the P5 redb writer on `file`; one put in flight.
struct Writers<'a> {
    engine: EngineName,
    dir: &'a Path,
    file: &'a Path,
    sizes: &'a Sizes,
    /// Part of every key a writer writes, so that each writes new entries.
    next_id: usize,
    /// Puts that failed, over all the writers.
    errors: u64,
}

impl Writers<'_> {
    /// Spawns a writer, runs `job` on `readers` while it writes, then stops it (closing its
    /// stdin: a redb writer killed with the file open would leave the file to be repaired).
    /// Returns the reads and the writer's puts per second.
    async fn run(&mut self, via: Via, readers: &mut [Helper], job: ReadJob) -> Result<(Read, f64)> {
        self.next_id += 1;
        // It writes beyond the readers' time, so that it writes throughout.
        let seconds = job.duration.as_secs_f64() + WRITER_MARGIN;
        let mut args = match via {
            Via::Rave => vec![
                "rave-writer".to_string(),
                "--backend".into(),
                self.engine.to_string(),
                "--path".into(),
                self.dir.display().to_string(),
            ],
            Via::Redb => vec![
                "redb-writer".to_string(),
                "--path".into(),
                self.file.display().to_string(),
            ],
        };
        args.extend([
            "--id".into(),
            // Two digits of the key; a run writes far fewer than 100 times.
            (self.next_id % 100).to_string(),
            "--writers".into(),
            "1".into(),
            "--seconds".into(),
            seconds.to_string(),
            "--value-size".into(),
            self.sizes.value_size.to_string(),
        ]);
        let mut writer = Helper::spawn(format!("{via:?} writer"), args)?;
        writer.expect("ready", SHORT).await?;
        writer.send("go").await?;
        let read = read(readers, job).await?;
        let limit = Duration::from_secs_f64(seconds) + SHORT;
        let words = writer.expect("done", limit).await?;
        let ops: u64 = field(&words, 0, "a count")?;
        let nanos: u64 = field(&words, 1, "a duration")?;
        self.errors += field::<u64>(&words, 2, "an error count")?;
        writer.stop().await;
        if nanos == 0 {
            return Err(Error::other("the writer measured no time"));
        }
        Ok((read, ops as f64 / (nanos as f64 / 1e9)))
    }
}

/// Runs `job` on every reader at once; sums their rates.
async fn read(readers: &mut [Helper], job: ReadJob) -> Result<Read> {
    let line = format!(
        "read {} {} {} {}",
        job.workers,
        job.duration.as_millis(),
        job.seed,
        job.per_txn
    );
    for r in readers.iter_mut() {
        r.send(&line).await?;
    }
    let limit = job.duration + SHORT;
    let mut out = Read::default();
    for (i, r) in readers.iter_mut().enumerate() {
        let words = r.expect("done", limit).await?;
        let ops: u64 = field(&words, 0, "a count")?;
        let nanos: u64 = field(&words, 1, "a duration")?;
        out.errors += field::<u64>(&words, 2, "an error count")?;
        if nanos == 0 {
            return Err(Error::other("a reader measured no time"));
        }
        out.ops_per_sec += ops as f64 / (nanos as f64 / 1e9);
        if i == 0 {
            out.p50 = field(&words, 3, "a p50")?;
            out.p99 = field(&words, 4, "a p99")?;
        }
    }
    Ok(out)
}

/// How long one R3 measurement may take before the run fails.
const KILL_LIMIT: Duration = Duration::from_secs(30);

/// R3, rave: a leader of `dir` is SIGKILLed while this process follows; milliseconds until a
/// put of this process is acknowledged by the next leader (this process: the only follower).
async fn leader_killed<B: Backend + Default>(engine: EngineName, dir: &Path) -> Result<f64> {
    let mut leader = Helper::leader(engine, dir, &[])?;
    leader.expect("ready", SHORT).await?;
    let db = follow::<B>(dir, RaveOptions::default()).await?;
    db.put(b"before", b"x").await?;
    let before = db.epoch();
    let started = Instant::now();
    leader.kill()?;
    let value = engines::value(100);
    let put = tokio::time::timeout(KILL_LIMIT, async {
        // A put the dying leader acknowledged does not count: only one on a newer epoch.
        while db.put(b"after", &value).await.is_err() || db.epoch() == before {}
    })
    .await;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    leader.reap(SHORT).await?;
    db.close().await?;
    put.map_err(|_| Error::Timeout { waited: KILL_LIMIT })?;
    Ok(ms)
}

/// R3, redb: a process inside a write transaction on `file` is SIGKILLed while another waits
/// to write; milliseconds until the other's commit returns. Then the other is SIGKILLed too
/// (no transaction open) and new read-only opens are tried, before and after a third process
/// opens the file for writing; their outcomes go to `opens`.
async fn writer_killed(file: &Path, opens: &mut Opens) -> Result<f64> {
    let holder = |what: &str| {
        Helper::spawn(
            format!("redb {what}"),
            [
                "redb-lock-holder".to_string(),
                "--path".into(),
                file.display().to_string(),
            ],
        )
    };
    let mut dying = holder("lock holder")?;
    let mut next = holder("next writer")?;
    dying.expect("ready", SHORT).await?;
    next.expect("ready", SHORT).await?;
    dying.send("hold").await?;
    dying.expect("holding", SHORT).await?;
    next.send("put").await?;
    // Let it reach begin_write, where it waits for the lock.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let killed_at = mono_ns();
    dying.kill()?;
    let words = next.expect("put", KILL_LIMIT).await?;
    let done_at: u64 = field(&words, 0, "a time")?;
    dying.reap(SHORT).await?;
    next.kill()?;
    next.reap(SHORT).await?;
    let try_open = || spawn_readers(Via::Redb, EngineName::Redb, file, 1, 1);
    for mut r in try_open()? {
        opens.after_kill += 1;
        if let Err(e) = r.expect("ready", SHORT).await {
            opens.refused += 1;
            // redb's own words, without the helper's and the path's.
            let e = e.to_string();
            let why = e.rsplit(": ").next().unwrap_or(&e).to_string();
            opens.refusal.get_or_insert(why);
        }
        r.stop().await;
    }
    let mut reopened = holder("writer reopening")?;
    reopened.expect("ready", SHORT).await?;
    for mut r in try_open()? {
        opens.after_reopen += 1;
        if r.expect("ready", SHORT).await.is_ok() {
            opens.succeeded += 1;
        }
        r.stop().await;
    }
    reopened.stop().await;
    Ok(done_at.saturating_sub(killed_at) as f64 / 1e6)
}

fn figures(
    engine: EngineName,
    sizes: &Sizes,
    threads: usize,
    res: &Results,
    [r1, r2, r3]: [bool; 3],
) -> Vec<Figure> {
    let n = sizes.reader_processes.max(1);
    let many = sizes.in_flight;
    let rave = |procs: usize, inflight: usize| {
        let tasks = if inflight == 1 {
            "1 get in flight (a task)".to_string()
        } else {
            format!("{inflight} concurrent get tasks")
        };
        let procs = plural(procs, "follower process", "follower processes");
        let each = if procs.starts_with("1 ") { "" } else { " each" };
        format!("rave ({engine}), {procs}, {tasks}{each}; the leader is one more process")
    };
    let redb = |procs: usize, threads: &str| {
        format!(
            "redb 4.6 opened directly by {} (read-only, ConcurrencyMode::MultiWriter), \
             {threads}, a new read transaction per get",
            plural(procs, "process", "processes")
        )
    };
    let snapshot = format!(
        "redb-direct as above, 1 process, 1 thread, one read transaction per {SNAPSHOT_GETS} \
         gets (a stale snapshot: does not see commits made meanwhile)"
    );
    let note_sizes = format!(
        "Random keys over {} keys × {} B; {} s per measurement; all reader processes run at \
         once.",
        sizes.keys, sizes.value_size, sizes.read_seconds
    );
    let mut out = Vec::new();
    if r1 {
        let errors = [
            &res.r1_rave_1,
            &res.r1_redb_1,
            &res.r1_snapshot_1,
            &res.r1_rave_n,
            &res.r1_redb_n,
            &res.r1_rave_many,
            &res.r1_redb_many,
        ]
        .iter()
        .map(|s| s.errors())
        .sum::<u64>();
        let mut note = note_sizes.clone();
        if errors > 0 {
            note.push_str(&format!(
                " {errors} gets failed or found nothing (see stderr)."
            ));
        }
        out.extend([
            Figure::new("R1", "point gets, 1 reader process, 1 in flight", "gets/s")
                .higher_is_better()
                .subject(rave(1, 1), res.r1_rave_1.ops())
                .baseline(redb(1, "1 thread"), res.r1_redb_1.ops())
                .note(note),
            Figure::new("R1·l", "get latency, 1 reader process, p50", "µs")
                .subject(rave(1, 1), res.r1_rave_1.col(|r| r.p50))
                .baseline(redb(1, "1 thread"), res.r1_redb_1.col(|r| r.p50)),
            Figure::new("R1·l", "get latency, 1 reader process, p99", "µs")
                .subject(rave(1, 1), res.r1_rave_1.col(|r| r.p99))
                .baseline(redb(1, "1 thread"), res.r1_redb_1.col(|r| r.p99)),
            Figure::new(
                "R1·s",
                "point gets, 1 reader process, vs a stale redb snapshot",
                "gets/s",
            )
            .higher_is_better()
            .subject(rave(1, 1), res.r1_rave_1.ops())
            .baseline(&snapshot, res.r1_snapshot_1.ops()),
            Figure::new(
                "R1",
                format!("point gets, {n} reader processes, 1 in flight each"),
                "gets/s",
            )
            .higher_is_better()
            .subject(rave(n, 1), res.r1_rave_n.ops())
            .baseline(redb(n, "1 thread each"), res.r1_redb_n.ops()),
            Figure::new(
                "R1",
                format!("point gets, {n} reader processes, many in flight"),
                "gets/s",
            )
            .higher_is_better()
            .subject(rave(n, many), res.r1_rave_many.ops())
            .baseline(
                redb(
                    n,
                    &format!("the better of 1 and {threads} threads (this machine's cores) each"),
                ),
                res.r1_redb_many.ops(),
            ),
        ]);
    }
    if r2 {
        let errors = [
            &res.r2_rave_1,
            &res.r2_redb_1,
            &res.r2_snapshot_1,
            &res.r2_rave_n,
            &res.r2_redb_n,
        ]
        .iter()
        .map(|s| s.errors())
        .sum::<u64>();
        let mut note = format!(
            "{note_sizes} Meanwhile one more process writes durable puts of new {} B entries, \
             one at a time, as fast as it can: for rave a follower opened with sync(true), for \
             redb-direct a process opening the file for writing in ConcurrencyMode::MultiWriter, \
             one Durability::Immediate transaction per put (a fresh writer, on the same data, for \
             every measurement).",
            sizes.value_size
        );
        if errors + res.writer_errors > 0 {
            note.push_str(&format!(
                " {errors} gets and {} puts failed (see stderr).",
                res.writer_errors
            ));
        }
        let under = |what: &str| format!("{what}, while 1 process writes");
        out.extend([
            Figure::new(
                "R2",
                under("point gets, 1 reader process, 1 in flight"),
                "gets/s",
            )
            .higher_is_better()
            .subject(under(&rave(1, 1)), res.r2_rave_1.ops())
            .baseline(under(&redb(1, "1 thread")), res.r2_redb_1.ops())
            .note(note),
            Figure::new("R2·l", under("get latency, 1 reader process, p50"), "µs")
                .subject(under(&rave(1, 1)), res.r2_rave_1.col(|r| r.p50))
                .baseline(under(&redb(1, "1 thread")), res.r2_redb_1.col(|r| r.p50)),
            Figure::new("R2·l", under("get latency, 1 reader process, p99"), "µs")
                .subject(under(&rave(1, 1)), res.r2_rave_1.col(|r| r.p99))
                .baseline(under(&redb(1, "1 thread")), res.r2_redb_1.col(|r| r.p99)),
            Figure::new(
                "R2·s",
                under("point gets, 1 reader process, vs a stale redb snapshot"),
                "gets/s",
            )
            .higher_is_better()
            .subject(under(&rave(1, 1)), res.r2_rave_1.ops())
            .baseline(under(&snapshot), res.r2_snapshot_1.ops()),
            Figure::new(
                "R2",
                under(&format!(
                    "point gets, {n} reader processes, 1 in flight each"
                )),
                "gets/s",
            )
            .higher_is_better()
            .subject(under(&rave(n, 1)), res.r2_rave_n.ops())
            .baseline(under(&redb(n, "1 thread each")), res.r2_redb_n.ops()),
            Figure::new(
                "R2·w",
                format!("the writer's durable puts during {n}-process reads"),
                "puts/s",
            )
            .higher_is_better()
            .subject(
                format!(
                    "rave ({engine}) writer, a follower process, sync(true), 1 put in flight, \
                     while {n} follower processes read"
                ),
                res.r2_rave_puts.clone(),
            )
            .baseline(
                format!(
                    "redb writer process, ConcurrencyMode::MultiWriter, one Immediate \
                     transaction per put, while {n} processes read the file directly"
                ),
                res.r2_redb_puts.clone(),
            ),
            Figure::new("R2·w", "the same writer's durable puts alone", "puts/s")
                .higher_is_better()
                .subject(
                    format!(
                        "rave ({engine}) writer, a follower process, sync(true), 1 put in \
                         flight, no reader"
                    ),
                    res.r2_rave_alone.clone(),
                )
                .baseline(
                    "redb writer process, ConcurrencyMode::MultiWriter, one Immediate \
                     transaction per put, no reader",
                    res.r2_redb_alone.clone(),
                ),
        ]);
    }
    if r3 {
        let o = &res.r3_opens;
        let mut note = format!(
            "After each run's last redb writer process was SIGKILLed (idle, the file open), \
             {} of {} new read-only opens were refused",
            o.refused, o.after_kill
        );
        if let Some(why) = &o.refusal {
            note.push_str(&format!(" ({why})"));
        }
        note.push_str(&format!(
            "; once another process had opened the file for writing, {} of {} succeeded. \
             Readers already open read on throughout.",
            o.succeeded, o.after_reopen
        ));
        out.push(
            Figure::new(
                "R3",
                "the write-lock holder SIGKILLed: until another process's write",
                "ms",
            )
            .subject(
                format!(
                    "rave ({engine}): the leader process SIGKILLed; the only follower's put \
                     retried until acknowledged by the next leader (itself): detection, \
                     election, engine open, commit"
                ),
                res.r3_rave.clone(),
            )
            .baseline(
                "redb ConcurrencyMode::MultiWriter: a process SIGKILLed inside a write \
                 transaction; another process already waiting in begin_write inserts and \
                 commits (Immediate)",
                res.r3_redb.clone(),
            )
            .note(note),
        );
    }
    out
}

/// `n` and the noun in the number `n` asks for.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
