//! Runs a blocking engine on a thread of its own and presents it as an async [`KvStore`].
//!
//! Engine authors implement the small synchronous [`Engine`] trait; [`EngineStore::spawn`] does
//! the rest:
//! - the engine lives on one dedicated thread, so its calls never block the async runtime and it
//!   need not be `Send` (rusty-leveldb is not);
//! - **group commit**: writes that queue up while a commit is running are merged into the next
//!   single engine commit, so many writers (local or remote) share one fsync;
//! - iterators are kept on the engine thread by id and read in chunks; `limit` and projection
//!   are applied here, so an engine only walks its range in order.
//!
//! Commands are handled strictly in arrival order (a group commit only merges consecutive
//! writes), so a read issued after a write's acknowledgement always sees it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::{BatchOp, Entry, Error, KvIterator, KvStore, Range, Result};

/// The most bytes of writes merged into one group commit.
const MAX_GROUP_BYTES: usize = 64 << 20;

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

    /// An iterator over a snapshot of `range`, taken now, yielding entries in key order (reverse
    /// order when `range.reverse`). It must honour the bounds; `limit` and projection are applied
    /// by the caller. Never called with an empty range ([`Range::is_empty`]).
    fn iter<'a>(&'a self, range: &Range) -> Result<Self::Iter<'a>>;

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

type Reply<T> = oneshot::Sender<Result<T>>;

enum Command {
    Get(Vec<u8>, Reply<Option<Vec<u8>>>),
    GetMany(Vec<Vec<u8>>, Reply<Vec<Option<Vec<u8>>>>),
    Write(Vec<BatchOp>, Reply<()>),
    Clear(Range, Reply<()>),
    OpenIter(u64, Range, Reply<()>),
    NextChunk(u64, usize, Reply<Vec<Entry>>),
    DropIter(u64),
    Close(Reply<()>),
}

/// A [`KvStore`] backed by an [`Engine`] running on its own thread.
pub struct EngineStore {
    tx: mpsc::Sender<Command>,
    next_iter: Arc<AtomicU64>,
}

impl EngineStore {
    /// Starts a thread named `rave-<name>`, opens the engine on it with `open`, and returns once
    /// the engine is open (or with the error `open` returned). Blocking.
    pub fn spawn<E, F>(name: &str, open: F) -> Result<Self>
    where
        E: Engine,
        F: FnOnce() -> Result<E> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let (opened_tx, opened_rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(format!("rave-{name}"))
            .spawn(move || match open() {
                Ok(engine) => {
                    let _ = opened_tx.send(Ok(()));
                    run(engine, rx);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .map_err(|e| Error::io("spawn the engine thread", &e))?;
        opened_rx
            .recv()
            .map_err(|_| Error::other("the engine thread died while opening"))??;
        Ok(EngineStore {
            tx,
            next_iter: Arc::new(AtomicU64::new(1)),
        })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

#[async_trait]
impl KvStore for EngineStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.call(|r| Command::Get(key.to_vec(), r)).await
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.call(|r| Command::GetMany(keys.to_vec(), r)).await
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.call(|r| Command::Write(vec![BatchOp::put(key, value)], r))
            .await
    }

    async fn del(&self, key: &[u8]) -> Result<()> {
        self.call(|r| Command::Write(vec![BatchOp::del(key)], r))
            .await
    }

    async fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        self.call(|r| Command::Write(ops, r)).await
    }

    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
        let id = self.next_iter.fetch_add(1, Ordering::Relaxed);
        // Built before the open is awaited: if this call is cancelled mid-open, its drop still
        // sends `DropIter` (after `OpenIter`, on the same ordered channel), so no cursor leaks.
        let iter = EngineIterator {
            id,
            tx: self.tx.clone(),
            done: false,
        };
        self.call(|r| Command::OpenIter(id, range, r)).await?;
        Ok(Box::new(iter))
    }

    async fn clear(&self, range: Range) -> Result<()> {
        self.call(|r| Command::Clear(range, r)).await
    }

    async fn close(&self) -> Result<()> {
        match self.call(Command::Close).await {
            Err(Error::Closed) => Ok(()),
            other => other,
        }
    }
}

struct EngineIterator {
    id: u64,
    tx: mpsc::Sender<Command>,
    done: bool,
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
            .map_err(|_| Error::Closed)?;
        let chunk = rx.await.map_err(|_| Error::Closed)??;
        self.done = chunk.is_empty();
        Ok(chunk)
    }
}

impl Drop for EngineIterator {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::DropIter(self.id));
    }
}

/// An open iterator on the engine thread.
struct Cursor<I> {
    /// `None` once exhausted (or for an empty range).
    iter: Option<I>,
    remaining: Option<u64>,
    range: Range,
}

impl<I: EngineIter> Cursor<I> {
    fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        let mut want = max;
        if let Some(remaining) = self.remaining {
            want = want.min(usize::try_from(remaining).unwrap_or(usize::MAX));
        }
        let mut chunk = Vec::with_capacity(want.min(1024));
        while chunk.len() < want {
            let Some(iter) = self.iter.as_mut() else {
                break;
            };
            match iter.next_entry()? {
                Some((key, value)) => {
                    let projection = self.range.projection;
                    chunk.push(Entry {
                        key: if projection.keys() { key } else { Vec::new() },
                        value: if projection.values() {
                            value
                        } else {
                            Vec::new()
                        },
                    });
                }
                None => self.iter = None,
            }
        }
        if let Some(remaining) = self.remaining.as_mut() {
            *remaining -= chunk.len() as u64;
            if *remaining == 0 {
                self.iter = None;
            }
        }
        Ok(chunk)
    }
}

fn open_cursor<E: Engine>(engine: &E, range: Range) -> Result<Cursor<E::Iter<'_>>> {
    let iter = if range.is_empty() {
        None
    } else {
        Some(engine.iter(&range)?)
    };
    Ok(Cursor {
        iter,
        remaining: range.limit,
        range,
    })
}

/// Deletes the keys of `range` (honouring its direction and limit) in one atomic write.
fn clear<E: Engine>(engine: &E, range: Range) -> Result<()> {
    let mut keys_only = range;
    keys_only.projection = crate::Projection::KeysOnly;
    let mut cursor = open_cursor(engine, keys_only)?;
    let mut ops = Vec::new();
    loop {
        let chunk = cursor.next_chunk(1024)?;
        if chunk.is_empty() {
            break;
        }
        ops.extend(chunk.into_iter().map(|e| BatchOp::Del { key: e.key }));
    }
    drop(cursor);
    if ops.is_empty() {
        return Ok(());
    }
    engine.write(&ops)
}

fn run<E: Engine>(engine: E, rx: mpsc::Receiver<Command>) {
    let mut cursors: HashMap<u64, Cursor<E::Iter<'_>>> = HashMap::new();
    let mut held_back: Option<Command> = None;
    let mut close_reply = None;
    loop {
        let command = match held_back.take() {
            Some(command) => command,
            None => match rx.recv() {
                Ok(command) => command,
                Err(_) => break, // every handle is gone
            },
        };
        match command {
            Command::Get(key, reply) => {
                let _ = reply.send(engine.get(&key));
            }
            Command::GetMany(keys, reply) => {
                let _ = reply.send(engine.get_many(&keys));
            }
            Command::Write(ops, reply) => {
                // Group commit: merge the writes already queued behind this one.
                let mut ops = ops;
                let mut bytes: usize = ops.iter().map(BatchOp::payload_len).sum();
                let mut replies = vec![reply];
                while bytes < MAX_GROUP_BYTES {
                    match rx.try_recv() {
                        Ok(Command::Write(more, reply)) => {
                            bytes += more.iter().map(BatchOp::payload_len).sum::<usize>();
                            ops.extend(more);
                            replies.push(reply);
                        }
                        Ok(other) => {
                            held_back = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let result = engine.write(&ops);
                if replies.len() > 1 {
                    tracing::trace!(writers = replies.len(), ops = ops.len(), "group commit");
                }
                for reply in replies {
                    let _ = reply.send(result.clone());
                }
            }
            Command::Clear(range, reply) => {
                let _ = reply.send(clear(&engine, range));
            }
            Command::OpenIter(id, range, reply) => {
                let result = open_cursor(&engine, range).map(|cursor| {
                    cursors.insert(id, cursor);
                });
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
            }
            Command::Close(reply) => {
                close_reply = Some(reply);
                break;
            }
        }
    }
    drop(cursors);
    // Anything still queued behind the close fails with `Closed` when its reply is dropped.
    drop(held_back);
    let result = engine.close();
    if let Some(reply) = close_reply {
        let _ = reply.send(result);
    }
}
