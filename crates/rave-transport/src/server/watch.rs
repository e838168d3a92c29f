//! Watch streaming: one task per open watch, which sends the store's watch events under the
//! credit (in bytes of [`wire::event_cost`]) that the follower granted, and stops reading the
//! store's stream while it has none (the store, not this task, decides what a watcher that
//! falls behind gets: history, or `Lagged`).

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use rave_api::{Error, ErrorKind, Range, WatchEvent};
use tokio::io::AsyncWrite;

use super::Writer;
use super::connection::{Connection, Ctx, unpanicked};
use super::iter::{Credit, IterHandle};
use crate::wire::{self, CHUNK_OVERHEAD, ServerMessage, WireError};

impl Connection {
    /// Starts the task of a new watch, or refuses it when the connection has too many open.
    pub(super) async fn open_watch<S: AsyncWrite>(
        &mut self,
        watch: u64,
        range: Range,
        from: Option<u64>,
        credit: u32,
        writer: &mut Writer<S>,
    ) -> rave_api::Result<()> {
        if self.watches.contains_key(&watch) {
            return Err(Error::protocol(format!("watch {watch} is already open")));
        }
        if self.watches.len() >= self.ctx.limits.max_in_flight.max(1) {
            let error = Error::invalid(format!(
                "too many open watches on one connection (limit {})",
                self.ctx.limits.max_in_flight
            ));
            self.refuse_watch(watch, &error, writer).await?;
            return Ok(());
        }
        let ctx = self.ctx.clone();
        let state = Arc::new(Credit::default());
        state.grant(credit);
        let task_credit = state.clone();
        let abort = self.tasks.spawn(async move {
            run_watch(&ctx, watch, range, from, &task_credit).await;
        });
        self.watch_tasks.insert(abort.id(), watch);
        self.watches.insert(
            watch,
            IterHandle {
                credit: state,
                abort,
            },
        );
        Ok(())
    }

    async fn refuse_watch<S: AsyncWrite>(
        &mut self,
        watch: u64,
        error: &Error,
        writer: &mut Writer<S>,
    ) -> rave_api::Result<()> {
        use futures::SinkExt;
        let frame = wire::encode(&ServerMessage::WatchError {
            watch,
            error: WireError::from(error),
        })?;
        writer
            .feed(frame)
            .await
            .map_err(|e| super::connection::write_error(&e))
    }
}

/// Streams one watch to the follower: a frame of the events ready now (at least one), sent
/// only while the balance is positive.
async fn run_watch(ctx: &Ctx, watch: u64, range: Range, from: Option<u64>, credit: &Credit) {
    let mut stream = match unpanicked(ctx.store.watch(range, from)).await {
        Ok(stream) => stream,
        Err(e) => return finish_watch(ctx, watch, &e).await,
    };
    let budget = ctx
        .limits
        .chunk_bytes
        .min(ctx.limits.max_frame.saturating_sub(CHUNK_OVERHEAD))
        .max(1);
    loop {
        let mut available = credit.wait().await;
        let first = match stream.next().await {
            Some(Ok(event)) => event,
            Some(Err(e)) => return finish_watch(ctx, watch, &e).await,
            None => return finish_watch(ctx, watch, &Error::Closed).await,
        };
        let mut events: Vec<WatchEvent> = Vec::new();
        let mut size = 0;
        let mut failed = None;
        let mut next = Some(first);
        while let Some(event) = next.take() {
            let cost = wire::event_cost(&event);
            available = available.saturating_sub(cost);
            credit.spend(cost);
            size += wire::event_wire_size(&event);
            events.push(event);
            if available == 0 || size >= budget {
                break;
            }
            // More events already waiting go in the same frame.
            match stream.next().now_or_never() {
                Some(Some(Ok(event))) if size + wire::event_wire_size(&event) <= budget => {
                    next = Some(event)
                }
                Some(Some(Ok(event))) => {
                    // Too big for this frame: it opens the next one.
                    if !send_events(ctx, watch, std::mem::take(&mut events)).await {
                        return;
                    }
                    available = credit.wait().await;
                    size = 0;
                    next = Some(event);
                }
                Some(Some(Err(e))) => failed = Some(e),
                Some(None) => failed = Some(Error::Closed),
                None => {}
            }
        }
        if !events.is_empty() && !send_events(ctx, watch, events).await {
            return;
        }
        if let Some(e) = failed {
            return finish_watch(ctx, watch, &e).await;
        }
    }
}

async fn send_events(ctx: &Ctx, watch: u64, events: Vec<WatchEvent>) -> bool {
    match wire::encode(&ServerMessage::WatchEvents { watch, events }) {
        Ok(frame) if frame.len() <= ctx.limits.max_frame => ctx.send(frame).await,
        Ok(frame) => {
            let e = Error::invalid(format!(
                "a commit of {} bytes does not fit in a frame (limit {})",
                frame.len(),
                ctx.limits.max_frame
            ));
            finish_watch(ctx, watch, &e).await;
            false
        }
        Err(e) => {
            finish_watch(ctx, watch, &e).await;
            false
        }
    }
}

/// Reports a watch failure, or closes the connection when the store is closing (the follower
/// then re-elects and watches again on the next leader).
async fn finish_watch(ctx: &Ctx, watch: u64, error: &Error) {
    if error.kind() == ErrorKind::Closed {
        ctx.fatal.raise(Error::Closed);
        return;
    }
    let message = ServerMessage::WatchError {
        watch,
        error: WireError::from(error),
    };
    match wire::encode(&message) {
        Ok(frame) => {
            ctx.send(frame).await;
        }
        Err(e) => tracing::error!(error = %e, "cannot encode a watch error"),
    }
}
