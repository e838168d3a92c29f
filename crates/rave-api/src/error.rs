use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The result type of every rave operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stable, serializable classification of [`Error`]s.
///
/// Kinds travel between processes (a follower sees the kind the leader's engine reported), and
/// their string forms ([`ErrorKind::as_str`]) never change between versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The handle (or iterator) was closed.
    Closed,
    /// The connection to the leader was lost while the operation was in flight and `retry` is off.
    LeaderLost,
    /// The directory's lock is held but no process serves it.
    NoLeader,
    /// The leader did not answer within the operation timeout.
    Timeout,
    /// An operating-system I/O error.
    Io,
    /// The database files are damaged or not a database at all.
    Corruption,
    /// A peer broke the wire protocol.
    Protocol,
    /// The caller passed something invalid.
    InvalidArgument,
    /// The directory holds another engine's database.
    WrongEngine,
    /// The database does not exist and `create_if_missing` is off.
    DoesNotExist,
    /// The database exists and `error_if_exists` is on.
    AlreadyExists,
    /// The operation is not supported by this engine.
    Unsupported,
    /// A re-sent write was refused rather than risk applying it twice (see `rave_api::once`).
    RetryRefused,
    /// A conditional write's condition did not hold; nothing was applied.
    ConditionFailed,
    /// A watch asked for history the store no longer keeps (see `rave_api::watch`).
    Compacted,
    /// A watcher fell behind the retained history and was ended (see `rave_api::watch`).
    Lagged,
    /// Anything else an engine reports.
    Other,
}

impl ErrorKind {
    /// The stable name of this kind, e.g. `"LeaderLost"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Closed => "Closed",
            ErrorKind::LeaderLost => "LeaderLost",
            ErrorKind::NoLeader => "NoLeader",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::Io => "Io",
            ErrorKind::Corruption => "Corruption",
            ErrorKind::Protocol => "Protocol",
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::WrongEngine => "WrongEngine",
            ErrorKind::DoesNotExist => "DoesNotExist",
            ErrorKind::AlreadyExists => "AlreadyExists",
            ErrorKind::Unsupported => "Unsupported",
            ErrorKind::RetryRefused => "RetryRefused",
            ErrorKind::ConditionFailed => "ConditionFailed",
            ErrorKind::Compacted => "Compacted",
            ErrorKind::Lagged => "Lagged",
            ErrorKind::Other => "Other",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in rave.
///
/// The error is `Clone` so that one engine failure can be reported to every caller whose write
/// shared the failed commit. Match on [`Error::kind`] rather than on variants when the error may
/// have come from another process: remote errors arrive as [`Error::Remote`] with the original
/// kind inside.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The handle (or iterator) was closed; the operation did not run.
    #[error("the database handle is closed")]
    Closed,
    /// The connection to the leader was lost with the operation in flight (only with `retry` off);
    /// the operation may or may not have been applied.
    #[error("the connection to the leader was lost")]
    LeaderLost,
    /// The directory's lock is held but no process serves it (for instance a plain engine user
    /// holds the directory).
    #[error("no leader: the directory lock is held but nobody serves it (waited {waited:?})")]
    NoLeader {
        /// How long this handle waited for a leader.
        waited: Duration,
    },
    /// The leader did not answer in time (it may be stopped or overloaded).
    #[error("the leader did not answer within {waited:?}")]
    Timeout {
        /// How long the operation waited.
        waited: Duration,
    },
    /// An operating-system I/O error.
    #[error("I/O error ({kind}): {message}")]
    Io {
        /// The OS error's kind.
        kind: std::io::ErrorKind,
        /// What failed, with the OS's words.
        message: String,
    },
    /// The database files are damaged or are not a database.
    #[error("corrupt database: {message}")]
    Corruption {
        /// What the engine found.
        message: String,
    },
    /// A peer broke the wire protocol.
    #[error("protocol error: {message}")]
    Protocol {
        /// What was wrong with the peer's bytes.
        message: String,
    },
    /// An error raised by the leader's engine, relayed to this follower.
    #[error("leader reported {kind}: {message}")]
    Remote {
        /// The kind the leader reported.
        kind: ErrorKind,
        /// The leader's message.
        message: String,
    },
    /// The caller passed something invalid.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What was invalid.
        message: String,
    },
    /// The directory holds a database of another engine.
    #[error("{path} holds a {found} database, not {expected}")]
    WrongEngine {
        /// The directory.
        path: PathBuf,
        /// The engine that was asked to open it.
        expected: String,
        /// The engine whose files are there.
        found: String,
    },
    /// The database does not exist and `create_if_missing` is off.
    #[error("no database at {path} (create_if_missing is off)")]
    DoesNotExist {
        /// The directory.
        path: PathBuf,
    },
    /// The database exists and `error_if_exists` is on.
    #[error("a database already exists at {path} (error_if_exists is on)")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
    },
    /// The engine does not support this operation.
    #[error("not supported: {message}")]
    Unsupported {
        /// What is not supported.
        message: String,
    },
    /// A re-sent write was refused rather than risk applying it twice: its answer had already
    /// been delivered, or its exactly-once record had expired. It was not applied by this send.
    #[error("write not re-applied: {message}")]
    RetryRefused {
        /// Why.
        message: String,
    },
    /// A conditional write ([`crate::Write::Conditional`]) was not applied: `key` held
    /// `current`, not what the write expected.
    #[error("condition failed: the key holds {} (not applied)", current.as_ref().map_or("nothing".to_string(), |v| format!("a value of {} bytes", v.len())))]
    ConditionFailed {
        /// The first key whose check did not hold.
        key: Vec<u8>,
        /// What it held when the write was evaluated (`None`: absent).
        current: Option<Vec<u8>>,
    },
    /// A watch started from a position older than the history the store keeps: the commits
    /// after it are gone, so the watch would have a gap. Start again from a fresh listing.
    #[error("the change history starts after the requested position (oldest accepted: {oldest})")]
    Compacted {
        /// The oldest position a watch may start from now.
        oldest: u64,
    },
    /// A watcher fell so far behind that the commits it had yet to receive left the history;
    /// it was ended rather than skip them. Watching again from `resume_from` fails with
    /// [`Error::Compacted`] unless the history still holds it.
    #[error("the watcher fell behind the change history (resume from {resume_from})")]
    Lagged {
        /// The position of the last commit the watcher delivered.
        resume_from: u64,
    },
    /// Anything else an engine reports.
    #[error("{message}")]
    Other {
        /// The engine's words.
        message: String,
    },
}

impl Error {
    /// The stable kind of this error; for [`Error::Remote`], the kind the leader reported.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Closed => ErrorKind::Closed,
            Error::LeaderLost => ErrorKind::LeaderLost,
            Error::NoLeader { .. } => ErrorKind::NoLeader,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Io { .. } => ErrorKind::Io,
            Error::Corruption { .. } => ErrorKind::Corruption,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::Remote { kind, .. } => *kind,
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::WrongEngine { .. } => ErrorKind::WrongEngine,
            Error::DoesNotExist { .. } => ErrorKind::DoesNotExist,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::RetryRefused { .. } => ErrorKind::RetryRefused,
            Error::ConditionFailed { .. } => ErrorKind::ConditionFailed,
            Error::Compacted { .. } => ErrorKind::Compacted,
            Error::Lagged { .. } => ErrorKind::Lagged,
            Error::Other { .. } => ErrorKind::Other,
        }
    }

    /// An I/O error with context: `what` says what was being done (e.g. `"open /x/data.redb"`).
    pub fn io(what: impl std::fmt::Display, err: &std::io::Error) -> Self {
        Error::Io {
            kind: err.kind(),
            message: format!("{what}: {err}"),
        }
    }

    /// A corruption error.
    pub fn corruption(message: impl Into<String>) -> Self {
        Error::Corruption {
            message: message.into(),
        }
    }

    /// An invalid-argument error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            message: message.into(),
        }
    }

    /// A protocol error.
    pub fn protocol(message: impl Into<String>) -> Self {
        Error::Protocol {
            message: message.into(),
        }
    }

    /// The position an error of a watch carries: `oldest` of [`Error::Compacted`],
    /// `resume_from` of [`Error::Lagged`].
    pub fn watch_position(&self) -> Option<u64> {
        match self {
            Error::Compacted { oldest } => Some(*oldest),
            Error::Lagged { resume_from } => Some(*resume_from),
            _ => None,
        }
    }

    /// An uncategorised engine error.
    pub fn other(message: impl Into<String>) -> Self {
        Error::Other {
            message: message.into(),
        }
    }
}

/// Why a conditional write (`compare_and_swap`, a conditional batch) applied nothing: the first
/// key whose check did not hold, and what it held when the write was evaluated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("compare-and-swap failed: the key held {}", current.as_ref().map_or("nothing".to_string(), |v| format!("a value of {} bytes", v.len())))]
pub struct CasError {
    /// The key.
    pub key: Vec<u8>,
    /// Its value then (`None`: absent).
    pub current: Option<Vec<u8>>,
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::Io {
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_errors_keep_their_kind() {
        let err = Error::Remote {
            kind: ErrorKind::Corruption,
            message: "bad block".into(),
        };
        assert_eq!(err.kind(), ErrorKind::Corruption);
        assert_eq!(err.kind().as_str(), "Corruption");
    }
}
