//! An etcd cluster as a rave backend: the same [`KvStore`] API, conformance suite and CLI on
//! a replicated, linearizable store that processes on many machines share.
//!
//! [`EtcdBackend`] opens one **namespace** of a cluster: a key prefix that isolates one
//! database from the others on the same cluster. Its [`Capabilities::shared`] is on: the
//! cluster is already shared by every process that opens it, so `rave::Rave` opened on it
//! runs no election and gives each handle direct access (role `Direct`), with the same API,
//! options and errors.
//!
//! # How rave's semantics map onto etcd
//!
//! - **Keys.** Every byte string is a key, the empty one included: user keys are stored under
//!   the namespace with a tag byte in front, so none is empty on the wire (etcd refuses an
//!   empty key) and their order is kept ([`keys`] has the layout).
//! - **Ranges.** `gt/gte/lt/lte` become etcd's half-open `[key, range_end)`; reverse is a
//!   descending sort; a limit is etcd's `limit`.
//! - **Iterators** read one revision: the first page pins it, later pages read it. If etcd
//!   compacts that revision while the iterator is open, the iterator resumes after its last
//!   key at the current revision, exactly like a rave iterator after a failover.
//! - **Batches** are one transaction, merged so each key appears once (etcd refuses
//!   duplicates). etcd limits a transaction to `--max-txn-ops` operations (128 by default) and
//!   a request to `--max-request-bytes` (1.5 MiB): rave uses up to 5 operations of its own, so
//!   a batch may have 123 distinct keys by default; a larger one fails with
//!   `InvalidArgument` naming the limit, never half-applied. Set [`EtcdOptions`] to the
//!   server's limits when they differ.
//! - **`clear(range)`** is one `DeleteRange` (with a limit: the keys are listed first, and
//!   deleted in one transaction that fails and is planned again if anything in the namespace
//!   changed in between), in the same transaction as its exactly-once record: atomic.
//! - **`watch`** is etcd's Watch; the sequence is the etcd revision ([`KvStore::sequence`]
//!   is the revision of the namespace's last write); a compacted start is `Compacted`.
//! - **Exactly once.** The `etcd-client` crate re-sends nothing by itself (only a request
//!   refused for an expired auth token); this store re-sends reads and writes that failed
//!   with a transient error (a member down, a leader election, a broken connection) until
//!   [`EtcdOptions::op_timeout`]. Such a write may have been applied before its answer was
//!   lost, so every write carries a stamp and its transaction is conditional on the stamp's
//!   record being absent: a re-sent write finds its record and is answered without being
//!   applied again. Writes through `put`/`del`/`batch`/`clear` are stamped by the store itself;
//!   rave handles stamp theirs ([`KvStore::write_stamped`]). A write that ends in `Timeout`
//!   may or may not have been applied (it is never re-sent after that).
//! - **Conditional writes**: [`EtcdStore::compare_and_swap`], one compare-and-swap
//!   transaction.

#![warn(missing_docs)]

mod cas;
mod error;
mod iter;
pub mod keys;
mod store;
pub mod testing;
mod watch;
mod write;

use std::path::Path;
use std::time::Duration;

use rave_api::{Backend, Capabilities, Error, KvStore, OpenOptions, Result, WatchOptions};

pub use store::EtcdStore;

/// How the store talks to the cluster, and the server limits it checks writes against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdOptions {
    /// How long an operation may take, retries of transient failures included (default 30 s);
    /// past it the operation fails with `Timeout`.
    pub op_timeout: Duration,
    /// How long one request may take before it is abandoned and re-sent (default 5 s).
    pub request_timeout: Duration,
    /// The server's `--max-txn-ops` (default 128).
    pub max_txn_ops: usize,
    /// The server's `--max-request-bytes` (default 1.5 MiB).
    pub max_request_bytes: usize,
    /// How long the exactly-once records of a closed store are kept (their lease's TTL;
    /// default [`rave_api::once::RECORD_TTL`]).
    pub record_ttl: Duration,
    /// Watch pacing (only `progress_interval` applies: the history is etcd's).
    pub watch: WatchOptions,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            op_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
            max_txn_ops: 128,
            max_request_bytes: 1024 * 1024 * 3 / 2,
            record_ttl: rave_api::once::RECORD_TTL,
            watch: WatchOptions::default(),
        }
    }
}

/// Opens namespaces of one etcd cluster.
///
/// [`Backend::open`]'s `path` names the database inside the backend's namespace: its bytes are
/// appended to the namespace (an empty path is the namespace itself), so a test suite that
/// opens fresh directories gets fresh namespaces, and the same path opens the same data again.
#[derive(Clone, Debug)]
pub struct EtcdBackend {
    endpoints: Vec<String>,
    namespace: Vec<u8>,
    options: EtcdOptions,
}

impl EtcdBackend {
    /// A backend on the cluster at `endpoints` (`host:port` or `http://host:port`), under
    /// `namespace`.
    pub fn new(endpoints: Vec<String>, namespace: impl Into<Vec<u8>>) -> Self {
        EtcdBackend {
            endpoints,
            namespace: namespace.into(),
            options: EtcdOptions::default(),
        }
    }

    /// Parses `etcd://HOST:PORT[,HOST:PORT...]/NAMESPACE` (the namespace may be empty).
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| Error::invalid(format!("not an etcd:// URL: {url}")))?;
        let (hosts, namespace) = rest.split_once('/').unwrap_or((rest, ""));
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("http://{h}"))
            .collect();
        if endpoints.is_empty() {
            return Err(Error::invalid(format!("no etcd endpoint in {url}")));
        }
        keys::Namespace::new(namespace.as_bytes())?;
        Ok(Self::new(endpoints, namespace))
    }

    /// These options instead of the defaults.
    pub fn with_options(mut self, options: EtcdOptions) -> Self {
        self.options = options;
        self
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The namespace of the database at `path`.
    pub fn namespace_of(&self, path: &Path) -> Vec<u8> {
        let mut namespace = self.namespace.clone();
        namespace.extend_from_slice(path.as_os_str().as_encoded_bytes());
        namespace
    }

    /// Connects and opens the database at `path` (see [`EtcdBackend`]), from async code.
    pub async fn open_async(&self, path: &Path, options: &OpenOptions) -> Result<EtcdStore> {
        let mut etcd = self.options.clone();
        etcd.watch = options.watch.clone();
        EtcdStore::connect(&self.endpoints, &self.namespace_of(path), etcd).await
    }
}

impl Backend for EtcdBackend {
    type Store = EtcdStore;

    fn name(&self) -> &'static str {
        "etcd"
    }

    /// Persistent, snapshots (per revision, until compacted), crash durable (a Raft commit),
    /// exactly once, watch, and shared.
    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
            .with_exactly_once(true)
            .with_watch(true)
            .with_conditional_writes(true)
            .with_shared(true)
    }

    /// Connects from a blocking thread of a Tokio runtime (as `Backend::open` is called, e.g.
    /// in `spawn_blocking`); the connection's tasks run on that runtime. `create_if_missing`
    /// and `error_if_exists` do not apply: a namespace exists as soon as it is written.
    fn open(&self, path: &Path, options: &OpenOptions) -> Result<EtcdStore> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::invalid("the etcd backend must be opened within a Tokio runtime")
        })?;
        runtime.block_on(self.open_async(path, options))
    }
}

/// Keeps `KvStore` in scope for the docs above.
#[allow(dead_code)]
fn _store_is_kv(store: EtcdStore) -> impl KvStore {
    store
}
