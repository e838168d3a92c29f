//! The redb engine for rave.
//!
//! [`RedbBackend`] keeps a database directory's data in one file, `<dir>/data.redb`, holding one
//! table of byte keys to byte values, and runs it on a dedicated thread through
//! [`rave_api::engine_thread::EngineStore`] (which adds group commit and chunked iterators).
//!
//! - Every acknowledged write survives a process crash and power loss alike (the `sync` open
//!   option changes nothing here), through a journal ([`rave_api::journal`], the file
//!   `<dir>/journal`): each commit is first written there as one record and synced (one
//!   `fdatasync` of a file rewritten in place), then committed to redb with
//!   [`redb::Durability::None`] (no sync), with the record's number. A durable redb commit (two
//!   fsyncs with quick repair, and copy-on-write pages) is made only as a checkpoint: when the
//!   journal is full (1 MiB), for a commit too large for it, and at close. After a crash the
//!   file holds its last checkpoint, and the open applies the journal's records after it again
//!   (without a sync: they stay in the journal).
//!   Group commit shares each sync among writers.
//! - A batch is one write transaction: all of it or nothing.
//! - Iterators walk a read transaction taken when they are created (redb's MVCC snapshot),
//!   lazily, in either direction.
//! - Point reads (`get`, `get_many`) run on the caller's thread, not the engine thread, through
//!   a [`SharedReader`]: redb's read transactions are independent of the writer, so reads never
//!   queue behind a commit's fsync. They share one read snapshot until the next commit.
//! - A file that is not a redb database, or is damaged, is [`rave_api::ErrorKind::Corruption`];
//!   redb panics on some damage, and those panics are caught and reported the same way. Each
//!   value is stored with a checksum of its entry, checked on every read (redb does not check
//!   its pages when it reads them; see the `checksum` module).

#![warn(missing_docs)]

mod checksum;
mod error;
mod lsn;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use rave_api::engine_thread::{Engine, EngineIter, SharedReader};
use rave_api::journal::{self, Journal};
use rave_api::{BatchOp, Capabilities, EngineBackend, EngineOp, Error, OpenOptions, Range, Result};
use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase};

use crate::checksum::TABLE;

/// The engine's name, as recorded in the directory.
const NAME: &str = "redb";

/// The database file inside the directory (`rave_api::dir::detect` knows this name).
pub const DATA_FILE: &str = "data.redb";

/// The journal file inside the directory (see [`rave_api::journal`]).
pub const JOURNAL_FILE: &str = "journal";

/// The redb engine: opens a directory as a [`KvStore`](rave_api::KvStore).
///
/// ```no_run
/// use rave_api::{Backend, OpenOptions};
/// use rave_backend_redb::RedbBackend;
///
/// let store = RedbBackend.open("/tmp/db".as_ref(), &OpenOptions::default())?;
/// # Ok::<(), rave_api::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedbBackend;

impl RedbBackend {
    /// The redb backend.
    pub const fn new() -> Self {
        RedbBackend
    }
}

impl EngineBackend for RedbBackend {
    const NAME: &'static str = NAME;
    type Engine = RedbEngine;

    // Point reads run on the callers' threads through the shared reader.
    const CAPABILITIES: Capabilities = Capabilities::full().with_concurrent_reads(true);

    fn open_engine(dir: &Path, options: &OpenOptions) -> Result<RedbEngine> {
        RedbEngine::open(dir, options)
    }
}

type Table = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// An open redb database, driven from the engine thread.
pub struct RedbEngine {
    shared: Arc<Shared>,
    /// Used by the engine thread only; a mutex because the engine's methods take `&self`.
    journal: Mutex<Journal>,
}

/// The database and its cached read snapshot, shared by the engine thread and the
/// [`SharedReader`] that serves point reads on the callers' threads.
struct Shared {
    file: PathBuf,
    /// The database, `None` once closed. Every use holds the read lock while it runs, and
    /// [`Engine::close`] takes the write lock to remove it: the close waits for reads in progress,
    /// and no copy of the reader left alive anywhere can keep the file (and redb's lock on it)
    /// open afterwards; such a copy then fails with [`Error::Closed`].
    db: RwLock<Option<Database>>,
    /// Counts commits. The engine thread bumps it after each commit, before `write` returns (so
    /// before the write is acknowledged): a cached snapshot of an older generation may miss an
    /// acknowledged write, and is not used.
    generation: AtomicU64,
    /// A read snapshot shared by point reads until the next commit, so that a run of `get`s does
    /// not begin one read transaction each. The engine drops it before each commit, as it would
    /// only pin pages the commit could otherwise reuse.
    snapshot: Mutex<Option<Snapshot>>,
}

/// A read snapshot of the table, as of commit `generation` (or later).
struct Snapshot {
    generation: u64,
    table: Arc<Table>,
}

impl Shared {
    /// Runs `f` on the database, or fails with [`Error::Closed`] once it is closed.
    fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        // Nothing panics under the write guard (see `close`), so a poisoned lock still holds a
        // valid slot.
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match db.as_ref() {
            Some(db) => f(db),
            None => Err(Error::Closed),
        }
    }

    fn snapshot_slot(&self) -> MutexGuard<'_, Option<Snapshot>> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the cached snapshot.
    fn drop_snapshot(&self) {
        let old = self.snapshot_slot().take();
        // Dropped outside the lock: ending a read transaction takes redb's own locks.
        drop(old);
    }

    /// Runs `f` on a read snapshot that holds every commit made before the call, from any thread.
    fn read<T>(&self, op: EngineOp, f: impl FnOnce(&Table) -> Result<T>) -> Result<T> {
        let file = &self.file;
        error::guard(op, file, || {
            self.with_db(|db| {
                // Loaded before the snapshot is looked up or taken: a snapshot taken after this
                // load holds every commit counted in `generation`.
                let generation = self.generation.load(Ordering::Acquire);
                let cached = match self.snapshot_slot().as_ref() {
                    Some(snapshot) if snapshot.generation == generation => {
                        Some(snapshot.table.clone())
                    }
                    _ => None,
                };
                let table = match cached {
                    Some(table) => table,
                    None => {
                        let txn = db.begin_read().map_err(|e| error::map(e, op, file))?;
                        let table =
                            Arc::new(txn.open_table(TABLE).map_err(|e| error::map(e, op, file))?);
                        // Cached unless a commit came in the meantime (the next read would not
                        // use it, and it would pin pages).
                        if self.generation.load(Ordering::Acquire) == generation {
                            let old = self.snapshot_slot().replace(Snapshot {
                                generation,
                                table: table.clone(),
                            });
                            drop(old);
                        }
                        table
                    }
                };
                let result = f(&table);
                if result.is_err() {
                    // A failed read does not leave its snapshot for the next one.
                    let mut slot = self.snapshot_slot();
                    let old = match slot.as_ref() {
                        Some(snapshot) if Arc::ptr_eq(&snapshot.table, &table) => slot.take(),
                        _ => None,
                    };
                    drop(slot);
                    drop(old);
                }
                result
            })
        })
    }
}

impl SharedReader for Shared {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read(EngineOp::Read, |table| lookup(table, key, &self.file))
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        // One snapshot for all of them.
        self.read(EngineOp::Read, |table| {
            keys.iter()
                .map(|key| lookup(table, key, &self.file))
                .collect()
        })
    }
}

impl RedbEngine {
    /// Opens (or, with `create_if_missing`, creates) the database file in directory `dir`, which
    /// [`rave_api::dir::prepare`] has already checked. Blocking.
    pub fn open(dir: &Path, options: &OpenOptions) -> Result<Self> {
        let file = dir.join(DATA_FILE);
        let db = error::guard(EngineOp::Open, &file, || {
            let builder = redb::Builder::new();
            let opened = if options.create_if_missing {
                // Creates the file, or opens it when it holds a database.
                builder.create(&file)
            } else {
                builder.open(&file)
            };
            opened.map_err(|e| match e {
                redb::DatabaseError::Storage(redb::StorageError::Io(io))
                    if io.kind() == std::io::ErrorKind::NotFound =>
                {
                    Error::DoesNotExist {
                        path: dir.to_path_buf(),
                    }
                }
                e => error::map(e, EngineOp::Open, &file),
            })
        })?;
        let shared = Arc::new(Shared {
            file,
            db: RwLock::new(Some(db)),
            generation: AtomicU64::new(0),
            snapshot: Mutex::new(None),
        });
        // Create the table now, so that reads on an empty database find it; give the values of
        // a file written before checksums theirs.
        let applied = error::guard(EngineOp::Open, &shared.file, || {
            shared.with_db(|db| {
                checksum::prepare(db, &shared.file)?;
                lsn::load(db, &shared.file)
            })
        })?;
        let (journal, records) =
            Journal::open(&dir.join(JOURNAL_FILE), journal::DEFAULT_CAPACITY, applied)?;
        let engine = RedbEngine {
            shared,
            journal: Mutex::new(journal),
        };
        if let Some(last) = records.last() {
            // The commits acknowledged after the file's last checkpoint, applied again before
            // anything is served. No sync: they stay in the journal until the next checkpoint.
            let last = last.lsn;
            let file = &engine.shared.file;
            engine.commit(EngineOp::Open, Durability::None, last, |table| {
                for record in &records {
                    remove_ranges(table, &record.ranges, file)?;
                    apply(table, &record.ops, file)?;
                }
                Ok(())
            })?;
            tracing::info!(file = %file.display(), records = records.len(), lsn = last, "redb: journal replayed");
        }
        tracing::debug!(file = %engine.shared.file.display(), "redb opened");
        Ok(engine)
    }

    fn journal(&self) -> MutexGuard<'_, Journal> {
        // Nothing panics while it is held but the journal's own I/O calls, which leave it
        // consistent (a record is counted only once written).
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits `ranges` then `ops`: journaled and synced, then committed to redb without a
    /// sync; or, when the journal has no room for it, as a durable redb commit (a checkpoint).
    fn write_journaled(&self, ranges: &[Range], ops: &[BatchOp]) -> Result<()> {
        let file = &self.shared.file;
        let apply_all = |table: &mut redb::Table<&'static [u8], &'static [u8]>| {
            remove_ranges(table, ranges, file)?;
            apply(table, ops, file)
        };
        let mut journal = self.journal();
        match journal.append(ranges, ops)? {
            Some(lsn) => {
                let result = self.commit(EngineOp::Write, Durability::None, lsn, apply_all);
                if let Err(err) = &result {
                    // Not applied: the record must not be applied at the next open either.
                    if let Err(revoke) = journal.revoke() {
                        tracing::error!(%err, %revoke, "redb refused a journaled write, and the journal could not take it back");
                        return Err(revoke);
                    }
                }
                result
            }
            None => {
                let lsn = journal.last_lsn();
                self.commit(EngineOp::Write, Durability::Immediate, lsn, apply_all)?;
                journal.checkpointed();
                Ok(())
            }
        }
    }

    /// Runs `f` in a write transaction on the table and commits it with `durability`, recording
    /// the journal's `lsn` in the same commit.
    fn commit(
        &self,
        op: EngineOp,
        durability: Durability,
        lsn: u64,
        f: impl FnOnce(&mut redb::Table<&'static [u8], &'static [u8]>) -> Result<()>,
    ) -> Result<()> {
        let shared = &self.shared;
        // The cached snapshot would only pin pages this commit could otherwise reuse.
        shared.drop_snapshot();
        let file = &shared.file;
        let result = error::guard(op, file, || {
            shared.with_db(|db| {
                let mut txn = db.begin_write().map_err(|e| error::map(e, op, file))?;
                // Dropping `txn` on an error aborts it.
                txn.set_durability(durability)
                    .map_err(|e| error::map(e, op, file))?;
                // After a crash the next leader opens this file; without quick repair redb walks
                // the whole database to rebuild its allocator (failover time grew with the file:
                // ~300 ms at 160 MB in the torture runs). Saving the allocator state with each
                // durable commit keeps recovery near-constant; checkpoints are rare.
                txn.set_quick_repair(true);
                {
                    let mut table = txn.open_table(TABLE).map_err(|e| error::map(e, op, file))?;
                    f(&mut table)?;
                }
                lsn::store(&txn, lsn, file)?;
                txn.commit().map_err(|e| error::map(e, op, file))
            })
        });
        // After the commit (failed or not: a snapshot taken during it is stale either way) and
        // before `write` returns, hence before the engine thread acknowledges the write: reads
        // issued after the acknowledgement take a snapshot that holds it.
        shared.generation.fetch_add(1, Ordering::Release);
        result
    }
}

/// Removes every key of `ranges` from `table` inside a write transaction.
fn remove_ranges(
    table: &mut redb::Table<&'static [u8], &'static [u8]>,
    ranges: &[Range],
    file: &Path,
) -> Result<()> {
    for range in ranges {
        table
            .retain_in::<&[u8], _>((range.lower(), range.upper()), |_, _| false)
            .map_err(|e| error::map(e, EngineOp::Write, file))?;
    }
    Ok(())
}

/// Applies `ops` to `table` inside a write transaction.
fn apply(
    table: &mut redb::Table<&'static [u8], &'static [u8]>,
    ops: &[BatchOp],
    file: &Path,
) -> Result<()> {
    for op in ops {
        match op {
            BatchOp::Put { key, value } => checksum::insert(table, key, value, file)?,
            BatchOp::Del { key } => {
                table
                    .remove(key.as_slice())
                    .map_err(|e| error::map(e, EngineOp::Write, file))?;
            }
        }
    }
    Ok(())
}

fn lookup(table: &Table, key: &[u8], file: &Path) -> Result<Option<Vec<u8>>> {
    table
        .get(key)
        .map_err(|e| error::map(e, EngineOp::Read, file))?
        .map(|value| checksum::verified(key, value.value(), file))
        .transpose()
}

impl Engine for RedbEngine {
    type Iter<'a> = RedbIter<'a>;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.shared.get(key)
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.shared.get_many(keys)
    }

    fn shared_reader(&self) -> Option<Arc<dyn SharedReader>> {
        Some(self.shared.clone())
    }

    fn write(&self, ops: &[BatchOp]) -> Result<()> {
        self.write_journaled(&[], ops)
    }

    /// redb's range removal (`retain_in`), then `ops`, in one write transaction: atomic, and
    /// rave lists no key, so its memory does not grow with the range (the transaction's dirty
    /// pages are redb's own, as for any large write; the journal record holds the ranges, not
    /// their keys).
    fn delete_ranges_and_write(&self, ranges: &[Range], ops: &[BatchOp]) -> Result<()> {
        self.write_journaled(ranges, ops)
    }

    fn iter<'a>(&'a self, range: &Range) -> Result<RedbIter<'a>> {
        // A fresh read transaction: the snapshot is the state after every acknowledged write.
        let file = &self.shared.file;
        let inner = error::guard(EngineOp::Iterate, file, || {
            self.shared.with_db(|db| {
                let txn = db
                    .begin_read()
                    .map_err(|e| error::map(e, EngineOp::Iterate, file))?;
                let table = txn
                    .open_table(TABLE)
                    .map_err(|e| error::map(e, EngineOp::Iterate, file))?;
                // The range owns its read transaction (reference counted), so it outlives both.
                table
                    .range::<&[u8]>((range.lower(), range.upper()))
                    .map_err(|e| error::map(e, EngineOp::Iterate, file))
            })
        })?;
        Ok(RedbIter {
            inner: Some(inner),
            reverse: range.reverse,
            file,
        })
    }

    fn close(self) -> Result<()> {
        // A checkpoint, so that the next open has no journal to apply; if it fails, that open
        // applies it.
        let (pending, lsn) = {
            let journal = self.journal();
            (journal.pending(), journal.last_lsn())
        };
        if pending {
            match self.commit(EngineOp::Close, Durability::Immediate, lsn, |_| Ok(())) {
                Ok(()) => self.journal().checkpointed(),
                Err(err) => {
                    tracing::warn!(%err, "redb: no checkpoint at close; the next open replays the journal")
                }
            }
        }
        let shared = &self.shared;
        // Waits for shared reads in progress; later ones fail with `Closed`. The store has let go
        // of its reader already, but a copy kept elsewhere must not hold the file open either.
        let db = shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        shared.drop_snapshot();
        let file = &shared.file;
        let result = match db {
            Some(db) => error::guard(EngineOp::Close, file, || {
                db.close().map_err(|e| error::map(e, EngineOp::Close, file))
            }),
            None => Ok(()),
        };
        tracing::debug!(file = %file.display(), ok = result.is_ok(), "redb closed");
        result
    }
}

/// A cursor over a redb read snapshot.
pub struct RedbIter<'a> {
    /// `None` after an error, so that a failed cursor ends instead of failing forever.
    inner: Option<redb::Range<'static, &'static [u8], &'static [u8]>>,
    reverse: bool,
    file: &'a Path,
}

impl EngineIter for RedbIter<'_> {
    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(None);
        };
        let reverse = self.reverse;
        let file = self.file;
        let result = error::guard(EngineOp::Iterate, file, || {
            let item = if reverse {
                inner.next_back()
            } else {
                inner.next()
            };
            match item {
                None => Ok(None),
                Some(Ok((key, value))) => {
                    let value = checksum::verified(key.value(), value.value(), file)?;
                    Ok(Some((key.value().to_vec(), value)))
                }
                Some(Err(e)) => Err(error::map(e, EngineOp::Iterate, file)),
            }
        });
        if result.is_err() {
            self.inner = None;
        }
        result
    }
}
