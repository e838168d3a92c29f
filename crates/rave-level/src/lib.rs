//! rave-level's protocol for rave: the wire format of Node's `many-level` (which `rave-level`
//! speaks between its processes), a [`host`] that serves any [`rave_api::KvStore`] to Node
//! guests, and a [`guest`] that follows a Node leader as a [`rave_api::KvStore`].
//!
//! The protocol: a byte stream (a unix socket, `<dir>/rave-level.sock` for rave-level), no
//! handshake; frames of an unsigned LEB128 length and a payload of one tag byte and a proto2
//! message ([`messages`]). Requests carry ids and replies come back in any order. Iterators are
//! flow-controlled by acks. Encodings never travel: the bytes on the wire are the stored bytes.

#![warn(missing_docs)]

pub mod codec;
pub mod codes;
pub mod frame;
pub mod guest;
pub mod host;
pub mod messages;
pub mod range;

pub use guest::{Guest, GuestOptions};
pub use host::{HostOptions, serve, serve_stream};

/// The socket file a rave-level leader serves in its directory.
pub const SOCKET_FILE: &str = "rave-level.sock";
