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
//! read that misses the page cache waits for the disk, as a read on the engine thread would.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, mpsc};

use async_trait::async_trait;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc as commands, oneshot};

use crate::commit::{Group, prepare};
use crate::keyspace::{Side, raw_ranges, to_raw};
use crate::once::{Records, Write, WriteStamp};
use crate::{BatchOp, Entry, Error, KvIterator, KvStore, Range, Result};

/// The most bytes of writes merged into one group commit.
const MAX_GROUP_BYTES: usize = 64 << 20;

/// The most commands queued for the engine thread. Callers beyond wait (asynchronously) for
/// room, so a stuck or slow engine holds a bounded queue, not one command per caller.
const COMMAND_QUEUE: usize = 1024;

/// Keys read at a time while a limited `clear` walks to its boundary.
const CLEAR_WALK_CHUNK: usize = 1024;

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

/// What the engine thread hands back once the engine is open.
type Opened = Result<Option<Arc<dyn SharedReader>>>;

enum Command {
    Get(Vec<u8>, Reply<Option<Vec<u8>>>),
    GetMany(Vec<Vec<u8>>, Reply<Vec<Option<Vec<u8>>>>),
    Write(Option<WriteStamp>, Vec<BatchOp>, Reply<()>),
    Clear(Option<WriteStamp>, Range, Reply<()>),
    OpenIter(u64, Range, Reply<()>),
    NextChunk(u64, usize, Reply<Vec<Entry>>),
    DropIter(u64),
    /// Nothing to do but collect [`Dropped`] iterators.
    Wake,
    Close(Reply<()>),
}

/// A [`KvStore`] backed by an [`Engine`] running on its own thread.
pub struct EngineStore {
    /// The engine's shared reader until [`KvStore::close`] takes it. Shared reads hold the read
    /// lock for their whole duration, so the close, taking the write lock, waits for the reads in
    /// progress before the engine closes. Declared first so that a store dropped without
    /// `close` lets go of its reader before the engine thread (woken by the drop of `tx`)
    /// closes the engine.
    shared: RwLock<Option<Arc<dyn SharedReader>>>,
    tx: commands::Sender<Command>,
    /// Iterators dropped when the command queue was full (see [`EngineIterator`]'s drop).
    dropped: Dropped,
    next_iter: Arc<AtomicU64>,
    /// How many cursors the engine thread holds, kept up to date by the thread.
    open_cursors: OpenCursors,
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
    pub fn spawn<E, F>(name: &str, open: F) -> Result<Self>
    where
        E: Engine,
        F: FnOnce() -> Result<E> + Send + 'static,
    {
        let (tx, rx) = commands::channel(COMMAND_QUEUE);
        let dropped = Dropped::default();
        let thread_dropped = dropped.clone();
        let (opened_tx, opened_rx) = mpsc::sync_channel::<Opened>(1);
        let open_cursors = OpenCursors::default();
        let gauge = open_cursors.clone();
        std::thread::Builder::new()
            .name(format!("rave-{name}"))
            .spawn(
                move || match open().and_then(|engine| Ok((prepare(&engine)?, engine))) {
                    Ok((records, engine)) => {
                        let _ = opened_tx.send(Ok(engine.shared_reader()));
                        run(engine, records, rx, &thread_dropped, &gauge);
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                    }
                },
            )
            .map_err(|e| Error::io("spawn the engine thread", &e))?;
        let shared = opened_rx
            .recv()
            .map_err(|_| Error::other("the engine thread died while opening"))??;
        Ok(EngineStore {
            shared: RwLock::new(shared),
            tx,
            dropped,
            next_iter: Arc::new(AtomicU64::new(1)),
            open_cursors,
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
        match write {
            Write::Batch(ops) => self.call(|r| Command::Write(Some(stamp), ops, r)).await,
            Write::Clear(range) => self.call(|r| Command::Clear(Some(stamp), range, r)).await,
        }
    }

    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
        let id = self.next_iter.fetch_add(1, Ordering::Relaxed);
        let permit = self.tx.reserve().await.map_err(|_| Error::Closed)?;
        let (reply, rx) = oneshot::channel();
        // `OpenIter` is queued before the iterator exists, so whatever way its drop reports
        // (even when this call is cancelled mid-open), the engine thread sees the open first
        // or keeps the drop until the open arrives: no cursor leaks.
        permit.send(Command::OpenIter(id, range, reply));
        let iter = EngineIterator {
            id,
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
            done: false,
        };
        rx.await.map_err(|_| Error::Closed)??;
        Ok(Box::new(iter))
    }

    async fn clear(&self, range: Range) -> Result<()> {
        self.call(|r| Command::Clear(None, range, r)).await
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

/// An open iterator on the engine thread: the engine iterators of the user range's parts (at most
/// two, one on each side of rave's reserved keys, opened together so they share one snapshot),
/// walked in order.
struct Cursor<I> {
    /// The parts not yet exhausted, the current one first.
    parts: std::collections::VecDeque<(Side, I)>,
    remaining: Option<u64>,
    range: Range,
    /// Set by the first failure of an engine cursor and repeated by every later call: a failed
    /// engine iterator may report `None` next, which must never read as the end of the range.
    failed: Option<Error>,
}

impl<I: EngineIter> Cursor<I> {
    fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.fill_chunk(max);
        if let Err(err) = &result {
            self.parts.clear();
            self.failed = Some(err.clone());
        }
        result
    }

    fn fill_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        let mut want = max;
        if let Some(remaining) = self.remaining {
            want = want.min(usize::try_from(remaining).unwrap_or(usize::MAX));
        }
        let mut chunk = Vec::with_capacity(want.min(1024));
        while chunk.len() < want {
            let Some((side, iter)) = self.parts.front_mut() else {
                break;
            };
            match iter.next_entry()? {
                Some((key, value)) => {
                    let projection = self.range.projection;
                    chunk.push(Entry {
                        key: if projection.keys() {
                            side.user_key(key)
                        } else {
                            Vec::new()
                        },
                        value: if projection.values() {
                            value
                        } else {
                            Vec::new()
                        },
                    });
                }
                None => {
                    self.parts.pop_front();
                }
            }
        }
        if let Some(remaining) = self.remaining.as_mut() {
            *remaining -= chunk.len() as u64;
            if *remaining == 0 {
                self.parts.clear();
            }
        }
        Ok(chunk)
    }
}

fn open_cursor<E: Engine>(engine: &E, range: Range) -> Result<Cursor<E::Iter<'_>>> {
    let mut parts = std::collections::VecDeque::new();
    if !range.is_empty() {
        for (side, raw) in raw_ranges(&range) {
            parts.push_back((side, engine.iter(&raw)?));
        }
    }
    Ok(Cursor {
        parts,
        remaining: range.limit,
        range,
        failed: None,
    })
}

/// The engine ranges that `range` clears (honouring its direction and limit), for
/// [`Engine::delete_ranges_and_write`].
///
/// The user range maps to at most two engine ranges, one on each side of rave's reserved
/// block, which they never touch. With a limit, the boundary is found by walking at most
/// `limit` keys in order, a chunk at a time: the memory held is one chunk, whatever the size of
/// the range or the limit.
fn clear_ranges<E: Engine>(engine: &E, mut range: Range) -> Result<Vec<Range>> {
    if let Some(limit) = range.limit.take() {
        let walk = range.clone().keys_only().limit(limit);
        let mut cursor = open_cursor(engine, walk)?;
        let mut last = None;
        loop {
            let mut chunk = cursor.next_chunk(CLEAR_WALK_CHUNK)?;
            match chunk.pop() {
                Some(entry) => last = Some(entry.key),
                None => break,
            }
        }
        drop(cursor);
        // The last key the clear reaches, in its direction, becomes its inclusive far bound
        // (it lies inside the range, so it is the stricter bound).
        match last {
            None => return Ok(Vec::new()),
            Some(last) if range.reverse => range.gte = Some(last),
            Some(last) => range.lte = Some(last),
        }
    }
    if range.is_empty() {
        return Ok(Vec::new());
    }
    Ok(raw_ranges(&range)
        .into_iter()
        .map(|(_, mut raw)| {
            raw.reverse = false;
            raw
        })
        .collect())
}

fn run<E: Engine>(
    engine: E,
    mut records: Records,
    mut rx: commands::Receiver<Command>,
    dropped: &Dropped,
    gauge: &OpenCursors,
) {
    let mut cursors: HashMap<u64, Cursor<E::Iter<'_>>> = HashMap::new();
    // Iterators dropped (through `dropped`) before their `OpenIter` came out of the queue.
    let mut dropped_early = std::collections::HashSet::new();
    let mut held_back: Option<Command> = None;
    let mut close_reply = None;
    loop {
        let command = match held_back.take() {
            Some(command) => command,
            None => match rx.blocking_recv() {
                Some(command) => command,
                None => break, // every handle is gone
            },
        };
        for id in dropped.take() {
            if cursors.remove(&id).is_none() {
                dropped_early.insert(id);
            }
            gauge.set(cursors.len());
        }
        match command {
            Command::Get(key, reply) => {
                let _ = reply.send(engine.get(&key));
            }
            Command::GetMany(keys, reply) => {
                let _ = reply.send(engine.get_many(&keys));
            }
            Command::Write(stamp, ops, reply) => {
                // Group commit: merge the writes already queued behind this one.
                let mut group = Group::new();
                group.add(&records, stamp, reply, || Ok(ops));
                let mut bytes: usize = group.ops().iter().map(BatchOp::payload_len).sum();
                while bytes < MAX_GROUP_BYTES {
                    match rx.try_recv() {
                        Ok(Command::Write(stamp, more, reply)) => {
                            bytes += more.iter().map(BatchOp::payload_len).sum::<usize>();
                            group.add(&records, stamp, reply, || Ok(more));
                        }
                        Ok(other) => {
                            held_back = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                for (reply, result) in group.commit(&engine, &mut records) {
                    let _ = reply.send(result);
                }
            }
            Command::Clear(stamp, range, reply) => {
                let mut group = Group::new();
                group.add_clear(&records, stamp, reply, || clear_ranges(&engine, range));
                for (reply, result) in group.commit(&engine, &mut records) {
                    let _ = reply.send(result);
                }
            }
            Command::OpenIter(id, _, _) if dropped_early.remove(&id) => {}
            Command::OpenIter(id, range, reply) => {
                let result = open_cursor(&engine, range).map(|cursor| {
                    cursors.insert(id, cursor);
                });
                gauge.set(cursors.len());
                let _ = reply.send(result);
            }
            Command::NextChunk(id, max, reply) => {
                let result = match cursors.get_mut(&id) {
                    Some(cursor) => cursor.next_chunk(max),
                    None => Err(Error::Closed),
                };
                let _ = reply.send(result);
            }
            Command::DropIter(id) => {
                cursors.remove(&id);
                gauge.set(cursors.len());
            }
            Command::Wake => {}
            Command::Close(reply) => {
                close_reply = Some(reply);
                break;
            }
        }
    }
    drop(cursors);
    gauge.set(0);
    // Anything still queued behind the close fails with `Closed` when its reply is dropped.
    drop(held_back);
    let result = engine.close();
    if let Some(reply) = close_reply {
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use super::*;

    /// The state shared by [`TestEngine`] and its reader.
    #[derive(Default)]
    struct State {
        map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
        /// Point reads answered on the engine thread.
        engine_reads: AtomicUsize,
        /// Point reads answered by the shared reader.
        shared_reads: AtomicUsize,
        /// Shared reads running now.
        in_flight: AtomicUsize,
        /// How long each shared read takes, in µs.
        read_micros: AtomicUsize,
        closed: AtomicBool,
        /// Set when a shared read ran during or after the engine's close.
        read_while_closed: AtomicBool,
    }

    struct TestReader(Arc<State>);

    impl SharedReader for TestReader {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            let state = &self.0;
            state.in_flight.fetch_add(1, Ordering::SeqCst);
            if state.closed.load(Ordering::SeqCst) {
                state.read_while_closed.store(true, Ordering::SeqCst);
            }
            let micros = state.read_micros.load(Ordering::SeqCst);
            if micros > 0 {
                std::thread::sleep(Duration::from_micros(micros as u64));
            }
            let value = state.map.lock().unwrap().get(key).cloned();
            state.shared_reads.fetch_add(1, Ordering::SeqCst);
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(value)
        }
    }

    /// An engine with a shared reader, whose writes of the key `slow` wait for `gate`.
    struct TestEngine {
        state: Arc<State>,
        entered: mpsc::Sender<()>,
        gate: mpsc::Receiver<()>,
    }

    impl Engine for TestEngine {
        type Iter<'a> = std::vec::IntoIter<(Vec<u8>, Vec<u8>)>;

        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.state.engine_reads.fetch_add(1, Ordering::SeqCst);
            Ok(self.state.map.lock().unwrap().get(key).cloned())
        }

        fn write(&self, ops: &[BatchOp]) -> Result<()> {
            if ops.iter().any(|op| op.key() == b"slow") {
                self.entered.send(()).unwrap();
                self.gate.recv().unwrap();
            }
            // Applied (so visible to the reader) before `write` returns.
            BatchOp::apply_all(ops, &mut self.state.map.lock().unwrap());
            Ok(())
        }

        fn iter<'a>(&'a self, _range: &Range) -> Result<Self::Iter<'a>> {
            Ok(Vec::new().into_iter())
        }

        fn shared_reader(&self) -> Option<Arc<dyn SharedReader>> {
            Some(Arc::new(TestReader(self.state.clone())))
        }

        fn close(self) -> Result<()> {
            if self.state.in_flight.load(Ordering::SeqCst) != 0 {
                self.state.read_while_closed.store(true, Ordering::SeqCst);
            }
            self.state.closed.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A store on a [`TestEngine`], with the channel its slow writes report on and their gate.
    fn spawn() -> (
        EngineStore,
        Arc<State>,
        mpsc::Receiver<()>,
        mpsc::Sender<()>,
    ) {
        let state = Arc::new(State::default());
        let (entered_tx, entered_rx) = mpsc::channel();
        let (gate_tx, gate_rx) = mpsc::channel();
        let engine_state = state.clone();
        let store = EngineStore::spawn("test", move || {
            Ok(TestEngine {
                state: engine_state,
                entered: entered_tx,
                gate: gate_rx,
            })
        })
        .unwrap();
        (store, state, entered_rx, gate_tx)
    }

    /// The output of `future`, which must be ready on its first poll.
    fn first_poll<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("the future was not ready on its first poll"),
        }
    }

    #[tokio::test]
    async fn point_reads_do_not_queue_behind_a_commit() {
        let (store, state, entered, gate) = spawn();
        // The open reads the layout record on the engine thread; no user read does.
        let opening_reads = state.engine_reads.load(Ordering::SeqCst);
        let store = Arc::new(store);
        store.put(b"a", b"1").await.unwrap();
        // Read after the acknowledgement: sees the write, without the engine thread.
        assert_eq!(first_poll(store.get(b"a")).unwrap(), Some(b"1".to_vec()));

        // Block the engine thread inside a commit.
        let writer = tokio::spawn({
            let store = store.clone();
            async move { store.put(b"slow", b"2").await }
        });
        tokio::task::spawn_blocking(move || entered.recv().map(|()| entered))
            .await
            .unwrap()
            .unwrap();
        // Reads still complete, at once, while the engine thread is busy.
        assert_eq!(first_poll(store.get(b"a")).unwrap(), Some(b"1".to_vec()));
        assert_eq!(
            first_poll(store.get_many(&[b"a".to_vec(), b"slow".to_vec()])).unwrap(),
            vec![Some(b"1".to_vec()), None]
        );
        assert!(!writer.is_finished());

        gate.send(()).unwrap();
        writer.await.unwrap().unwrap();
        // Acknowledged, so visible.
        assert_eq!(first_poll(store.get(b"slow")).unwrap(), Some(b"2".to_vec()));
        assert_eq!(state.engine_reads.load(Ordering::SeqCst), opening_reads);
        assert_eq!(state.shared_reads.load(Ordering::SeqCst), 5);
        store.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_waits_for_shared_reads_and_ends_them() {
        let (store, state, _entered, _gate) = spawn();
        let store = Arc::new(store);
        store.put(b"k", b"v").await.unwrap();
        // Slow reads, so that the close surely lands while some are running.
        state.read_micros.store(500, Ordering::SeqCst);
        let handle = tokio::runtime::Handle::current();
        let started = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                let handle = handle.clone();
                let started = started.clone();
                std::thread::spawn(move || {
                    let mut ok = 0u64;
                    loop {
                        match handle.block_on(store.get(b"k")) {
                            Ok(value) => {
                                assert_eq!(value, Some(b"v".to_vec()));
                                ok += 1;
                                started.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(Error::Closed) => return ok,
                            Err(e) => panic!("unexpected error: {e}"),
                        }
                    }
                })
            })
            .collect();
        while started.load(Ordering::SeqCst) < 20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        store.close().await.unwrap();
        assert!(state.closed.load(Ordering::SeqCst));
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
        assert!(
            !state.read_while_closed.load(Ordering::SeqCst),
            "a shared read ran while the engine closed"
        );
        assert!(matches!(store.get(b"k").await, Err(Error::Closed)));
        assert!(matches!(
            store.get_many(&[b"k".to_vec()]).await,
            Err(Error::Closed)
        ));
        store.close().await.unwrap();
    }

    /// A panic in a shared reader is an error for the caller, not a panic in its task.
    #[tokio::test]
    async fn a_panicking_reader_is_an_error() {
        struct Panics;
        impl SharedReader for Panics {
            fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>> {
                panic!("damaged")
            }
        }
        struct PanicEngine;
        impl Engine for PanicEngine {
            type Iter<'a> = std::vec::IntoIter<(Vec<u8>, Vec<u8>)>;
            fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>> {
                Ok(None)
            }
            fn write(&self, _ops: &[BatchOp]) -> Result<()> {
                Ok(())
            }
            fn iter<'a>(&'a self, _range: &Range) -> Result<Self::Iter<'a>> {
                Ok(Vec::new().into_iter())
            }
            fn shared_reader(&self) -> Option<Arc<dyn SharedReader>> {
                Some(Arc::new(Panics))
            }
        }
        let store = EngineStore::spawn("panics", || Ok(PanicEngine)).unwrap();
        let err = store.get(b"k").await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Other, "{err}");
        // The store still works.
        store.put(b"k", b"v").await.unwrap();
        store.close().await.unwrap();
    }

    /// A stuck engine and many callers: the engine thread's queue holds at most
    /// `COMMAND_QUEUE` commands; the other callers wait for room (and all complete once the
    /// engine moves again).
    #[tokio::test]
    async fn a_stuck_engine_queues_a_bounded_number_of_commands() {
        let (store, _state, entered, gate) = spawn();
        let store = Arc::new(store);
        let slow = tokio::spawn({
            let store = store.clone();
            async move { store.put(b"slow", b"1").await }
        });
        tokio::task::spawn_blocking(move || entered.recv().map(|()| entered))
            .await
            .unwrap()
            .unwrap();
        let callers = 4 * COMMAND_QUEUE;
        let attempted = Arc::new(AtomicUsize::new(0));
        let puts: Vec<_> = (0..callers)
            .map(|i| {
                let store = store.clone();
                let attempted = attempted.clone();
                tokio::spawn(async move {
                    attempted.fetch_add(1, Ordering::SeqCst);
                    // The first poll of the put tries to queue its command.
                    store.put(format!("k{i}").as_bytes(), b"v").await
                })
            })
            .collect();
        while attempted.load(Ordering::SeqCst) < callers {
            tokio::task::yield_now().await;
        }
        let queued = store.queued();
        assert!(
            queued <= COMMAND_QUEUE,
            "{queued} commands queued for a stuck engine (bound {COMMAND_QUEUE})"
        );
        gate.send(()).unwrap();
        slow.await.unwrap().unwrap();
        for put in puts {
            put.await.unwrap().unwrap();
        }
        assert_eq!(store.get(b"k0").await.unwrap(), Some(b"v".to_vec()));
        store.close().await.unwrap();
    }

    /// An engine over a `MemoryEngine` that records the most engine operations any single
    /// `write` or `delete_ranges_and_write` was given, and whose iterators can be made to fail.
    #[derive(Default)]
    struct Recording {
        inner: crate::MemoryEngine,
        largest: Arc<AtomicUsize>,
        /// Iterators fail after this many entries (0: never).
        fail_after: usize,
    }

    struct FailingIter {
        inner: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
        left: Option<usize>,
    }

    impl EngineIter for FailingIter {
        fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
            match &mut self.left {
                Some(0) => {
                    // Failed once; a failed cursor then looks like the end.
                    self.left = None;
                    self.inner = Vec::new().into_iter();
                    Err(Error::corruption("a damaged block"))
                }
                Some(left) => {
                    *left -= 1;
                    self.inner.next_entry()
                }
                None => self.inner.next_entry(),
            }
        }
    }

    impl Engine for Recording {
        type Iter<'a> = FailingIter;

        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.inner.get(key)
        }

        fn write(&self, ops: &[BatchOp]) -> Result<()> {
            self.largest.fetch_max(ops.len(), Ordering::SeqCst);
            self.inner.write(ops)
        }

        fn delete_ranges_and_write(&self, ranges: &[Range], ops: &[BatchOp]) -> Result<()> {
            self.largest.fetch_max(ops.len(), Ordering::SeqCst);
            self.inner.delete_ranges_and_write(ranges, ops)
        }

        fn iter(&self, range: &Range) -> Result<FailingIter> {
            Ok(FailingIter {
                inner: self.inner.iter(range)?,
                left: (self.fail_after > 0).then_some(self.fail_after),
            })
        }
    }

    /// Clearing a range of many keys (whole, limited, reversed, across the escaped side) hands
    /// the engine no batch that grows with the range: the engine thread lists no key.
    #[tokio::test]
    async fn a_clear_holds_no_key_of_its_range() {
        let largest = Arc::new(AtomicUsize::new(0));
        let engine = Recording {
            largest: largest.clone(),
            ..Recording::default()
        };
        let store = EngineStore::spawn("recording", move || Ok(engine)).unwrap();
        let n = 10_000u32;
        let key = |i: u32| format!("k{i:05}").into_bytes();
        for start in (0..n).step_by(1000) {
            let ops = (start..start + 1000)
                .map(|i| BatchOp::put(key(i), b"v".to_vec()))
                .collect();
            store.batch(ops).await.unwrap();
        }
        let mut escaped = vec![0xFF];
        escaped.extend(key(0));
        store.put(&escaped, b"high").await.unwrap();
        store.put(b"a", b"below").await.unwrap();
        largest.store(0, Ordering::SeqCst);

        // The first 3000 keys forward, the last 3000 in reverse, then the rest.
        store
            .clear(Range::all().gte("k").limit(3000))
            .await
            .unwrap();
        store
            .clear(Range::all().gte("k").lt("l").reverse().limit(3000))
            .await
            .unwrap();
        let left: Vec<Vec<u8>> = store
            .iterator(Range::all().keys_only())
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        let mut want: Vec<Vec<u8>> = vec![b"a".to_vec()];
        want.extend((3000..n - 3000).map(key));
        want.push(escaped.clone());
        assert_eq!(left, want);
        // Both sides of rave's reserved block at once; its records survive.
        store.clear(Range::all().gt("a")).await.unwrap();
        let left = store
            .iterator(Range::all())
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].key, b"a");
        let most = largest.load(Ordering::SeqCst);
        assert!(
            most <= 8,
            "the engine was given a batch of {most} operations by a clear"
        );
        store.close().await.unwrap();
    }

    /// An engine cursor that failed keeps failing: its next call is never a clean end.
    #[tokio::test]
    async fn a_failed_cursor_never_reads_as_the_end() {
        let engine = Recording {
            fail_after: 3,
            ..Recording::default()
        };
        let store = EngineStore::spawn("failing", move || Ok(engine)).unwrap();
        let ops = (0..10u8)
            .map(|i| BatchOp::put(vec![b'k', i], b"v".to_vec()))
            .collect();
        store.batch(ops).await.unwrap();
        let mut iter = store.iterator(Range::all()).await.unwrap();
        let err = iter.next_chunk(100).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corruption, "{err}");
        for _ in 0..2 {
            let again = iter.next_chunk(100).await;
            assert!(
                matches!(&again, Err(e) if e.kind() == crate::ErrorKind::Corruption),
                "after a failure: {again:?}"
            );
        }
        drop(iter);
        store.close().await.unwrap();
    }
}
