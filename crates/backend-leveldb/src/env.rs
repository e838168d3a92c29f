//! The file-system environment rusty-leveldb runs on: its own `PosixDiskEnv`, with two fixes.
//!
//! 1. **Snapshot files stay while iterators read them.** An iterator reads the table files of the
//!    version that was current when it was created, opening them lazily (version.rs
//!    `VersionIter::advance`/`seek` go through the table cache). A compaction that runs meanwhile
//!    deletes the files it replaced (db_impl.rs `delete_obsolete_files` keeps only the *current*
//!    version's files), and the iterator then silently stops early: a failed table open just
//!    ends `VersionIter::advance`. So a table file's deletion waits until every iterator created
//!    before the deletion was asked for is dropped: iterators created later read a newer
//!    version, which no longer holds the file. Overlapping iterators therefore cannot keep files
//!    forever: the disk held is what was compacted away during the life of the oldest open
//!    iterator. (If the process dies first, the next open deletes the leftovers as obsolete.)
//! 2. **`sync` really syncs.** rusty-leveldb's "sync" write only flushes its `BufWriter` into the
//!    `File` (log.rs `LogWriter::flush` → `BufWriter::flush`; `File::flush` is a no-op): the data
//!    reaches the OS but is never fsynced. With the `sync` open option, files written through
//!    this environment fsync on every flush (the log after each write, a table when it is
//!    finished, the MANIFEST after each edit) and when dropped (the temporary `CURRENT` file,
//!    which is written and closed without a flush), and the directory is fsynced after a file is
//!    created or renamed, so that the new names survive power loss too.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rave_api::Error;
use rusty_leveldb::env::{Env, FileLock, Logger, RandomAccess};
use rusty_leveldb::{PosixDiskEnv, Result, Status, StatusCode};

use crate::checked_table::{CheckedTable, FOOTER_LEN};
use crate::error::{self, Op};

/// The state the engine shares with its environment (all on the engine thread).
#[derive(Debug, Default)]
pub(crate) struct Files {
    /// The number the next pin takes; pins are numbered in creation order.
    next_pin: Cell<u64>,
    /// The pins (open iterators) alive now.
    live: RefCell<BTreeSet<u64>>,
    /// Table files whose deletion waits, each with the number of the first pin created after
    /// the deletion was first asked for: only older pins may read the file. (Every compaction
    /// asks again to delete every obsolete file still on disk; the first mark is kept.)
    deferred: RefCell<BTreeMap<PathBuf, u64>>,
    /// The first failed table read since the engine last asked (see the `checked_table` module).
    damage: RefCell<Option<Error>>,
}

impl Files {
    /// Registers an open iterator; table files are not deleted until the pin is dropped.
    pub(crate) fn pin(self: &Rc<Self>) -> Pin {
        let id = self.next_pin.get();
        self.next_pin.set(id + 1);
        self.live.borrow_mut().insert(id);
        Pin {
            files: Rc::clone(self),
            id,
        }
    }

    /// Defers the deletion of table `path` while an iterator that may read it is open; false
    /// when none is (delete it now).
    fn defer(&self, path: &Path) -> bool {
        if self.live.borrow().is_empty() {
            return false;
        }
        self.deferred
            .borrow_mut()
            .entry(path.to_path_buf())
            .or_insert(self.next_pin.get());
        true
    }

    /// Notes a failed table read that rusty-leveldb may drop; the first one is kept.
    pub(crate) fn note_damage(&self, error: Error) {
        let mut damage = self.damage.borrow_mut();
        if damage.is_none() {
            tracing::error!(error = %error, "leveldb: a table read failed");
            *damage = Some(error);
        }
    }

    /// The failed table read noted since the last call, if any. Every engine operation asks
    /// when it ends, and fails with it: what rusty-leveldb returned then may lack entries.
    pub(crate) fn take_damage(&self) -> Option<Error> {
        self.damage.take()
    }

    /// Fails `result` with the damage noted during the operation that produced it, if any.
    pub(crate) fn checked<T>(&self, result: rave_api::Result<T>) -> rave_api::Result<T> {
        match self.take_damage() {
            Some(error) => Err(error),
            None => result,
        }
    }

    /// Unregisters an iterator, and deletes the table files no open iterator may read any more.
    fn unpin(&self, id: u64) {
        let oldest = {
            let mut live = self.live.borrow_mut();
            live.remove(&id);
            live.first().copied()
        };
        let due: Vec<PathBuf> = {
            let mut deferred = self.deferred.borrow_mut();
            let due = deferred
                .iter()
                .filter(|(_, mark)| oldest.is_none_or(|oldest| oldest >= **mark))
                .map(|(path, _)| path.clone())
                .collect::<Vec<_>>();
            for path in &due {
                deferred.remove(path);
            }
            due
        };
        for path in due {
            match fs::remove_file(&path) {
                Ok(()) => tracing::trace!(file = %path.display(), "deferred delete"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Harmless: the next open deletes obsolete files again.
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "deferred delete failed")
                }
            }
        }
    }
}

/// Keeps the table files of open snapshots on disk while it lives.
#[derive(Debug)]
pub(crate) struct Pin {
    files: Rc<Files>,
    id: u64,
}

impl Pin {
    /// The engine's shared file state.
    pub(crate) fn files(&self) -> &Files {
        &self.files
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.files.unpin(self.id);
    }
}

/// rusty-leveldb's disk environment with deferred table deletion and real syncs.
pub(crate) struct RaveEnv {
    inner: PosixDiskEnv,
    files: Rc<Files>,
    sync: bool,
}

impl RaveEnv {
    pub(crate) fn new(files: Rc<Files>, sync: bool) -> Self {
        RaveEnv {
            inner: PosixDiskEnv::new(),
            files,
            sync,
        }
    }

    fn open_synced(
        &self,
        p: &Path,
        options: &fs::OpenOptions,
        what: &str,
    ) -> Result<Box<dyn Write>> {
        let existed = p.exists();
        let file = options.open(p).map_err(|e| annotate(e, what, p))?;
        if self.sync && !existed {
            sync_parent(p)?;
        }
        Ok(Box::new(SyncedFile {
            file,
            dirty: false,
            sync: self.sync,
        }))
    }
}

fn annotate(e: io::Error, what: &str, p: &Path) -> Status {
    Status::from(e).annotate(format!("{what} {}", p.display()))
}

/// Fsyncs the directory holding `p`, so that a file created or renamed there keeps its name
/// after a power loss.
fn sync_parent(p: &Path) -> Result<()> {
    let Some(dir) = p.parent() else { return Ok(()) };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| annotate(e, "sync directory", dir))
}

/// The error for a table file that the database refers to and cannot open.
fn missing_table(status: &Status, p: &Path) -> Error {
    if status.code == StatusCode::NotFound {
        Error::corruption(format!(
            "leveldb: the table file {} is missing ({})",
            p.display(),
            status.err
        ))
    } else {
        error::map(status, Op::Read, p.parent().unwrap_or(p))
    }
}

/// A table file: the kind of file an open iterator may still need.
fn is_table(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("ldb") | Some("sst")
    )
}

impl Env for RaveEnv {
    fn open_sequential_file(&self, p: &Path) -> Result<Box<dyn Read>> {
        self.inner.open_sequential_file(p)
    }

    fn open_random_access_file(&self, p: &Path) -> Result<Box<dyn RandomAccess>> {
        if !is_table(p) {
            return self.inner.open_random_access_file(p);
        }
        // A table that fails to open is dropped silently too (version.rs `VersionIter`).
        let opened = self
            .inner
            .open_random_access_file(p)
            .and_then(|file| Ok((file, self.inner.size_of(p)?)));
        match opened {
            Ok((file, size)) => Ok(Box::new(CheckedTable::new(
                file,
                size,
                p,
                Rc::clone(&self.files),
            ))),
            Err(status) => {
                self.files.note_damage(missing_table(&status, p));
                Err(status)
            }
        }
    }

    // Writable files always go through `SyncedFile`, with or without `sync`: rusty-leveldb's log
    // writer calls `Write::write` and ignores a short count (log.rs `emit_record`), so on a full
    // disk a torn record would be acknowledged. `SyncedFile::write` writes all or fails.
    fn open_writable_file(&self, p: &Path) -> Result<Box<dyn Write>> {
        // The same flags as PosixDiskEnv (disk_env.rs `open_writable_file`).
        let mut options = fs::OpenOptions::new();
        options.create(true).truncate(true).write(true);
        self.open_synced(p, &options, "open (write)")
    }

    fn open_appendable_file(&self, p: &Path) -> Result<Box<dyn Write>> {
        let mut options = fs::OpenOptions::new();
        options.create(true).append(true);
        self.open_synced(p, &options, "open (append)")
    }

    fn exists(&self, p: &Path) -> Result<bool> {
        self.inner.exists(p)
    }

    fn children(&self, p: &Path) -> Result<Vec<PathBuf>> {
        self.inner.children(p)
    }

    fn size_of(&self, p: &Path) -> Result<usize> {
        let size = self.inner.size_of(p);
        if is_table(p) {
            // The table cache asks before it opens a table, and gives up on an empty one without
            // a word (table_cache.rs `open_table`).
            match &size {
                Ok(size) if *size < FOOTER_LEN => {
                    self.files.note_damage(Error::corruption(format!(
                        "leveldb: the table file {} is damaged: {size} bytes, less than a footer",
                        p.display()
                    )))
                }
                Ok(_) => {}
                Err(status) => self.files.note_damage(missing_table(status, p)),
            }
        }
        size
    }

    fn delete(&self, p: &Path) -> Result<()> {
        if is_table(p) && self.files.defer(p) {
            return Ok(());
        }
        self.inner.delete(p)
    }

    fn mkdir(&self, p: &Path) -> Result<()> {
        self.inner.mkdir(p)
    }

    fn rmdir(&self, p: &Path) -> Result<()> {
        self.inner.rmdir(p)
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to)?;
        if self.sync {
            sync_parent(to)?;
        }
        Ok(())
    }

    fn lock(&self, p: &Path) -> Result<FileLock> {
        self.inner.lock(p)
    }

    fn unlock(&self, l: FileLock) -> Result<()> {
        self.inner.unlock(l)
    }

    fn new_logger(&self, p: &Path) -> Result<Logger> {
        self.inner.new_logger(p)
    }

    fn micros(&self) -> u64 {
        self.inner.micros()
    }

    fn sleep_for(&self, micros: u32) {
        self.inner.sleep_for(micros)
    }
}

/// A file whose `write` writes everything or fails, and which (with `sync`) fsyncs what was
/// written to it on `flush` and on drop.
struct SyncedFile {
    file: File,
    dirty: bool,
    sync: bool,
}

impl Write for SyncedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all(buf)?;
        self.dirty |= self.sync && !buf.is_empty();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }
}

impl Drop for SyncedFile {
    fn drop(&mut self) {
        if self.dirty
            && let Err(e) = self.file.sync_data()
        {
            tracing::warn!(error = %e, "leveldb: fsync on close failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_deletes_wait_for_the_last_iterator() {
        let dir = tempfile::tempdir().unwrap();
        let files = Rc::new(Files::default());
        let env = RaveEnv::new(Rc::clone(&files), false);
        let table = dir.path().join("000005.ldb");
        let log = dir.path().join("000006.log");
        fs::write(&table, b"t").unwrap();
        fs::write(&log, b"l").unwrap();
        let first = files.pin();
        let second = files.pin();
        env.delete(&table).unwrap();
        env.delete(&log).unwrap();
        assert!(
            table.exists(),
            "a table file stays while iterators are open"
        );
        assert!(!log.exists(), "other files go at once");
        drop(first);
        assert!(table.exists());
        drop(second);
        assert!(
            !table.exists(),
            "the last iterator releases the deferred deletes"
        );
        // With no iterator open, deletes are immediate.
        fs::write(&table, b"t").unwrap();
        env.delete(&table).unwrap();
        assert!(!table.exists());
    }

    /// Iterators that overlap, none ever the last one out, still let go of the files only
    /// older iterators read: disk use does not grow with the number of compactions.
    #[test]
    fn overlapping_iterators_do_not_keep_table_files_forever() {
        let dir = tempfile::tempdir().unwrap();
        let files = Rc::new(Files::default());
        let env = RaveEnv::new(Rc::clone(&files), false);
        let mut older = files.pin();
        for i in 0..100 {
            let table = dir.path().join(format!("{:06}.ldb", 10 + i));
            fs::write(&table, b"t").unwrap();
            // Compacted away while `older` may read it.
            env.delete(&table).unwrap();
            assert!(table.exists(), "an older iterator may still read it");
            let newer = files.pin();
            drop(std::mem::replace(&mut older, newer));
            assert!(
                !table.exists(),
                "round {i}: no open iterator reads the file, yet it stays"
            );
        }
        drop(older);
        assert!(files.deferred.borrow().is_empty());
    }

    #[test]
    fn synced_files_write_through() {
        let dir = tempfile::tempdir().unwrap();
        let env = RaveEnv::new(Rc::new(Files::default()), true);
        let path = dir.path().join("000001.log");
        let mut f = env.open_writable_file(&path).unwrap();
        f.write_all(b"abc").unwrap();
        f.flush().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"abc");
        drop(f);
        let mut f = env.open_appendable_file(&path).unwrap();
        f.write_all(b"def").unwrap();
        drop(f);
        assert_eq!(fs::read(&path).unwrap(), b"abcdef");
        let renamed = dir.path().join("CURRENT");
        env.rename(&path, &renamed).unwrap();
        assert!(renamed.exists());
    }
}
