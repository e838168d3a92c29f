use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use crate::DirLock;

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

/// FNV-1a, 64 bits: stable across Rust versions and builds, unlike `DefaultHasher`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Listens on `path` for followers, replacing whatever stale socket or junk file is there.
///
/// Taking the [`DirLock`] proves the caller is the one handle allowed to unlink the path: no
/// live leader's socket can be removed. The socket is made owner-only (0600).
pub fn bind(path: &Path, _lock: &DirLock) -> io::Result<UnixListener> {
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
    UnixListener::from_std(listener)
}

/// Connects to the leader's socket at `path`.
pub async fn connect(path: &Path) -> io::Result<UnixStream> {
    UnixStream::connect(path).await
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
        let listener = bind(&path, &lock).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (accepted, connected) = tokio::join!(listener.accept(), connect(&path));
        accepted.unwrap();
        connected.unwrap();
    }
}
