//! The LevelDB engine for rave, on rusty-leveldb (pure Rust, file-compatible with LevelDB).
//!
//! [`LevelDbBackend`] opens a directory as a LevelDB database (its files live directly in the
//! directory, next to rave's own `rave-engine` record and `rave.lock`) and runs it on a dedicated
//! thread through [`rave_api::engine_thread::EngineStore`], which adds group commit and chunked
//! iterators. rusty-leveldb's `DB` takes `&mut self` and is neither `Send` nor `Sync` (`Rc`s and
//! `RefCell`s inside), so the database and everything made from it live behind one mutex: the
//! engine thread writes and iterates under it, and point reads run under it on the callers'
//! threads (the engine's [`SharedReader`]), without the two thread hand-offs of a trip to the
//! engine thread, which cost far more than the read itself.
//!
//! - Point reads are iterator seeks on a snapshot kept until the next write, not `DB::get`,
//!   which is wrong after some deletions (see `Shared::read`). They wait for a write in
//!   progress (and, with `sync`, its fsync), as they did on the engine thread.
//! - Writes are one atomic `WriteBatch` each (one log record, checksummed: after a crash it is
//!   replayed whole or not at all). Every write is handed to the OS before it is acknowledged, so
//!   it survives the crash of the process; with the `sync` open option it is fsynced too, so it
//!   survives power loss (rusty-leveldb itself never fsyncs: rave's file environment does).
//! - A `clear` is deleted in chunks of bounded size, each an atomic write; it is atomic for
//!   every reader while the leader lives, but a crash midway leaves a prefix of the range
//!   deleted (see [`CLEAR_CHUNK_KEYS`]).
//! - Table files an open iterator still reads are kept until it is dropped, even when a
//!   compaction replaces them.
//! - Iterators read a snapshot taken when they are created; reverse iteration is rave's own,
//!   because rusty-leveldb's is broken (see the `iter` module).
//! - Errors are typed [`rave_api::Error`]s; rusty-leveldb panics on some damaged files, and those
//!   panics are caught and reported as [`rave_api::ErrorKind::Corruption`].

#![warn(missing_docs)]

mod checked_table;
mod env;
mod error;
mod iter;
mod posix_lock;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use rave_api::engine_thread::{Engine, SharedReader};
use rave_api::{BatchOp, Capabilities, EngineBackend, Error, OpenOptions, Range, Result};
use rusty_leveldb::{DB, LdbIterator, WriteBatch};

use crate::env::{Files, RaveEnv};
use crate::error::Op;
pub use crate::iter::LevelDbIter;

/// The engine's name, as recorded in the directory.
const NAME: &str = "leveldb";

/// Entries between restart points in the blocks of the table files rave writes (see `open`).
const RESTART_INTERVAL: usize = 4;

/// The most keys deleted by one write of a `clear` (see `delete_ranges_and_write`).
pub const CLEAR_CHUNK_KEYS: usize = 16 * 1024;

/// The most bytes of keys deleted by one write of a `clear`.
pub const CLEAR_CHUNK_BYTES: usize = 4 << 20;

/// The LevelDB engine: opens a directory as a [`KvStore`](rave_api::KvStore).
///
/// ```no_run
/// use rave_api::{Backend, OpenOptions};
/// use rave_backend_leveldb::LevelDbBackend;
///
/// let store = LevelDbBackend.open("/tmp/db".as_ref(), &OpenOptions::default())?;
/// # Ok::<(), rave_api::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelDbBackend;

impl LevelDbBackend {
    /// The LevelDB backend.
    pub const fn new() -> Self {
        LevelDbBackend
    }
}

impl EngineBackend for LevelDbBackend {
    const NAME: &'static str = NAME;
    type Engine = LevelDbEngine;

    // Point reads run on the callers' threads, through the engine's shared reader.
    const CAPABILITIES: Capabilities = Capabilities::full().with_concurrent_reads(true);

    fn open_engine(dir: &Path, options: &OpenOptions) -> Result<LevelDbEngine> {
        LevelDbEngine::open(dir, options)
    }
}

/// An open LevelDB database, driven from the engine thread; its point reads are served on any
/// thread by its [`SharedReader`], under the same lock as every other use of the database.
pub struct LevelDbEngine {
    shared: Arc<Shared>,
    /// LevelDB's own lock on `LOCK`, which other LevelDB programs take; released after the
    /// database is closed (`close` and `Drop` close it first).
    _posix_lock: posix_lock::PosixLock,
    /// Set when a write failed: rusty-leveldb may then hold it in its memtable without having
    /// logged it (db_impl.rs `write` inserts before it appends to the log) and would reuse its
    /// sequence numbers, so no further write is accepted on this handle.
    failed: RefCell<Option<Error>>,
}

/// Every rusty-leveldb object of one open database, used only under [`Shared::state`]'s mutex.
struct Db {
    db: DB,
    /// The snapshot iterator point reads use; dropped by every write (see [`Shared::read`]).
    reader: Option<rusty_leveldb::DBIterator>,
    /// The state shared with the file environment inside `db` and with the iterators' pins.
    files: Rc<Files>,
}

// SAFETY: rusty-leveldb's `DB` (and so `Db`) is not `Send` only because of the `Rc`s, `RefCell`s
// and `Cell`s inside it: options, environment (with rave's `Files`), comparator, table and block
// caches, memtable and versions are shared by `Rc` between the database, its iterators and the
// table files they read. Moving a `Db` to another thread, or touching it from several threads in
// turn, is sound if no two threads ever touch those non-atomic counters and borrow flags at
// once, and each access happens-after the previous one. Both hold because:
// - a `Db` lives only in `Shared::state`, a `std::sync::Mutex`, and is only used through its
//   guard (or after `LevelDbEngine::shut` took it out, when nothing else can reach it: see
//   there); the mutex orders every access after the previous one;
// - the only `Rc`-bearing values made from a `Db` that leave the guard are the `DBIterator` and
//   `Pin` of a `LevelDbIter` (iter.rs), which stays on the engine thread (it is not `Send`) and
//   locks the same mutex to advance, and to drop them (`LevelDbIter`'s `next_entry` and `Drop`);
//   nothing else keeps one: reads return owned copies (`Vec`, and `bytes::Bytes`, whose counts are
//   atomic);
// - rusty-leveldb 4 has no thread-affine state: no `thread_local!`, no statics, and its file lock
//   is an `flock` on an open file (disk_env.rs), which belongs to no thread.
unsafe impl Send for Db {}

/// The database behind one mutex, shared by the engine thread (writes, iterators) and the
/// [`SharedReader`] that answers point reads on the callers' threads.
///
/// One mutex for everything, because every rusty-leveldb object of a database shares `Rc`s with
/// the others (see the `SAFETY` note on `Db`): a point read and a write, or a read and an
/// iterator's step, can never run at the same time. A read thus waits for a commit in progress
/// (its log write, with the `sync` option its fsync, and any compaction rusty-leveldb runs
/// inside the write), exactly as it waited on the engine thread before; what it no longer waits
/// for is the two thread hand-offs to the engine thread and back.
pub(crate) struct Shared {
    dir: PathBuf,
    /// The database; `None` once closed, when readers fail with [`Error::Closed`].
    state: Mutex<Option<Db>>,
}

impl Shared {
    /// The database directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The locked database slot. A panic under the lock (rusty-leveldb panics on some damaged
    /// files) is caught inside it by `error::guard` and leaves a usable state, as it did when
    /// the engine thread ran alone, so a poisoned lock is taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Option<Db>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the point-read iterator, a snapshot kept until the next write, from any
    /// thread; [`Error::Closed`] once the engine is closed.
    ///
    /// Point reads go through an iterator's `seek`, not `DB::get`: rusty-leveldb's lookup in
    /// table files stops at the first deletion marker at or after the key *whatever its key*
    /// (version.rs `Version::get`: `else if typ == ValueType::TypeDeletion { return Ok(None) }`),
    /// so a key that a deletion of a greater key follows in a newer file reads as missing. The
    /// iterator path merges all sources correctly. Keeping one iterator across a run of reads
    /// saves building it each time; no compaction (and so no file deletion) happens until the
    /// next write, which drops it first (under the same lock, so a read after the write's return
    /// builds a new snapshot that holds it).
    fn read<T>(&self, f: impl FnOnce(&mut rusty_leveldb::DBIterator) -> Result<T>) -> Result<T> {
        let dir = &self.dir;
        let mut state = self.lock();
        let Some(Db { db, reader, files }) = state.as_mut() else {
            return Err(Error::Closed);
        };
        error::guard(Op::Read, dir, || {
            let it = match reader.take() {
                Some(it) => it,
                None => db.new_iter().map_err(|s| error::map(&s, Op::Read, dir))?,
            };
            let it = reader.insert(it);
            let result = files.checked(f(it));
            if result.is_err() {
                // Not kept for the next read.
                reader.take();
            }
            result
        })
    }
}

impl SharedReader for Shared {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read(|it| Ok(iter::lookup(it, key)))
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        // One snapshot for all of them.
        self.read(|it| Ok(keys.iter().map(|key| iter::lookup(it, key)).collect()))
    }
}

impl LevelDbEngine {
    /// Opens (or, with `create_if_missing`, creates) the database in directory `dir`, which
    /// [`rave_api::dir::prepare`] has already checked. Blocking.
    pub fn open(dir: &Path, options: &OpenOptions) -> Result<Self> {
        Self::open_tuned(dir, options, |_| {})
    }

    /// [`LevelDbEngine::open`], with `tune` adjusting rusty-leveldb's options last (tests use
    /// tiny buffers to force table files and compactions).
    fn open_tuned(
        dir: &Path,
        options: &OpenOptions,
        tune: impl FnOnce(&mut rusty_leveldb::Options),
    ) -> Result<Self> {
        // rusty-leveldb unwraps `Path::to_str` (disk_env.rs `lock`): refuse what it would panic on.
        if dir.to_str().is_none() {
            return Err(Error::invalid(format!(
                "{}: the LevelDB engine needs a UTF-8 path",
                dir.display()
            )));
        }
        let posix_lock = posix_lock::PosixLock::acquire(dir)?;
        let files = Rc::new(Files::default());
        let mut opt = rusty_leveldb::Options {
            create_if_missing: options.create_if_missing,
            // `dir::prepare` has applied error_if_exists already; rusty-leveldb's own check only
            // asks whether the directory exists (db_impl.rs `recover`), which it now always does.
            error_if_exists: false,
            // Start a fresh log and MANIFEST on every open (LevelDB's own defaults). Reusing
            // them appends after whatever ends the old file: after a crash in the middle of an
            // append, that is a torn record, where the next recovery stops reading (log.rs
            // `LogReader::read` fails, db_impl.rs `recover_log_file` ends its loop), so every
            // write acknowledged after the reopen would be lost at the following one.
            reuse_logs: false,
            reuse_manifest: false,
            // A point read seeks a block of each table file twice (index, then data): a binary
            // search over the block's restart points, then a linear walk that decodes (and
            // copies the key of) every entry up to the key (block.rs `BlockIter::seek`). With
            // LevelDB's default of 16 entries between restart points that walk is most of a
            // read's time; 4 makes reads ~35 % faster (`examples/read_cost.rs`: ~1.9 → ~1.25 µs
            // with the data in the block cache) for blocks a few % larger. Any LevelDB reads
            // such tables: the restart points are listed in each block.
            block_restart_interval: RESTART_INTERVAL,
            ..rusty_leveldb::Options::default()
        };
        opt.env = Rc::new(Box::new(RaveEnv::new(Rc::clone(&files), options.sync)));
        opt.cmp = Rc::new(Box::new(Bytewise));
        tune(&mut opt);
        // For the failover trace: what this open had to recover (the old log, written into a
        // table) and whether it compacted (fewer tables after than before, plus the new one).
        let before = rave_api::failover_trace::enabled().then(|| {
            (
                Instant::now(),
                rave_api::failover_trace::thread_cpu_us(),
                table_files(dir),
            )
        });
        let db = error::guard(Op::Open, dir, || {
            DB::open(dir, opt).map_err(|status| {
                if status.code == rusty_leveldb::StatusCode::InvalidArgument {
                    // `recover` reports any failure to read CURRENT this way.
                    return if dir.join("CURRENT").exists() {
                        Error::corruption(format!(
                            "leveldb open {}: the CURRENT file is unreadable ({})",
                            dir.display(),
                            status.err
                        ))
                    } else {
                        Error::DoesNotExist {
                            path: dir.to_path_buf(),
                        }
                    };
                }
                error::map(&status, Op::Open, dir)
            })
        });
        // Recovery may compact, reading tables.
        let db = files.checked(db)?;
        if let Some((started, cpu, (tables, log_bytes))) = before {
            rave_api::failover_trace::phase(
                "leveldb-open",
                format_args!(
                    "us={} cpu_us={} tables_before={tables} tables_after={} log_bytes={log_bytes}",
                    started.elapsed().as_micros(),
                    rave_api::failover_trace::thread_cpu_us().saturating_sub(cpu),
                    table_files(dir).0
                ),
            );
        }
        tracing::debug!(dir = %dir.display(), sync = options.sync, "leveldb opened");
        Ok(LevelDbEngine {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                state: Mutex::new(Some(Db {
                    db,
                    reader: None,
                    files,
                })),
            }),
            _posix_lock: posix_lock,
            failed: RefCell::new(None),
        })
    }

    fn dir(&self) -> &Path {
        self.shared.dir()
    }

    /// Takes the database out of the shared slot: from then on a leftover shared reader fails
    /// with [`Error::Closed`], and nothing but the returned value reaches the database (no
    /// iterator is alive: they borrow the engine, which `close` and `drop` own), so it may be
    /// used without the lock. Waits for a read in progress.
    fn shut(&self) -> Option<Db> {
        self.shared.lock().take()
    }

    /// The error for any write after one failed (see `failed`).
    fn refuse_after_failure(&self) -> Result<()> {
        let Some(cause) = self.failed.borrow().clone() else {
            return Ok(());
        };
        let message = format!(
            "leveldb {}: writes are disabled after an earlier write failed ({cause}); \
             reopen the database",
            self.dir().display()
        );
        // The same kind as the first failure (a full disk stays an `Io` error of kind
        // `StorageFull`), so callers can tell why.
        Err(match cause {
            Error::Io { kind, .. } => Error::Io { kind, message },
            Error::Corruption { .. } => Error::corruption(message),
            _ => Error::other(message),
        })
    }

    /// Commits `batch` on the locked database `db`; a failure disables further writes.
    fn commit(&self, db: &mut Db, batch: WriteBatch) -> Result<()> {
        let dir = self.dir();
        // The cached read snapshot must not outlive the state it saw: dropped under the lock
        // that the next read takes, so no read after this write returns can use it.
        db.reader.take();
        let result = error::guard(Op::Write, dir, || {
            // Durability against a process crash. `DB::write(batch, false)` appends the batch's
            // log record to a `BufWriter` only (db_impl.rs `write`: `log.add_record(..)`, and
            // `log.flush()` only `if sync`): it may sit in this process's memory. `DB::flush`
            // (db_impl.rs `flush` → log.rs `LogWriter::flush` → `BufWriter::flush`) writes it
            // to the file, i.e. hands it to the OS, which keeps it whatever happens to this
            // process. Passing `sync = true` to `write` would do no more than that flush:
            // rusty-leveldb never calls fsync. With the `sync` open option the log file is a
            // `SyncedFile` (env.rs), whose flush also fsyncs, so the same call makes the write
            // durable against power loss.
            db.db
                .write(batch, false)
                .map_err(|s| error::map(&s, Op::Write, dir))?;
            db.db.flush().map_err(|s| error::map(&s, Op::Write, dir))
        });
        // A compaction during the write reads tables, and would write out only what it could
        // read: the write fails, and so do all after it.
        let result = db.files.checked(result);
        if let Err(e) = &result {
            tracing::error!(dir = %dir.display(), error = %e, "leveldb write failed; further writes refused");
            *self.failed.borrow_mut() = Some(e.clone());
        }
        result
    }
}

/// `ops` as one rusty-leveldb batch.
fn batch_of(ops: &[BatchOp]) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for op in ops {
        match op {
            BatchOp::Put { key, value } => batch.put(key, value),
            BatchOp::Del { key } => batch.delete(key),
        }
    }
    batch
}

impl Engine for LevelDbEngine {
    type Iter<'a> = LevelDbIter<'a>;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.shared.get(key)
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.shared.get_many(keys)
    }

    /// Point reads on the callers' threads, one at a time (they share the database's lock):
    /// they skip the trip to the engine thread and back, the bulk of a read's cost.
    fn shared_reader(&self) -> Option<Arc<dyn SharedReader>> {
        Some(self.shared.clone())
    }

    fn write(&self, ops: &[BatchOp]) -> Result<()> {
        self.refuse_after_failure()?;
        let mut state = self.shared.lock();
        let db = state.as_mut().ok_or(Error::Closed)?;
        self.commit(db, batch_of(ops))
    }

    /// LevelDB has no range delete, so this lists the keys of `ranges` and deletes them **in
    /// chunks**: each chunk of at most [`CLEAR_CHUNK_KEYS`] keys or [`CLEAR_CHUNK_BYTES`] bytes of
    /// keys is one atomic write, and the last chunk carries `ops` (the clear's exactly-once
    /// record). Memory is one chunk, whatever the size of the range.
    ///
    /// Not atomic on disk, but atomic for every reader while the leader lives: the whole clear
    /// runs under the database's lock, so no point read (shared reads take the same lock), write
    /// or iterator sees a partly cleared range. If the leader dies (or a chunk's write fails)
    /// midway, the keys of the chunks already written, a prefix of the range in key order, stay
    /// deleted and the clear's record is not written: the caller gets an error or re-sends the
    /// clear, which then applies again and deletes the rest.
    fn delete_ranges_and_write(&self, ranges: &[Range], ops: &[BatchOp]) -> Result<()> {
        self.refuse_after_failure()?;
        let dir = self.dir();
        let mut state = self.shared.lock();
        let db = state.as_mut().ok_or(Error::Closed)?;
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for range in ranges {
            // One snapshot per range: it still lists the keys after those deleted by earlier
            // chunks, and nothing else runs meanwhile. Pinned, as chunk writes may compact.
            let pin = db.files.pin();
            let mut it = error::guard(Op::Iterate, dir, || {
                db.db
                    .new_iter()
                    .map_err(|s| error::map(&s, Op::Iterate, dir))
            })?;
            let (lower, upper) = (range.lower().map(<[u8]>::to_vec), range.upper());
            let mut started = false;
            loop {
                let key = error::guard(Op::Iterate, dir, || {
                    if started {
                        it.advance();
                    } else {
                        iter::position(&mut it, &lower);
                        started = true;
                    }
                    Ok(iter::current(&it)
                        .filter(|(key, _)| iter::below_bound(upper, key))
                        .map(|(key, _)| key))
                });
                // A table read that failed may have hidden keys: fail rather than delete less.
                let Some(key) = db.files.checked(key)? else {
                    break;
                };
                bytes += key.len();
                chunk.push(BatchOp::Del { key: key.to_vec() });
                if chunk.len() >= CLEAR_CHUNK_KEYS || bytes >= CLEAR_CHUNK_BYTES {
                    self.commit(db, batch_of(&chunk))?;
                    chunk.clear();
                    bytes = 0;
                }
            }
            // Dropped under the lock, the iterator before its pin.
            drop(it);
            drop(pin);
        }
        chunk.extend_from_slice(ops);
        self.commit(db, batch_of(&chunk))
    }

    fn iter<'a>(&'a self, range: &Range) -> Result<LevelDbIter<'a>> {
        let dir = self.dir();
        let mut state = self.shared.lock();
        let Some(Db { db, files, .. }) = state.as_mut() else {
            return Err(Error::Closed);
        };
        let iter = error::guard(Op::Iterate, dir, || {
            // Pinned first: table files of this snapshot stay until the iterator is dropped.
            let pin = files.pin();
            // `new_iter` takes a snapshot at the current sequence number; the iterator skips
            // every entry written after it (db_iter.rs `find_next_user_entry`).
            let it = db
                .new_iter()
                .map_err(|s| error::map(&s, Op::Iterate, dir))?;
            Ok((it, pin))
        });
        // On failure, `pin` (if made) was dropped above, still under the lock.
        let (it, pin) = files.checked(iter)?;
        Ok(LevelDbIter::new(
            &self.shared,
            it,
            range.lower(),
            range.upper(),
            range.reverse,
            pin,
        ))
    }

    fn close(self) -> Result<()> {
        let Some(Db { mut db, reader, .. }) = self.shut() else {
            return Ok(());
        };
        let dir = self.dir();
        drop(reader);
        // Flushes the log and releases the LOCK file; dropping the DB afterwards does nothing
        // more (db_impl.rs `close`, `Drop for DB`).
        let result = error::guard(Op::Close, dir, || {
            db.close().map_err(|s| error::map(&s, Op::Close, dir))
        });
        drop(db);
        tracing::debug!(dir = %dir.display(), ok = result.is_ok(), "leveldb closed");
        result
    }
}

impl Drop for LevelDbEngine {
    /// An engine dropped without `close` (a panic on the engine thread) still closes its
    /// database here, on this thread and before the LOCK file is released, rather than wherever
    /// the last copy of its shared reader happens to be dropped.
    fn drop(&mut self) {
        drop(self.shut());
    }
}

/// LevelDB's bytewise comparator: the same order and the same on-disk name, with a correct
/// separator. rusty-leveldb's `DefaultCmp::find_shortest_sep` (cmp.rs) panics on the empty key
/// (`a.len() - 1`), a valid key in rave, and when it cannot shorten it returns `a + [0]`, which
/// is no separator when the next key is exactly that: the table builder then asserts
/// (block_builder.rs `add`) and the database can no longer write.
struct Bytewise;

impl rusty_leveldb::Cmp for Bytewise {
    fn cmp(&self, a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        a.cmp(b)
    }

    fn find_shortest_sep(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
        // As LevelDB's BytewiseComparatorImpl::FindShortestSeparator: a short key in
        // (from, to) when one byte can be bumped.
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        if common < from.len().min(to.len()) {
            let byte = from[common];
            if byte < 0xff && byte + 1 < to[common] {
                let mut sep = from[..=common].to_vec();
                sep[common] = byte + 1;
                return sep;
            }
        }
        // Else a key strictly above `from` where there is one: rusty-leveldb's own point
        // lookup wants the separator above the block's last key (table_reader.rs `Table::get`,
        // behind `DB::get`, which other programs opening this directory may use). `from + [0]`
        // is below `to` unless `to` is exactly that, and then `from` is the only separator.
        let mut sep = from.to_vec();
        sep.push(0);
        if sep.as_slice() < to {
            sep
        } else {
            from.to_vec()
        }
    }

    fn find_short_succ(&self, key: &[u8]) -> Vec<u8> {
        rusty_leveldb::DefaultCmp.find_short_succ(key)
    }

    fn id(&self) -> &'static str {
        rusty_leveldb::DefaultCmp.id()
    }
}

#[cfg(test)]
mod tests;

/// The table files in `dir` and the bytes of its log files (failover trace only; unreadable
/// entries count as nothing).
fn table_files(dir: &Path) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let (mut tables, mut log_bytes) = (0, 0);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".ldb") || name.ends_with(".sst") {
            tables += 1;
        } else if name.ends_with(".log") {
            log_bytes += entry.metadata().map_or(0, |m| m.len());
        }
    }
    (tables, log_bytes)
}
