//! The leader's listener and the followers' connections: one code path over `interprocess`'s
//! local sockets, which are unix domain sockets on Unix and named pipes on Windows.
//!
//! What stays per platform is small: the name ([`crate::socket_path`]), the owner-only file
//! mode and the stale-file removal (Unix has socket files; pipes vanish with their process), and
//! the peer check (a uid on Unix; on Windows the pipe refuses remote clients and its default
//! ACL lets only its creator, SYSTEM and administrators write).

use std::io;
use std::path::Path;
use std::time::Duration;

use interprocess::ConnectWaitMode;
use interprocess::local_socket::tokio::{Listener as LocalListener, Stream, prelude::*};
use interprocess::local_socket::{ConnectOptions, GenericFilePath, ListenerOptions, Name};

use crate::DirLock;

/// A connection accepted by the leader.
pub type ServerStream = Stream;
/// A follower's connection to the leader.
pub type ClientStream = Stream;

/// How long a follower waits for a leader that does not take its connection (a full backlog,
/// a stopped process): past that the election loop tries again, rather than waiting forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The leader's listener. It serves only peers of this process's effective user: on Unix the
/// socket is owner-only (0600) and every accepted peer's uid is checked again (`SO_PEERCRED`),
/// so a socket whose mode was changed still serves no one else.
#[derive(Debug)]
pub struct Listener {
    inner: LocalListener,
}

impl Listener {
    /// The next connection from a peer of this user; others are dropped (and logged).
    pub async fn accept(&self) -> io::Result<ServerStream> {
        loop {
            let stream = self.inner.accept().await?;
            match admit(&stream) {
                Ok(()) => return Ok(stream),
                Err(why) => tracing::warn!("refused a connection: {why}"),
            }
        }
    }
}

/// Whether the peer runs as this process's effective user.
#[cfg(unix)]
fn admit(stream: &Stream) -> Result<(), String> {
    let ours = euid();
    match stream.peer_creds().map(|creds| creds.euid()) {
        Ok(Some(uid)) if uid == ours => Ok(()),
        Ok(Some(uid)) => Err(format!("the peer is another user (uid {uid}, not {ours})")),
        Ok(None) => Err("the OS gives no uid for the peer".to_string()),
        Err(e) => Err(format!("cannot read the peer's credentials: {e}")),
    }
}

/// Pipes carry no uid to compare; who may open one is the pipe's ACL's business (see above).
#[cfg(windows)]
fn admit(_stream: &Stream) -> Result<(), String> {
    Ok(())
}

/// This process's effective uid.
#[cfg(unix)]
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn local_name(path: &Path) -> io::Result<Name<'_>> {
    path.to_fs_name::<GenericFilePath>()
}

/// Listens on `path` for followers, replacing whatever stale socket or junk file is there.
///
/// Taking the [`DirLock`] proves the caller is the one handle allowed to unlink the path: no
/// live leader's socket can be removed. On Unix the socket is made owner-only (0600); on
/// Windows creating the pipe fails if another process owns the name.
pub fn bind(path: &Path, _lock: &DirLock) -> io::Result<Listener> {
    remove_stale(path)?;
    // No name reclamation on drop: only `unbind`, called under the lock, removes the socket.
    let options = || -> io::Result<ListenerOptions<'_>> {
        Ok(ListenerOptions::new()
            .name(local_name(path)?)
            .reclaim_name(false))
    };
    #[cfg(unix)]
    let inner = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt;
        // The mode set before bind() leaves no moment at the umask's mode, where the OS allows
        // it (Linux, OpenBSD, FreeBSD ≥ 14.3); elsewhere the chmod below does it, and the peer
        // uid check covers the moment in between.
        match options()?.mode(0o600).create_tokio() {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => options()?.create_tokio()?,
            other => other?,
        }
    };
    #[cfg(windows)]
    let inner = options()?.create_tokio()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(Listener { inner })
}

/// Removes what a dead leader left at `path` (never a directory).
#[cfg(unix)]
fn remove_stale(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is a directory, not a socket", path.display()),
        )),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Pipes go away with their last handle: nothing is ever stale.
#[cfg(windows)]
fn remove_stale(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// Connects to the leader's socket at `path`.
///
/// The peer is checked from this side too: a leader of another user would refuse us anyway, and
/// on a full backlog `interprocess` takes the EAGAIN of a unix-socket connect for a connection
/// in progress and returns a socket that never connected, which has no peer uid.
pub async fn connect(path: &Path) -> io::Result<ClientStream> {
    let stream = ConnectOptions::new()
        .name(local_name(path)?)
        .wait_mode(ConnectWaitMode::Timeout(CONNECT_TIMEOUT))
        .connect_tokio()
        .await?;
    admit(&stream).map_err(|why| io::Error::new(io::ErrorKind::ConnectionRefused, why))?;
    Ok(stream)
}

/// Removes the socket file when the leader steps down (it still holds the lock). Nothing to do
/// for a pipe: it goes away with its last handle.
pub fn unbind(path: &Path) {
    #[cfg(unix)]
    let _ = std::fs::remove_file(path);
    #[cfg(windows)]
    let _ = path;
}

#[cfg(all(test, unix))]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::socket_path;

    #[tokio::test]
    async fn bind_replaces_junk_and_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::try_acquire(dir.path()).unwrap().unwrap();
        let path = socket_path(dir.path()).unwrap();
        fs::write(&path, b"junk").unwrap();
        let listener = bind(&path, &lock).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (accepted, connected) = tokio::join!(listener.accept(), connect(&path));
        accepted.unwrap();
        connected.unwrap();
    }

    #[tokio::test]
    async fn a_leader_that_takes_no_connection_does_not_hold_a_follower() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::SOCKET_FILE);
        // A listener that never accepts, with the smallest backlog: a stopped or stuck leader.
        let stuck = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // SAFETY: a valid listening socket's fd; listen(2) again only changes its backlog.
        assert_eq!(unsafe { libc::listen(stuck.as_raw_fd(), 0) }, 0);
        let mut queued = Vec::new();
        for _ in 0..1000 {
            match tokio::net::UnixStream::connect(&path).await {
                Ok(s) => queued.push(s),
                Err(_) => break,
            }
        }
        // The election loop must get its turn back (to retry, or to take over) within the
        // connect timeout, not when the stuck leader moves.
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT * 30, connect(&path)).await;
        assert!(
            matches!(attempt, Ok(Err(_))),
            "after {} queued: {attempt:?}",
            queued.len()
        );
    }

    #[tokio::test]
    async fn dropping_the_listener_leaves_the_socket_to_unbind() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::try_acquire(dir.path()).unwrap().unwrap();
        let path = socket_path(dir.path()).unwrap();
        drop(bind(&path, &lock).unwrap());
        assert!(
            fs::symlink_metadata(&path).is_ok(),
            "only unbind removes it"
        );
        unbind(&path);
        assert!(fs::symlink_metadata(&path).is_err());
    }
}
