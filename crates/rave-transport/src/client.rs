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

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use rave_api::{BatchOp, Entry, Error, KvIterator, KvStore, Range, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::wire::{self, ClientMessage, Limits, MAGIC, Op, PROTOCOL_VERSION, Reply, ServerMessage};

/// What the leader said in its [`ServerMessage::Welcome`].
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

/// State shared with the background tasks.
struct Shared {
    state: Mutex<State>,
    /// Cancelled once the connection is gone, whatever the reason.
    lost: CancellationToken,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Connected,
    /// The connection was lost: calls fail with `LeaderLost`.
    Lost,
    /// [`KvStore::close`] was called: calls fail with `Closed`.
    Closed,
}

impl Status {
    fn error(self) -> Error {
        match self {
            Status::Closed => Error::Closed,
            Status::Connected | Status::Lost => Error::LeaderLost,
        }
    }
}

type IterItem = Result<(Vec<Entry>, bool)>;

struct IterSlot {
    tx: mpsc::UnboundedSender<IterItem>,
    /// Credit the server has left, in bytes of [`wire::entry_cost`]: granted minus received.
    /// Negative by at most one entry: the server may send an entry while this is positive.
    balance: i64,
    /// Since when the iterator has been waiting for a chunk with nothing buffered (for the
    /// watchdog); `None` while it has entries or is not being read.
    waiting_since: Option<Instant>,
}

/// A call waiting for its reply.
struct PendingCall {
    reply: oneshot::Sender<Result<Reply>>,
    since: Instant,
}

struct State {
    status: Status,
    pending: HashMap<u64, PendingCall>,
    iters: HashMap<u64, IterSlot>,
}

type WriteSide = Box<dyn AsyncWrite + Send + Unpin>;

/// The write side of the connection, shared by every caller and the flusher task.
///
/// Callers write their frames themselves: no hand-off to another thread on the common path.
/// Frames are appended to `staging` (a short critical section: a copy, no system call). The
/// caller that finds no writer active becomes the writer (a [`FlushPromise`]): it writes what is
/// staged, including frames other callers append meanwhile, until nothing is left, so concurrent
/// callers never queue behind each other's `write(2)`. Whatever the socket does not take at
/// once is left to the flusher task, which then is the writer. (Holding frames back to batch a
/// burst into one write was measured too: it turns a pipelined stream into lock-step batches
/// and cost a quarter of the throughput with 32 calls in flight.)
///
/// Invariant: while frames are staged or pending, `writer_active` is set and either a
/// [`FlushPromise`] is alive or the flusher has been notified, so every frame is written, in
/// order.
struct Outbox {
    staging: Mutex<Staging>,
    /// Locked only by the active writer (and by `shut`).
    io: Mutex<Io>,
    /// Wakes the flusher when the socket was full or a write failed.
    queued_more: Notify,
}

struct Staging {
    /// Length-prefixed frames not yet taken by the writer.
    frames: BytesMut,
    /// A caller or the flusher is writing.
    writer_active: bool,
    /// A write failed or the connection ended: the connection is unusable.
    broken: bool,
}

struct Io {
    /// `None` once the connection ended: dropping it (with the reader's half) closes the socket
    /// even while clones of the client remain.
    stream: Option<WriteSide>,
    /// Bytes taken from `staging` that the socket has not accepted yet.
    pending: BytesMut,
}

/// A caller's duty to write what is staged; fulfilled when dropped (even if the call is
/// cancelled, so no frame is ever stranded).
struct FlushPromise<'a>(&'a Outbox);

impl Drop for FlushPromise<'_> {
    fn drop(&mut self) {
        // A waker that does nothing: if the socket is full, the flusher (woken then) polls again
        // with its own waker, which replaces this one.
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match self.0.poll_write_staged(&mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "writing to the leader failed");
                // The flusher sees `broken` and ends the connection.
                self.0.queued_more.notify_one();
            }
            Poll::Pending => self.0.queued_more.notify_one(),
        }
    }
}

impl Outbox {
    fn new(stream: WriteSide) -> Self {
        Outbox {
            staging: Mutex::new(Staging {
                frames: BytesMut::new(),
                writer_active: false,
                broken: false,
            }),
            io: Mutex::new(Io {
                stream: Some(stream),
                pending: BytesMut::new(),
            }),
            queued_more: Notify::new(),
        }
    }

    fn staging(&self) -> MutexGuard<'_, Staging> {
        // Only byte buffers and flags behind these locks: a panic cannot leave them inconsistent.
        self.staging.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn io(&self) -> MutexGuard<'_, Io> {
        self.io.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stages `payload` as one frame. `Ok(Some)`: this caller is the writer (dropping the
    /// promise writes); `Ok(None)`: the active writer will take it. `Err`: the connection is
    /// broken.
    fn enqueue(&self, payload: &[u8]) -> std::result::Result<Option<FlushPromise<'_>>, ()> {
        let mut staging = self.staging();
        if staging.broken {
            return Err(());
        }
        // The frame length fits: `Handle::encode` refused payloads over `max_frame` (a u32).
        staging.frames.reserve(4 + payload.len());
        staging.frames.put_u32(payload.len() as u32);
        staging.frames.extend_from_slice(payload);
        if staging.writer_active {
            return Ok(None);
        }
        staging.writer_active = true;
        Ok(Some(FlushPromise(self)))
    }

    /// The active writer's loop: writes pending and newly staged bytes until none are left
    /// (then steps down), the socket is full (`Pending`: still the writer), or a write fails.
    fn poll_write_staged(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut io = self.io();
        loop {
            if io.pending.is_empty() {
                let mut staging = self.staging();
                if staging.broken {
                    staging.writer_active = false;
                    return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
                }
                if staging.frames.is_empty() {
                    staging.writer_active = false;
                    return Poll::Ready(Ok(()));
                }
                // Swap buffers: the staged bytes move without a copy, and the old pending
                // buffer's capacity is reused for staging.
                let Io { pending, .. } = &mut *io;
                std::mem::swap(pending, &mut staging.frames);
            }
            match io.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    let mut staging = self.staging();
                    staging.broken = true;
                    staging.writer_active = false;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Drops the write side for good; later sends fail.
    fn shut(&self) {
        {
            let mut staging = self.staging();
            staging.broken = true;
            staging.frames = BytesMut::new();
        }
        let mut io = self.io();
        io.pending = BytesMut::new();
        io.stream = None;
    }
}

impl Io {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Ready(Err(std::io::ErrorKind::NotConnected.into()));
        };
        while !self.pending.is_empty() {
            match Pin::new(&mut *stream).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.pending.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(stream).poll_flush(cx)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only plain maps behind: still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn status_error(&self) -> Error {
        self.lock().status.error()
    }

    /// Leaves `Connected` for `to`: fails every pending call, ends every iterator's channel
    /// (each iterator hands out what it already received, then fails), and wakes
    /// [`Client::disconnected`]. A no-op when already disconnected.
    fn end(&self, to: Status) {
        let (pending, iters) = {
            let mut state = self.lock();
            if state.status != Status::Connected {
                return;
            }
            state.status = to;
            (
                std::mem::take(&mut state.pending),
                std::mem::take(&mut state.iters),
            )
        };
        for (_, call) in pending {
            let _ = call.reply.send(Err(to.error()));
        }
        drop(iters);
        self.lost.cancel();
    }

    /// Fails the calls older than `limit` with [`Error::Timeout`] and hands the same error to
    /// iterators that waited that long for a chunk (they stay usable: a later call waits again).
    fn expire(&self, limit: Duration) {
        let now = Instant::now();
        let overdue = |since: Instant| now.saturating_duration_since(since) >= limit;
        let expired: Vec<PendingCall> = {
            let mut state = self.lock();
            for slot in state.iters.values_mut() {
                if slot.waiting_since.is_some_and(overdue) {
                    slot.waiting_since = None;
                    let _ = slot.tx.send(Err(Error::Timeout { waited: limit }));
                }
            }
            state
                .pending
                .extract_if(|_, call| overdue(call.since))
                .map(|(_, call)| call)
                .collect()
        };
        for call in expired {
            let waited = now.saturating_duration_since(call.since);
            let _ = call.reply.send(Err(Error::Timeout { waited }));
        }
    }

    /// Routes one message from the server. An `Err` is a protocol violation that ends the
    /// connection.
    fn dispatch(&self, message: ServerMessage) -> Result<()> {
        match message {
            ServerMessage::Response { id, result } => {
                let waiting = self.lock().pending.remove(&id);
                match waiting {
                    Some(call) => {
                        let _ = call.reply.send(result.map_err(Error::from));
                    }
                    // The caller gave up (its future was dropped).
                    None => tracing::trace!(id, "reply for a call nobody awaits"),
                }
            }
            ServerMessage::IterChunk { iter, entries, end } => {
                let mut state = self.lock();
                let Some(slot) = state.iters.get_mut(&iter) else {
                    // Closed by the user while the chunk was in flight.
                    return Ok(());
                };
                for entry in &entries {
                    if slot.balance <= 0 {
                        return Err(Error::protocol(format!(
                            "the leader sent entries of iterator {iter} beyond the credit granted"
                        )));
                    }
                    let cost = wire::entry_cost(entry);
                    slot.balance -= i64::try_from(cost).unwrap_or(i64::MAX);
                }
                slot.waiting_since = None;
                let _ = slot.tx.send(Ok((entries, end)));
                if end {
                    state.iters.remove(&iter);
                }
            }
            ServerMessage::IterError { iter, error } => {
                if let Some(slot) = self.lock().iters.remove(&iter) {
                    let _ = slot.tx.send(Err(Error::from(error)));
                }
            }
            ServerMessage::Event { topic, .. } => {
                tracing::trace!(%topic, "ignoring an event this client does not handle");
            }
            ServerMessage::Refused { message } => {
                tracing::warn!(%message, "the leader dropped this connection");
                return Err(Error::LeaderLost);
            }
            ServerMessage::Welcome { .. } => {
                return Err(Error::protocol("a second Welcome"));
            }
        }
        Ok(())
    }
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

    /// Sends one encoded message now (or queues it behind others); a failed write ends the
    /// connection.
    fn send(&self, frame: &[u8]) -> Result<()> {
        match self.out.enqueue(frame) {
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

/// Removes a pending call's entry when its future is dropped before the reply came.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
    /// Cleared once the reply (or the connection's end) came: whoever sent it removed the entry,
    /// so the drop need not take the lock again.
    armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.lock().pending.remove(&self.id);
        }
    }
}

fn read_error(e: &std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Error::protocol(format!("bad frame from the leader: {e}"))
    } else {
        Error::LeaderLost
    }
}

impl Client {
    /// Performs the handshake on `stream` and starts the connection's background tasks.
    ///
    /// Fails with [`rave_api::ErrorKind::Protocol`] when the peer is not a rave leader of this
    /// protocol version (junk, a refusal, or no Welcome within
    /// [`Limits::handshake_timeout`]), and with [`Error::LeaderLost`] when the peer closes or
    /// resets the connection during the handshake (a leader that is going away: elect again).
    pub async fn connect<S>(stream: S, limits: Limits) -> Result<(Client, Welcome)>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (read_half, write_half) = tokio::io::split(stream);
        let mut reader = FramedRead::new(read_half, limits.codec());
        let mut writer = FramedWrite::new(write_half, limits.codec());
        let welcome = match tokio::time::timeout(
            limits.handshake_timeout,
            handshake(&mut reader, &mut writer),
        )
        .await
        {
            Ok(result) => result?,
            Err(_) => {
                return Err(Error::protocol(format!(
                    "no Welcome within {:?}: not a rave leader",
                    limits.handshake_timeout
                )));
            }
        };

        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                status: Status::Connected,
                pending: HashMap::new(),
                iters: HashMap::new(),
            }),
            lost: CancellationToken::new(),
        });
        let stop = CancellationToken::new();
        // The handshake's frame is written (`send` flushes), so nothing is left in its buffer.
        let out = Arc::new(Outbox::new(Box::new(writer.into_inner())));
        tokio::spawn(read_task(reader, shared.clone(), stop.clone()));
        tokio::spawn(flush_task(out.clone(), shared.clone(), stop.clone()));
        if let Some(limit) = limits.call_timeout {
            tokio::spawn(watchdog(limit, shared.clone(), stop.clone()));
        }
        let handle = Handle {
            shared,
            out,
            limits,
            next_id: AtomicU64::new(1),
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
        };
        Ok((
            Client {
                handle: Arc::new(handle),
            },
            welcome,
        ))
    }

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

    /// The limits this client was connected with.
    pub fn limits(&self) -> &Limits {
        &self.handle.limits
    }

    /// Opens an iterator over `range` (the concrete type behind [`KvStore::iterator`]).
    ///
    /// Returns once the leader has sent the first chunk or an error, so errors opening the
    /// snapshot surface here.
    pub async fn open_iterator(&self, range: Range) -> Result<RemoteIter> {
        let handle = &self.handle;
        let window = handle.limits.iter_window_bytes.max(1);
        let id = handle.next_id();
        let frame = handle.encode(&ClientMessage::IterOpen {
            iter: id,
            range,
            credit: window,
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut state = handle.shared.lock();
            if state.status != Status::Connected {
                return Err(state.status.error());
            }
            state.iters.insert(
                id,
                IterSlot {
                    tx,
                    balance: i64::from(window),
                    // Set by `fill`, which starts its own clock first.
                    waiting_since: None,
                },
            );
        }
        // From here on, dropping `iter` (even by cancelling this future) closes it remotely.
        let mut iter = RemoteIter {
            handle: handle.clone(),
            id,
            rx,
            buf: VecDeque::new(),
            ended: false,
            failed: None,
            unacked: 0,
            window,
        };
        handle.send(&frame)?;
        iter.fill().await?;
        Ok(iter)
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
        handle.send(&frame)?;
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

async fn handshake<S>(
    reader: &mut FramedRead<ReadHalf<S>, LengthDelimitedCodec>,
    writer: &mut FramedWrite<WriteHalf<S>, LengthDelimitedCodec>,
) -> Result<Welcome>
where
    S: AsyncRead + AsyncWrite,
{
    let hello = wire::encode(&ClientMessage::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
    })?;
    writer.send(hello).await.map_err(|_| Error::LeaderLost)?;
    let frame = match reader.next().await {
        Some(Ok(frame)) => frame,
        Some(Err(e)) => return Err(read_error(&e)),
        None => return Err(Error::LeaderLost),
    };
    match wire::decode::<ServerMessage>(&frame)? {
        ServerMessage::Welcome {
            version,
            epoch,
            pid,
        } if version == PROTOCOL_VERSION => Ok(Welcome {
            version,
            epoch,
            pid,
        }),
        ServerMessage::Welcome { version, .. } => Err(Error::protocol(format!(
            "the leader speaks protocol version {version}, this client {PROTOCOL_VERSION}"
        ))),
        ServerMessage::Refused { message } => Err(Error::protocol(format!(
            "the leader refused the connection: {message}"
        ))),
        _ => Err(Error::protocol("the leader did not start with Welcome")),
    }
}

/// Marks the connection lost when a background task ends, however it ends (even when its
/// runtime shuts down and drops it), so that no call waits forever for a dead reader.
struct LostOnDrop(Arc<Shared>);

impl Drop for LostOnDrop {
    fn drop(&mut self) {
        self.0.end(Status::Lost);
    }
}

async fn read_task<S: AsyncRead>(
    mut reader: FramedRead<ReadHalf<S>, LengthDelimitedCodec>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let _lost = LostOnDrop(shared.clone());
    let read = async {
        loop {
            let frame = match reader.next().await {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return read_error(&e),
                None => return Error::LeaderLost,
            };
            let dispatched =
                wire::decode::<ServerMessage>(&frame).and_then(|message| shared.dispatch(message));
            if let Err(e) = dispatched {
                return e;
            }
        }
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = shared.lost.cancelled() => {}
        why = read => {
            tracing::debug!(error = %why, "lost the connection to the leader");
        }
    }
}

/// Fails calls, and wakes iterators, that waited for the leader longer than `limit`: one timer
/// per connection instead of one per call (arming a timer per call costs several percent of a
/// round trip). Checks every eighth of `limit` (at least every millisecond, at most every
/// second), so a call fails between `limit` and `limit` plus one period.
async fn watchdog(limit: Duration, shared: Arc<Shared>, stop: CancellationToken) {
    let period = (limit / 8).clamp(Duration::from_millis(1), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch = async {
        loop {
            ticks.tick().await;
            shared.expire(limit);
        }
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = shared.lost.cancelled() => {}
        () = watch => {}
    }
}

/// Closes the write side when the flusher ends, however it ends (the connection is over then).
struct ShutOnDrop(Arc<Outbox>);

impl Drop for ShutOnDrop {
    fn drop(&mut self) {
        self.0.shut();
    }
}

/// Writes what callers queued when the socket could not take it at once.
async fn flush_task(out: Arc<Outbox>, shared: Arc<Shared>, stop: CancellationToken) {
    let _lost = LostOnDrop(shared.clone());
    let _shut = ShutOnDrop(out.clone());
    let flush = async {
        loop {
            out.queued_more.notified().await;
            std::future::poll_fn(|cx| out.poll_write_staged(cx)).await?;
        }
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = shared.lost.cancelled() => {}
        result = flush => {
            let result: std::io::Result<()> = result;
            if let Err(e) = result {
                tracing::debug!(error = %e, "writing to the leader failed");
            }
        }
    }
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
        self.call(Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        })
        .await
        .and_then(expect_done)
    }

    async fn del(&self, key: &[u8]) -> Result<()> {
        self.call(Op::Del { key: key.to_vec() })
            .await
            .and_then(expect_done)
    }

    async fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
        self.call(Op::Batch { ops }).await.and_then(expect_done)
    }

    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
        Ok(Box::new(self.open_iterator(range).await?))
    }

    async fn clear(&self, range: Range) -> Result<()> {
        self.call(Op::Clear { range }).await.and_then(expect_done)
    }

    async fn close(&self) -> Result<()> {
        self.handle.close();
        Ok(())
    }
}

/// An iterator streamed from the leader with credit-based flow control: the entries it holds
/// that the user has not consumed cost at most [`Limits::iter_window_bytes`] plus one entry.
///
/// On connection loss it first hands out the entries it already received, then fails with
/// [`Error::LeaderLost`]. Dropping it closes it on the leader.
pub struct RemoteIter {
    handle: Arc<Handle>,
    id: u64,
    rx: mpsc::UnboundedReceiver<IterItem>,
    buf: VecDeque<Entry>,
    /// The leader sent its last chunk.
    ended: bool,
    /// A terminal error, repeated by every later call.
    failed: Option<Error>,
    /// The cost of the entries handed out since credit was last granted back.
    unacked: u64,
    /// The window, in bytes of [`wire::entry_cost`].
    window: u32,
}

impl std::fmt::Debug for RemoteIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteIter")
            .field("id", &self.id)
            .field("buffered", &self.buf.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl RemoteIter {
    /// Waits until an entry is buffered or the iterator has ended.
    async fn fill(&mut self) -> Result<()> {
        let started = Instant::now();
        while self.buf.is_empty() && !self.ended {
            let item = match self.poll_or_mark_waiting() {
                Some(item) => item,
                None => match self.rx.recv().await {
                    Some(item) => item,
                    None => Err(self.handle.shared.status_error()),
                },
            };
            match item {
                Ok((entries, end)) => {
                    self.buf.extend(entries);
                    self.ended = end;
                }
                // The watchdog's verdict on an earlier wait that was abandoned (its future
                // dropped) is not about this one.
                Err(Error::Timeout { .. })
                    if self
                        .handle
                        .limits
                        .call_timeout
                        .is_some_and(|limit| started.elapsed() < limit) => {}
                // Not terminal: the leader may still answer, and a later call waits again.
                Err(e @ Error::Timeout { .. }) => return Err(e),
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Takes what the reader already delivered or, when nothing is there, tells the watchdog
    /// that this iterator is waiting. Under the state lock, so no chunk slips in between (the
    /// reader delivers under it too).
    fn poll_or_mark_waiting(&mut self) -> Option<IterItem> {
        let mut state = self.handle.shared.lock();
        match self.rx.try_recv() {
            Ok(item) => Some(item),
            Err(mpsc::error::TryRecvError::Disconnected) => Some(Err(state.status.error())),
            Err(mpsc::error::TryRecvError::Empty) => {
                if let Some(slot) = state.iters.get_mut(&self.id)
                    && slot.waiting_since.is_none()
                {
                    slot.waiting_since = Some(Instant::now());
                }
                None
            }
        }
    }

    /// Grants credit back once half the window has been consumed, so the leader streams ahead
    /// while the user works, and the buffer never exceeds the window.
    fn consumed(&mut self, entries: &[Entry]) {
        if self.ended {
            return;
        }
        let cost: u64 = entries.iter().map(wire::entry_cost).sum();
        self.unacked = self.unacked.saturating_add(cost);
        if self.unacked < u64::from(self.window / 2).max(1) {
            return;
        }
        // Never more than a u32 at once; the rest waits for the next grant.
        let credit = u32::try_from(self.unacked).unwrap_or(u32::MAX);
        self.unacked -= u64::from(credit);
        let Ok(frame) = self.handle.encode(&ClientMessage::IterCredit {
            iter: self.id,
            credit,
        }) else {
            return;
        };
        {
            let mut state = self.handle.shared.lock();
            let Some(slot) = state.iters.get_mut(&self.id) else {
                return;
            };
            // Recorded before sending, so the reader never sees entries it cannot account for.
            slot.balance += i64::from(credit);
        }
        let _ = self.handle.send(&frame);
    }
}

#[async_trait]
impl KvIterator for RemoteIter {
    async fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.handle.shared.lock().status == Status::Closed {
            return Err(Error::Closed);
        }
        self.fill().await?;
        let n = max.max(1).min(self.buf.len());
        let chunk: Vec<Entry> = self.buf.drain(..n).collect();
        self.consumed(&chunk);
        Ok(chunk)
    }
}

impl Drop for RemoteIter {
    fn drop(&mut self) {
        let connected = {
            let mut state = self.handle.shared.lock();
            state.iters.remove(&self.id);
            state.status == Status::Connected
        };
        if connected
            && !self.ended
            && self.failed.is_none()
            && let Ok(frame) = self
                .handle
                .encode(&ClientMessage::IterClose { iter: self.id })
        {
            let _ = self.handle.send(&frame);
        }
    }
}
