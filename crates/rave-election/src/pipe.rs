//! Windows named pipes: the leader's listener.
//!
//! A pipe's name is `\\.\pipe\rave-<hash of the canonical directory path>`. Pipes vanish with
//! their process, so there is never a stale one to remove. Remote clients are rejected.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::windows::named_pipe::{
    ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions,
};

use crate::{DirLock, fnv1a64};

/// Kept for symmetry with Unix: the pipe is named after the directory, not placed in it.
pub const SOCKET_FILE: &str = "rave.sock";

/// `ERROR_PIPE_BUSY`: every instance of the pipe is taken; a new one is being created.
const ERROR_PIPE_BUSY: i32 = 231;

/// A connection accepted by the leader.
pub type ServerStream = NamedPipeServer;
/// A follower's connection to the leader.
pub type ClientStream = NamedPipeClient;

/// The pipe every handle of `dir` meets at. `dir` must exist.
pub fn socket_path(dir: &Path) -> io::Result<PathBuf> {
    let canonical = std::fs::canonicalize(dir)?;
    // Windows paths are case-insensitive: every spelling must give one name.
    let key = canonical.to_string_lossy().to_lowercase();
    Ok(PathBuf::from(format!(
        r"\\.\pipe\rave-{:016x}",
        fnv1a64(key.as_bytes())
    )))
}

/// The leader's listener: one pipe instance waiting for the next follower.
#[derive(Debug)]
pub struct Listener {
    name: OsString,
    next: NamedPipeServer,
}

impl Listener {
    /// The next follower's connection.
    pub async fn accept(&mut self) -> io::Result<ServerStream> {
        self.next.connect().await?;
        let fresh = ServerOptions::new()
            .reject_remote_clients(true)
            .create(&self.name)?;
        Ok(std::mem::replace(&mut self.next, fresh))
    }
}

/// Creates the pipe; only the lock holder may (it fails if another process owns the name).
pub fn bind(path: &Path, _lock: &DirLock) -> io::Result<Listener> {
    let name = path.as_os_str().to_os_string();
    let next = ServerOptions::new()
        .first_pipe_instance(true)
        .reject_remote_clients(true)
        .create(&name)?;
    Ok(Listener { name, next })
}

/// Connects to the leader's pipe, waiting briefly while all its instances are busy.
pub async fn connect(path: &Path) -> io::Result<ClientStream> {
    for _ in 0..50 {
        match ClientOptions::new().open(path.as_os_str()) {
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => return other,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "the leader's pipe stayed busy",
    ))
}

/// Nothing to remove: a pipe goes away with its last handle.
pub fn unbind(_path: &Path) {}
