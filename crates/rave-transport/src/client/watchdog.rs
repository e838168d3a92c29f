//! The timeout watchdog: one timer per connection fails calls and wakes iterators that waited
//! too long.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rave_api::Error;
use tokio_util::sync::CancellationToken;

use super::state::{PendingCall, Shared};

impl Shared {
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
}

/// Fails calls, and wakes iterators, that waited for the leader longer than `limit`: one timer
/// per connection instead of one per call (arming a timer per call costs several percent of a
/// round trip). Checks every eighth of `limit` (at least every millisecond, at most every
/// second), so a call fails between `limit` and `limit` plus one period.
pub(super) async fn watchdog(limit: Duration, shared: Arc<Shared>, stop: CancellationToken) {
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
