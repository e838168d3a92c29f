//! rusty-leveldb statuses as typed [`rave_api::Error`]s, and a guard that turns its panics into
//! errors.

use std::io;
use std::path::Path;

use rave_api::Error;
use rusty_leveldb::{Status, StatusCode};

/// What was being done when an error happened; it decides how some codes read.
pub(crate) use rave_api::EngineOp as Op;

/// Maps a rusty-leveldb status to a rave error. `dir` is the database directory.
pub(crate) fn map(status: &Status, op: Op, dir: &Path) -> Error {
    let context = format!("leveldb {} {}: {}", op.as_str(), dir.display(), status.err);
    match &status.code {
        StatusCode::Corruption | StatusCode::InvalidData | StatusCode::CompressionError => {
            Error::corruption(context)
        }
        // `DB::open` reports the LOCK file held by another handle (this process or another) as
        // LockError (db_impl.rs `acquire_lock`, disk_env.rs `lock`); a poisoned internal lock is
        // LockError too, but only ever outside of open.
        StatusCode::LockError if op == Op::Open => Error::Io {
            kind: io::ErrorKind::ResourceBusy,
            message: format!(
                "the directory {} is in use: another process (or another handle in this one) \
                 has its LevelDB database open ({})",
                dir.display(),
                status.err
            ),
        },
        // At open, a missing file is one the database refers to (CURRENT → MANIFEST → tables):
        // a missing database as a whole was told apart before (`DoesNotExist`).
        StatusCode::NotFound if op == Op::Open => {
            Error::corruption(format!("{context} (a file the database needs is missing)"))
        }
        StatusCode::NotFound => Error::Io {
            kind: io::ErrorKind::NotFound,
            message: context,
        },
        StatusCode::PermissionDenied => Error::Io {
            kind: io::ErrorKind::PermissionDenied,
            message: context,
        },
        StatusCode::IOError => Error::Io {
            kind: io_kind(&status.err),
            message: context,
        },
        #[allow(unreachable_patterns)] // `Errno` exists with rusty-leveldb's default `fs` feature.
        StatusCode::Errno(_) => Error::Io {
            kind: io_kind(&status.err),
            message: context,
        },
        StatusCode::InvalidArgument => Error::invalid(context),
        StatusCode::AlreadyExists => Error::AlreadyExists {
            path: dir.to_path_buf(),
        },
        StatusCode::NotSupported => Error::Unsupported { message: context },
        _ => Error::other(context),
    }
}

/// rusty-leveldb keeps only the text of an `io::Error` for most codes; recover the kinds a caller
/// may act on from the OS's words.
fn io_kind(message: &str) -> io::ErrorKind {
    let lower = message.to_ascii_lowercase();
    if lower.contains("no space left") {
        io::ErrorKind::StorageFull
    } else if lower.contains("permission denied") {
        io::ErrorKind::PermissionDenied
    } else if lower.contains("read-only file system") {
        io::ErrorKind::ReadOnlyFilesystem
    } else if lower.contains("disk quota exceeded") {
        io::ErrorKind::QuotaExceeded
    } else if lower.contains("no such file or directory") {
        io::ErrorKind::NotFound
    } else {
        io::ErrorKind::Other
    }
}

/// Runs `f`, turning a panic into [`Error::Corruption`].
///
/// rusty-leveldb asserts on and unwraps what it reads from disk (and debug builds panic on a
/// block entry they cannot parse, block.rs `advance`), so damaged files can make it panic.
pub(crate) fn guard<T>(
    op: Op,
    dir: &Path,
    f: impl FnOnce() -> rave_api::Result<T>,
) -> rave_api::Result<T> {
    rave_api::engine_backend::guard("leveldb", op, dir, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rave_api::ErrorKind;

    #[test]
    fn kinds() {
        let dir = Path::new("/db");
        let lock = Status::new(
            StatusCode::LockError,
            "database lock is held by another instance",
        );
        let err = map(&lock, Op::Open, dir);
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.to_string().contains("in use"), "{err}");
        let full = Status::new(
            StatusCode::IOError,
            "write: No space left on device (os error 28)",
        );
        match map(&full, Op::Write, dir) {
            Error::Io { kind, .. } => assert_eq!(kind, io::ErrorKind::StorageFull),
            other => panic!("{other:?}"),
        }
        let denied = Status::from(io::Error::from(io::ErrorKind::PermissionDenied));
        match map(&denied, Op::Open, dir) {
            Error::Io { kind, .. } => assert_eq!(kind, io::ErrorKind::PermissionDenied),
            other => panic!("{other:?}"),
        }
        let bad = Status::new(StatusCode::Corruption, "bad block");
        assert_eq!(map(&bad, Op::Read, dir).kind(), ErrorKind::Corruption);
        let invalid = Status::new(StatusCode::InvalidArgument, "x");
        assert_eq!(
            map(&invalid, Op::Write, dir).kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn panics_become_corruption() {
        let err = guard::<()>(Op::Read, Path::new("/db"), || panic!("boom")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corruption);
        assert!(err.to_string().contains("boom"), "{err}");
    }
}
