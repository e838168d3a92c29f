//! Iterator streaming: one task per open iterator, which never sends beyond the credit (in
//! bytes of entries) that the follower granted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::SinkExt;
use rave_api::{Entry, Error, ErrorKind, KvIterator, Range, Result};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::Writer;
use super::connection::{Connection, Ctx, unpanicked, write_error};
use crate::wire::{self, CHUNK_OVERHEAD, ServerMessage, WireError};

/// Credit of one iterator, in bytes of [`wire::entry_cost`]: granted by the follower, spent by
/// the iterator task. The balance may go negative by one entry (see [`wire`]'s protocol notes).
#[derive(Default)]
pub(super) struct Credit {
    balance: AtomicI64,
    granted: Notify,
}

impl Credit {
    pub(super) fn grant(&self, n: u32) {
        self.balance.fetch_add(i64::from(n), Ordering::AcqRel);
        // Stores a wakeup when the task is not waiting yet, so no grant is missed.
        self.granted.notify_one();
    }

    /// Waits until the balance is positive; returns it.
    pub(super) async fn wait(&self) -> u64 {
        loop {
            let balance = self.balance.load(Ordering::Acquire);
            if balance > 0 {
                return balance.unsigned_abs();
            }
            self.granted.notified().await;
        }
    }

    /// Only the iterator (or watch) task spends.
    pub(super) fn spend(&self, cost: u64) {
        self.balance
            .fetch_sub(i64::try_from(cost).unwrap_or(i64::MAX), Ordering::AcqRel);
    }
}

pub(super) struct IterHandle {
    pub(super) credit: Arc<Credit>,
    pub(super) abort: AbortHandle,
}

impl Connection {
    /// Starts the task of a new iterator, or refuses it when the connection has too many open.
    pub(super) async fn open_iterator<S: AsyncWrite>(
        &mut self,
        iter: u64,
        range: Range,
        credit: u32,
        writer: &mut Writer<S>,
    ) -> Result<()> {
        if self.iters.contains_key(&iter) {
            return Err(Error::protocol(format!("iterator {iter} is already open")));
        }
        if self.iters.len() >= self.ctx.limits.max_in_flight.max(1) {
            let error = WireError::from(&Error::invalid(format!(
                "too many open iterators on one connection (limit {})",
                self.ctx.limits.max_in_flight
            )));
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
        Ok(())
    }
}

/// Streams one iterator to the follower, never beyond its credit: an entry goes out only while
/// the balance is positive, so the follower's buffer stays within its window plus one entry.
async fn run_iterator(ctx: &Ctx, iter: u64, range: Range, credit: &Credit) {
    let iter_error = |e: &Error| ServerMessage::IterError {
        iter,
        error: WireError::from(e),
    };
    let mut remaining = range.limit;
    let opened = unpanicked(ctx.store.iterator(range)).await;
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
    let mut snapshot = cursor.snapshot_sequence();
    // Entries read from the store but not sent yet (the credit ran out in the middle of them).
    let mut pending: VecDeque<Entry> = VecDeque::new();
    let mut exhausted = false;
    loop {
        let mut available = credit.wait().await;
        if pending.is_empty() && !exhausted {
            let read = unpanicked(cursor.next_chunk(ctx.limits.chunk_entries.max(1))).await;
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
            snapshot: snapshot.take(),
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
            snapshot: Some(u64::MAX),
            entries: Vec::new(),
            end: true,
        })
        .unwrap();
        // The array header may grow to 5 bytes with many entries.
        assert!(empty.len() + 4 <= CHUNK_OVERHEAD);
    }
}
