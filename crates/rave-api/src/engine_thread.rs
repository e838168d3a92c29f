//! Runs a blocking engine on a thread of its own and presents it as an async [`KvStore`].
//!
//! Engine authors implement the small synchronous [`Engine`] trait; [`EngineStore::spawn`] does
//! the rest:
//! - the engine lives on one dedicated thread, so its calls never block the async runtime and it
//!   need not be `Send` (rusty-leveldb is not);
//! - **group commit**: writes that queue up while a commit is running are merged into the next
//!   single engine commit, so many writers (local or remote) share one fsync;
//! - iterators are kept on the engine thread by id and read in chunks; `limit` and projection
//!   are applied here, so an engine only walks its range in order;
//! - **shared point reads** (optional): an engine that can answer point reads from any thread
//!   offers a [`SharedReader`] ([`Engine::shared_reader`]), and `get`/`get_many` then run it
//!   directly on the caller's thread, without queueing on the engine thread.
//!
//! The engine thread also heals the engine (see the `worker` module): a panic in any engine call
//! answers its caller with an error of kind [`crate::ErrorKind::Other`] and the engine is closed
//! and reopened; after a write fails with an I/O error (redb and LevelDB then refuse every
//! write until reopened, e.g. after the disk filled up), the next write reopens the engine
//! first, so writes succeed again once the cause is gone. This is why the opener passed to
//! [`EngineStore::spawn`] is called again: it must open the same data each time.
//!
//! Commands are handled strictly in arrival order (a group commit only merges consecutive
//! writes), so a read issued after a write's acknowledgement always sees it. Shared reads keep
//! that guarantee: an engine makes each commit visible to its shared reader before
//! [`Engine::write`] returns, and the engine thread replies only after that.
//!
//! # Why shared reads block the caller
//!
//! A read through the engine thread costs two thread hand-offs (each a futex wake of an idle
//! CPU, tens of µs on a VM) and waits behind any commit in progress (an fsync, hundreds of µs).
//! A shared read is instead a short blocking call on the caller's thread, even when that thread
//! is an async runtime worker: a point read of pages in the OS page cache takes a few µs, far
//! less than the hand-offs it saves, and the returned future completes on its first poll (it
//! has no await point), so a server can answer reads inline without spawning a task. Only a
//! read that misses the page cache waits for the disk, as a read on the engine thread would, and
//! on an engine whose reader shares a lock with its writer (LevelDB) a read waits for the commit
//! in progress, as it would behind it in the engine thread's queue.

mod cursor;
pub(crate) mod hub;
mod linger;
#[cfg(test)]
mod tests;
mod watcher;
mod worker;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use async_trait::async_trait;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc as commands, oneshot};

use crate::keyspace::to_raw;
use crate::once::{Write, WriteStamp};
use crate::watch::{Commit, WatchOptions, WatchStream};
use crate::{BatchOp, Entry, Error, KvIterator, KvStore, Range, Result};
use hub::Hub;
use worker::{ReaderSlot, Worker};

/// The most commands queued for the engine thread. Callers beyond wait (asynchronously) for
/// room, so a stuck or slow engine holds a bounded queue, not one command per caller.
const COMMAND_QUEUE: usize = 1024;

/// A blocking engine, driven by [`EngineStore`] from a single thread.
pub trait Engine: 'static {
    /// An iterator over a snapshot, borrowing the engine.
    type Iter<'a>: EngineIter
    where
        Self: 'a;

    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The values of `keys`, in order. The default reads them one by one.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|key| self.get(key)).collect()
    }

    /// Applies `ops` atomically. When this returns `Ok`, the write must survive the crash of this
    /// process (it is in the OS, not in a userspace buffer), and with the `sync` open option it
    /// must survive power loss too.
    fn write(&self, ops: &[BatchOp]) -> Result<()>;

    /// Deletes every key of `ranges`, then applies `ops`, as one atomic write with the
    /// durability of [`Engine::write`]. This is how a `clear` is committed, with its
    /// exactly-once record in `ops`.
    ///
    /// `ranges` are engine ranges: forward, without limit, never empty, and never touching
    /// rave's reserved block ([`crate::keyspace::META_PREFIX`]); `ops` never touch them.
    ///
    /// The default lists the keys of `ranges` and passes their deletes with `ops` to
    /// [`Engine::write`]: atomic, but it holds every key of the ranges in memory at once.
    /// Engines with a native range delete override it so that their memory does not grow with
    /// the size of the range (RocksDB's `delete_range`, redb's range removal in one write
    /// transaction); an override that cannot be atomic must say exactly what happens instead
    /// (LevelDB).
    fn delete_ranges_and_write(&self, ranges: &[Range], ops: &[BatchOp]) -> Result<()> {
        let mut all = Vec::new();
        for range in ranges {
            let mut iter = self.iter(range)?;
            while let Some((key, _)) = iter.next_entry()? {
                all.push(BatchOp::Del { key });
            }
        }
        all.extend_from_slice(ops);
        self.write(&all)
    }

    /// An iterator over a snapshot of `range`, taken now, yielding entries in key order (reverse
    /// order when `range.reverse`). It must honour the bounds; `limit` and projection are applied
    /// by the caller. Never called with an empty range ([`Range::is_empty`]).
    fn iter<'a>(&'a self, range: &Range) -> Result<Self::Iter<'a>>;

    /// A reader of this engine that any thread may call concurrently, or `None` (the default)
    /// when point reads must run on the engine thread. [`EngineStore::spawn`] asks once, on the
    /// engine thread right after opening, and from then on sends every `get`/`get_many` to it
    /// instead of to [`Engine::get`]/[`Engine::get_many`].
    ///
    /// The engine must keep two promises:
    /// - **visibility**: once [`Engine::write`] returns, the shared reader sees that write (the
    ///   engine thread acknowledges a write only after `write` returns, so a read issued after
    ///   the acknowledgement sees it);
    /// - **close**: [`Engine::close`] releases the files and locks even if a copy of the reader
    ///   is still alive somewhere (the store drops its own and waits for the reads in progress
    ///   before the engine closes); such a leftover reader then fails with
    ///   [`Error::Closed`].
    fn shared_reader(&self) -> Option<Arc<dyn SharedReader>> {
        None
    }

    /// Closes the engine, releasing its files. The default drops it.
    fn close(self) -> Result<()>
    where
        Self: Sized,
    {
        Ok(())
    }
}

/// A cursor over an engine snapshot.
pub trait EngineIter {
    /// The next entry in the iteration order, or `None` at the end.
    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>>;
}

/// Point reads that any thread may run concurrently with each other and with the engine thread
/// (see [`Engine::shared_reader`]). Each call is a short blocking read on the caller's thread.
pub trait SharedReader: Send + Sync + 'static {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The values of `keys`, in order. The default reads them one by one.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|key| self.get(key)).collect()
    }
}

type Reply<T> = oneshot::Sender<Result<T>>;

enum Command {
    Get(Vec<u8>, Reply<Option<Vec<u8>>>),
    GetMany(Vec<Vec<u8>>, Reply<Vec<Option<Vec<u8>>>>),
    Write(Option<WriteStamp>, Vec<BatchOp>, Reply<()>),
    /// A conditional write: checks, then operations.
    Conditional(
        Option<WriteStamp>,
        Vec<crate::Check>,
        Vec<BatchOp>,
        Reply<()>,
    ),
    Clear(Option<WriteStamp>, Range, Reply<()>),
    /// Opens a cursor; answers the sequence its snapshot was taken at.
    OpenIter(u64, Range, Reply<u64>),
    NextChunk(u64, usize, Reply<Vec<Entry>>),
    DropIter(u64),
    /// The last commit's sequence number ([`KvStore::sequence`]).
    Sequence(Reply<u64>),
    /// Up to about `.1` bytes of the change log after position `.0`.
    ReadLog(u64, usize, Reply<LogPage>),
    /// Nothing to do but collect [`Dropped`] iterators.
    Wake,
    Close(Reply<()>),
}

/// A page of the change log, read on the engine thread.
#[derive(Debug)]
struct LogPage {
    /// Commits in order.
    commits: Vec<Commit>,
    /// More follow.
    more: bool,
    /// The sequence when the page was read: with no more to follow, every commit up to it has
    /// been read.
    sequence: u64,
}

/// A [`KvStore`] backed by an [`Engine`] running on its own thread.
pub struct EngineStore {
    /// The engine's shared reader, set by the engine thread whenever it opens the engine and
    /// taken away before it closes it (and by [`KvStore::close`]). Shared reads hold the read
    /// lock for their whole duration, so whoever takes the reader, taking the write lock, waits
    /// for the reads in progress before the engine closes.
    shared: ReaderSlot,
    tx: commands::Sender<Command>,
    /// Iterators dropped when the command queue was full (see [`EngineIterator`]'s drop).
    dropped: Dropped,
    next_iter: Arc<AtomicU64>,
    /// How many cursors the engine thread holds, kept up to date by the thread.
    open_cursors: OpenCursors,
    /// The live feed of commits, for watchers.
    hub: Hub,
}

/// A gauge of the cursors (open iterators, each holding an engine snapshot) that an
/// [`EngineStore`]'s engine thread holds; it reads 0 once the store is closed.
///
/// For tests that check dropped iterators release their snapshot (the conformance suite's
/// `abandoned_iterators`); not part of the stable API.
#[doc(hidden)]
#[derive(Clone, Debug, Default)]
pub struct OpenCursors(Arc<AtomicUsize>);

impl OpenCursors {
    /// The number of cursors open right now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self, n: usize) {
        self.0.store(n, Ordering::SeqCst);
    }
}

impl EngineStore {
    /// Starts a thread named `rave-<name>`, opens the engine on it with `open`, and returns once
    /// the engine is open (or with the error `open` returned). Blocking. When the engine offers a
    /// [`SharedReader`], the store's `get` and `get_many` use it on the caller's thread.
    ///
    /// `open` is called again, on the same thread, whenever the engine must be reopened (after
    /// it panicked, or before a write that follows a failed one): it must open the same data
    /// (the same directory) every time, after the previous engine has been closed.
    pub fn spawn<E, F>(name: &str, open: F) -> Result<Self>
    where
        E: Engine,
        F: FnMut() -> Result<E> + Send + 'static,
    {
        Self::spawn_with(name, WatchOptions::default(), open)
    }

    /// [`EngineStore::spawn`] with the change history and watcher pacing of `watch`.
    pub fn spawn_with<E, F>(name: &str, watch: WatchOptions, open: F) -> Result<Self>
    where
        E: Engine,
        F: FnMut() -> Result<E> + Send + 'static,
    {
        let hub = Hub::new(watch);
        let (tx, rx) = commands::channel(COMMAND_QUEUE);
        let dropped = Dropped::default();
        let (opened_tx, opened_rx) = mpsc::sync_channel::<Result<()>>(1);
        let open_cursors = OpenCursors::default();
        let shared = ReaderSlot::default();
        let worker = Worker::new(
            name,
            open,
            rx,
            dropped.clone(),
            open_cursors.clone(),
            shared.clone(),
            hub.clone(),
        );
        std::thread::Builder::new()
            .name(format!("rave-{name}"))
            .spawn(move || worker.run(opened_tx))
            .map_err(|e| Error::io("spawn the engine thread", &e))?;
        opened_rx
            .recv()
            .map_err(|_| Error::other("the engine thread died while opening"))??;
        Ok(EngineStore {
            shared,
            tx,
            dropped,
            next_iter: Arc::new(AtomicU64::new(1)),
            open_cursors,
            hub,
        })
    }

    /// A gauge of the cursors the engine thread holds (see [`OpenCursors`]). Test support.
    #[doc(hidden)]
    pub fn open_cursors(&self) -> OpenCursors {
        self.open_cursors.clone()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn send_write(&self, stamp: Option<WriteStamp>, write: Write) -> Result<()> {
        match write {
            Write::Batch(ops) if ops.is_empty() && stamp.is_none() => Ok(()),
            Write::Batch(ops) => self.call(|r| Command::Write(stamp, ops, r)).await,
            Write::Clear(range) => self.call(|r| Command::Clear(stamp, range, r)).await,
            Write::Conditional { checks, ops } => {
                self.call(|r| Command::Conditional(stamp, checks, ops, r))
                    .await
            }
        }
    }

    /// How many commands wait in the engine thread's queue (test support).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Runs `read` on the shared reader, on this thread, or returns `None` when there is none
    /// (the engine offers none, or the store is closing or closed).
    fn read_shared<T>(
        &self,
        read: impl FnOnce(&dyn SharedReader) -> Result<T>,
    ) -> Option<Result<T>> {
        // A read guard does not poison the lock, and no code panics under the write guard; the
        // poison is ignored anyway, as the slot is valid whatever happened.
        let slot = self.shared.read().unwrap_or_else(PoisonError::into_inner);
        let reader = slot.as_deref()?;
        // A panic in an engine's reader must not unwind into the caller's task (the engine
        // thread's own calls cannot either: they would kill the thread, not the caller).
        Some(
            catch_unwind(AssertUnwindSafe(|| read(reader))).unwrap_or_else(|_| {
                tracing::error!("the engine's shared reader panicked");
                Err(Error::other("the engine's shared reader panicked"))
            }),
        )
    }
}

#[async_trait]
impl KvStore for EngineStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = to_raw(key);
        // No await before the shared read: with a shared reader this completes on its first poll.
        if let Some(result) = self.read_shared(|reader| reader.get(&key)) {
            return result;
        }
        self.call(|r| Command::Get(key.into_owned(), r)).await
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let mapped: Vec<Vec<u8>>;
        let keys = if keys.iter().any(|k| k.first() == Some(&0xFF)) {
            mapped = keys.iter().map(|k| to_raw(k).into_owned()).collect();
            &mapped[..]
        } else {
            keys
        };
        if let Some(result) = self.read_shared(|reader| reader.get_many(keys)) {
            return result;
        }
        self.call(|r| Command::GetMany(keys.to_vec(), r)).await
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.call(|r| Command::Write(None, vec![BatchOp::put(key, value)], r))
            .await
    }

    async fn del(&self, key: &[u8]) -> Result<()> {
        self.call(|r| Command::Write(None, vec![BatchOp::del(key)], r))
            .await
    }

    async fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        self.call(|r| Command::Write(None, ops, r)).await
    }

    /// Applies `write` once per stamp: a stamp already applied (recorded in the engine, by this
    /// leader or an earlier one) is answered without applying it again.
    async fn write_stamped(&self, stamp: WriteStamp, write: Write) -> Result<()> {
        self.send_write(Some(stamp), write).await
    }

    async fn write(&self, write: Write) -> Result<()> {
        self.send_write(None, write).await
    }

    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
        let id = self.next_iter.fetch_add(1, Ordering::Relaxed);
        let permit = self.tx.reserve().await.map_err(|_| Error::Closed)?;
        let (reply, rx) = oneshot::channel();
        // `OpenIter` is queued before the iterator exists, so whatever way its drop reports
        // (even when this call is cancelled mid-open), the engine thread sees the open first
        // or keeps the drop until the open arrives: no cursor leaks.
        permit.send(Command::OpenIter(id, range, reply));
        let mut iter = EngineIterator {
            id,
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
            done: false,
            sequence: 0,
        };
        iter.sequence = rx.await.map_err(|_| Error::Closed)??;
        Ok(Box::new(iter))
    }

    async fn clear(&self, range: Range) -> Result<()> {
        self.call(|r| Command::Clear(None, range, r)).await
    }

    /// Asked in the command queue, so a write acknowledged before the call is counted.
    async fn sequence(&self) -> Result<u64> {
        self.call(Command::Sequence).await
    }

    /// Subscribes to the live feed first, then reads the change log from `from`: no commit
    /// falls between the two.
    async fn watch(&self, range: Range, from: Option<u64>) -> Result<WatchStream> {
        crate::watch::check_range(&range)?;
        let live = self.hub.subscribe();
        let start = match from {
            Some(from) => from,
            None => self.sequence().await?,
        };
        let watcher = watcher::Watcher::start(
            self.tx.clone(),
            live,
            range,
            start,
            from.is_some(),
            self.hub.options().progress_interval,
        )
        .await?;
        Ok(watcher.into_stream())
    }

    async fn close(&self) -> Result<()> {
        // Stop shared reads, and wait for those in progress (a few µs each: blocking here is
        // brief), before the engine closes: after `close` returns, no read touches its files.
        // Later reads go to the channel and fail with `Closed` like every other call.
        let reader = self
            .shared
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(reader);
        match self.call(Command::Close).await {
            Err(Error::Closed) => Ok(()),
            other => other,
        }
    }
}

struct EngineIterator {
    id: u64,
    tx: commands::Sender<Command>,
    dropped: Dropped,
    done: bool,
    /// The sequence the snapshot was taken at.
    sequence: u64,
}

/// Iterators dropped while the command queue was full: a drop cannot wait for room, so it
/// leaves its id here, and the engine thread collects them after every command (the queue
/// was full, so commands are coming). At most one entry per iterator.
#[derive(Clone, Default)]
struct Dropped(Arc<Mutex<Vec<u64>>>);

impl Dropped {
    fn push(&self, id: u64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id);
    }

    fn take(&self) -> Vec<u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[async_trait]
impl KvIterator for EngineIterator {
    fn snapshot_sequence(&self) -> Option<u64> {
        Some(self.sequence)
    }

    async fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        if self.done {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::NextChunk(self.id, max.max(1), reply))
            .await
            .map_err(|_| Error::Closed)?;
        let chunk = rx.await.map_err(|_| Error::Closed)??;
        self.done = chunk.is_empty();
        Ok(chunk)
    }
}

impl Drop for EngineIterator {
    fn drop(&mut self) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Command::DropIter(self.id)) {
            self.dropped.push(self.id);
            // Wakes the engine thread if the queue emptied meanwhile; if it is still full, the
            // thread has commands to run and collects the id after one of them.
            let _ = self.tx.try_send(Command::Wake);
        }
    }
}
