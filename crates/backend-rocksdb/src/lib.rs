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
//! - RocksDB errors become typed [`rave_api::Error`]s; a corrupt database is an error, never a
//!   panic.

#![warn(missing_docs)]

mod error;
mod iter;

use std::path::{Path, PathBuf};

use rave_api::engine_thread::{Engine, EngineStore};
use rave_api::{Backend, BatchOp, Capabilities, OpenOptions, Range, Result};
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

impl Backend for RocksDbBackend {
    type Store = EngineStore;

    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }

    fn open(&self, path: &Path, options: &OpenOptions) -> Result<EngineStore> {
        rave_api::dir::prepare(path, options, NAME)?;
        let path = path.to_path_buf();
        let options = options.clone();
        EngineStore::spawn(NAME, move || RocksEngine::open(path, &options))
    }
}

/// An open RocksDB database, driven from the engine thread.
struct RocksEngine {
    db: DB,
    write_options: WriteOptions,
    path: PathBuf,
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
        Ok(RocksEngine {
            db,
            write_options,
            path,
        })
    }
}

impl Engine for RocksEngine {
    type Iter<'a> = RocksIter<'a>;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get(key)
            .map_err(|e| error::map(&e, Op::Read, &self.path))
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        // One MultiGet call: RocksDB batches the lookups and reads them from a single view.
        self.db
            .multi_get(keys)
            .into_iter()
            .map(|value| value.map_err(|e| error::map(&e, Op::Read, &self.path)))
            .collect()
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

    fn iter<'a>(&'a self, range: &Range) -> Result<RocksIter<'a>> {
        Ok(RocksIter::new(&self.db, range))
    }

    fn close(self) -> Result<()> {
        // Without `sync`, acknowledged writes may still sit in the OS page cache; a clean close
        // makes them durable against power loss too, which costs one fsync.
        let flushed = self
            .db
            .flush_wal(true)
            .map_err(|e| error::map(&e, Op::Close, &self.path));
        if let Err(e) = &flushed {
            tracing::warn!(path = %self.path.display(), error = %e, "rocksdb close: WAL sync failed");
        }
        // Dropping the DB closes it and releases RocksDB's LOCK file.
        drop(self.db);
        tracing::debug!(path = %self.path.display(), "rocksdb closed");
        flushed
    }
}
