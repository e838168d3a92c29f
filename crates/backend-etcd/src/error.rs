//! etcd's errors as rave's: which ones a retry may cure, and the typed errors for the limits.

use std::time::Duration;

use etcd_client::Error as EtcdError;
use rave_api::Error;
use tonic::Code;

/// Whether `err` says the request may succeed if sent again (a member down or electing, a
/// connection broken, a request that timed out). Such a write may or may not have been
/// applied: only stamped writes are re-sent (see [`crate::EtcdStore`]).
pub(crate) fn transient(err: &EtcdError) -> bool {
    match err {
        EtcdError::TransportError(_) | EtcdError::IoError(_) => true,
        EtcdError::GRpcStatus(status) => {
            matches!(
                status.code(),
                Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::Cancelled
                    | Code::Aborted
                    | Code::Unknown
                    | Code::ResourceExhausted
                    | Code::Internal
            ) && !too_large(status.message())
        }
        EtcdError::WatchError(_) | EtcdError::LeaseKeepAliveError(_) => true,
        _ => false,
    }
}

fn too_large(message: &str) -> bool {
    message.contains("too large")
        || message.contains("message length")
        || message.contains("larger than max")
}

/// Whether `err` is etcd's "required revision has been compacted".
pub(crate) fn compacted(err: &EtcdError) -> bool {
    matches!(err, EtcdError::GRpcStatus(s) if s.message().contains("has been compacted"))
}

/// The rave error of a non-transient etcd error; limits are named.
pub(crate) fn convert(err: EtcdError, limits: &crate::EtcdOptions) -> Error {
    let message = err.to_string();
    if message.contains("too many operations in txn request") {
        return too_many_ops(None, limits.max_txn_ops);
    }
    if message.contains("request is too large") || too_large(&message) {
        return too_many_bytes(None, limits.max_request_bytes);
    }
    if let EtcdError::GRpcStatus(status) = &err {
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                return Error::invalid(format!("etcd refused the request: {message}"));
            }
            Code::PermissionDenied | Code::Unauthenticated => {
                return Error::Io {
                    kind: std::io::ErrorKind::PermissionDenied,
                    message: format!("etcd: {message}"),
                };
            }
            _ => {}
        }
    }
    Error::other(format!("etcd: {message}"))
}

/// The typed error of a write of `ops` operations over etcd's `--max-txn-ops`.
pub(crate) fn too_many_ops(ops: Option<usize>, limit: usize) -> Error {
    let what = ops.map_or_else(
        || "a write".to_string(),
        |n| format!("a write of {n} operations"),
    );
    Error::invalid(format!(
        "{what} exceeds etcd's limit of {limit} operations per transaction (--max-txn-ops; \
         rave adds up to {} of its own): nothing was applied",
        crate::write::OWN_OPS
    ))
}

/// The typed error of a write of `bytes` bytes over etcd's `--max-request-bytes`.
pub(crate) fn too_many_bytes(bytes: Option<usize>, limit: usize) -> Error {
    let what = bytes.map_or_else(
        || "a write".to_string(),
        |n| format!("a write of about {n} bytes"),
    );
    Error::invalid(format!(
        "{what} exceeds etcd's request size limit of {limit} bytes (--max-request-bytes): \
         nothing was applied"
    ))
}

/// The error of an operation that found no working member for `waited`.
pub(crate) fn timeout(waited: Duration) -> Error {
    Error::Timeout { waited }
}
