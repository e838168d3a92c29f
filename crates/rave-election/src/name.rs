//! Where every handle of a directory meets: a unix socket path, or a Windows pipe name.
//!
//! Only the name differs by platform; binding and connecting go through one code path
//! (`socket.rs`, on `interprocess`'s local sockets).

use std::io;
use std::path::{Path, PathBuf};

use crate::fnv1a64;

/// The socket's file name inside the database directory (on Windows, kept for symmetry: the
/// pipe is named after the directory, not placed in it).
pub const SOCKET_FILE: &str = "rave.sock";

/// The longest socket path the OS accepts (`sun_path` less its terminating NUL).
#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
pub(crate) const MAX_SOCKET_PATH: usize = 103;
#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))
))]
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// The socket every handle of `dir` meets at. `dir` must exist.
///
/// It is `<dir>/rave.sock` when that fits `sun_path`; otherwise a name derived from a hash of
/// the canonical directory path, in a per-user directory `/tmp/rave-<uid>` with mode 0700. The
/// decision is made on the canonical path, so every process agrees whatever path it was given.
#[cfg(unix)]
pub fn socket_path(dir: &Path) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let canonical = std::fs::canonicalize(dir)?;
    let inside = canonical.join(SOCKET_FILE);
    if inside.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(inside);
    }
    let runtime = private_runtime_dir()?;
    let hash = fnv1a64(canonical.as_os_str().as_bytes());
    Ok(runtime.join(format!("{hash:016x}.sock")))
}

/// The pipe every handle of `dir` meets at: `\\.\pipe\rave-<hash of the canonical directory
/// path>`. `dir` must exist.
#[cfg(windows)]
pub fn socket_path(dir: &Path) -> io::Result<PathBuf> {
    let canonical = std::fs::canonicalize(dir)?;
    // Windows paths are case-insensitive: every spelling must give one name.
    let key = canonical.to_string_lossy().to_lowercase();
    Ok(PathBuf::from(format!(
        r"\\.\pipe\rave-{:016x}",
        fnv1a64(key.as_bytes())
    )))
}

/// `/tmp/rave-<uid>`, created 0700 if needed, and refused unless it is ours and private.
#[cfg(unix)]
fn private_runtime_dir() -> io::Result<PathBuf> {
    use std::fs;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let uid = crate::socket::euid();
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

#[cfg(all(test, unix))]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

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
}
