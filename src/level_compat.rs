//! Level-compatible mode ([`crate::RaveOptions::level_compat`]): one LevelDB directory shared
//! with Node's rave-level, either side leading.
//!
//! - **The lock.** rave-level's leader is whoever opens LevelDB (classic-level), which takes a
//!   POSIX lock on `<dir>/LOCK`. rave's LevelDB engine takes the same lock when it opens
//!   (`rave-backend-leveldb`'s `posix_lock`), so a rave leader, which holds rave's own
//!   `rave.lock` and then opens the engine, excludes a Node leader and the other way round. A
//!   rave candidate that gets `rave.lock` but finds `LOCK` held ([`lock_busy`]) lets go and
//!   looks for the leader again, without failing the operations that wait for one.
//! - **Serving Node.** A rave leader also serves many-level's protocol on
//!   `<dir>/rave-level.sock` ([`serve_beside`]), the socket rave-level connects to first, so
//!   Node processes follow it. It binds only while it holds `LOCK` (it has opened the engine).
//! - **Following Node.** A handle that finds no rave leader on rave's socket connects to
//!   `rave-level.sock` and follows whatever serves it ([`try_follow`]) through a many-level
//!   guest ([`rave_level::Guest`]).
//! - **Refusals.** Only the LevelDB engine (Node's leader always opens LevelDB: any other engine
//!   would split the data), and only directories whose socket path Node does not truncate
//!   ([`crate::level_socket::MAX_SOCKET_PATH`]). Unix only.

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use rave_api::{Error, KvStore, Result};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::RaveOptions;

/// The engine name Level-compatible mode requires.
const LEVELDB: &str = "leveldb";

/// Refuses what Level-compatible mode cannot share with Node: another engine, a socket path
/// Node would truncate, a platform without unix sockets.
pub(crate) fn check(engine: &str, dir: &Path, options: &RaveOptions) -> Result<()> {
    if !options.level_compat {
        return Ok(());
    }
    if engine != LEVELDB {
        return Err(Error::invalid(format!(
            "Level-compatible mode needs the LevelDB engine, not {engine}: rave-level's Node \
             leader always opens LevelDB in the directory, so another engine would split the data"
        )));
    }
    #[cfg(unix)]
    {
        crate::level_socket::socket_path(dir).map(|_| ())
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Err(Error::Unsupported {
            message: "Level-compatible mode is unix only (rave-level uses named pipes on Windows)"
                .into(),
        })
    }
}

/// Whether opening the engine failed because another LevelDB program (a Node leader) holds
/// `<dir>/LOCK`.
pub(crate) fn lock_busy(err: &Error) -> bool {
    matches!(err, Error::Io { kind, .. } if *kind == std::io::ErrorKind::ResourceBusy)
}

/// A leader that follows `options`: serves `store` on `<dir>/rave-level.sock` until
/// `shutdown` (`None` when the mode is off). Await the handle ([`stop`]) before letting go of
/// the lock: the task removes the socket file as it ends.
pub(crate) fn serve_beside(
    options: &RaveOptions,
    dir: &Path,
    store: &Arc<dyn KvStore>,
    shutdown: &CancellationToken,
) -> Result<Option<JoinHandle<()>>> {
    if !options.level_compat {
        return Ok(None);
    }
    #[cfg(unix)]
    {
        crate::level_socket::serve(store.clone(), dir, shutdown.clone()).map(Some)
    }
    #[cfg(not(unix))]
    {
        let _ = (dir, store, shutdown);
        Ok(None)
    }
}

/// Waits for the rave-level server of [`serve_beside`] to end (its shutdown is cancelled).
pub(crate) async fn stop(server: Option<JoinHandle<()>>) {
    if let Some(server) = server {
        let _ = server.await;
    }
}

/// A leader this handle follows: the store to use and a future that resolves when the
/// connection ends.
pub(crate) struct Followed {
    pub store: Arc<dyn KvStore>,
    pub gone: BoxFuture<'static, ()>,
    /// rave's epoch of the leader (`None` for a Node leader: it has none).
    pub epoch: Option<u64>,
}

/// Follows whatever serves `<dir>/rave-level.sock` (a Node leader), when the mode is on.
pub(crate) async fn try_follow(dir: &Path, options: &RaveOptions) -> Option<Followed> {
    if !options.level_compat {
        return None;
    }
    #[cfg(unix)]
    {
        let path = crate::level_socket::socket_path(dir).ok()?;
        let stream = crate::level_socket::connect(&path).await.ok()?;
        let guest = rave_level::Guest::new(
            stream,
            rave_level::GuestOptions {
                call_timeout: options.op_timeout,
            },
        );
        let watched = guest.clone();
        tracing::debug!(path = %path.display(), "following a rave-level (Node) leader");
        Some(Followed {
            store: Arc::new(guest),
            gone: Box::pin(async move { watched.disconnected().await }),
            epoch: None,
        })
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}
