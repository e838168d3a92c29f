//! The live feed of an [`EngineStore`](super::EngineStore): every commit, as the engine thread
//! makes it, to every watcher of the store (a bounded broadcast ring; see
//! [`crate::watch`]).
//!
//! The engine thread never waits for a watcher: a watcher that falls more than
//! [`crate::WatchOptions::live_commits`] commits behind loses its place in the ring and reads
//! the change log instead ([`crate::changelog`]). Large commits are not kept in the ring at
//! all when the log holds them (the ring's memory stays near `live_commits` ×
//! [`INLINE_BYTES`]): watchers read those from the log.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::WatchOptions;
use crate::watch::Commit;

/// The largest commit (bytes of keys and values) passed to watchers in memory when the change
/// log holds it too.
pub const INLINE_BYTES: usize = 64 << 10;

/// What the feed carries.
#[derive(Clone, Debug)]
pub(crate) enum Live {
    /// A commit, as applied.
    Commit(Arc<Commit>),
    /// Commit `.0` is in the change log: read it there.
    InLog(u64),
    /// Commit `.0` failed in the engine, which may have written it all the same: the change
    /// log says whether it did.
    Uncertain(u64),
    /// The store closed.
    Closed,
}

/// The sending side, held by the engine thread and (to subscribe) by the store.
#[derive(Clone, Debug)]
pub(crate) struct Hub {
    tx: broadcast::Sender<Live>,
    options: Arc<WatchOptions>,
}

impl Hub {
    /// A feed keeping the last [`WatchOptions::live_commits`] messages (at least one).
    pub fn new(options: WatchOptions) -> Self {
        Hub {
            tx: broadcast::channel(options.live_commits.max(1)).0,
            options: Arc::new(options),
        }
    }

    /// The store's history and pacing options.
    pub fn options(&self) -> &WatchOptions {
        &self.options
    }

    /// A receiver of every message sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.tx.subscribe()
    }

    /// Whether anyone listens (the engine thread skips building commits for nobody).
    pub fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes a commit that reached the engine; `logged` when the change log holds it.
    pub fn committed(&self, commit: Commit, logged: bool) {
        let message = if logged && commit.payload_len() > INLINE_BYTES {
            Live::InLog(commit.sequence)
        } else {
            Live::Commit(Arc::new(commit))
        };
        // No receiver is not an error: nobody watches.
        let _ = self.tx.send(message);
    }

    /// Publishes that commit `seq` failed (it may be in the engine all the same).
    pub fn uncertain(&self, seq: u64) {
        let _ = self.tx.send(Live::Uncertain(seq));
    }

    /// Ends every watcher.
    pub fn closed(&self) {
        let _ = self.tx.send(Live::Closed);
    }
}
