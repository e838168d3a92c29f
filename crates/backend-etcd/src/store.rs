//! [`EtcdStore`]: the [`KvStore`] of one namespace of an etcd cluster.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use etcd_client::{
    Client, ConnectOptions, Error as EtcdError, GetOptions, KvClient, LeaseGrantOptions, Txn,
    TxnOp, TxnOpResponse,
};
use rave_api::{
    BatchOp, ClientId, Entry, Error, KvIterator, KvStore, Range, Result, Write, WriteStamp,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::EtcdOptions;
use crate::error::{convert, timeout, transient};
use crate::keys::Namespace;

/// The largest answer the store accepts (tonic's default is 4 MiB).
const MAX_ANSWER_BYTES: usize = 1 << 30;

/// One namespace of an etcd cluster as a [`KvStore`] (see the crate docs for the mapping).
///
/// Clones share one connection. Every write is stamped (by the caller through
/// [`KvStore::write_stamped`], or by the store itself for `put`, `del`, `batch` and `clear`),
/// so a write re-sent after a broken connection or a member's death is applied once.
#[derive(Clone)]
pub struct EtcdStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub client: Client,
    /// The KV client, with no 4 MiB limit on answers (values may be as large as the server's
    /// request limit, and a page holds many).
    pub kv: KvClient,
    pub ns: Namespace,
    pub options: EtcdOptions,
    pub closed: AtomicBool,
    /// The lease the exactly-once records are attached to (0: none yet).
    pub lease: AtomicI64,
    keeper: Mutex<Option<JoinHandle<()>>>,
    /// The stored floor of each handle as this store last knew it (a lower bound: floors
    /// only grow); a handle absent here may have none yet.
    pub floors: Mutex<std::collections::HashMap<ClientId, u64>>,
    own: OwnStamps,
}

/// The stamps of the store's own writes (`put`, `del`, `batch`, `clear`).
struct OwnStamps {
    client: ClientId,
    next: AtomicU64,
    unanswered: Mutex<BTreeSet<u64>>,
}

impl OwnStamps {
    fn begin(&self) -> WriteStamp {
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        let mut open = self.unanswered.lock().unwrap_or_else(|e| e.into_inner());
        open.insert(seq);
        let floor = open.first().copied().unwrap_or(seq);
        WriteStamp {
            client: self.client,
            seq,
            floor,
        }
    }

    fn end(&self, seq: u64) {
        self.unanswered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&seq);
    }
}

impl EtcdStore {
    /// Connects to the cluster at `endpoints` (`host:port` or `http://host:port`) and opens
    /// the database of namespace `namespace` (no `0x00` byte).
    pub async fn connect(
        endpoints: &[String],
        namespace: &[u8],
        options: EtcdOptions,
    ) -> Result<Self> {
        let ns = Namespace::new(namespace)?;
        if endpoints.is_empty() {
            return Err(Error::invalid("no etcd endpoint given"));
        }
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.request_timeout)
            .with_timeout(options.request_timeout)
            .with_keep_alive(options.request_timeout, options.request_timeout);
        let client = tokio::time::timeout(
            options.op_timeout,
            Client::connect(endpoints, Some(connect)),
        )
        .await
        .map_err(|_| timeout(options.op_timeout))?
        .map_err(|e| Error::Io {
            kind: std::io::ErrorKind::ConnectionRefused,
            message: format!("connect to etcd at {}: {e}", endpoints.join(",")),
        })?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_ANSWER_BYTES);
        let inner = Arc::new(Inner {
            kv,
            client,
            ns,
            options,
            closed: AtomicBool::new(false),
            lease: AtomicI64::new(0),
            keeper: Mutex::new(None),
            floors: Mutex::new(Default::default()),
            own: OwnStamps {
                client: ClientId::random(),
                next: AtomicU64::new(1),
                unanswered: Mutex::new(BTreeSet::new()),
            },
        });
        // One read proves the cluster answers (and has a quorum) before the store is handed out.
        inner.header_revision().await?;
        inner.grant_lease().await?;
        let keeper = tokio::spawn(keep_lease(Arc::downgrade(&inner)));
        *inner.keeper.lock().unwrap_or_else(|e| e.into_inner()) = Some(keeper);
        Ok(EtcdStore { inner })
    }

    /// The namespace's name.
    pub fn namespace(&self) -> &[u8] {
        self.inner.ns.name()
    }

    /// The etcd client (for tests and tools that need the cluster itself).
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }
}

/// Renews the records' lease now and then while the store lives (a third of its TTL).
async fn keep_lease(inner: std::sync::Weak<Inner>) {
    loop {
        let every = match inner.upgrade() {
            Some(inner) => inner.options.record_ttl / 3,
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let id = inner.lease.load(Ordering::SeqCst);
        let renewed = async {
            let (mut keeper, mut stream) = inner.client.lease_client().keep_alive(id).await?;
            keeper.keep_alive().await?;
            let reply = stream.message().await?;
            Ok::<_, EtcdError>(reply.is_some_and(|r| r.ttl() > 0))
        };
        match tokio::time::timeout(inner.options.request_timeout, renewed).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                // Expired (the process was stopped longer than the TTL): records written from
                // now on get a new one.
                let _ = inner.grant_lease().await;
            }
            _ => tracing::debug!("renewing the etcd lease failed; next time"),
        }
    }
}

impl Inner {
    pub fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Runs `op` until it succeeds, fails for good, or `op_timeout` passes: transient failures
    /// (a member down, a leader election, a broken connection) are retried with a growing
    /// pause. Callers re-send only what is safe to re-send (reads, stamped writes).
    pub async fn retry<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut(KvClient) -> Fut,
        Fut: Future<Output = std::result::Result<T, EtcdError>>,
    {
        self.retry_on(&self.kv, op).await
    }

    /// [`Inner::retry`] with a clone of `base` for each attempt (the client, a KV client).
    pub async fn retry_on<C: Clone, T, F, Fut>(&self, base: &C, mut op: F) -> Result<T>
    where
        F: FnMut(C) -> Fut,
        Fut: Future<Output = std::result::Result<T, EtcdError>>,
    {
        let started = Instant::now();
        let ends = started + self.options.op_timeout;
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            self.check_open()?;
            let attempt = tokio::time::timeout_at(ends, op(base.clone())).await;
            match attempt {
                Err(_) => return Err(timeout(started.elapsed())),
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) if transient(&err) => {
                    tracing::debug!(%err, "etcd request failed; retrying");
                    if Instant::now() + pause >= ends {
                        return Err(timeout(started.elapsed()));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                Ok(Err(err)) => return Err(self.convert(err)),
            }
        }
    }

    pub fn convert(&self, err: EtcdError) -> Error {
        if crate::error::compacted(&err) {
            return Error::Compacted { oldest: 0 };
        }
        convert(err, &self.options)
    }

    /// The commit marker, read linearizably: the reply's header revision is the cluster's
    /// now, its key's `mod_revision` the namespace's last write.
    async fn read_marker(&self) -> Result<etcd_client::GetResponse> {
        let marker = self.ns.marker();
        self.retry(|mut c| {
            let marker = marker.clone();
            async move {
                c.get(marker, Some(GetOptions::new().with_keys_only()))
                    .await
            }
        })
        .await
    }

    /// The cluster's revision now.
    pub async fn header_revision(&self) -> Result<i64> {
        let reply = self.read_marker().await?;
        Ok(reply.header().map_or(0, |h| h.revision()))
    }

    pub async fn grant_lease(&self) -> Result<()> {
        let ttl = i64::try_from(self.options.record_ttl.as_secs())
            .unwrap_or(i64::MAX)
            .max(1);
        let reply = self
            .retry_on(&self.client, |mut c| async move {
                c.lease_grant(ttl, None::<LeaseGrantOptions>).await
            })
            .await?;
        self.lease.store(reply.id(), Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait]
impl KvStore for EtcdStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let wire = self.inner.ns.user(key);
        let mut reply = self
            .inner
            .retry(|mut c| {
                let wire = wire.clone();
                async move { c.get(wire, None).await }
            })
            .await?;
        Ok(reply
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| kv.into_key_value().1))
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut values = Vec::with_capacity(keys.len());
        // One read-only transaction per chunk: each chunk is one snapshot.
        for chunk in keys.chunks(self.inner.options.max_txn_ops.max(1)) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|k| TxnOp::get(self.inner.ns.user(k), None))
                .collect();
            let reply = self
                .inner
                .retry(|mut c| {
                    let ops = ops.clone();
                    async move { c.txn(Txn::new().and_then(ops)).await }
                })
                .await?;
            for response in reply.op_responses() {
                let value = match response {
                    TxnOpResponse::Get(mut get) => get
                        .take_kvs()
                        .into_iter()
                        .next()
                        .map(|kv| kv.into_key_value().1),
                    _ => return Err(Error::protocol("etcd answered a get with another op")),
                };
                values.push(value);
            }
        }
        if values.len() != keys.len() {
            return Err(Error::protocol("etcd answered a different number of gets"));
        }
        Ok(values)
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.own_write(Write::Batch(vec![BatchOp::put(key, value)]))
            .await
    }

    async fn del(&self, key: &[u8]) -> Result<()> {
        self.own_write(Write::Batch(vec![BatchOp::del(key)])).await
    }

    async fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
        self.own_write(Write::Batch(ops)).await
    }

    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
        self.inner.check_open()?;
        let mut iter = crate::iter::EtcdIter::new(self.inner.clone(), range);
        iter.prime().await?;
        Ok(Box::new(iter))
    }

    async fn clear(&self, range: Range) -> Result<()> {
        self.own_write(Write::Clear(range)).await
    }

    async fn write(&self, write: Write) -> Result<()> {
        match write {
            Write::Conditional { checks, ops } => {
                crate::cas::conditional(&self.inner, checks, ops).await
            }
            other => self.own_write(other).await,
        }
    }

    async fn write_stamped(&self, stamp: WriteStamp, write: Write) -> Result<()> {
        crate::write::apply(&self.inner, stamp, write).await
    }

    /// The `mod_revision` of the namespace's commit marker, which every write in the namespace
    /// rewrites in its transaction: the etcd revision of the namespace's last write (0 before
    /// the first). etcd revisions are cluster-wide and only grow, so the number never goes
    /// back; writes in other namespaces and reads leave it unchanged.
    async fn sequence(&self) -> Result<u64> {
        let mut reply = self.inner.read_marker().await?;
        let revision = reply.take_kvs().first().map_or(0, |kv| kv.mod_revision());
        Ok(u64::try_from(revision).unwrap_or(0))
    }

    async fn watch(&self, range: Range, from: Option<u64>) -> Result<rave_api::WatchStream> {
        crate::watch::watch(self.inner.clone(), range, from).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::SeqCst);
        if let Some(keeper) = self
            .inner
            .keeper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            keeper.abort();
        }
        Ok(())
    }
}

impl EtcdStore {
    /// A write of the store's own, stamped so that its retries apply it once.
    async fn own_write(&self, write: Write) -> Result<()> {
        self.inner.check_open()?;
        let stamp = self.inner.own.begin();
        let result = crate::write::apply(&self.inner, stamp, write).await;
        // A write that failed with `Timeout` may still be applied later by nobody: it is never
        // re-sent after this, so its seq may leave the floor's way.
        self.inner.own.end(stamp.seq);
        result
    }

    /// Entries of the store as one list (test support for small stores).
    #[doc(hidden)]
    pub async fn entries(&self) -> Result<Vec<Entry>> {
        let mut iter = self.iterator(Range::all()).await?;
        iter.collect_all().await
    }
}
