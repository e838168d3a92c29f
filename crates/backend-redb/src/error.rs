//! redb errors as typed [`rave_api::Error`]s, and a guard that turns redb panics into errors.

use std::io;
use std::path::Path;

use rave_api::{EngineOp, Error};

/// Maps any redb error (they all convert into [`redb::Error`]) to a rave error. `op` says what
/// was being done and `file` is the database file, both for the message.
pub(crate) fn map(err: impl Into<redb::Error>, op: EngineOp, file: &Path) -> Error {
    let err: redb::Error = err.into();
    let context = format!("redb {} {}", op.as_str(), file.display());
    match err {
        // redb reports a file that is not a redb database at all (bad magic number, a header
        // that does not parse) as an I/O error of kind InvalidData (see `StorageError::
        // not_a_database` in redb's error.rs): that is damage, not an OS failure.
        redb::Error::Io(e) if e.kind() == io::ErrorKind::InvalidData => {
            Error::corruption(format!("{context}: not a valid redb database: {e}"))
        }
        redb::Error::Io(e) => Error::io(context, &e),
        redb::Error::Corrupted(msg) => Error::corruption(format!("{context}: {msg}")),
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => Error::Io {
            kind: io::ErrorKind::ResourceBusy,
            message: format!(
                "the directory {} is in use: another process (or another handle in this one) \
                 has its redb database open ({err})",
                file.parent().unwrap_or(file).display()
            ),
        },
        redb::Error::ValueTooLarge(len) => Error::invalid(format!(
            "{context}: a value of {len} bytes is too large for redb"
        )),
        // The table exists with other types, or is a multimap table: someone else's file.
        redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::TableDoesNotExist(_) => Error::corruption(format!(
            "{context}: the file does not hold rave's table as expected: {err}"
        )),
        redb::Error::DatabaseClosed => Error::Closed,
        redb::Error::PreviousIo => Error::Io {
            kind: io::ErrorKind::Other,
            message: format!("{context}: {err}"),
        },
        other => Error::other(format!("{context}: {other}")),
    }
}

/// Runs `f`, turning a panic inside redb into a [`Error::Corruption`].
///
/// redb trusts the pages it reads: a file damaged outside redb can make it panic (its own docs
/// say so for `Database::open`, and debug builds assert on "impossible" states).
pub(crate) fn guard<T>(
    op: EngineOp,
    file: &Path,
    f: impl FnOnce() -> rave_api::Result<T>,
) -> rave_api::Result<T> {
    rave_api::engine_backend::guard("redb", op, file, f)
}
