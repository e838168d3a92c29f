//! Leader election for rave, independent of any engine.
//!
//! Every handle runs the same algorithm (connect first, then lock):
//! 1. connect to the directory's socket ([`socket_path`]); success makes it a follower;
//! 2. otherwise try the exclusive, non-blocking [`DirLock`] on `<dir>/rave.lock`; the winner is the
//!    leader: it opens the engine, removes any stale socket and listens ([`bind`]);
//! 3. otherwise someone else is becoming leader: wait a little ([`Backoff`]) and start again.
//!
//! Only the lock holder ever unlinks or binds the socket, so a live leader's socket is never
//! removed. The lock is our own file, never the engine's, so engines without locking are safe
//! too, and it is taken per handle: two handles in one process behave like two processes.

#![warn(missing_docs)]

mod backoff;
mod lock;
mod name;
mod socket;

pub use backoff::Backoff;
pub use lock::{DirLock, LEADER_FILE, LOCK_FILE, LeaderRecord, read_leader_record};
pub use name::{SOCKET_FILE, socket_path};
pub use socket::{ClientStream, Listener, ServerStream, bind, connect, unbind};

impl Listener {
    /// The listener as a stream of accepted connections, for `rave_transport::serve`.
    pub fn incoming(
        self,
    ) -> impl futures::Stream<Item = std::io::Result<ServerStream>> + Send + Unpin {
        Box::pin(futures::stream::unfold(self, |listener| async move {
            let accepted = listener.accept().await;
            Some((accepted, listener))
        }))
    }
}

/// FNV-1a, 64 bits: stable across Rust versions and builds, unlike `DefaultHasher`, so every
/// process derives the same socket name.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What a handle currently is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Looking for a leader (at start, and after the leader went away).
    Electing,
    /// This handle holds the lock, runs the engine and serves the others.
    Leader,
    /// This handle talks to another handle's engine over the socket.
    Follower,
    /// The store is shared by its nature (a networked store such as etcd, whose backend has
    /// `Capabilities::shared`): no election, this handle uses the store directly.
    Direct,
    /// The handle is closed.
    Closed,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Electing => "electing",
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Direct => "direct",
            Role::Closed => "closed",
        })
    }
}
