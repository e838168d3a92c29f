//! The rave-level socket: `<dir>/rave-level.sock`, where Node's rave-level processes look for
//! their leader. A leader serves many-level's protocol there ([`rave_level::host`]) beside its
//! own socket.
//!
//! Like rave's own socket it is owner-only (0600) and every peer's uid is checked, so it serves
//! no other user. Node's libuv silently truncates a socket path longer than 107 bytes (and then
//! listens outside the directory), so such a directory is refused rather than served on a name
//! Node would never meet.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::Stream;
use rave_api::{Error, KvStore, Result};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest socket path Node reaches without truncating it (`sun_path` is 108 bytes with its
/// terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// `<dir>/rave-level.sock`, refused when Node would truncate it.
pub fn socket_path(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(rave_level::SOCKET_FILE);
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(Error::invalid(format!(
            "{} is {len} bytes long: Node truncates a socket path over {MAX_SOCKET_PATH} bytes, \
             so rave-level processes could not meet this one (use a shorter directory path)",
            path.display()
        )));
    }
    Ok(path)
}

/// Listens on `path`, replacing a stale socket file. The caller must hold the lock that makes
/// it the only one allowed to remove that file (a live leader's socket is never removed).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is a directory, not a socket", path.display()),
            ));
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The accepted connections of peers of this user (others are dropped and logged).
pub fn incoming(listener: UnixListener) -> impl Stream<Item = io::Result<UnixStream>> + Unpin {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = unsafe { libc::geteuid() };
    Box::pin(futures::stream::unfold(
        listener,
        move |listener| async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => match stream.peer_cred() {
                        Ok(cred) if cred.uid() == ours => return Some((Ok(stream), listener)),
                        Ok(cred) => tracing::warn!(
                            uid = cred.uid(),
                            "refused a rave-level peer of another user"
                        ),
                        Err(e) => {
                            tracing::warn!(%e, "refused a rave-level peer without credentials")
                        }
                    },
                    Err(e) => return Some((Err(e), listener)),
                }
            }
        },
    ))
}

/// Connects to a leader's rave-level socket, checking that it runs as this user (within one
/// second: a leader that does not accept is not followed).
pub async fn connect(path: &Path) -> io::Result<UnixStream> {
    let stream = tokio::time::timeout(std::time::Duration::from_secs(1), UnixStream::connect(path))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the leader did not accept"))??;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = unsafe { libc::geteuid() };
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == ours => Ok(stream),
        Ok(cred) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the rave-level leader runs as uid {}, not {ours}",
                cred.uid()
            ),
        )),
        Err(e) => Err(e),
    }
}

/// Serves `store` to many-level guests on `<dir>/rave-level.sock` until `shutdown`; the task
/// removes the socket file when it ends.
pub fn serve(
    store: Arc<dyn KvStore>,
    dir: &Path,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>> {
    let path = socket_path(dir)?;
    let listener =
        bind(&path).map_err(|e| Error::io(format!("listen on {}", path.display()), &e))?;
    Ok(tokio::spawn(async move {
        rave_level::serve(
            incoming(listener),
            store,
            rave_level::HostOptions::default(),
            shutdown,
        )
        .await;
        let _ = std::fs::remove_file(&path);
    }))
}
