use std::path::Path;

use crate::watch::WatchOptions;
use crate::{KvStore, Result};

/// How to open a database directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Create the directory and the database when they do not exist (default: true).
    pub create_if_missing: bool,
    /// Fail with [`crate::Error::AlreadyExists`] when a database is already there (default: false).
    pub error_if_exists: bool,
    /// Make every acknowledged write durable against power loss (fsync), not only against the
    /// crash of a process (default: false). Engines whose every commit syncs ignore `false`.
    pub sync: bool,
    /// The change history kept for watchers and their pacing ([`crate::KvStore::watch`]).
    pub watch: WatchOptions,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            create_if_missing: true,
            error_if_exists: false,
            sync: false,
            watch: WatchOptions::default(),
        }
    }
}

/// What an engine supports, so that the conformance suite runs only the tests that apply (the
/// way abstract-level's `supports` manifest gates its suite).
///
/// Start from [`Capabilities::full`] or [`Capabilities::in_memory`] and add the optional ones
/// with the `with_*` methods (the struct is `#[non_exhaustive]`, so other crates cannot build it
/// field by field), e.g. `Capabilities::full().with_concurrent_reads(true)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Data survives closing and reopening the directory.
    pub persistent: bool,
    /// Iterators see a snapshot taken at creation.
    pub snapshots: bool,
    /// An acknowledged write survives the crash (SIGKILL) of the writing process.
    pub crash_durable: bool,
    /// Point reads (`get`, `get_many`) are answered on the caller's thread, without queueing
    /// on the engine thread: the returned future completes on its first poll, even while a
    /// commit is running (redb's and RocksDB's reads do not wait for it at all; LevelDB's block
    /// until the commit in progress ends, as its database is one object behind a mutex). An [`EngineStore`](crate::engine_thread::EngineStore) offers this when its engine
    /// has a [`SharedReader`](crate::engine_thread::SharedReader). Optional (off in
    /// [`Capabilities::full`]); the conformance suite's engine contract then also checks that
    /// such reads see every acknowledged write and stop cleanly at close.
    pub concurrent_reads: bool,
    /// A write re-sent with the same [`crate::WriteStamp`] is applied once
    /// ([`crate::KvStore::write_stamped`]): every [`EngineStore`](crate::engine_thread::EngineStore)
    /// offers this. Optional (off in [`Capabilities::full`]); without it a write retried after a
    /// failover may be applied twice, and the conformance suite skips its exactly-once checks.
    pub exactly_once: bool,
    /// [`crate::KvStore::watch`] delivers every commit in a range, with a history to start
    /// from an earlier position: every [`EngineStore`](crate::engine_thread::EngineStore)
    /// offers this. Optional (off in [`Capabilities::full`]); the conformance suite's watch
    /// cases run only with it.
    pub watch: bool,
    /// Conditional writes ([`crate::Write::Conditional`]: compare-and-swap, conditional
    /// batches) are evaluated atomically in commit order: every
    /// [`EngineStore`](crate::engine_thread::EngineStore) offers this. Optional (off in
    /// [`Capabilities::full`]); the conformance suite's conditional cases run only with it.
    pub conditional_writes: bool,
    /// The store is already shared by every process and machine that opens it (a networked
    /// store such as an etcd cluster): `rave::Rave` opened on it runs no election and gives
    /// each handle direct access, and `path` names a database of the store rather than a
    /// directory. Optional (off in [`Capabilities::full`]); the conformance suite's cases that
    /// need a directory of their own run only without it.
    pub shared: bool,
}

impl Capabilities {
    /// What every real on-disk engine offers: persistence, snapshots and crash durability.
    /// Optional extras ([`Capabilities::concurrent_reads`]) are off, so an engine that returns
    /// `full()` is not held to them; add them with the `with_*` methods.
    pub const fn full() -> Self {
        Capabilities {
            persistent: true,
            snapshots: true,
            crash_durable: true,
            concurrent_reads: false,
            exactly_once: false,
            watch: false,
            conditional_writes: false,
            shared: false,
        }
    }

    /// An in-memory engine: snapshots, but nothing survives the process.
    pub const fn in_memory() -> Self {
        Capabilities {
            persistent: false,
            snapshots: true,
            crash_durable: false,
            concurrent_reads: false,
            exactly_once: false,
            watch: false,
            conditional_writes: false,
            shared: false,
        }
    }

    /// These capabilities with [`Capabilities::exactly_once`] set to `yes`.
    pub const fn with_exactly_once(mut self, yes: bool) -> Self {
        self.exactly_once = yes;
        self
    }

    /// These capabilities with [`Capabilities::conditional_writes`] set to `yes`.
    pub const fn with_conditional_writes(mut self, yes: bool) -> Self {
        self.conditional_writes = yes;
        self
    }

    /// These capabilities with [`Capabilities::watch`] set to `yes`.
    pub const fn with_watch(mut self, yes: bool) -> Self {
        self.watch = yes;
        self
    }

    /// These capabilities with [`Capabilities::shared`] set to `yes`.
    pub const fn with_shared(mut self, yes: bool) -> Self {
        self.shared = yes;
        self
    }

    /// These capabilities with [`Capabilities::concurrent_reads`] set to `yes`.
    pub const fn with_concurrent_reads(mut self, yes: bool) -> Self {
        self.concurrent_reads = yes;
        self
    }
}

/// An engine: something that opens a directory as a [`KvStore`].
///
/// Implement this to plug your own engine into rave; run `rave-conformance` against it to prove
/// it honours the contract.
pub trait Backend: Send + Sync + 'static {
    /// The store this engine opens.
    type Store: KvStore;

    /// The engine's name, as recorded in the directory (e.g. `"redb"`).
    fn name(&self) -> &'static str;

    /// What the engine supports.
    fn capabilities(&self) -> Capabilities;

    /// Opens (or creates) the database in directory `path`. This call blocks: run it off the
    /// async runtime (for instance in `tokio::task::spawn_blocking`).
    fn open(&self, path: &Path, options: &OpenOptions) -> Result<Self::Store>;
}
