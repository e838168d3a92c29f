//! Error codes on the wire: only a code string travels (`LEVEL_NOT_FOUND`, ...), never a
//! message, so rave's [`ErrorKind`] maps to the nearest Level code and back.

use rave_api::{Error, ErrorKind};

/// A get of an absent key.
pub const NOT_FOUND: &str = "LEVEL_NOT_FOUND";
/// An I/O error.
pub const IO_ERROR: &str = "LEVEL_IO_ERROR";
/// Damaged files.
pub const CORRUPTION: &str = "LEVEL_CORRUPTION";
/// A put without a value, a batch operation of an unknown type.
pub const INVALID_VALUE: &str = "LEVEL_INVALID_VALUE";
/// The store is closing or closed.
pub const NOT_OPEN: &str = "LEVEL_DATABASE_NOT_OPEN";
/// Anything else (Node's host sends it for every error without a `LEVEL_` code).
pub const REMOTE_ERROR: &str = "LEVEL_REMOTE_ERROR";

/// The code a host sends for `err`.
pub fn code_of(err: &Error) -> &'static str {
    match err.kind() {
        ErrorKind::Io => IO_ERROR,
        ErrorKind::Corruption => CORRUPTION,
        ErrorKind::InvalidArgument => INVALID_VALUE,
        ErrorKind::Closed => NOT_OPEN,
        _ => REMOTE_ERROR,
    }
}

/// The error a guest reports for a code from the host.
///
/// `LEVEL_DATABASE_NOT_OPEN` is the leader closing: the request was not applied, and the
/// connection is about to end, so it is [`Error::LeaderLost`] (rave re-elects and retries).
pub fn error_of(code: &str) -> Error {
    let kind = match code {
        NOT_OPEN => return Error::LeaderLost,
        IO_ERROR => ErrorKind::Io,
        CORRUPTION => ErrorKind::Corruption,
        INVALID_VALUE | "LEVEL_INVALID_KEY" => ErrorKind::InvalidArgument,
        _ => ErrorKind::Other,
    };
    Error::Remote {
        kind,
        message: format!("the Level leader answered {code}"),
    }
}
