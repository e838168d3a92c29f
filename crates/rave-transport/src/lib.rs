//! rave's transport: how followers talk to the leader.
//!
//! - [`wire`]: the protocol — length-delimited frames carrying MessagePack messages, a
//!   handshake with a magic and a version, pipelined requests, credit-based iterator streams.
//! - [`server`]: serves any [`rave_api::KvStore`] over a unix socket ([`serve`]) or any byte
//!   stream ([`serve_connection`]), in bounded memory per connection.
//! - [`client`]: [`Client`], a [`rave_api::KvStore`] whose operations travel to the leader.
//!
//! The transport knows nothing about engines or elections: the `rave` facade picks the socket,
//! starts the server on the leader and re-elects when a [`Client`] loses its leader.

#![warn(missing_docs)]

pub mod client;
pub mod server;
pub mod wire;

pub use client::{Client, RemoteIter, Welcome};
pub use server::serve;
pub use server::{ServerInfo, serve_connection};
pub use wire::{Limits, MAGIC, PROTOCOL_VERSION};

#[cfg(all(test, unix))]
mod tests;
