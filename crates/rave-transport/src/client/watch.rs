//! Watch streams from the leader: [`Client::open_watch`] and its credit, granted back as the
//! user consumes events.

use std::collections::VecDeque;
use std::sync::Arc;

use rave_api::{Error, Range, Result, WatchEvent, WatchStream};
use tokio::sync::mpsc;

use super::state::{Status, WatchItem, WatchSlot};
use super::{Client, Handle};
use crate::wire::{self, ClientMessage};

impl Client {
    /// Opens a watch of `range` after `from` (the concrete work behind
    /// [`KvStore::watch`](rave_api::KvStore::watch)).
    ///
    /// Returns once the leader has sent the first events (the starting position) or an error,
    /// so that a position older than the leader's history fails here with
    /// [`Error::Compacted`]. The stream ends with [`Error::LeaderLost`] when the connection
    /// is lost (after the events already received).
    pub async fn open_watch(&self, range: Range, from: Option<u64>) -> Result<WatchStream> {
        rave_api::watch::check_range(&range)?;
        let handle = &self.handle;
        let window = handle.limits.iter_window_bytes.max(1);
        let id = handle.next_id();
        let frame = handle.encode(&ClientMessage::WatchOpen {
            watch: id,
            range,
            from,
            credit: window,
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut state = handle.shared.lock();
            if state.status != Status::Connected {
                return Err(state.status.error());
            }
            state.watches.insert(
                id,
                WatchSlot {
                    tx,
                    balance: i64::from(window),
                },
            );
        }
        let mut watch = RemoteWatch {
            handle: handle.clone(),
            id,
            rx,
            buf: VecDeque::new(),
            failed: None,
            unacked: 0,
            window,
        };
        handle.send_request(&frame).await?;
        watch.fill().await?;
        Ok(Box::pin(futures::stream::unfold(
            watch,
            |mut watch| async move {
                let item = watch.next().await?;
                Some((item, watch))
            },
        )))
    }
}

/// A watch streamed from the leader, holding at most its window of events (plus one) that the
/// user has not consumed. Dropping it closes it on the leader.
struct RemoteWatch {
    handle: Arc<Handle>,
    id: u64,
    rx: mpsc::UnboundedReceiver<WatchItem>,
    buf: VecDeque<WatchEvent>,
    /// The error that ended the stream, once handed out.
    failed: Option<Error>,
    unacked: u64,
    window: u32,
}

impl RemoteWatch {
    /// Waits until an event is buffered (or fails).
    async fn fill(&mut self) -> Result<()> {
        while self.buf.is_empty() {
            let item = match self.rx.recv().await {
                Some(item) => item,
                None => Err(self.handle.shared.status_error()),
            };
            match item {
                Ok(events) => self.buf.extend(events),
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The next event; `None` once the stream has ended with its error.
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        if self.failed.is_some() {
            return None;
        }
        if let Err(e) = self.fill().await {
            return Some(Err(e));
        }
        let event = self.buf.pop_front()?;
        self.consumed(&event);
        Some(Ok(event))
    }

    /// Grants credit back once half the window has been consumed.
    fn consumed(&mut self, event: &WatchEvent) {
        self.unacked = self.unacked.saturating_add(wire::event_cost(event));
        if self.unacked < u64::from(self.window / 2).max(1) {
            return;
        }
        let credit = u32::try_from(self.unacked).unwrap_or(u32::MAX);
        self.unacked -= u64::from(credit);
        let Ok(frame) = self.handle.encode(&ClientMessage::WatchCredit {
            watch: self.id,
            credit,
        }) else {
            return;
        };
        {
            let mut state = self.handle.shared.lock();
            let Some(slot) = state.watches.get_mut(&self.id) else {
                return;
            };
            slot.balance += i64::from(credit);
        }
        let _ = self.handle.send(&frame);
    }
}

impl Drop for RemoteWatch {
    fn drop(&mut self) {
        let connected = {
            let mut state = self.handle.shared.lock();
            let open = state.watches.remove(&self.id).is_some();
            open && state.status == Status::Connected
        };
        if connected
            && let Ok(frame) = self
                .handle
                .encode(&ClientMessage::WatchClose { watch: self.id })
        {
            let _ = self.handle.send(&frame);
        }
    }
}
