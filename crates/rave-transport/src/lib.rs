//! rave's transport: how followers talk to the leader.
//!
//! - [`wire`]: the protocol and its codec alone — length-delimited frames carrying MessagePack
//!   messages, a handshake with a magic and a version, pipelined requests, credit-based iterator
//!   streams. Nothing in it does I/O, so another protocol can sit beside it.
//! - [`server`]: serves any [`rave_api::KvStore`] over a unix socket ([`serve`], `accept.rs`) or
//!   any byte stream ([`serve_connection`]), in bounded memory per connection: the handshake in
//!   `server/mod.rs`, per-connection dispatch in `connection.rs`, iterator streaming and credit
//!   in `iter.rs`.
//! - [`client`]: [`Client`], a [`rave_api::KvStore`] whose operations travel to the leader:
//!   the handshake and reader task in `client/connect.rs`, frame combining on the write side in
//!   `outbox.rs`, the pending-call table and message routing in `state.rs`, iterator streams in
//!   `iter.rs`, the timeout watchdog in `watchdog.rs`.
//!
//! The transport knows nothing about engines or elections: the `rave` facade picks the socket,
//! starts the server on the leader and re-elects when a [`Client`] loses its leader.

#![warn(missing_docs)]

pub mod client;
pub mod server;
pub mod wire;

pub use client::{Client, RemoteIter, Welcome};
pub use server::{ConnectionCount, serve, serve_counted};
pub use server::{ServerInfo, serve_connection};
pub use wire::{Limits, MAGIC, PROTOCOL_VERSION};

#[cfg(all(test, unix))]
mod tests;
