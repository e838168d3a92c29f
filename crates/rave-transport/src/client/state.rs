//! The connection state: the pending-call table, the open iterators, and the routing of each
//! message from the leader to whoever waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use rave_api::{Entry, Error, Result, WatchEvent};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::wire::{self, Reply, ServerMessage};

/// State shared with the background tasks.
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Cancelled once the connection is gone, whatever the reason.
    pub(super) lost: CancellationToken,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Connected,
    /// The connection was lost: calls fail with `LeaderLost`.
    Lost,
    /// [`KvStore::close`](rave_api::KvStore::close) was called: calls fail with `Closed`.
    Closed,
}

impl Status {
    pub(super) fn error(self) -> Error {
        match self {
            Status::Closed => Error::Closed,
            Status::Connected | Status::Lost => Error::LeaderLost,
        }
    }
}

/// What the reader hands an iterator: entries and whether they are the last, with the
/// snapshot's sequence on the first chunk.
pub(super) type IterItem = Result<(Vec<Entry>, bool, Option<u64>)>;

/// What the reader hands a watch: the events of one frame.
pub(super) type WatchItem = Result<Vec<WatchEvent>>;

pub(super) struct WatchSlot {
    pub(super) tx: mpsc::UnboundedSender<WatchItem>,
    /// Credit the server has left, in bytes of [`wire::event_cost`], as for iterators.
    pub(super) balance: i64,
}

pub(super) struct IterSlot {
    pub(super) tx: mpsc::UnboundedSender<IterItem>,
    /// Credit the server has left, in bytes of [`wire::entry_cost`]: granted minus received.
    /// Negative by at most one entry: the server may send an entry while this is positive.
    pub(super) balance: i64,
    /// Since when the iterator has been waiting for a chunk with nothing buffered (for the
    /// watchdog); `None` while it has entries or is not being read.
    pub(super) waiting_since: Option<Instant>,
}

/// A call waiting for its reply.
pub(super) struct PendingCall {
    pub(super) reply: oneshot::Sender<Result<Reply>>,
    pub(super) since: Instant,
}

pub(super) struct State {
    pub(super) status: Status,
    pub(super) pending: HashMap<u64, PendingCall>,
    pub(super) iters: HashMap<u64, IterSlot>,
    pub(super) watches: HashMap<u64, WatchSlot>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only plain maps behind: still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn status_error(&self) -> Error {
        self.lock().status.error()
    }

    /// Leaves `Connected` for `to`: fails every pending call, ends every iterator's channel
    /// (each iterator hands out what it already received, then fails), and wakes
    /// [`Client::disconnected`](super::Client::disconnected). A no-op when already disconnected.
    pub(super) fn end(&self, to: Status) {
        let (pending, iters, watches) = {
            let mut state = self.lock();
            if state.status != Status::Connected {
                return;
            }
            state.status = to;
            (
                std::mem::take(&mut state.pending),
                std::mem::take(&mut state.iters),
                std::mem::take(&mut state.watches),
            )
        };
        for (_, call) in pending {
            let _ = call.reply.send(Err(to.error()));
        }
        drop(iters);
        drop(watches);
        self.lost.cancel();
    }

    /// Routes one message from the server. An `Err` is a protocol violation that ends the
    /// connection.
    pub(super) fn dispatch(&self, message: ServerMessage) -> Result<()> {
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
            ServerMessage::IterChunk {
                iter,
                entries,
                end,
                snapshot,
            } => {
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
                let _ = slot.tx.send(Ok((entries, end, snapshot)));
                if end {
                    state.iters.remove(&iter);
                }
            }
            ServerMessage::IterError { iter, error } => {
                if let Some(slot) = self.lock().iters.remove(&iter) {
                    let _ = slot.tx.send(Err(Error::from(error)));
                }
            }
            ServerMessage::WatchEvents { watch, events } => {
                let mut state = self.lock();
                let Some(slot) = state.watches.get_mut(&watch) else {
                    // Closed by the user while the events were in flight.
                    return Ok(());
                };
                for event in &events {
                    if slot.balance <= 0 {
                        return Err(Error::protocol(format!(
                            "the leader sent events of watch {watch} beyond the credit granted"
                        )));
                    }
                    slot.balance -= i64::try_from(wire::event_cost(event)).unwrap_or(i64::MAX);
                }
                let _ = slot.tx.send(Ok(events));
            }
            ServerMessage::WatchError { watch, error } => {
                if let Some(slot) = self.lock().watches.remove(&watch) {
                    let _ = slot.tx.send(Err(Error::from(error)));
                }
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
/// Removes a pending call's entry when its future is dropped before the reply came.
pub(super) struct PendingGuard<'a> {
    pub(super) shared: &'a Shared,
    pub(super) id: u64,
    /// Cleared once the reply (or the connection's end) came: whoever sent it removed the entry,
    /// so the drop need not take the lock again.
    pub(super) armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.lock().pending.remove(&self.id);
        }
    }
}

/// Marks the connection lost when a background task ends, however it ends (even when its
/// runtime shuts down and drops it), so that no call waits forever for a dead reader.
pub(super) struct LostOnDrop(pub(super) Arc<Shared>);

impl Drop for LostOnDrop {
    fn drop(&mut self) {
        self.0.end(Status::Lost);
    }
}
