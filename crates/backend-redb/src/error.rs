//! redb errors as typed [`rave_api::Error`]s, and a guard that turns redb panics into errors.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use rave_api::Error;

/// Maps any redb error (they all convert into [`redb::Error`]) to a rave error. `what` says what
/// was being done and `file` is the database file, both for the message.
pub(crate) fn map(err: impl Into<redb::Error>, what: &str, file: &Path) -> Error {
    let err: redb::Error = err.into();
    let context = format!("redb {what} {}", file.display());
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
/// say so for `Database::open`, and debug builds assert on "impossible" states), and a panic must
/// never take the engine thread, or the leader process, down with it.
pub(crate) fn guard<T>(
    what: &str,
    file: &Path,
    f: impl FnOnce() -> rave_api::Result<T>,
) -> rave_api::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            tracing::error!(file = %file.display(), what, detail, "redb panicked");
            Err(Error::corruption(format!(
                "redb {what} {}: the engine failed on damaged data ({detail})",
                file.display()
            )))
        }
    }
}
