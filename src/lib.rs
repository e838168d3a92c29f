//! rave: one embedded key-value database directory, opened from many processes at once.
//!
//! The first handle to take the directory's lock becomes the **leader**: it opens the real engine
//! and serves every other handle over a local socket. Every other handle is a **follower** with
//! the same API. When the leader goes away (closed, crashed, `kill -9`), the followers elect a new
//! one; operations in flight are retried and iterators resume where they stopped.
//!
//! ```no_run
//! # async fn demo() -> rave::Result<()> {
//! use rave::{KvStore, Rave, RaveOptions};
//! let db: Rave = Rave::open("/tmp/my-db", RaveOptions::default())?;
//! db.put(b"a", b"1").await?;
//! assert_eq!(db.get(b"a").await?, Some(b"1".to_vec()));
//! db.close().await?;
//! # Ok(()) }
//! ```
//!
//! The engine is picked with a Cargo feature (`redb`, the default; `leveldb`; `rocksdb`) or by
//! passing any [`Backend`] to [`Rave::open_with`].
//!
//! A backend that is shared by nature (its [`Capabilities::shared`], e.g. an etcd cluster with
//! the `etcd` feature) needs no election: every handle opened on it has the role
//! [`Role::Direct`] and uses the store itself, with the same API, options and errors (see
//! `direct.rs`). Its `path` names a database of that store, not a directory.

#![warn(missing_docs)]

mod direct;
mod iter;
mod leadership;
mod options;
mod rave;
mod stamp;

pub use options::RaveOptions;
pub use rave::Rave;
pub use rave_api::*;
pub use rave_election::Role;

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
