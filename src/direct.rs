//! Direct access to a shared backend: no election, no socket.
//!
//! A backend whose [`rave_api::Capabilities::shared`] is on (an etcd cluster) is already
//! shared by every process and machine that opens it, with its own replication and
//! consistency. Electing a leader among the processes of one machine would add a hop and a
//! point of failure and protect nothing, so a `Rave` handle on it opens the store itself and
//! hands it to every operation: role [`rave_election::Role::Direct`]. Everything else is the
//! same as for a leader: the handle stamps its writes (exactly once through the store's
//! records), bounds each operation by its `deadline`, queues operations until the store is
//! open (within `election_timeout`), and fails them with the open's error when it cannot open.

use std::sync::Arc;
use std::time::Duration;

use rave_api::Error;

use crate::leadership::{Leadership, sleep_or_cancel};

/// The driver of a handle on a shared backend: opens the store (again after a failed open,
/// every 100 ms), serves it until the handle closes, then closes it.
pub(crate) async fn drive(core: Arc<Leadership>) {
    while !core.cancel.is_cancelled() {
        let opener = core.clone();
        let opened = tokio::task::spawn_blocking(move || opener.open_engine())
            .await
            .unwrap_or_else(|e| Err(Error::other(format!("the open task failed: {e}"))));
        match opened {
            Ok(store) => {
                core.direct(store.clone());
                core.cancel.cancelled().await;
                if let Err(err) = store.close().await {
                    tracing::warn!(%err, "closing the shared store failed");
                }
                return;
            }
            Err(err) => {
                tracing::warn!(%err, "could not open the shared store");
                core.fail_waiters(&err);
                sleep_or_cancel(&core, Duration::from_millis(100)).await;
            }
        }
    }
}
