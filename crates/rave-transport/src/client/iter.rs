//! Iterator streams: [`RemoteIter`] and its credit, granted back as the user consumes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use rave_api::{Entry, Error, KvIterator, Range, Result};
use tokio::sync::mpsc;

use super::state::{IterItem, IterSlot, Status};
use super::{Client, Handle};
use crate::wire::{self, ClientMessage};

impl Client {
    /// Opens an iterator over `range` (the concrete type behind [`KvStore::iterator`](rave_api::KvStore::iterator)).
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
            snapshot: None,
        };
        handle.send_request(&frame).await?;
        iter.fill().await?;
        Ok(iter)
    }
}

/// An iterator streamed from the leader with credit-based flow control: the entries it holds
/// that the user has not consumed cost at most [`Limits::iter_window_bytes`](crate::Limits::iter_window_bytes) plus one entry.
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
    /// The sequence of the leader's snapshot (from the first chunk).
    snapshot: Option<u64>,
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
                Ok((entries, end, snapshot)) => {
                    self.buf.extend(entries);
                    self.ended = end;
                    self.snapshot = self.snapshot.or(snapshot);
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
    fn snapshot_sequence(&self) -> Option<u64> {
        self.snapshot
    }

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
