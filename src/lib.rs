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

#![warn(missing_docs)]

mod iter;
mod leadership;
mod level_compat;
/// The rave-level (Node) socket: many-level's protocol beside rave's own.
#[cfg(unix)]
pub mod level_socket;
mod options;
mod rave;
mod stamp;

pub use options::RaveOptions;
pub use rave::Rave;
pub use rave_api::*;
pub use rave_election::Role;

/// The engines compiled into this build, one per Cargo feature.
pub mod backends {
    pub use rave_api::MemoryBackend;
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
