//! The accept loop: one connection task per follower, all ended on shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rave_api::{ErrorKind, KvStore, Result};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{ConnectionCount, ServerInfo, serve_counted_connection};
use crate::wire::Limits;

/// How long the accept loop waits after a failed `accept` (EMFILE and the like) before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `store` to every connection `incoming` yields, until `shutdown` is cancelled.
///
/// `incoming` is the listener as a stream of accepted connections (on Unix,
/// `rave_election::Listener::incoming`, which already refused peers of other users). A failed
/// accept (for instance out of file descriptors) is logged and retried after a short pause,
/// never fatal. When `shutdown` fires, the loop stops accepting and aborts every connection, so
/// every follower sees its connection close immediately; then it returns.
pub async fn serve<L, S>(
    incoming: L,
    store: Arc<dyn KvStore>,
    info: ServerInfo,
    limits: Limits,
    shutdown: CancellationToken,
) -> Result<()>
where
    L: futures::Stream<Item = std::io::Result<S>> + Unpin + Send,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let connections = ConnectionCount::default();
    serve_counted(incoming, store, info, limits, shutdown, connections).await
}

/// [`serve`], counting its open connections in `connections` (the leader reads it; a follower
/// asks with [`crate::wire::Op::Stats`]).
pub async fn serve_counted<L, S>(
    mut incoming: L,
    store: Arc<dyn KvStore>,
    info: ServerInfo,
    limits: Limits,
    shutdown: CancellationToken,
    connections: ConnectionCount,
) -> Result<()>
where
    L: futures::Stream<Item = std::io::Result<S>> + Unpin + Send,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "a connection task panicked");
                }
            }
            accepted = incoming.next() => match accepted {
                Some(Ok(stream)) => {
                    let store = store.clone();
                    let limits = limits.clone();
                    let counted = connections.enter();
                    let connections = connections.clone();
                    tasks.spawn(async move {
                        let _counted = counted;
                        match serve_counted_connection(stream, store, info, limits, connections).await {
                            Ok(()) => tracing::debug!("follower disconnected"),
                            Err(e) if e.kind() == ErrorKind::Protocol => {
                                tracing::warn!(error = %e, "dropped a follower that broke the protocol");
                            }
                            Err(e) => tracing::debug!(error = %e, "follower connection ended"),
                        }
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
                None => break,
            },
        }
    }
    tasks.shutdown().await;
    Ok(())
}
