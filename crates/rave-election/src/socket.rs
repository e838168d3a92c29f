//! Unix domain sockets: the leader's listener, owner-only.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use crate::{DirLock, fnv1a64};

/// The socket's file name inside the database directory.
pub const SOCKET_FILE: &str = "rave.sock";

/// The longest socket path the OS accepts (`sun_path` less its terminating NUL).
#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
const MAX_SOCKET_PATH: usize = 103;
#[cfg(not(any(target_os = "macos", target_os = "ios", target_os = "freebsd")))]
const MAX_SOCKET_PATH: usize = 107;

/// The socket every handle of `dir` meets at. `dir` must exist.
///
/// It is `<dir>/rave.sock` when that fits `sun_path`; otherwise a name derived from a hash of
/// the canonical directory path, in a per-user directory `/tmp/rave-<uid>` with mode 0700. The
/// decision is made on the canonical path, so every process agrees whatever path it was given.
pub fn socket_path(dir: &Path) -> io::Result<PathBuf> {
    let canonical = fs::canonicalize(dir)?;
    let inside = canonical.join(SOCKET_FILE);
    if inside.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(inside);
    }
    let runtime = private_runtime_dir()?;
    use std::os::unix::ffi::OsStrExt;
    let hash = fnv1a64(canonical.as_os_str().as_bytes());
    Ok(runtime.join(format!("{hash:016x}.sock")))
}

/// `/tmp/rave-<uid>`, created 0700 if needed, and refused unless it is ours and private.
fn private_runtime_dir() -> io::Result<PathBuf> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    // A fixed base, not $TMPDIR or $XDG_RUNTIME_DIR: processes with different environments
    // must still agree on the name.
    let dir = PathBuf::from(format!("/tmp/rave-{uid}"));
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} must be a directory owned by uid {uid} with mode 0700; refusing to put sockets there",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

/// A connection accepted by the leader.
pub type ServerStream = UnixStream;
/// A follower's connection to the leader.
pub type ClientStream = UnixStream;

/// The leader's listener. It serves only peers of this process's effective user: the socket is
/// owner-only (0600) and every accepted peer's uid is checked again (`SO_PEERCRED`), so a socket
/// whose mode was changed still serves no one else.
#[derive(Debug)]
pub struct Listener {
    inner: UnixListener,
    euid: u32,
}

impl Listener {
    /// The next connection from a peer of this user; others are dropped (and logged).
    pub async fn accept(&mut self) -> io::Result<ServerStream> {
        loop {
            let (stream, _) = self.inner.accept().await?;
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == self.euid => return Ok(stream),
                Ok(cred) => {
                    tracing::warn!(uid = cred.uid(), "refused a connection from another user");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "refused a connection: cannot read the peer's credentials");
                }
            }
        }
    }
}

/// Listens on `path` for followers, replacing whatever stale socket or junk file is there.
///
/// Taking the [`DirLock`] proves the caller is the one handle allowed to unlink the path: no
/// live leader's socket can be removed. The socket is made owner-only (0600).
pub fn bind(path: &Path, _lock: &DirLock) -> io::Result<Listener> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is a directory, not a socket", path.display()),
            ));
        }
        Ok(_) => fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(Listener {
        inner: UnixListener::from_std(listener)?,
        // SAFETY: geteuid has no preconditions and cannot fail.
        euid: unsafe { libc::geteuid() },
    })
}

/// Connects to the leader's socket at `path`.
pub async fn connect(path: &Path) -> io::Result<ClientStream> {
    UnixStream::connect(path).await
}

/// Removes the socket file when the leader steps down (it still holds the lock).
pub fn unbind(path: &Path) {
    let _ = fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paths_live_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path()).unwrap();
        assert_eq!(
            path,
            fs::canonicalize(dir.path()).unwrap().join(SOCKET_FILE)
        );
    }

    #[test]
    fn long_paths_get_a_private_hashed_name() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("x".repeat(120));
        fs::create_dir(&long).unwrap();
        let path = socket_path(&long).unwrap();
        assert!(
            path.as_os_str().len() <= MAX_SOCKET_PATH,
            "{}",
            path.display()
        );
        let parent = path.parent().unwrap();
        assert_eq!(
            fs::metadata(parent).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // Every spelling of the directory gets the same name.
        let dotted = long.join("..").join("x".repeat(120));
        assert_eq!(socket_path(&dotted).unwrap(), path);
    }

    #[tokio::test]
    async fn bind_replaces_junk_and_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::try_acquire(dir.path()).unwrap().unwrap();
        let path = socket_path(dir.path()).unwrap();
        fs::write(&path, b"junk").unwrap();
        let mut listener = bind(&path, &lock).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (accepted, connected) = tokio::join!(listener.accept(), connect(&path));
        accepted.unwrap();
        connected.unwrap();
    }
}
