//! Where a LevelDB point read's time goes: the same random gets on one populated database
//! (100 000 keys, several table files), timed at each layer.
//!
//! - `raw DB::get`: rusty-leveldb's own lookup (wrong after some deletions, see the engine's
//!   `read`; timed for comparison only);
//! - `fresh iterator + seek`: a new snapshot iterator per read;
//! - `cached iterator seek`: one iterator kept across reads (what the engine does);
//! - `LevelDbEngine::get`: the engine called directly on this thread;
//! - `SharedReader::get`: the engine's shared reader, on this thread (when it offers one);
//! - `EngineStore::get`: through the store, as rave's leader answers a follower.
//!
//! Then the time of single-put writes on the engine, alone and while threads read through the
//! shared reader as fast as they can (the reader and the writer share one lock): a writer must
//! not starve.
//!
//! ```text
//! cargo run --release -p rave-backend-leveldb --example read_cost [keys] [reads]
//! ```

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use rave_api::engine_thread::{Engine, EngineStore};
use rave_api::{BatchOp, KvStore, OpenOptions};
use rave_backend_leveldb::LevelDbEngine;
use rusty_leveldb::LdbIterator;

type Failure = Box<dyn std::error::Error>;

fn key(i: usize) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

/// A fixed pseudo-random sequence of key indexes below `keys` (xorshift: no dependency).
fn picks(keys: usize, n: usize) -> Vec<usize> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % keys as u64) as usize
        })
        .collect()
}

/// Runs `read` on every pick and prints the mean time per read.
fn time(what: &str, picks: &[usize], mut read: impl FnMut(&[u8]) -> bool) -> Duration {
    // Warm-up: the OS page cache and rusty-leveldb's block and table caches.
    for &i in picks.iter().take(picks.len() / 10) {
        black_box(read(&key(i)));
    }
    let keys: Vec<Vec<u8>> = picks.iter().map(|&i| key(i)).collect();
    let start = Instant::now();
    let mut found = 0usize;
    for k in &keys {
        found += usize::from(read(k));
    }
    let per = start.elapsed() / keys.len() as u32;
    println!(
        "{what:<26} {per:>10.2?} per read ({found}/{} found)",
        keys.len()
    );
    per
}

fn populate(dir: &Path, keys: usize) -> Result<(), Failure> {
    let engine = LevelDbEngine::open(dir, &OpenOptions::default())?;
    let value = vec![b'v'; 100];
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        let ops: Vec<BatchOp> = chunk
            .iter()
            .map(|&i| BatchOp::put(key(i), value.clone()))
            .collect();
        engine.write(&ops)?;
    }
    engine.close()?;
    // Reopened once, so that the engine (with its own table options) writes what the log held
    // to a table file: every layer below then reads the same files.
    LevelDbEngine::open(dir, &OpenOptions::default())?.close()?;
    Ok(())
}

/// Times single-put writes, with 0, 1 and 2 threads reading in a tight loop meanwhile.
fn write_under_reads(dir: &Path, keys: usize) -> Result<(), Failure> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let engine = LevelDbEngine::open(dir, &OpenOptions::default())?;
    let reader = engine
        .shared_reader()
        .ok_or("the engine offers no shared reader")?;
    let value = vec![b'w'; 100];
    for threads in [0, 1, 2] {
        let stop = AtomicBool::new(false);
        let reads = AtomicU64::new(0);
        let mut times: Vec<Duration> = Vec::new();
        let started = Instant::now();
        std::thread::scope(|scope| -> Result<(), Failure> {
            for t in 0..threads {
                let (reader, stop, reads) = (&reader, &stop, &reads);
                scope.spawn(move || {
                    let picks = picks(keys, 10_000);
                    let mut n = t;
                    while !stop.load(Ordering::Relaxed) {
                        black_box(reader.get(&key(picks[n % picks.len()])).ok());
                        n += 1;
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            let result = (0..2_000).try_for_each(|i| {
                let at = Instant::now();
                engine.write(&[BatchOp::put(key(i % keys), value.clone())])?;
                times.push(at.elapsed());
                Ok(())
            });
            stop.store(true, Ordering::Relaxed);
            result
        })?;
        let elapsed = started.elapsed();
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        println!(
            "put with {threads} reading thread(s): p50 {:.2?}, p99 {:.2?}, max {:.2?}; \
             {:.0} reads/s meanwhile",
            at(0.5),
            at(0.99),
            at(1.0),
            reads.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
        );
    }
    engine.close()?;
    Ok(())
}

fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let keys: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let reads: usize = args.next().map_or(Ok(50_000), |a| a.parse())?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    populate(dir, keys)?;
    let tables = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "ldb"))
        .count();
    println!("{keys} keys, {tables} table files, {reads} random reads each");
    let picks = picks(keys, reads);

    {
        // As the engine opens it (a fresh log: what the old one held goes to a table file),
        // so that every layer reads the same files.
        let opt = rusty_leveldb::Options {
            create_if_missing: false,
            reuse_logs: false,
            reuse_manifest: false,
            ..rusty_leveldb::Options::default()
        };
        let mut db = rusty_leveldb::DB::open(dir, opt)?;
        time("raw DB::get", &picks, |k| db.get(k).is_some());
        let fresh = picks.iter().copied().take(reads / 10).collect::<Vec<_>>();
        time("fresh iterator + seek", &fresh, |k| {
            let Ok(mut it) = db.new_iter() else {
                return false;
            };
            it.seek(k);
            it.valid()
        });
        let mut it = db.new_iter()?;
        time("cached iterator seek", &picks, |k| {
            it.seek(k);
            it.valid()
        });
        drop(it);
        db.close()?;
    }

    {
        let engine = LevelDbEngine::open(dir, &OpenOptions::default())?;
        time("LevelDbEngine::get", &picks, |k| {
            matches!(engine.get(k), Ok(Some(_)))
        });
        if let Some(reader) = engine.shared_reader() {
            time("SharedReader::get", &picks, |k| {
                matches!(reader.get(k), Ok(Some(_)))
            });
        }
        engine.close()?;
    }

    write_under_reads(dir, keys)?;

    {
        let owned = dir.to_path_buf();
        let store = EngineStore::spawn("leveldb", move || {
            LevelDbEngine::open(&owned, &OpenOptions::default())
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        time("EngineStore::get", &picks, |k| {
            matches!(rt.block_on(store.get(k)), Ok(Some(_)))
        });
        rt.block_on(store.close())?;
    }
    Ok(())
}
