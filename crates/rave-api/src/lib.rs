//! The contract of rave.
//!
//! Every engine (redb, LevelDB, RocksDB, or your own) implements [`Backend`], whose
//! [`Backend::open`] yields a [`KvStore`]. The multi-process layer (`rave::Rave`) is itself a
//! [`KvStore`], so code written against this trait runs unchanged on a bare engine, on a leader
//! and on a follower.
//!
//! - Keys and values are bytes. Keys are ordered by unsigned lexicographic byte order; the empty
//!   key and the empty value are valid.
//! - A missing key is `Ok(None)`, never an error.
//! - Errors are one enum, [`Error`], whose [`ErrorKind`] is stable across versions and processes.
//!
//! Engines are blocking libraries. [`engine_thread`] runs one on a dedicated thread (never on the
//! async runtime's workers) and coalesces concurrent writes into one engine commit; an engine
//! whose point reads are thread-safe can serve them on the caller's thread instead
//! ([`engine_thread::SharedReader`]).

mod backend;
mod batch;
mod changelog;
mod commit;
pub mod dir;
pub mod engine_backend;
pub mod engine_thread;
mod error;
#[doc(hidden)]
pub mod failover_trace;
pub mod journal;
pub mod keyspace;
mod memory;
pub mod once;
mod range;
mod sequence;
mod store;
pub mod watch;

pub use backend::{Backend, Capabilities, OpenOptions};
pub use batch::BatchOp;
pub use engine_backend::{EngineBackend, EngineOp};
pub use error::{CasError, Error, ErrorKind, Result};
pub use memory::{MemoryBackend, MemoryEngine};
pub use once::{Check, ClientId, Write, WriteStamp};
pub use range::{Projection, Range};
pub use store::{DEFAULT_CHUNK, Entry, KvIterator, KvStore, apply_unstamped};
pub use watch::{Change, Commit, WatchEvent, WatchOptions, WatchStream};
