//! The leader's side: serves any [`KvStore`] to followers.
//!
//! [`serve`] runs the accept loop of a unix socket; [`serve_connection`] runs one connection
//! (any byte stream, so tests can use a socket pair). Each connection:
//! - must complete the handshake within [`Limits::handshake_timeout`];
//! - answers at once, on the connection's own task, every request the store can answer without
//!   waiting (point reads of an engine with concurrent readers, pings), and runs one task per
//!   request that must wait (pipelining: replies go out as they finish, in any order); it stops
//!   reading its socket while [`Limits::max_in_flight`] request tasks are running;
//! - runs one task per open iterator, which never sends beyond the credit the follower granted
//!   (in bytes of entries, one entry of overdraft);
//! - writes every frame itself (tasks hand theirs over a bounded channel), one flush per burst,
//!   so a follower that stops reading stalls only its own connection, in bounded memory;
//! - ends every task it started when it ends, whether the follower left, broke the protocol, or
//!   the connection future was dropped (the tasks live in a [`JoinSet`], which aborts them on
//!   drop).
//!
//! When the store answers [`ErrorKind::Closed`] (the leader is closing), the connection closes
//! without replying, so the follower re-elects and retries instead of seeing an error.
//!
//! Shutdown of [`serve`] is signalled with a `tokio_util::sync::CancellationToken` (available
//! without any extra tokio-util feature).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use rave_api::{Entry, Error, ErrorKind, KvIterator, KvStore, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::{Notify, mpsc};
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use crate::wire::{
    self, CHUNK_OVERHEAD, ClientMessage, Limits, MAGIC, Op, PROTOCOL_VERSION, Reply, ServerMessage,
    WireError,
};

/// What the leader tells each follower in [`ServerMessage::Welcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The leader's epoch.
    pub epoch: u64,
    /// The leader's process id.
    pub pid: u32,
}

/// How long a closing connection may spend flushing frames already queued (a final `Refused`,
/// replies that were ready) before the socket is dropped anyway.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the accept loop waits after a failed `accept` (EMFILE and the like) before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Frames queued towards one connection's writer. Producers hold an in-flight permit or
/// iterator credit while they wait here, so memory stays bounded.
const OUT_QUEUE: usize = 64;

type Reader<S> = FramedRead<ReadHalf<S>, LengthDelimitedCodec>;
type Writer<S> = FramedWrite<WriteHalf<S>, LengthDelimitedCodec>;

/// Serves `store` to every connection `incoming` yields, until `shutdown` is cancelled.
///
/// `incoming` is the listener as a stream of accepted connections (on Unix,
/// `rave_election::Listener::incoming`, which already refused peers of other users). A failed
/// accept (for instance out of file descriptors) is logged and retried after a short pause,
/// never fatal. When `shutdown` fires, the loop stops accepting and aborts every connection, so
/// every follower sees its connection close immediately; then it returns.
pub async fn serve<L, S>(
    mut incoming: L,
    store: Arc<dyn KvStore>,
    info: ServerInfo,
    limits: Limits,
    shutdown: CancellationToken,
) -> Result<()>
where
    L: futures::Stream<Item = std::io::Result<S>> + Unpin + Send,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "a connection task panicked");
                }
            }
            accepted = incoming.next() => match accepted {
                Some(Ok(stream)) => {
                    let store = store.clone();
                    let limits = limits.clone();
                    connections.spawn(async move {
                        match serve_connection(stream, store, info, limits).await {
                            Ok(()) => tracing::debug!("follower disconnected"),
                            Err(e) if e.kind() == ErrorKind::Protocol => {
                                tracing::warn!(error = %e, "dropped a follower that broke the protocol");
                            }
                            Err(e) => tracing::debug!(error = %e, "follower connection ended"),
                        }
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
                None => break,
            },
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// Serves `store` on one connection until the follower leaves, breaks the protocol or the store
/// closes.
///
/// Returns `Ok(())` when the follower closed (or reset) the connection, `Err` of kind
/// [`ErrorKind::Protocol`] when it broke the protocol (after a best-effort
/// [`ServerMessage::Refused`]), [`ErrorKind::Closed`] when the store closed, and an I/O error
/// when the socket failed. Dropping the returned future ends every task it started.
pub async fn serve_connection<S>(
    stream: S,
    store: Arc<dyn KvStore>,
    info: ServerInfo,
    limits: Limits,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = FramedRead::new(read_half, limits.codec());
    let mut writer = FramedWrite::new(write_half, limits.codec());
    match tokio::time::timeout(
        limits.handshake_timeout,
        handshake(&mut reader, &mut writer, info),
    )
    .await
    {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(Error::protocol(format!(
                "no handshake within {:?}",
                limits.handshake_timeout
            )));
        }
    }

    let (out, out_rx) = mpsc::channel(OUT_QUEUE);
    let ctx = Arc::new(Ctx {
        store,
        limits,
        out,
        fatal: Arc::new(Fatal::default()),
    });
    let mut conn = Connection {
        ctx,
        out_rx,
        tasks: JoinSet::new(),
        iters: HashMap::new(),
        iter_tasks: HashMap::new(),
        running_requests: 0,
    };
    let outcome = conn.run(&mut reader, &mut writer).await;
    conn.finish(&outcome, writer).await;
    outcome
}

/// Reads the Hello, answers Welcome or Refused. `Ok(false)`: the peer left without a word.
async fn handshake<S>(
    reader: &mut Reader<S>,
    writer: &mut Writer<S>,
    info: ServerInfo,
) -> Result<bool>
where
    S: AsyncRead + AsyncWrite,
{
    let frame = match reader.next().await {
        Some(Ok(frame)) => frame,
        Some(Err(e)) => {
            let err = read_error(&e);
            if err.kind() == ErrorKind::Protocol {
                refuse(writer, &err.to_string()).await;
            }
            return Err(err);
        }
        // A peer that only probed whether someone listens: not an error.
        None => return Ok(false),
    };
    let problem = match wire::decode::<ClientMessage>(&frame) {
        Ok(ClientMessage::Hello { magic, version }) => {
            if magic != MAGIC {
                format!("bad magic {magic:#010x}: not a rave client")
            } else if version != PROTOCOL_VERSION {
                format!(
                    "protocol version {version} is not supported (this leader speaks {PROTOCOL_VERSION})"
                )
            } else {
                let welcome = wire::encode(&ServerMessage::Welcome {
                    version: PROTOCOL_VERSION,
                    epoch: info.epoch,
                    pid: info.pid,
                })?;
                writer
                    .send(welcome)
                    .await
                    .map_err(|e| Error::io("send Welcome", &e))?;
                return Ok(true);
            }
        }
        Ok(_) => "the first message must be Hello".to_string(),
        Err(e) => e.to_string(),
    };
    refuse(writer, &problem).await;
    Err(Error::protocol(problem))
}

/// Best effort: tells the peer why it is being dropped and closes our side.
async fn refuse<S: AsyncRead + AsyncWrite>(writer: &mut Writer<S>, message: &str) {
    if let Ok(frame) = wire::encode(&ServerMessage::Refused {
        message: message.to_string(),
    }) {
        let _ = writer.send(frame).await;
    }
    let _ = SinkExt::<Bytes>::close(writer).await;
}

/// The classification of a failed frame read: bad framing is the peer's fault (protocol),
/// anything else is the socket's.
fn read_error(e: &std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Error::protocol(format!("bad frame: {e}"))
    } else if is_truncated_frame(e) {
        // The follower hung up in the middle of a frame: its fault, not the socket's (found by
        // the `dispatch` fuzz target; see tests/fuzz_regressions.rs).
        Error::protocol("the follower hung up in the middle of a frame")
    } else {
        Error::io("read from a follower", e)
    }
}

/// Whether `e` is the codec's complaint about EOF inside a frame. tokio-util reports it as
/// `io::Error::other("bytes remaining on stream")` and offers nothing more specific to test.
fn is_truncated_frame(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other && e.to_string() == "bytes remaining on stream"
}

/// The reason a connection must end now (the store is closing, the socket failed), raised by
/// any of its tasks and seen by its read loop.
#[derive(Default)]
struct Fatal {
    token: CancellationToken,
    reason: OnceLock<Error>,
}

impl Fatal {
    fn raise(&self, reason: Error) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    fn reason(&self) -> Error {
        self.reason.get().cloned().unwrap_or(Error::Closed)
    }
}

/// What every task of one connection shares.
struct Ctx {
    store: Arc<dyn KvStore>,
    limits: Limits,
    out: mpsc::Sender<Bytes>,
    fatal: Arc<Fatal>,
}

impl Ctx {
    /// Queues a frame; false when the connection is ending.
    async fn send(&self, frame: Bytes) -> bool {
        self.out.send(frame).await.is_ok()
    }
}

/// Credit of one iterator, in bytes of [`wire::entry_cost`]: granted by the follower, spent by
/// the iterator task. The balance may go negative by one entry (see [`wire`]'s protocol notes).
#[derive(Default)]
struct Credit {
    balance: AtomicI64,
    granted: Notify,
}

impl Credit {
    fn grant(&self, n: u32) {
        self.balance.fetch_add(i64::from(n), Ordering::AcqRel);
        // Stores a wakeup when the task is not waiting yet, so no grant is missed.
        self.granted.notify_one();
    }

    /// Waits until the balance is positive; returns it.
    async fn wait(&self) -> u64 {
        loop {
            let balance = self.balance.load(Ordering::Acquire);
            if balance > 0 {
                return balance.unsigned_abs();
            }
            self.granted.notified().await;
        }
    }

    /// Only the iterator task spends.
    fn spend(&self, cost: u64) {
        self.balance
            .fetch_sub(i64::try_from(cost).unwrap_or(i64::MAX), Ordering::AcqRel);
    }
}

struct IterHandle {
    credit: Arc<Credit>,
    abort: AbortHandle,
}

/// A request's work as a future that owns what it needs, so it can run inline or in a task.
type RequestFuture = Pin<Box<dyn Future<Output = Result<Reply>> + Send>>;

/// One connection, run by one task: it reads requests, answers those the store answers at once
/// (a point read on an engine with concurrent readers, a ping) without spawning anything, and
/// writes every frame itself, flushing once per batch of frames read. Only requests that must
/// wait (writes, reads queued on an engine thread) and iterators get tasks of their own, whose
/// frames come back through `out_rx`. Every thread hand-off costs tens of microseconds on an
/// idle machine, so the common path has none beyond the socket itself.
struct Connection {
    ctx: Arc<Ctx>,
    /// Frames from the request and iterator tasks.
    out_rx: mpsc::Receiver<Bytes>,
    /// Every request and iterator task of this connection; dropping it aborts them all.
    tasks: JoinSet<()>,
    iters: HashMap<u64, IterHandle>,
    /// Which iterator each iterator task serves, to forget it when the task ends.
    iter_tasks: HashMap<tokio::task::Id, u64>,
    /// Request tasks running (not iterator tasks): reading stops at [`Limits::max_in_flight`].
    running_requests: usize,
}

fn write_error(e: &std::io::Error) -> Error {
    Error::io("write to a follower", e)
}

impl Connection {
    /// The read loop. Returns how the connection ended.
    async fn run<S>(&mut self, reader: &mut Reader<S>, writer: &mut Writer<S>) -> Result<()>
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
                    match self.iter_tasks.remove(&id) {
                        Some(iter) => {
                            self.iters.remove(&iter);
                        }
                        None => self.running_requests = self.running_requests.saturating_sub(1),
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
                let mut work: RequestFuture = Box::pin(execute(self.ctx.store.clone(), op));
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
                if self.iters.contains_key(&iter) {
                    return Err(Error::protocol(format!("iterator {iter} is already open")));
                }
                if self.iters.len() >= self.ctx.limits.max_in_flight.max(1) {
                    let error = WireError {
                        kind: ErrorKind::InvalidArgument,
                        message: format!(
                            "too many open iterators on one connection (limit {})",
                            self.ctx.limits.max_in_flight
                        ),
                    };
                    let frame = wire::encode(&ServerMessage::IterError { iter, error })?;
                    writer.feed(frame).await.map_err(|e| write_error(&e))?;
                    return Ok(());
                }
                let ctx = self.ctx.clone();
                let state = Arc::new(Credit::default());
                state.grant(credit);
                let task_credit = state.clone();
                let abort = self.tasks.spawn(async move {
                    run_iterator(&ctx, iter, range, &task_credit).await;
                });
                self.iter_tasks.insert(abort.id(), iter);
                self.iters.insert(
                    iter,
                    IterHandle {
                        credit: state,
                        abort,
                    },
                );
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
            ClientMessage::Hello { .. } => {
                return Err(Error::protocol("Hello after the handshake"));
            }
        }
        Ok(())
    }

    /// Ends every task, then writes what is already queued (replies that were ready, a final
    /// `Refused` on a protocol error) for a bounded time before the socket is dropped.
    async fn finish<S>(mut self, outcome: &Result<()>, mut writer: Writer<S>)
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
        Ok(frame) => Err(WireError {
            kind: ErrorKind::InvalidArgument,
            message: format!(
                "the reply is {} bytes, more than the {} a frame may carry",
                frame.len(),
                ctx.limits.max_frame
            ),
        }),
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
async fn execute(store: Arc<dyn KvStore>, op: Op) -> Result<Reply> {
    AssertUnwindSafe(execute_op(&*store, op))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(Error::other("the store panicked")))
}

async fn execute_op(store: &dyn KvStore, op: Op) -> Result<Reply> {
    match op {
        Op::Get { key } => store.get(&key).await.map(Reply::Value),
        Op::GetMany { keys } => store.get_many(&keys).await.map(Reply::Values),
        Op::Put { key, value } => store.put(&key, &value).await.map(|()| Reply::Done),
        Op::Del { key } => store.del(&key).await.map(|()| Reply::Done),
        Op::Batch { ops } => store.batch(ops).await.map(|()| Reply::Done),
        Op::Clear { range } => store.clear(range).await.map(|()| Reply::Done),
        Op::Ping => Ok(Reply::Done),
    }
}

/// Streams one iterator to the follower, never beyond its credit: an entry goes out only while
/// the balance is positive, so the follower's buffer stays within its window plus one entry.
async fn run_iterator(ctx: &Ctx, iter: u64, range: rave_api::Range, credit: &Credit) {
    let iter_error = |e: &Error| ServerMessage::IterError {
        iter,
        error: WireError::from(e),
    };
    let mut remaining = range.limit;
    let opened = AssertUnwindSafe(ctx.store.iterator(range))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(Error::other("the store panicked")));
    let mut cursor: Box<dyn KvIterator> = match opened {
        Ok(cursor) => cursor,
        Err(e) => {
            finish_iterator(ctx, &e, iter_error(&e)).await;
            return;
        }
    };
    let budget = ctx
        .limits
        .chunk_bytes
        .min(ctx.limits.max_frame.saturating_sub(CHUNK_OVERHEAD))
        .max(1);
    // Entries read from the store but not sent yet (the credit ran out in the middle of them).
    let mut pending: VecDeque<Entry> = VecDeque::new();
    let mut exhausted = false;
    loop {
        let mut available = credit.wait().await;
        if pending.is_empty() && !exhausted {
            let read = AssertUnwindSafe(cursor.next_chunk(ctx.limits.chunk_entries.max(1)))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(Error::other("the store panicked")));
            let mut entries = match read {
                Ok(entries) => entries,
                Err(e) => {
                    finish_iterator(ctx, &e, iter_error(&e)).await;
                    return;
                }
            };
            exhausted = entries.is_empty();
            if let Some(left) = remaining.as_mut() {
                // A store that returns more than asked must not make us exceed the limit.
                entries.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= entries.len() as u64;
                exhausted |= *left == 0;
            }
            pending.extend(entries);
        }
        // One frame: entries while the balance lasts (the first one always: the balance is
        // positive) and the frame's byte budget holds.
        let mut frame_entries = Vec::new();
        let mut frame_size = 0;
        while let Some(entry) = pending.front() {
            let size = wire::entry_wire_size(entry);
            if !frame_entries.is_empty() && (available == 0 || frame_size + size > budget) {
                break;
            }
            let cost = wire::entry_cost(entry);
            available = available.saturating_sub(cost);
            credit.spend(cost);
            frame_size += size;
            if let Some(entry) = pending.pop_front() {
                frame_entries.push(entry);
            }
        }
        let end = exhausted && pending.is_empty();
        let message = ServerMessage::IterChunk {
            iter,
            entries: frame_entries,
            end,
        };
        let frame = match wire::encode(&message) {
            Ok(frame) if frame.len() <= ctx.limits.max_frame => frame,
            Ok(frame) => {
                let e = Error::invalid(format!(
                    "an entry of {} bytes does not fit in a frame (limit {})",
                    frame.len(),
                    ctx.limits.max_frame
                ));
                finish_iterator(ctx, &e, iter_error(&e)).await;
                return;
            }
            Err(e) => {
                finish_iterator(ctx, &e, iter_error(&e)).await;
                return;
            }
        };
        if !ctx.send(frame).await {
            return;
        }
        if end {
            return;
        }
    }
}

/// Reports an iterator failure, or closes the connection when the store is closing.
async fn finish_iterator(ctx: &Ctx, error: &Error, message: ServerMessage) {
    if error.kind() == ErrorKind::Closed {
        ctx.fatal.raise(Error::Closed);
        return;
    }
    match wire::encode(&message) {
        Ok(frame) => {
            ctx.send(frame).await;
        }
        Err(e) => tracing::error!(error = %e, "cannot encode an iterator error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_size_estimate_is_an_upper_bound() {
        for (k, v) in [(0, 0), (1, 1), (31, 255), (300, 70_000), (5, 1 << 20)] {
            let entry = Entry::new(vec![1; k], vec![2; v]);
            let encoded = rmp_serde::to_vec_named(&entry).unwrap();
            assert!(encoded.len() <= wire::entry_wire_size(&entry), "{k} {v}");
        }
        let empty = wire::encode(&ServerMessage::IterChunk {
            iter: u64::MAX,
            entries: Vec::new(),
            end: true,
        })
        .unwrap();
        // The array header may grow to 5 bytes with many entries.
        assert!(empty.len() + 4 <= CHUNK_OVERHEAD);
    }
}
