//! rave: one embedded key-value database directory, opened from many processes at once.
//!
//! The first handle to take the directory's lock becomes the **leader**: it opens the real engine
//! and serves every other handle over a local socket. Every other handle is a **follower** with
//! the same API. When the leader goes away (closed, crashed, `kill -9`), the followers elect a new
//! one; operations in flight are retried and iterators resume where they stopped.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! use rave::stream::StreamExt;
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct User { name: String, age: u8 }
//!
//! let db = rave::Rave::open(dir.path(), Default::default())?; // leader or follower: same API
//! db.put("a", "1").await?;                                     // keys, values: AsRef<[u8]>
//! let users = db.sublevel("users");                            // keys under `!users!`
//! let typed = users.typed::<User>();                           // values in JSON
//! typed.put("ada", &User { name: "Ada".into(), age: 36 }).await?;
//! let ada: Option<User> = typed.get("ada").await?;
//! let mut entries = db.range("a".."c").await?;                 // a Stream, read in chunks
//! while let Some(entry) = entries.next().await {
//!     let (key, value) = entry?;
//! }
//! db.close().await
//! # }
//! ```
//!
//! Without async code, [`blocking::Rave`] is the same handle with its own runtime.
//!
//! [`Rave::open`] opens whatever engine the directory holds, or the default engine
//! ([`DefaultBackend`]: redb with the default features) for a new one ([`AnyBackend`]); pick one
//! engine with [`Rave::open_engine`] or pass any [`Backend`] to [`Rave::open_with`]. The
//! engines are Cargo features (`redb`, the default; `leveldb`; `rocksdb`).
//!
//! A backend that is shared by nature (its [`Capabilities::shared`], e.g. an etcd cluster with
//! the `etcd` feature) needs no election: every handle opened on it has the role
//! [`Role::Direct`] and uses the store itself, with the same API, options and errors (see
//! `direct.rs`). Its `path` names a database of that store, not a directory.
//!
//! Views ([`view`]) work over any [`KvStore`] — a bare engine, a leader, a follower: sublevels
//! laid out as Level lays them out ([`Sublevel`]), typed keys and values ([`Typed`]).

#![deny(missing_docs)]

mod any_backend;
pub mod blocking;
mod direct;
mod iter;
mod leadership;
mod level_compat;
/// The rave-level (Node) socket: many-level's protocol beside rave's own.
#[cfg(unix)]
pub mod level_socket;
mod options;
mod rave;
mod rave_methods;
mod stamp;
pub mod stream;
pub mod view;
mod watcher;

pub use any_backend::{AnyBackend, EngineKind};
pub use options::RaveOptions;
pub use rave::Rave;
pub use rave_api::*;
pub use rave_election::Role;
pub use view::{IntoRange, Sublevel, Typed, TypedCasError, TypedChange, TypedEvent};

/// The etcd backend's crate (its options, URL parsing and the local-cluster test helpers).
#[cfg(feature = "etcd")]
pub use rave_backend_etcd as etcd;

/// The engines compiled into this build, one per Cargo feature.
pub mod backends {
    pub use rave_api::MemoryBackend;
    #[cfg(feature = "etcd")]
    pub use rave_backend_etcd::EtcdBackend;
    #[cfg(feature = "leveldb")]
    pub use rave_backend_leveldb::LevelDbBackend;
    #[cfg(feature = "redb")]
    pub use rave_backend_redb::RedbBackend;
    #[cfg(feature = "rocksdb")]
    pub use rave_backend_rocksdb::RocksDbBackend;
}

/// The engine used when none is named: redb with the default features.
#[cfg(feature = "redb")]
pub type DefaultBackend = backends::RedbBackend;
/// The engine used when none is named (redb is not compiled in: the first enabled engine).
#[cfg(all(not(feature = "redb"), feature = "leveldb"))]
pub type DefaultBackend = backends::LevelDbBackend;
/// The engine used when none is named (redb is not compiled in: the first enabled engine).
#[cfg(all(not(feature = "redb"), not(feature = "leveldb"), feature = "rocksdb"))]
pub type DefaultBackend = backends::RocksDbBackend;
/// The engine used when none is named (no engine feature is on: the in-memory engine).
#[cfg(not(any(feature = "redb", feature = "leveldb", feature = "rocksdb")))]
pub type DefaultBackend = backends::MemoryBackend;
