//! The follower's side: a [`KvStore`] whose operations travel to the leader.
//!
//! A [`Client`] owns one connection. Two background tasks serve it: a reader, which hands each
//! reply to the call waiting for its id and each iterator chunk to its iterator, and a writer,
//! which sends queued frames. Calls are pipelined: any number may be in flight at once.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rave_api::{BatchOp, Entry, Error, KvIterator, KvStore, Range, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
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
    out: mpsc::UnboundedSender<Bytes>,
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
    /// Entries the server may still send: granted minus received.
    outstanding: u64,
}

struct State {
    status: Status,
    pending: HashMap<u64, oneshot::Sender<Result<Reply>>>,
    iters: HashMap<u64, IterSlot>,
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
        for (_, reply) in pending {
            let _ = reply.send(Err(to.error()));
        }
        drop(iters);
        self.lost.cancel();
    }

    /// Routes one message from the server. An `Err` is a protocol violation that ends the
    /// connection.
    fn dispatch(&self, message: ServerMessage) -> Result<()> {
        match message {
            ServerMessage::Response { id, result } => {
                let waiting = self.lock().pending.remove(&id);
                match waiting {
                    Some(reply) => {
                        let _ = reply.send(result.map_err(Error::from));
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
                let received = entries.len() as u64;
                if received > slot.outstanding {
                    return Err(Error::protocol(format!(
                        "the leader sent {received} entries of iterator {iter} with only {} granted",
                        slot.outstanding
                    )));
                }
                slot.outstanding -= received;
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
        self.stop.cancel();
    }
}

/// Removes a pending call's entry when its future is dropped before the reply came.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.id);
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
        let (out, out_rx) = mpsc::unbounded_channel();
        tokio::spawn(read_task(reader, shared.clone(), stop.clone()));
        tokio::spawn(write_task(writer, out_rx, shared.clone(), stop.clone()));
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
        let window = handle.limits.iter_window.max(1);
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
                    outstanding: u64::from(window),
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
        if handle.out.send(frame).is_err() {
            return Err(handle.shared.status_error());
        }
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
            state.pending.insert(id, tx);
        }
        let _guard = PendingGuard {
            shared: &handle.shared,
            id,
        };
        if handle.out.send(frame).is_err() {
            return Err(handle.shared.status_error());
        }
        match rx.await {
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

async fn write_task<S: AsyncWrite>(
    mut writer: FramedWrite<WriteHalf<S>, LengthDelimitedCodec>,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let _lost = LostOnDrop(shared.clone());
    let write = async {
        while let Some(frame) = rx.recv().await {
            writer.feed(frame).await?;
            while let Ok(frame) = rx.try_recv() {
                writer.feed(frame).await?;
            }
            SinkExt::<Bytes>::flush(&mut writer).await?;
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = shared.lost.cancelled() => {}
        result = write => {
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

/// An iterator streamed from the leader with credit-based flow control: it never holds more
/// than [`Limits::iter_window`] entries that the user has not consumed.
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
    /// Entries handed out since credit was last granted back.
    unacked: u32,
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
        while self.buf.is_empty() && !self.ended {
            let item = match self.rx.recv().await {
                Some(item) => item,
                None => Err(self.handle.shared.status_error()),
            };
            match item {
                Ok((entries, end)) => {
                    self.buf.extend(entries);
                    self.ended = end;
                }
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Grants credit back once half the window has been consumed, so the leader streams ahead
    /// while the user works, and the buffer never exceeds the window.
    fn consumed(&mut self, n: usize) {
        if self.ended {
            return;
        }
        self.unacked = self
            .unacked
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        if self.unacked < (self.window / 2).max(1) {
            return;
        }
        let credit = std::mem::take(&mut self.unacked);
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
            slot.outstanding += u64::from(credit);
        }
        let _ = self.handle.out.send(frame);
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
        self.consumed(n);
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
            let _ = self.handle.out.send(frame);
        }
    }
}
