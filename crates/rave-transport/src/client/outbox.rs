//! The write side: callers combine their frames into as few writes as possible, and a flusher
//! task writes what the socket did not take at once.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::state::{LostOnDrop, Shared};

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
pub(super) struct Outbox {
    staging: Mutex<Staging>,
    /// Locked only by the active writer (and by `shut`).
    io: Mutex<Io>,
    /// Wakes the flusher when the socket was full or a write failed.
    queued_more: Notify,
    /// Wakes the requests waiting for room in the buffer ([`Outbox::enqueue_request`]).
    room: Notify,
    /// The bytes of requests buffered (staged and pending) beyond which requests wait.
    max_buffered: usize,
}

struct Staging {
    /// Length-prefixed frames not yet taken by the writer.
    frames: BytesMut,
    /// A caller or the flusher is writing.
    writer_active: bool,
    /// A write failed or the connection ended: the connection is unusable.
    broken: bool,
    /// The bytes the writer took into `Io::pending` and has not finished writing (all of them
    /// count until the socket took the last one).
    in_pending: usize,
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
pub(super) struct FlushPromise<'a>(&'a Outbox);

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
    pub(super) fn new(stream: WriteSide, max_buffered: usize) -> Self {
        Outbox {
            staging: Mutex::new(Staging {
                frames: BytesMut::new(),
                writer_active: false,
                broken: false,
                in_pending: 0,
            }),
            io: Mutex::new(Io {
                stream: Some(stream),
                pending: BytesMut::new(),
            }),
            queued_more: Notify::new(),
            room: Notify::new(),
            max_buffered,
        }
    }

    /// The bytes buffered towards the leader: staged plus taken by the writer (test support).
    #[cfg(test)]
    pub(super) fn buffered(&self) -> usize {
        let staging = self.staging();
        staging.frames.len() + staging.in_pending
    }

    /// [`Outbox::enqueue`] for a request: waits while the buffer holds `max_buffered` bytes or
    /// more, so a leader that stops reading stalls its callers instead of growing the buffer.
    /// Cancel-safe: nothing is staged until it returns.
    pub(super) async fn enqueue_request(
        &self,
        payload: &[u8],
    ) -> std::result::Result<Option<FlushPromise<'_>>, ()> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before the check, so a wake between the check and the await is kept.
            room.as_mut().enable();
            {
                let staging = self.staging();
                if staging.broken || staging.frames.len() + staging.in_pending < self.max_buffered {
                    drop(staging);
                    return self.enqueue(payload);
                }
            }
            room.await;
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
    pub(super) fn enqueue(
        &self,
        payload: &[u8],
    ) -> std::result::Result<Option<FlushPromise<'_>>, ()> {
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
                if staging.in_pending > 0 {
                    // The socket took everything the writer held: room for waiting requests.
                    staging.in_pending = 0;
                    self.room.notify_waiters();
                }
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
                staging.in_pending = pending.len();
            }
            match io.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    let mut staging = self.staging();
                    staging.broken = true;
                    staging.writer_active = false;
                    self.room.notify_waiters();
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Drops the write side for good; later sends fail.
    pub(super) fn shut(&self) {
        {
            let mut staging = self.staging();
            staging.broken = true;
            staging.frames = BytesMut::new();
            staging.in_pending = 0;
        }
        // Waiting requests see `broken` and fail.
        self.room.notify_waiters();
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

/// Closes the write side when the flusher ends, however it ends (the connection is over then).
struct ShutOnDrop(Arc<Outbox>);

impl Drop for ShutOnDrop {
    fn drop(&mut self) {
        self.0.shut();
    }
}

/// Writes what callers queued when the socket could not take it at once.
pub(super) async fn flush_task(out: Arc<Outbox>, shared: Arc<Shared>, stop: CancellationToken) {
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
