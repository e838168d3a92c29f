//! The follower's side: a [`KvStore`] whose operations travel to the leader.
//!
//! A [`Client`] owns one connection. A call writes its own frame to the socket when nothing is
//! queued before it (no hand-off to another thread: each costs tens of microseconds on an idle
//! machine); what the socket does not take at once is queued and written by a flusher task. A
//! reader task hands each reply to the call waiting for its id and each iterator chunk to its
//! iterator. Calls are pipelined: any number may be in flight at once.
//!
//! The client never reconnects. When the connection is lost (EOF, reset, a protocol error),
//! every pending call and open iterator fails with [`Error::LeaderLost`], and so does every
//! later call; [`Client::disconnected`] resolves so an idle owner notices too. The owner (the
//! `rave` facade) re-elects and retries.
//!
//! The background tasks hold no strong reference to the client: when every [`Client`] clone
//! and every [`RemoteIter`] is dropped, both tasks end and the socket closes, so an idle
//! follower never keeps its process alive.

mod connect;
mod iter;
mod outbox;
mod state;
mod watch;
mod watchdog;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use rave_api::{BatchOp, Error, KvIterator, KvStore, Range, Result, Write, WriteStamp};
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use iter::RemoteIter;

use crate::wire::{self, ClientMessage, Limits, Op, Reply};
use outbox::Outbox;
use state::{PendingCall, PendingGuard, Shared, Status};

/// What the leader said in its [`ServerMessage::Welcome`](crate::wire::ServerMessage::Welcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The protocol version both sides speak.
    pub version: u32,
    /// The leader's epoch.
    pub epoch: u64,
    /// The leader's process id.
    pub pid: u32,
}

/// A connection to the leader, usable as a [`KvStore`]. Cheap to clone; clones share the
/// connection.
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("status", &self.handle.shared.lock().status)
            .finish_non_exhaustive()
    }
}

/// Held by every [`Client`] clone and [`RemoteIter`]; its drop stops the background tasks.
struct Handle {
    shared: Arc<Shared>,
    out: Arc<Outbox>,
    limits: Limits,
    next_id: AtomicU64,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl Handle {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Encodes a message, refusing one that would not fit in a frame.
    fn encode(&self, message: &ClientMessage) -> Result<Bytes> {
        let frame = wire::encode(message)?;
        if frame.len() > self.limits.max_frame {
            return Err(Error::invalid(format!(
                "the request is {} bytes, more than the {} a frame may carry",
                frame.len(),
                self.limits.max_frame
            )));
        }
        Ok(frame)
    }

    fn close(&self) {
        self.shared.end(Status::Closed);
        self.out.shut();
        self.stop.cancel();
    }

    /// Sends one encoded request now (or queues it behind others), first waiting for room
    /// while the send buffer is full ([`Limits::send_buffer_bytes`]); a failed write ends the
    /// connection.
    async fn send_request(&self, frame: &[u8]) -> Result<()> {
        let enqueued = self.out.enqueue_request(frame).await;
        self.sent(enqueued)
    }

    /// Sends one small control frame (iterator credit, close) now or queues it behind others,
    /// without waiting for room; a failed write ends the connection.
    fn send(&self, frame: &[u8]) -> Result<()> {
        let enqueued = self.out.enqueue(frame);
        self.sent(enqueued)
    }

    fn sent(
        &self,
        enqueued: std::result::Result<Option<outbox::FlushPromise<'_>>, ()>,
    ) -> Result<()> {
        match enqueued {
            // Dropping the promise writes.
            Ok(promise) => {
                drop(promise);
                Ok(())
            }
            Err(()) => {
                self.shared.end(Status::Lost);
                Err(self.shared.status_error())
            }
        }
    }
}

impl Client {
    /// Whether the connection is up (not lost, not closed).
    pub fn is_connected(&self) -> bool {
        self.handle.shared.lock().status == Status::Connected
    }

    /// Resolves once the connection is gone: lost, or closed with [`KvStore::close`].
    pub async fn disconnected(&self) {
        self.handle.shared.lost.cancelled().await;
    }

    /// A round trip to the leader that does nothing.
    pub async fn ping(&self) -> Result<()> {
        self.call(Op::Ping).await.and_then(expect_done)
    }

    /// The bytes of requests buffered towards the leader (test support).
    #[cfg(test)]
    pub(crate) fn send_buffered(&self) -> usize {
        self.handle.out.buffered()
    }

    /// The limits this client was connected with.
    pub fn limits(&self) -> &Limits {
        &self.handle.limits
    }

    async fn call(&self, op: Op) -> Result<Reply> {
        let handle = &self.handle;
        let id = handle.next_id();
        let frame = handle.encode(&ClientMessage::Request { id, op })?;
        let (tx, rx) = oneshot::channel();
        {
            let mut state = handle.shared.lock();
            if state.status != Status::Connected {
                return Err(state.status.error());
            }
            state.pending.insert(
                id,
                PendingCall {
                    reply: tx,
                    since: Instant::now(),
                },
            );
        }
        let mut guard = PendingGuard {
            shared: &handle.shared,
            id,
            armed: true,
        };
        handle.send_request(&frame).await?;
        let replied = rx.await;
        // The sender of the reply (the reader, the watchdog or `end`) removed the entry first.
        guard.armed = false;
        match replied {
            Ok(result) => result,
            Err(_) => Err(handle.shared.status_error()),
        }
    }
}

fn expect_done(reply: Reply) -> Result<()> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(reply: &Reply) -> Error {
    Error::protocol(format!("unexpected reply from the leader: {reply:?}"))
}

#[async_trait]
impl KvStore for Client {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.call(Op::Get { key: key.to_vec() }).await? {
            Reply::Value(value) => Ok(value),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        match self
            .call(Op::GetMany {
                keys: keys.to_vec(),
            })
            .await?
        {
            Reply::Values(values) if values.len() == keys.len() => Ok(values),
            other => Err(unexpected(&other)),
        }
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.call(Op::put(key, value)).await.and_then(expect_done)
    }

    async fn del(&self, key: &[u8]) -> Result<()> {
        self.call(Op::del(key)).await.and_then(expect_done)
    }

    async fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
        self.call(Op::batch(ops)).await.and_then(expect_done)
    }

    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
        Ok(Box::new(self.open_iterator(range).await?))
    }

    async fn clear(&self, range: Range) -> Result<()> {
        self.call(Op::clear(range)).await.and_then(expect_done)
    }

    async fn write(&self, write: Write) -> Result<()> {
        self.call(Op::Write { stamp: None, write })
            .await
            .and_then(expect_done)
    }

    async fn write_stamped(&self, stamp: WriteStamp, write: Write) -> Result<()> {
        self.call(Op::Write {
            stamp: Some(stamp),
            write,
        })
        .await
        .and_then(expect_done)
    }

    async fn sequence(&self) -> Result<u64> {
        match self.call(Op::Sequence).await? {
            Reply::Sequence(seq) => Ok(seq),
            other => Err(unexpected(&other)),
        }
    }

    async fn leader_connections(&self) -> Result<Option<u64>> {
        match self.call(Op::Stats).await? {
            Reply::Stats { connections } => Ok(Some(connections)),
            other => Err(unexpected(&other)),
        }
    }

    async fn watch(&self, range: Range, from: Option<u64>) -> Result<rave_api::WatchStream> {
        self.open_watch(range, from).await
    }

    async fn close(&self) -> Result<()> {
        self.handle.close();
        Ok(())
    }
}
