//! The redb engine for rave.
//!
//! [`RedbBackend`] keeps a database directory's data in one file, `<dir>/data.redb`, holding one
//! table of byte keys to byte values, and runs it on a dedicated thread through
//! [`rave_api::engine_thread::EngineStore`] (which adds group commit and chunked iterators).
//!
//! - Every commit uses [`redb::Durability::Immediate`]: redb fsyncs before the commit returns, so
//!   an acknowledged write survives a process crash and power loss alike. redb offers nothing in
//!   between (a `Durability::None` commit is lost on a crash until a later immediate commit), so
//!   the `sync` open option changes nothing here; group commit shares each fsync among writers.
//! - A batch is one write transaction: all of it or nothing.
//! - Iterators walk a read transaction taken when they are created (redb's MVCC snapshot),
//!   lazily, in either direction.
//! - A file that is not a redb database, or is damaged, is [`rave_api::ErrorKind::Corruption`];
//!   redb panics on some damage, and those panics are caught and reported the same way.

#![warn(missing_docs)]

mod error;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use rave_api::engine_thread::{Engine, EngineIter, EngineStore};
use rave_api::{Backend, BatchOp, Capabilities, Error, OpenOptions, Range, Result};
use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, TableDefinition};

/// The engine's name, as recorded in the directory.
const NAME: &str = "redb";

/// The database file inside the directory (`rave_api::dir::detect` knows this name).
pub const DATA_FILE: &str = "data.redb";

/// The one table: byte keys to byte values, ordered by unsigned lexicographic byte order (redb's
/// order for `&[u8]`).
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rave");

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

impl Backend for RedbBackend {
    type Store = EngineStore;

    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }

    fn open(&self, path: &Path, options: &OpenOptions) -> Result<EngineStore> {
        rave_api::dir::prepare(path, options, NAME)?;
        let dir = path.to_path_buf();
        let options = options.clone();
        EngineStore::spawn(NAME, move || RedbEngine::open(&dir, &options))
    }
}

type Table = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// An open redb database, driven from the engine thread.
pub struct RedbEngine {
    db: Database,
    file: PathBuf,
    /// A read snapshot shared by point reads until the next write, so that a run of `get`s does
    /// not begin one read transaction each. Only the engine thread touches it, and every write
    /// drops it, so a read always sees every write acknowledged before it.
    reader: RefCell<Option<Table>>,
}

impl RedbEngine {
    /// Opens (or, with `create_if_missing`, creates) the database file in directory `dir`, which
    /// [`rave_api::dir::prepare`] has already checked. Blocking.
    pub fn open(dir: &Path, options: &OpenOptions) -> Result<Self> {
        let file = dir.join(DATA_FILE);
        let db = error::guard("open", &file, || {
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
                e => error::map(e, "open", &file),
            })
        })?;
        let engine = RedbEngine {
            db,
            file,
            reader: RefCell::new(None),
        };
        // Create the table now, so that reads on an empty database find it.
        engine.commit("create table", |_| Ok(()))?;
        tracing::debug!(file = %engine.file.display(), "redb opened");
        Ok(engine)
    }

    /// Runs `f` in a write transaction on the table and commits it durably.
    fn commit(
        &self,
        what: &str,
        f: impl FnOnce(&mut redb::Table<&'static [u8], &'static [u8]>) -> Result<()>,
    ) -> Result<()> {
        // The cached snapshot would only pin pages this commit could otherwise reuse.
        self.reader.borrow_mut().take();
        let file = &self.file;
        error::guard(what, file, || {
            let mut txn = self
                .db
                .begin_write()
                .map_err(|e| error::map(e, what, file))?;
            // Immediate is redb's default; it is set here because crash durability rests on it:
            // the commit fsyncs before returning. Dropping `txn` on an error aborts it.
            txn.set_durability(Durability::Immediate)
                .map_err(|e| error::map(e, what, file))?;
            // After a crash the next leader opens this file; without quick repair redb walks the
            // whole database to rebuild its allocator (failover time grew with the file: ~300 ms
            // at 160 MB in the torture runs). Saving the allocator state with each commit keeps
            // recovery near-constant; group commit amortises the extra cost.
            txn.set_quick_repair(true);
            {
                let mut table = txn
                    .open_table(TABLE)
                    .map_err(|e| error::map(e, what, file))?;
                f(&mut table)?;
            }
            txn.commit().map_err(|e| error::map(e, what, file))
        })
    }

    /// Runs `f` on the current read snapshot of the table.
    fn read<T>(&self, what: &str, f: impl FnOnce(&Table) -> Result<T>) -> Result<T> {
        let file = &self.file;
        error::guard(what, file, || {
            let mut reader = self.reader.borrow_mut();
            let table = match reader.take() {
                Some(table) => table,
                None => {
                    let txn = self
                        .db
                        .begin_read()
                        .map_err(|e| error::map(e, what, file))?;
                    txn.open_table(TABLE)
                        .map_err(|e| error::map(e, what, file))?
                }
            };
            let result = f(&table);
            // Keep the snapshot for the next read unless the read failed.
            if result.is_ok() {
                *reader = Some(table);
            }
            result
        })
    }
}

fn lookup(table: &Table, key: &[u8], file: &Path) -> Result<Option<Vec<u8>>> {
    Ok(table
        .get(key)
        .map_err(|e| error::map(e, "get", file))?
        .map(|value| value.value().to_vec()))
}

impl Engine for RedbEngine {
    type Iter<'a> = RedbIter<'a>;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read("get", |table| lookup(table, key, &self.file))
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        // One snapshot for all of them.
        self.read("get", |table| {
            keys.iter()
                .map(|key| lookup(table, key, &self.file))
                .collect()
        })
    }

    fn write(&self, ops: &[BatchOp]) -> Result<()> {
        let file = &self.file;
        self.commit("write", |table| {
            for op in ops {
                match op {
                    BatchOp::Put { key, value } => {
                        table
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(|e| error::map(e, "write", file))?;
                    }
                    BatchOp::Del { key } => {
                        table
                            .remove(key.as_slice())
                            .map_err(|e| error::map(e, "write", file))?;
                    }
                }
            }
            Ok(())
        })
    }

    fn iter<'a>(&'a self, range: &Range) -> Result<RedbIter<'a>> {
        // A fresh read transaction: the snapshot is the state after every acknowledged write.
        let file = &self.file;
        let inner = error::guard("iterate", file, || {
            let txn = self
                .db
                .begin_read()
                .map_err(|e| error::map(e, "iterate", file))?;
            let table = txn
                .open_table(TABLE)
                .map_err(|e| error::map(e, "iterate", file))?;
            // The range owns its read transaction (reference counted), so it outlives both.
            table
                .range::<&[u8]>((range.lower(), range.upper()))
                .map_err(|e| error::map(e, "iterate", file))
        })?;
        Ok(RedbIter {
            inner: Some(inner),
            reverse: range.reverse,
            file,
        })
    }

    fn close(self) -> Result<()> {
        let RedbEngine { db, file, reader } = self;
        drop(reader);
        let result = error::guard("close", &file, || {
            db.close().map_err(|e| error::map(e, "close", &file))
        });
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
        let result = error::guard("iterate", file, || {
            let item = if reverse {
                inner.next_back()
            } else {
                inner.next()
            };
            match item {
                None => Ok(None),
                Some(Ok((key, value))) => Ok(Some((key.value().to_vec(), value.value().to_vec()))),
                Some(Err(e)) => Err(error::map(e, "iterate", file)),
            }
        });
        if result.is_err() {
            self.inner = None;
        }
        result
    }
}
