//! The worker processes: writers, readers, watchers ([`crate::watcher`]) and the short-lived
//! processes of an election storm.
//!
//! Each opens one `Rave` handle on the database directory and records every operation (start,
//! end, outcome, epoch) and every role change in its own history file. SIGTERM asks it to finish
//! the operation in flight, close its handle and exit 0.

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rave::{Backend, BatchOp, Error, KvStore, Projection, Range, Rave, RaveOptions, Role};

use crate::history::{Recorder, now_ns};
use crate::schema::{
    DRAIN_KEYS, DRAIN_VALUE, FrozenSpec, GROUP_KEYS, HOT_KEYS, LIN_KEYS, SLOTS, batch_id,
    batch_key, drain_key, drain_prefix, encode_runs, frozen_index, frozen_value_index, group_key,
    hot_key, lin_key, parse_put_value, put_value, unique_key,
};

/// Options of `rave-torture worker` (started by `run`, not by hand).
#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// writer, reader, watcher or storm.
    #[arg(long)]
    pub kind: String,
    /// The engine.
    #[arg(long)]
    pub backend: String,
    /// The database directory.
    #[arg(long)]
    pub db: PathBuf,
    /// This process's history file.
    #[arg(long)]
    pub history: PathBuf,
    /// This incarnation's id (no `/`, `:` or spaces).
    #[arg(long)]
    pub uid: String,
    /// Seed of this worker's choices.
    #[arg(long)]
    pub seed: u64,
    /// Keys in the frozen prefix.
    #[arg(long)]
    pub frozen: u32,
    /// Turn off retries (operations fail with LeaderLost on a failover).
    #[arg(long)]
    pub no_retry: bool,
    /// RaveOptions::op_timeout, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub op_timeout_ms: u64,
    /// RaveOptions::election_timeout, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub election_timeout_ms: u64,
    /// Most microseconds of pause between two operations.
    #[arg(long, default_value_t = 2000)]
    pub pace_us: u64,
    /// A watcher's starting position (exclusive; default: from now).
    #[arg(long)]
    pub from: Option<u64>,
    /// A watcher's range, as `crate::watchlog::enc_range` writes it (default: everything).
    #[arg(long)]
    pub range: Option<String>,
}

/// Why a worker stopped early.
#[derive(Debug)]
pub struct WorkerError(pub String);

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

struct Ctx<B: Backend> {
    db: Rave<B>,
    rec: Arc<Recorder>,
    rng: ChaCha8Rng,
    uid: String,
    frozen: u32,
    stop: Arc<AtomicBool>,
    seq: u64,
    batches: u64,
    /// The drain's fill was acknowledged: its clears can be counted.
    drain_filled: bool,
    /// Sum of the limits of the clears issued so far.
    drain_issued: u32,
}

impl<B: Backend> Ctx<B> {
    fn end<T>(&self, id: u64, result: &Result<T, Error>, text: &str) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.kind().as_str(),
        };
        self.rec.end(id, outcome, self.db.epoch(), text);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    async fn put_unique(&mut self) {
        self.seq += 1;
        // Mostly small values; sometimes large ones, so that a kill lands mid-write more often.
        let pad = if self.rng.random_bool(0.03) {
            self.rng.random_range(8_192..65_536)
        } else {
            self.rng.random_range(0..64)
        };
        let key = unique_key(&self.uid, self.seq);
        self.put(key, pad).await;
    }

    async fn put_hot(&mut self) {
        self.seq += 1;
        let key = hot_key(self.rng.random_range(0..HOT_KEYS));
        let pad = self.rng.random_range(0..16);
        self.put(key, pad).await;
    }

    /// A put to a register of the current linearizability window.
    async fn put_lin(&mut self) {
        self.seq += 1;
        let key = lin_key(now_ns(), self.rng.random_range(0..LIN_KEYS));
        let pad = self.rng.random_range(0..16);
        self.put(key, pad).await;
    }

    /// Fills this writer's drain in one batch.
    async fn fill_drain(&mut self) {
        let ops = (0..DRAIN_KEYS)
            .map(|i| BatchOp::put(drain_key(&self.uid, i), DRAIN_VALUE.to_vec()))
            .collect();
        let id = self
            .rec
            .start(format_args!("fill {} {DRAIN_KEYS}", self.uid));
        let r = self.db.batch(ops).await;
        self.drain_filled = r.is_ok();
        self.end(id, &r, "");
    }

    /// A `clear` of the drain with a small limit. Limits never add up to more than half the
    /// drain, so a clear applied twice removes keys that are there to count.
    async fn clear_drain(&mut self) {
        let limit = self.rng.random_range(1..=3);
        if !self.drain_filled || self.drain_issued + limit > DRAIN_KEYS / 2 {
            return;
        }
        self.drain_issued += limit;
        let range = Range::prefix(drain_prefix(&self.uid)).limit(u64::from(limit));
        let id = self.rec.start(format_args!("clear {} {limit}", self.uid));
        let r = self.db.clear(range).await;
        self.end(id, &r, "");
    }

    async fn put(&mut self, key: String, pad: usize) {
        let value = put_value(&self.uid, self.seq, pad);
        let id = self
            .rec
            .start(format_args!("put {key} {} {} {pad}", self.uid, self.seq));
        let r = self.db.put(key.as_bytes(), &value).await;
        self.end(id, &r, "");
    }

    async fn batch(&mut self) {
        self.batches += 1;
        let n = self.batches;
        let keys = self.rng.random_range(2..=8);
        let slot = self.rng.random_range(0..SLOTS);
        let bid = batch_id(&self.uid, n);
        let mut ops: Vec<BatchOp> = (0..keys)
            .map(|i| BatchOp::put(batch_key(&self.uid, n, i), bid.clone()))
            .collect();
        ops.extend((0..GROUP_KEYS).map(|i| BatchOp::put(group_key(slot, i), bid.clone())));
        let id = self
            .rec
            .start(format_args!("batch {} {n} {keys} {slot}", self.uid));
        let r = self.db.batch(ops).await;
        self.end(id, &r, "");
    }

    async fn get_hot(&mut self) {
        let key = hot_key(self.rng.random_range(0..HOT_KEYS));
        self.get(key).await;
    }

    async fn get_lin(&mut self) {
        let key = lin_key(now_ns(), self.rng.random_range(0..LIN_KEYS));
        self.get(key).await;
    }

    /// A get of a register key, recording which put's value it returned.
    async fn get(&mut self, key: String) {
        let id = self.rec.start(format_args!("get {key}"));
        let r = self.db.get(key.as_bytes()).await;
        let text = match &r {
            Ok(None) => "-".to_string(),
            Ok(Some(v)) => match parse_put_value(v) {
                Some((uid, seq, pad)) => format!("{uid}:{seq}:{pad}"),
                None => "?".to_string(),
            },
            Err(_) => String::new(),
        };
        self.end(id, &r, &text);
    }

    async fn group(&mut self) {
        let slot = self.rng.random_range(0..SLOTS);
        let keys: Vec<Vec<u8>> = (0..GROUP_KEYS)
            .map(|i| group_key(slot, i).into_bytes())
            .collect();
        let id = self.rec.start(format_args!("group {slot}"));
        let r = self.db.get_many(&keys).await;
        let text = match &r {
            Ok(values) => values
                .iter()
                .map(|v| match v {
                    None => "-".to_string(),
                    Some(v) => match std::str::from_utf8(v) {
                        Ok(s) if !s.is_empty() && !s.contains([' ', ',']) => s.to_string(),
                        _ => "?".to_string(),
                    },
                })
                .collect::<Vec<_>>()
                .join(","),
            Err(_) => String::new(),
        };
        self.end(id, &r, &text);
    }

    fn frozen_spec(&mut self) -> FrozenSpec {
        let total = self.frozen;
        let rng = &mut self.rng;
        let a = rng.random_range(0..total);
        let b = rng.random_range(0..total);
        let (a, b) = (a.min(b), a.max(b));
        let full = rng.random_bool(0.3);
        let lo = if full {
            Bound::Unbounded
        } else if rng.random_bool(0.5) {
            Bound::Included(a)
        } else {
            Bound::Excluded(a)
        };
        let hi = if full {
            Bound::Unbounded
        } else if rng.random_bool(0.5) {
            Bound::Included(b)
        } else {
            Bound::Excluded(b)
        };
        let limit = if rng.random_bool(0.25) {
            Some(rng.random_range(0..u64::from(total)))
        } else {
            None
        };
        let projection = match rng.random_range(0..6) {
            0 => Projection::KeysOnly,
            1 => Projection::ValuesOnly,
            _ => Projection::KeysAndValues,
        };
        FrozenSpec {
            lo,
            hi,
            reverse: rng.random_bool(0.5),
            limit,
            projection,
        }
    }

    /// An iterator over the frozen prefix, pulled in small chunks with short pauses so that a
    /// failover often lands in the middle of it. Records the indices delivered, as runs.
    async fn frozen_iter(&mut self, max_chunk: usize, pause: bool) {
        let spec = self.frozen_spec();
        let id = self.rec.start(format_args!("frozen {}", spec.to_words()));
        let mut seen = Vec::new();
        let mut bad = 0u64;
        let r: Result<(), Error> = async {
            let mut it = self.db.iterator(spec.range()).await?;
            loop {
                let max = self.rng.random_range(1..=max_chunk);
                let chunk = it.next_chunk(max).await?;
                if chunk.is_empty() {
                    return Ok(());
                }
                for entry in chunk {
                    let index = match spec.projection {
                        Projection::KeysAndValues => {
                            let k = frozen_index(&entry.key);
                            if k.is_none() || k != frozen_value_index(&entry.value) {
                                bad += 1;
                            }
                            k
                        }
                        Projection::KeysOnly => {
                            if !entry.value.is_empty() {
                                bad += 1;
                            }
                            frozen_index(&entry.key)
                        }
                        Projection::ValuesOnly => {
                            if !entry.key.is_empty() {
                                bad += 1;
                            }
                            frozen_value_index(&entry.value)
                        }
                    };
                    match index {
                        Some(i) => seen.push(i),
                        None => bad += 1,
                    }
                }
                if pause && self.rng.random_bool(0.3) {
                    tokio::time::sleep(Duration::from_micros(self.rng.random_range(0..2000))).await;
                }
            }
        }
        .await;
        let text = format!("{} bad={bad}", encode_runs(&seen));
        self.end(id, &r, &text);
    }

    /// An iterator over keys being written: only their strict order can be checked.
    async fn live_iter(&mut self) {
        let reverse = self.rng.random_bool(0.5);
        let mut range = Range::prefix("u/").limit(self.rng.random_range(50..500));
        if reverse {
            range = range.reverse();
        }
        let id = self.rec.start(format_args!("live {}", u8::from(reverse)));
        let (mut n, mut repeat, mut disorder) = (0u64, 0u64, 0u64);
        let r: Result<(), Error> = async {
            let mut it = self.db.iterator(range).await?;
            let mut last: Option<Vec<u8>> = None;
            loop {
                let chunk = it.next_chunk(self.rng.random_range(1..=64)).await?;
                if chunk.is_empty() {
                    return Ok(());
                }
                for entry in chunk {
                    n += 1;
                    if let Some(prev) = &last {
                        let ordered = if reverse {
                            entry.key < *prev
                        } else {
                            entry.key > *prev
                        };
                        if entry.key == *prev {
                            repeat += 1;
                        } else if !ordered {
                            disorder += 1;
                        }
                    }
                    last = Some(entry.key);
                }
            }
        }
        .await;
        let text = format!("n={n} repeat={repeat} disorder={disorder}");
        self.end(id, &r, &text);
    }

    async fn pace(&mut self, pace_us: u64) {
        if pace_us > 0 {
            let us = self.rng.random_range(0..=pace_us);
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
    }
}

/// Records every role change of `db`, with the epoch, until it closes.
fn watch_roles<B: Backend>(db: &Rave<B>, rec: Arc<Recorder>) {
    let mut rx = db.watch_role();
    let db = db.clone();
    tokio::spawn(async move {
        loop {
            let role = *rx.borrow_and_update();
            let epoch = db
                .epoch()
                .map_or_else(|| "-".to_string(), |e| e.to_string());
            rec.line(format_args!("R {role} {epoch}"));
            if role == Role::Closed || rx.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Runs one worker process to its end.
pub async fn run<B: Backend + Default>(args: WorkerArgs) -> Result<(), WorkerError> {
    let rec = Arc::new(
        Recorder::open(&args.history)
            .map_err(|e| WorkerError(format!("open {}: {e}", args.history.display())))?,
    );
    rec.line(format_args!(
        "H {} {} {}",
        args.kind,
        args.uid,
        std::process::id()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| WorkerError(format!("SIGTERM handler: {e}")))?;
        tokio::spawn(async move {
            term.recv().await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    let options = RaveOptions::default()
        .retry(!args.no_retry)
        .election_timeout(Duration::from_millis(args.election_timeout_ms))
        .op_timeout(Some(Duration::from_millis(args.op_timeout_ms)));
    let db = Rave::<B>::open_engine(&args.db, options)
        .map_err(|e| WorkerError(format!("open {}: {e}", args.db.display())))?;
    watch_roles(&db, rec.clone());
    let mut ctx = Ctx {
        db,
        rec,
        rng: ChaCha8Rng::seed_from_u64(args.seed),
        uid: args.uid.clone(),
        frozen: args.frozen.max(1),
        stop,
        seq: 0,
        batches: 0,
        drain_filled: false,
        drain_issued: 0,
    };
    match args.kind.as_str() {
        "writer" => {
            ctx.fill_drain().await;
            while !ctx.stopping() {
                match ctx.rng.random_range(0..100) {
                    0..36 => ctx.put_unique().await,
                    36..52 => ctx.put_hot().await,
                    52..62 => ctx.put_lin().await,
                    62..80 => ctx.batch().await,
                    80..88 => ctx.clear_drain().await,
                    88..94 => ctx.get_lin().await,
                    _ => ctx.group().await,
                }
                ctx.pace(args.pace_us).await;
            }
        }
        "reader" => {
            while !ctx.stopping() {
                match ctx.rng.random_range(0..100) {
                    0..15 => ctx.get_hot().await,
                    15..35 => ctx.get_lin().await,
                    35..45 => ctx.group().await,
                    45..85 => ctx.frozen_iter(64, true).await,
                    _ => ctx.live_iter().await,
                }
                ctx.pace(args.pace_us).await;
            }
        }
        "watcher" => {
            let range = match &args.range {
                Some(text) => crate::watchlog::dec_range(text)
                    .ok_or_else(|| WorkerError(format!("bad --range {text:?}")))?,
                None => Range::all(),
            };
            let mut watcher = crate::watcher::Watcher {
                db: ctx.db.clone(),
                rec: ctx.rec.clone(),
                rng: ctx.rng.clone(),
                stop: ctx.stop.clone(),
                range,
                position: args.from,
            };
            watcher.run().await;
        }
        "storm" => match ctx.rng.random_range(0..10) {
            0..5 => ctx.put_unique().await,
            5..8 => ctx.get_hot().await,
            _ => ctx.frozen_iter(256, false).await,
        },
        other => return Err(WorkerError(format!("unknown worker kind {other:?}"))),
    }
    let id = ctx.rec.start(format_args!("close"));
    let r = ctx.db.close().await;
    ctx.end(id, &r, "");
    Ok(())
}
