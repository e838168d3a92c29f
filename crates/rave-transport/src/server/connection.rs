//! One connection: the read loop, the dispatch of each request (answered inline when the store
//! answers at once, in a task otherwise), and the write side.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use rave_api::{Error, ErrorKind, KvStore, Result};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::iter::IterHandle;
use super::{Reader, Writer, read_error};
use crate::wire::{self, ClientMessage, Limits, Op, Reply, ServerMessage, WireError};

/// How long a closing connection may spend flushing frames already queued (a final `Refused`,
/// replies that were ready) before the socket is dropped anyway.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// The reason a connection must end now (the store is closing, the socket failed), raised by
/// any of its tasks and seen by its read loop.
#[derive(Default)]
pub(super) struct Fatal {
    token: CancellationToken,
    reason: OnceLock<Error>,
}

impl Fatal {
    pub(super) fn raise(&self, reason: Error) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    fn reason(&self) -> Error {
        self.reason.get().cloned().unwrap_or(Error::Closed)
    }
}

/// What every task of one connection shares.
pub(super) struct Ctx {
    pub(super) store: Arc<dyn KvStore>,
    /// The server's open connections, for [`Op::Stats`].
    pub(super) connections: super::ConnectionCount,
    pub(super) limits: Limits,
    pub(super) out: mpsc::Sender<Bytes>,
    pub(super) fatal: Arc<Fatal>,
}

impl Ctx {
    /// Queues a frame; false when the connection is ending.
    pub(super) async fn send(&self, frame: Bytes) -> bool {
        self.out.send(frame).await.is_ok()
    }
}

/// A request's work as a future that owns what it needs, so it can run inline or in a task.
type RequestFuture = Pin<Box<dyn Future<Output = Result<Reply>> + Send>>;

/// One connection, run by one task: it reads requests, answers those the store answers at once
/// (a point read on an engine with concurrent readers, a ping) without spawning anything, and
/// writes every frame itself, flushing once per batch of frames read. Only requests that must
/// wait (writes, reads queued on an engine thread) and iterators get tasks of their own, whose
/// frames come back through `out_rx`. Every thread hand-off costs tens of microseconds on an
/// idle machine, so the common path has none beyond the socket itself.
pub(super) struct Connection {
    pub(super) ctx: Arc<Ctx>,
    /// Frames from the request and iterator tasks.
    pub(super) out_rx: mpsc::Receiver<Bytes>,
    /// Every request and iterator task of this connection; dropping it aborts them all.
    pub(super) tasks: JoinSet<()>,
    pub(super) iters: HashMap<u64, IterHandle>,
    /// Which iterator each iterator task serves, to forget it when the task ends.
    pub(super) iter_tasks: HashMap<tokio::task::Id, u64>,
    /// The open watches, like `iters`.
    pub(super) watches: HashMap<u64, IterHandle>,
    /// Which watch each watch task serves.
    pub(super) watch_tasks: HashMap<tokio::task::Id, u64>,
    /// Request tasks running (not iterator tasks): reading stops at [`Limits::max_in_flight`].
    pub(super) running_requests: usize,
}

pub(super) fn write_error(e: &std::io::Error) -> Error {
    Error::io("write to a follower", e)
}

impl Connection {
    /// The read loop. Returns how the connection ended.
    pub(super) async fn run<S>(
        &mut self,
        reader: &mut Reader<S>,
        writer: &mut Writer<S>,
    ) -> Result<()>
    where
        S: AsyncRead + AsyncWrite,
    {
        let fatal = self.ctx.fatal.clone();
        let max_in_flight = self.ctx.limits.max_in_flight.max(1);
        loop {
            let may_read = self.running_requests < max_in_flight;
            let must_flush = !writer.write_buffer().is_empty();
            tokio::select! {
                // Order matters: frames already read are answered before the socket is flushed,
                // so a pipelined burst leaves in one write.
                biased;
                _ = fatal.token.cancelled() => {
                    return Err(fatal.reason());
                }
                Some(frame) = self.out_rx.recv() => {
                    writer.feed(frame).await.map_err(|e| write_error(&e))?;
                }
                // Backpressure: at the in-flight limit, stop reading until a request ends.
                frame = reader.next(), if may_read => {
                    let frame = match frame {
                        None => return Ok(()),
                        Some(Ok(frame)) => frame,
                        // A follower that exits with replies unread resets the socket: it left.
                        Some(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                            return Ok(());
                        }
                        Some(Err(e)) => return Err(read_error(&e)),
                    };
                    let message = wire::decode::<ClientMessage>(&frame)?;
                    self.handle(message, writer).await?;
                    // Requests already read are answered without I/O, which spends none of
                    // tokio's cooperative budget: spend it here, so a flood from one follower
                    // yields to the leader process's other tasks every few requests.
                    tokio::task::consume_budget().await;
                }
                flushed = SinkExt::<Bytes>::flush(writer), if must_flush => {
                    flushed.map_err(|e| write_error(&e))?;
                }
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    let id = match joined {
                        Ok((id, ())) => id,
                        Err(e) => {
                            if e.is_panic() {
                                tracing::error!(error = %e, "a connection task panicked");
                            }
                            e.id()
                        }
                    };
                    if let Some(iter) = self.iter_tasks.remove(&id) {
                        self.iters.remove(&iter);
                    } else if let Some(watch) = self.watch_tasks.remove(&id) {
                        self.watches.remove(&watch);
                    } else {
                        self.running_requests = self.running_requests.saturating_sub(1);
                    }
                }
            }
        }
    }

    /// Spawns a task that is not an iterator (it counts against the in-flight limit).
    fn spawn_request(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.running_requests += 1;
        let handle = self.tasks.spawn(task);
        // A task aborted before it ran still ends through `join_next_with_id`.
        drop(handle);
    }

    async fn handle<S>(&mut self, message: ClientMessage, writer: &mut Writer<S>) -> Result<()>
    where
        S: AsyncWrite,
    {
        match message {
            ClientMessage::Request { id, op } => {
                let mut work: RequestFuture = Box::pin(execute(
                    self.ctx.store.clone(),
                    self.ctx.connections.get(),
                    op,
                ));
                // One poll without a waker: a store that can answer now (a concurrent point
                // read, a ping) does, and the reply is written here. Anything else moves to a
                // task, which polls it again with a real waker (every future allows that).
                let first_poll = {
                    let mut noop = Context::from_waker(futures::task::noop_waker_ref());
                    work.as_mut().poll(&mut noop)
                };
                match first_poll {
                    Poll::Ready(result) => {
                        if let Some(frame) = reply_frame(&self.ctx, id, result) {
                            writer.feed(frame).await.map_err(|e| write_error(&e))?;
                        }
                    }
                    Poll::Pending => {
                        let ctx = self.ctx.clone();
                        self.spawn_request(async move {
                            let result = work.await;
                            if let Some(frame) = reply_frame(&ctx, id, result) {
                                ctx.send(frame).await;
                            }
                        });
                    }
                }
            }
            ClientMessage::IterOpen {
                iter,
                range,
                credit,
            } => {
                self.open_iterator(iter, range, credit, writer).await?;
            }
            ClientMessage::IterCredit { iter, credit } => {
                // Credit for an iterator that already ended is not an error: the messages
                // crossed.
                if let Some(handle) = self.iters.get(&iter) {
                    handle.credit.grant(credit);
                }
            }
            ClientMessage::IterClose { iter } => {
                if let Some(handle) = self.iters.remove(&iter) {
                    handle.abort.abort();
                    self.iter_tasks.remove(&handle.abort.id());
                }
            }
            ClientMessage::WatchOpen {
                watch,
                range,
                from,
                credit,
            } => {
                self.open_watch(watch, range, from, credit, writer).await?;
            }
            ClientMessage::WatchCredit { watch, credit } => {
                if let Some(handle) = self.watches.get(&watch) {
                    handle.credit.grant(credit);
                }
            }
            ClientMessage::WatchClose { watch } => {
                if let Some(handle) = self.watches.remove(&watch) {
                    handle.abort.abort();
                    self.watch_tasks.remove(&handle.abort.id());
                }
            }
            ClientMessage::Hello { .. } => {
                return Err(Error::protocol("Hello after the handshake"));
            }
        }
        Ok(())
    }

    /// Ends every task, then writes what is already queued (replies that were ready, a final
    /// `Refused` on a protocol error) for a bounded time before the socket is dropped.
    pub(super) async fn finish<S>(mut self, outcome: &Result<()>, mut writer: Writer<S>)
    where
        S: AsyncWrite,
    {
        self.tasks.shutdown().await;
        let mut frames = Vec::new();
        while let Ok(frame) = self.out_rx.try_recv() {
            frames.push(frame);
        }
        if let Err(e) = outcome
            && e.kind() == ErrorKind::Protocol
            && let Ok(frame) = wire::encode(&ServerMessage::Refused {
                message: e.to_string(),
            })
        {
            frames.push(frame);
        }
        let flushed = tokio::time::timeout(FLUSH_TIMEOUT, async {
            if outcome.as_ref().is_err_and(|e| e.kind() == ErrorKind::Io) {
                // The socket already failed: nothing more will get through.
                return;
            }
            for frame in frames {
                if writer.feed(frame).await.is_err() {
                    return;
                }
            }
            let _ = SinkExt::<Bytes>::close(&mut writer).await;
        })
        .await;
        if flushed.is_err() {
            tracing::debug!("a follower did not read its last frames in time");
        }
    }
}

/// Encodes a request's reply; `None` when there is nothing to send: the store is closing (the
/// connection then closes without a reply, and the follower re-elects and retries).
fn reply_frame(ctx: &Ctx, id: u64, result: Result<Reply>) -> Option<Bytes> {
    if let Err(e) = &result
        && e.kind() == ErrorKind::Closed
    {
        ctx.fatal.raise(Error::Closed);
        return None;
    }
    let message = ServerMessage::Response {
        id,
        result: result.map_err(|e| WireError::from(&e)),
    };
    let frame = match wire::encode(&message) {
        Ok(frame) if frame.len() <= ctx.limits.max_frame => Ok(frame),
        Ok(frame) => Err(WireError::from(&Error::invalid(format!(
            "the reply is {} bytes, more than the {} a frame may carry",
            frame.len(),
            ctx.limits.max_frame
        )))),
        Err(e) => Err(WireError::from(&e)),
    };
    match frame {
        Ok(frame) => Some(frame),
        Err(error) => match wire::encode(&ServerMessage::Response {
            id,
            result: Err(error),
        }) {
            Ok(frame) => Some(frame),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an error reply");
                None
            }
        },
    }
}

/// A request's work, panics included (reported as an error reply, not a dead connection).
async fn execute(store: Arc<dyn KvStore>, connections: u64, op: Op) -> Result<Reply> {
    unpanicked(execute_op(&*store, connections, op)).await
}

/// Runs a call into the store, turning a panic into an error for this request or iterator
/// rather than the end of the connection.
pub(super) async fn unpanicked<T>(call: impl Future<Output = Result<T>>) -> Result<T> {
    AssertUnwindSafe(call)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(Error::other("the store panicked")))
}

async fn execute_op(store: &dyn KvStore, connections: u64, op: Op) -> Result<Reply> {
    match op {
        Op::Get { key } => store.get(&key).await.map(Reply::Value),
        Op::GetMany { keys } => store.get_many(&keys).await.map(Reply::Values),
        Op::Write {
            stamp: Some(stamp),
            write,
        } => store
            .write_stamped(stamp, write)
            .await
            .map(|()| Reply::Done),
        Op::Write { stamp: None, write } => store.write(write).await.map(|()| Reply::Done),
        Op::Ping => Ok(Reply::Done),
        Op::Sequence => store.sequence().await.map(Reply::Sequence),
        Op::Stats => Ok(Reply::Stats { connections }),
    }
}
