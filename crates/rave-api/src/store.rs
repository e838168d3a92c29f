use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::watch::WatchStream;
use crate::{BatchOp, Range, Result, Write, WriteStamp};

/// How many entries [`KvIterator::collect_all`] asks for at a time.
pub const DEFAULT_CHUNK: usize = 256;

/// One key-value pair produced by an iterator.
///
/// With [`crate::Projection::KeysOnly`] the value is empty; with
/// [`crate::Projection::ValuesOnly`] the key is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

impl Entry {
    /// An entry of `key` and `value`.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Entry {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// An ordered key-value store: the one contract every engine and every rave handle honours.
///
/// The trait is object safe: `Box<dyn KvStore>` works. All methods take `&self`; a store is
/// shared between tasks behind an `Arc`.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// The value of `key`, or `None` when it is absent.
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The values of `keys`, in the same order, `None` in place of each absent key.
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Sets `key` to `value`. Once this returns `Ok`, the write survives the crash of any process.
    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Removes `key`; removing an absent key is not an error.
    async fn del(&self, key: &[u8]) -> Result<()>;

    /// Applies `ops` atomically: after a crash or an error, either all of them are visible or
    /// none is, and no reader ever sees a part.
    async fn batch(&self, ops: Vec<BatchOp>) -> Result<()>;

    /// An iterator over `range`, seeing a snapshot taken when it is created.
    ///
    /// **Through a rave handle the snapshot lasts only while one leader lives.** When the leader
    /// changes under an open iterator, the iterator resumes on the new leader after the last key
    /// it handed out, in a new snapshot taken at the moment of resuming: it never repeats or
    /// skips a key, but entries not yet read may reflect writes made after the iterator was
    /// created. Engines used directly keep one snapshot for the iterator's whole life.
    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>>;

    /// Removes every key in `range` (its direction and limit say which ones when limited).
    async fn clear(&self, range: Range) -> Result<()>;

    /// Applies `write` (any kind, conditional writes included) once, as it arrives: `batch` and
    /// `clear` are its special cases. A [`crate::Write::Conditional`] whose checks do not hold
    /// fails with [`crate::Error::ConditionFailed`] and applies nothing. Through rave the write
    /// is stamped, so a retry after a failover applies it at most once. Required, with no
    /// default, so that a wrapper must forward it.
    async fn write(&self, write: Write) -> Result<()>;

    /// Applies `write` at most once per `stamp`: sent again with the same stamp (a retry after
    /// a failover), an applied write is answered without being applied a second time (see
    /// [`crate::once`]). Required, with no default, so that a wrapper cannot lose the stamp by
    /// forgetting to forward it. A store that keeps no records (its
    /// [`crate::Capabilities::exactly_once`] is off) applies the write each time it arrives:
    /// [`apply_unstamped`] does that.
    async fn write_stamped(&self, stamp: WriteStamp, write: Write) -> Result<()>;

    /// The number of the last commit that applied writes: it grows strictly with every
    /// acknowledged `put`, `del`, `batch` and `clear` (a group commit of several writes takes
    /// one number; numbers may skip), reads leave it unchanged, and a store that keeps its data
    /// across a reopen (or, through rave, a leader change) keeps the number too, so it never
    /// goes back. Read after a write is acknowledged, it is at least that write's number.
    /// Required, with no default, so that a wrapper must forward it.
    async fn sequence(&self) -> Result<u64>;

    /// How many follower connections the leader at the other end serves, when this store is a
    /// connection to a leader (rave's transport client asks it); `None`, the default, for any
    /// other store. Informational: the number can change at once.
    async fn leader_connections(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// A stream of the commits that change `range` (bounds and projection; a direction or a
    /// limit is [`crate::Error::InvalidArgument`]), numbered above `from` (`None`: from the
    /// current sequence). See [`crate::watch`] for what arrives and when. A store without
    /// [`crate::Capabilities::watch`] fails with [`crate::Error::Unsupported`]. Required, with
    /// no default, so that a wrapper must forward it.
    async fn watch(&self, range: Range, from: Option<u64>) -> Result<WatchStream>;

    /// Closes the store. Later operations fail with [`crate::Error::Closed`]; closing twice is
    /// not an error.
    async fn close(&self) -> Result<()>;
}

/// A stream of entries in key order (or reverse key order), delivered in chunks.
///
/// Dropping an iterator releases its snapshot.
#[async_trait]
pub trait KvIterator: Send {
    /// Up to `max` next entries (`max` is at least 1); an empty chunk means the end.
    async fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>>;

    /// The commit sequence the iterator's snapshot was taken at ([`KvStore::sequence`]), when
    /// the store knows it: watch from it ([`KvStore::watch`]) to follow every change after the
    /// listing, with no gap. Through rave, an iterator that resumed on a new leader reports the
    /// first snapshot's number: applying the commits after it to the listing, in order, gives
    /// the current data (each change sets or removes a key outright).
    fn snapshot_sequence(&self) -> Option<u64> {
        None
    }

    /// The next entry, or `None` at the end.
    async fn next(&mut self) -> Result<Option<Entry>> {
        Ok(self.next_chunk(1).await?.pop())
    }

    /// Every remaining entry.
    async fn collect_all(&mut self) -> Result<Vec<Entry>> {
        let mut all = Vec::new();
        loop {
            let chunk = self.next_chunk(DEFAULT_CHUNK).await?;
            if chunk.is_empty() {
                return Ok(all);
            }
            all.extend(chunk);
        }
    }
}

/// Applies `write` with no exactly-once record: for stores whose
/// [`crate::Capabilities::exactly_once`] is off, in their [`KvStore::write_stamped`].
pub async fn apply_unstamped<S: KvStore + ?Sized>(store: &S, write: Write) -> Result<()> {
    match write {
        Write::Batch(ops) => store.batch(ops).await,
        Write::Clear(range) => store.clear(range).await,
        Write::Conditional { .. } => Err(crate::Error::Unsupported {
            message: "conditional writes need a store that evaluates them atomically".into(),
        }),
    }
}

/// Implements [`KvStore`] for a pointer type by forwarding every method to the store it points
/// to. One body for `Arc` and `Box`, so the two cannot drift apart: a method with a default
/// body that one of them forgot to forward would silently skip the inner store's own version.
macro_rules! forward_kv_store {
    ($($ptr:ident),+) => {$(
        #[async_trait]
        impl<S: KvStore + ?Sized> KvStore for $ptr<S> {
            async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
                (**self).get(key).await
            }
            async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
                (**self).get_many(keys).await
            }
            async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
                (**self).put(key, value).await
            }
            async fn del(&self, key: &[u8]) -> Result<()> {
                (**self).del(key).await
            }
            async fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
                (**self).batch(ops).await
            }
            async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
                (**self).iterator(range).await
            }
            async fn clear(&self, range: Range) -> Result<()> {
                (**self).clear(range).await
            }
            async fn write(&self, write: Write) -> Result<()> {
                (**self).write(write).await
            }
            async fn write_stamped(&self, stamp: WriteStamp, write: Write) -> Result<()> {
                (**self).write_stamped(stamp, write).await
            }
            async fn sequence(&self) -> Result<u64> {
                (**self).sequence().await
            }
            async fn leader_connections(&self) -> Result<Option<u64>> {
                (**self).leader_connections().await
            }
            async fn watch(&self, range: Range, from: Option<u64>) -> Result<WatchStream> {
                (**self).watch(range, from).await
            }
            async fn close(&self) -> Result<()> {
                (**self).close().await
            }
        }
    )+};
}

forward_kv_store!(Arc, Box);
