//! Turning RocksDB's status strings into rave's typed errors.
//!
//! RocksDB reports a status code and a message (`"IO error: ..."`); the `rocksdb` crate keeps the
//! message and parses the code back from its prefix. Some conditions that rave types separately
//! (a full disk, a lock held by someone else, a missing database) only show in the message, so
//! this module looks at both.

use std::io;
use std::path::Path;

use rave_api::Error;
use rocksdb::ErrorKind as RocksKind;

/// What rave was doing when RocksDB failed, for the message and for the open-only cases.
pub(crate) use rave_api::EngineOp as Op;

/// Maps a RocksDB error raised while doing `op` on the database in `path`.
pub(crate) fn map(err: &rocksdb::Error, op: Op, path: &Path) -> Error {
    let message = err.as_ref();
    let context = || format!("rocksdb {} {}: {message}", op.as_str(), path.display());
    match err.kind() {
        RocksKind::Corruption => Error::corruption(context()),
        RocksKind::IOError => map_io(message, op, path, context()),
        RocksKind::InvalidArgument if op == Op::Open => {
            // The exact wording of RocksDB's DBImpl::Open checks.
            if message.contains("does not exist (create_if_missing is false)") {
                Error::DoesNotExist {
                    path: path.to_path_buf(),
                }
            } else if message.contains("exists (error_if_exists is true)") {
                Error::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                Error::invalid(context())
            }
        }
        RocksKind::InvalidArgument => Error::invalid(context()),
        RocksKind::NotSupported => Error::Unsupported { message: context() },
        _ => Error::other(context()),
    }
}

fn map_io(message: &str, op: Op, path: &Path, context: String) -> Error {
    let lower = message.to_ascii_lowercase();
    // CURRENT names the MANIFEST to read; when that file is gone the database is damaged, not
    // merely unreadable, whatever RocksDB's status code says.
    if op == Op::Open
        && lower.contains("no such file or directory")
        && lower.contains("sequentially reading")
        && message.contains("MANIFEST-")
    {
        return Error::corruption(format!(
            "{context} (CURRENT names a MANIFEST that is missing)"
        ));
    }
    // RocksDB locks `<dir>/LOCK` with fcntl (env/fs_posix.cc): another process holding it
    // makes "While lock file" fail with EAGAIN or EACCES; this process holding it is reported
    // as "lock hold by current process". ("while open a file for lock" is a plain I/O error.)
    let lock_held = lower.contains("lock hold by current process")
        || (lower.contains("while lock file")
            && (lower.contains("temporarily unavailable") || lower.contains("permission denied")));
    if op == Op::Open && lock_held {
        return Error::Io {
            kind: io::ErrorKind::ResourceBusy,
            message: format!(
                "the directory {} is in use: another process (or another handle in this one) \
                 has the RocksDB database open ({message})",
                path.display()
            ),
        };
    }
    let kind = if lower.contains("no space left") {
        io::ErrorKind::StorageFull
    } else if lower.contains("no such file or directory") {
        io::ErrorKind::NotFound
    } else if lower.contains("permission denied") {
        io::ErrorKind::PermissionDenied
    } else if lower.contains("read-only file system") {
        io::ErrorKind::ReadOnlyFilesystem
    } else if lower.contains("disk quota exceeded") {
        io::ErrorKind::QuotaExceeded
    } else {
        io::ErrorKind::Other
    };
    Error::Io {
        kind,
        message: context,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rave_api::ErrorKind;

    /// `map_io` of `message` raised while doing `op` on `/db`.
    fn mapped(message: &str, op: Op) -> Error {
        map_io(message, op, Path::new("/db"), "ctx".into())
    }

    /// The I/O kind of `err`, when it is an I/O error.
    fn io_kind(err: &Error) -> Option<io::ErrorKind> {
        match err {
            Error::Io { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// `rocksdb::Error` has no public constructor; the real strings come through the tests in
    /// `tests/engine.rs`. Here the message classification is checked on its own.
    #[test]
    fn io_messages_are_classified() {
        let err = mapped(
            "IO error: No space left on device: While appending to file: /db/000004.log",
            Op::Write,
        );
        assert_eq!(io_kind(&err), Some(io::ErrorKind::StorageFull), "{err}");
        let err = mapped(
            "IO error: While lock file: /db/LOCK: Resource temporarily unavailable",
            Op::Open,
        );
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.to_string().contains("in use"), "{err}");
        let err = mapped(
            "IO error: while open a file for lock: /db/LOCK: Permission denied",
            Op::Open,
        );
        assert_eq!(
            io_kind(&err),
            Some(io::ErrorKind::PermissionDenied),
            "{err}"
        );
        assert!(!err.to_string().contains("in use"), "{err}");
        let err = mapped(
            "IO error: No such file or directory: While opening a file for sequentially reading: \
             /db/MANIFEST-000001",
            Op::Open,
        );
        assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
        let err = mapped(
            "IO error: No such file or directory: While open a file for appending: /db/000004.log",
            Op::Write,
        );
        assert_eq!(io_kind(&err), Some(io::ErrorKind::NotFound), "{err}");
    }
}
