//! The RocksDB engine for rave.
//!
//! [`RocksDbBackend`] opens a directory as a RocksDB database (its files live directly in the
//! directory, next to rave's own `rave-engine` record and `rave.lock`) and runs it on a
//! dedicated thread through [`rave_api::engine_thread::EngineStore`], which adds group commit
//! and chunked iterators.
//!
//! - Writes are one atomic `WriteBatch` each, through the write-ahead log. The WAL is on and
//!   flushed to the OS by every write, so an acknowledged write survives the crash of the
//!   process; the `sync` open option adds an fsync, so it survives power loss too.
//! - Iterators read an explicit RocksDB snapshot taken when they are created.
//! - Point reads (`get`, `get_many`) run on the caller's thread, not the engine thread, through
//!   a [`SharedReader`] (RocksDB's `DB` is thread-safe), so they never queue behind a write. A
//!   write is visible to every reader once RocksDB's `Write` returns, before it is acknowledged.
//! - RocksDB errors become typed [`rave_api::Error`]s; a corrupt database is an error, never a
//!   panic.

#![warn(missing_docs)]

mod error;
mod iter;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rave_api::engine_thread::{Engine, EngineIter, SharedReader};
use rave_api::{BatchOp, Capabilities, EngineBackend, Error, OpenOptions, Range, Result};
use rocksdb::{DB, Options, WriteBatch, WriteOptions};

use crate::error::Op;
use crate::iter::RocksIter;

/// The engine's name, as recorded in the directory.
const NAME: &str = "rocksdb";

/// How many of RocksDB's informational `LOG` files to keep in the directory.
const KEEP_LOG_FILES: usize = 4;

/// The RocksDB engine: opens a directory as a [`KvStore`](rave_api::KvStore).
///
/// ```no_run
/// use rave_api::{Backend, OpenOptions};
/// use rave_backend_rocksdb::RocksDbBackend;
///
/// let store = RocksDbBackend.open("/tmp/db".as_ref(), &OpenOptions::default())?;
/// # Ok::<(), rave_api::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RocksDbBackend;

impl RocksDbBackend {
    /// The RocksDB backend.
    pub const fn new() -> Self {
        RocksDbBackend
    }
}

impl EngineBackend for RocksDbBackend {
    const NAME: &'static str = NAME;
    type Engine = RocksEngine;

    // Point reads run on the callers' threads through the shared reader.
    const CAPABILITIES: Capabilities = Capabilities::full().with_concurrent_reads(true);

    fn open_engine(dir: &Path, options: &OpenOptions) -> Result<RocksEngine> {
        RocksEngine::open(dir.to_path_buf(), options)
    }
}

/// An open RocksDB database, driven from the engine thread.
pub struct RocksEngine {
    /// The engine's own handle. At close it is the last one (the reader's is taken first), so
    /// dropping it closes the database and releases RocksDB's `LOCK`.
    db: Arc<DB>,
    reader: Arc<RocksReader>,
    write_options: WriteOptions,
    path: PathBuf,
}

/// Point reads from any thread.
struct RocksReader {
    /// The database, `None` once the engine closes. Reads hold the read lock while they run and
    /// the close takes the write lock: it waits for them, and a copy of this reader kept past the
    /// close cannot keep the database (and its `LOCK`) open; it fails with [`Error::Closed`].
    db: RwLock<Option<Arc<DB>>>,
    path: PathBuf,
}

impl RocksReader {
    fn with_db<T>(&self, f: impl FnOnce(&DB) -> Result<T>) -> Result<T> {
        // Nothing panics under the write guard, so a poisoned lock still holds a valid slot.
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match db.as_deref() {
            Some(db) => f(db),
            None => Err(Error::Closed),
        }
    }
}

impl SharedReader for RocksReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with_db(|db| {
            db.get(key)
                .map_err(|e| error::map(&e, Op::Read, &self.path))
        })
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        // One MultiGet call: RocksDB batches the lookups and reads them from a single view.
        self.with_db(|db| {
            db.multi_get(keys)
                .into_iter()
                .map(|value| value.map_err(|e| error::map(&e, Op::Read, &self.path)))
                .collect()
        })
    }
}

impl RocksEngine {
    fn open(path: PathBuf, options: &OpenOptions) -> Result<Self> {
        let mut db_options = Options::default();
        db_options.create_if_missing(options.create_if_missing);
        db_options.set_error_if_exists(options.error_if_exists);
        // Durability against a process crash rests on these two defaults, set explicitly so that
        // nobody "optimises" them away: every write goes through the WAL, and RocksDB hands the
        // WAL record to the OS (write(2)) before the write returns instead of buffering it in
        // userspace until a manual flush. A SIGKILL then loses nothing that was acknowledged.
        db_options.set_manual_wal_flush(false);
        db_options.set_keep_log_file_num(KEEP_LOG_FILES);
        let db = DB::open(&db_options, &path).map_err(|e| error::map(&e, Op::Open, &path))?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(false);
        // With `sync`, RocksDB fsyncs the WAL before acknowledging: durable against power loss.
        write_options.set_sync(options.sync);
        tracing::debug!(path = %path.display(), sync = options.sync, "rocksdb opened");
        let db = Arc::new(db);
        Ok(RocksEngine {
            reader: Arc::new(RocksReader {
                db: RwLock::new(Some(db.clone())),
                path: path.clone(),
            }),
            db,
            write_options,
            path,
        })
    }
}

impl Engine for RocksEngine {
    type Iter<'a> = RocksIter<'a>;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.reader.get(key)
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.reader.get_many(keys)
    }

    fn shared_reader(&self) -> Option<Arc<dyn SharedReader>> {
        Some(self.reader.clone())
    }

    fn write(&self, ops: &[BatchOp]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                BatchOp::Put { key, value } => batch.put(key, value),
                BatchOp::Del { key } => batch.delete(key),
            }
        }
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(|e| error::map(&e, Op::Write, &self.path))
    }

    /// RocksDB's native range deletion (`WriteBatch::delete_range`: one tombstone per range,
    /// `[from, to)`), with `ops`, in one atomic `WriteBatch`: no key of the ranges is listed.
    /// A range without an upper bound ends after its last key, found with one seek.
    fn delete_ranges_and_write(&self, ranges: &[Range], ops: &[BatchOp]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for range in ranges {
            let from = match range.lower() {
                Bound::Included(k) => k.to_vec(),
                Bound::Excluded(k) => iter::successor(k),
                Bound::Unbounded => Vec::new(),
            };
            let to = match range.upper() {
                Bound::Excluded(k) => k.to_vec(),
                Bound::Included(k) => iter::successor(k),
                Bound::Unbounded => {
                    // The engine thread is the only writer: the last key now is the last key
                    // when the batch applies.
                    let mut last = RocksIter::new(&self.db, &range.clone().reverse());
                    match last.next_entry()? {
                        Some((key, _)) => iter::successor(&key),
                        None => continue,
                    }
                }
            };
            if from < to {
                batch.delete_range(from, to);
            }
        }
        for op in ops {
            match op {
                BatchOp::Put { key, value } => batch.put(key, value),
                BatchOp::Del { key } => batch.delete(key),
            }
        }
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(|e| error::map(&e, Op::Write, &self.path))
    }

    fn iter<'a>(&'a self, range: &Range) -> Result<RocksIter<'a>> {
        Ok(RocksIter::new(&self.db, range))
    }

    fn close(self) -> Result<()> {
        // Waits for shared reads in progress; later ones fail with `Closed`.
        let shared = self
            .reader
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(shared);
        // Without `sync`, acknowledged writes may still sit in the OS page cache; a clean close
        // makes them durable against power loss too, which costs one fsync.
        let flushed = self
            .db
            .flush_wal(true)
            .map_err(|e| error::map(&e, Op::Close, &self.path));
        if let Err(e) = &flushed {
            tracing::warn!(path = %self.path.display(), error = %e, "rocksdb close: WAL sync failed");
        }
        // Dropping the last handle closes the DB and releases RocksDB's LOCK file. Iterators
        // (which borrow the engine) are gone, and the reader's handle was taken above.
        let closed = match Arc::try_unwrap(self.db) {
            Ok(db) => {
                drop(db);
                Ok(())
            }
            Err(db) => {
                tracing::error!(
                    path = %self.path.display(),
                    handles = Arc::strong_count(&db),
                    "rocksdb close: the database is still in use"
                );
                Err(Error::other(format!(
                    "rocksdb close {}: the database is still in use",
                    self.path.display()
                )))
            }
        };
        tracing::debug!(path = %self.path.display(), ok = closed.is_ok(), "rocksdb closed");
        flushed.and(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the shared reader kept after the engine closed neither keeps the database (and
    /// its `LOCK`) open nor reads a closed database: it fails with `Closed`.
    #[test]
    fn a_leftover_reader_does_not_hold_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let engine = RocksEngine::open(path.clone(), &OpenOptions::default()).unwrap();
        engine.write(&[BatchOp::put("k", "v")]).unwrap();
        let reader = engine.shared_reader().unwrap();
        assert_eq!(reader.get(b"k").unwrap(), Some(b"v".to_vec()));
        engine.close().unwrap();
        assert!(matches!(reader.get(b"k"), Err(Error::Closed)));
        assert!(matches!(
            reader.get_many(&[b"k".to_vec()]),
            Err(Error::Closed)
        ));
        let engine = RocksEngine::open(path, &OpenOptions::default()).unwrap();
        assert_eq!(engine.get(b"k").unwrap(), Some(b"v".to_vec()));
        engine.close().unwrap();
    }
}
