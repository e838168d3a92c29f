//! Sublevels: namespaces laid out exactly as Level lays them out (`!name!key`).

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;

use crate::{
    BatchOp, Change, Entry, Error, KvIterator, KvStore, Range, Result, WatchEvent, WatchStream,
    Write, WriteStamp,
};

/// Level's separator.
const SEPARATOR: u8 = b'!';

/// A namespace of a store: keys live under the prefix `!name!` (nested: `!a!!b!`), the bytes
/// abstract-level's `db.sublevel(name)` uses, so data is laid out as rave-level lays it.
///
/// A sublevel is a view, not a copy: it holds its store (a bare engine store, a [`crate::Rave`]
/// handle, leader or follower) and works the same over each. Keys and ranges given to it are
/// prefixed, keys it returns are stripped, and every range (iterators, [`Sublevel::clear`],
/// [`Sublevel::watch`]) stays inside it. It has the byte API of the handles ([`Sublevel::get`],
/// [`Sublevel::put`], [`Sublevel::range`], ...) and is itself a [`KvStore`], so the
/// conformance suite runs through it unchanged. Clones are cheap.
///
/// A batch spanning several sublevels is one batch of their operations on the store they share:
/// build the operations with [`Sublevel::put_op`] and [`Sublevel::del_op`] and pass them to the
/// handle's `batch`.
///
/// **Closing a sublevel closes its store** (it has no state of its own).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let db = rave::Rave::open(dir.path(), Default::default())?;
/// let users = db.sublevel("users");
/// users.put("ada", "36").await?;
/// assert_eq!(db.get("!users!ada").await?, Some(b"36".to_vec()));
/// let admins = users.sublevel("admins");
/// admins.put("ada", "yes").await?;
/// assert_eq!(db.get("!users!!admins!ada").await?, Some(b"yes".to_vec()));
/// // Atomically across sublevels:
/// db.batch(vec![users.del_op("ada"), admins.put_op("bob", "no")]).await?;
/// # db.close().await }
/// ```
#[derive(Clone)]
pub struct Sublevel {
    store: Arc<dyn KvStore>,
    /// `!a!!b!` (empty for a view of the whole store).
    prefix: Arc<[u8]>,
}

impl std::fmt::Debug for Sublevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sublevel")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish_non_exhaustive()
    }
}

/// Checks a sublevel name as abstract-level does: separators at either end are dropped, and
/// every byte left must be printable ASCII above `"` (`#` to `~`), so that `!name"` bounds the
/// sublevel from above.
fn checked_name(name: &str) -> Result<&str> {
    let name = name.trim_matches(SEPARATOR as char);
    if let Some(bad) = name.bytes().find(|&b| b <= SEPARATOR + 1 || b >= 127) {
        return Err(Error::invalid(format!(
            "a sublevel name must use bytes > 0x22 and < 0x7f (printable ASCII from '#'), \
             {name:?} has 0x{bad:02x}"
        )));
    }
    Ok(name)
}

impl Sublevel {
    /// A view of all of `store` (no prefix): the root that sublevels and typed views start from.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// use std::sync::Arc;
    /// use rave::{Backend, Sublevel, backends::MemoryBackend};
    /// # let dir = tempfile::tempdir().unwrap();
    /// // Any store: here an engine opened directly, without rave's multi-process layer.
    /// let store = MemoryBackend.open(dir.path(), &Default::default())?;
    /// let root = Sublevel::root(Arc::new(store));
    /// root.sublevel("logs").put("1", "up").await?;
    /// assert_eq!(root.get("!logs!1").await?, Some(b"up".to_vec()));
    /// # root.close().await }
    /// ```
    pub fn root(store: Arc<dyn KvStore>) -> Sublevel {
        Sublevel {
            store,
            prefix: Arc::from(&b""[..]),
        }
    }

    /// The sublevel `name` of this view (prefix `!name!` after this view's own).
    ///
    /// # Panics
    ///
    /// When `name` has a byte outside `#`..=`~` once the `!` at its ends are dropped (as
    /// abstract-level throws); use [`Sublevel::try_sublevel`] for names from input.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let nested = db.sublevel("a").sublevel("b");
    /// assert_eq!(nested.prefix(), b"!a!!b!");
    /// # db.close().await }
    /// ```
    pub fn sublevel(&self, name: &str) -> Sublevel {
        match self.try_sublevel(name) {
            Ok(sub) => sub,
            Err(err) => panic!("{err}"),
        }
    }

    /// The sublevel `name` of this view, or [`Error::InvalidArgument`] for a name
    /// abstract-level refuses.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// assert!(db.try_sublevel("has space").is_err());
    /// assert_eq!(db.try_sublevel("!ok!")?.prefix(), b"!ok!");
    /// # db.close().await }
    /// ```
    pub fn try_sublevel(&self, name: &str) -> Result<Sublevel> {
        let name = checked_name(name)?;
        let mut prefix = Vec::with_capacity(self.prefix.len() + name.len() + 2);
        prefix.extend_from_slice(&self.prefix);
        prefix.push(SEPARATOR);
        prefix.extend_from_slice(name.as_bytes());
        prefix.push(SEPARATOR);
        Ok(Sublevel {
            store: self.store.clone(),
            prefix: prefix.into(),
        })
    }

    /// The bytes every key of this view starts with in its store (empty for a root view).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// assert_eq!(db.sublevel("users").prefix(), b"!users!");
    /// # db.close().await }
    /// ```
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The store this view reads and writes (shared, not owned).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let users = db.sublevel("users");
    /// users.put("a", "1").await?;
    /// assert_eq!(users.store().get(b"!users!a").await?, Some(b"1".to_vec()));
    /// # db.close().await }
    /// ```
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// A typed view of this sublevel: values of type `V` in JSON, keys as bytes (see
    /// [`crate::Typed`] for other codecs and key types).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let ages = db.sublevel("ages").typed::<u32>();
    /// ages.put("ada", &36).await?;
    /// assert_eq!(db.get("!ages!ada").await?, Some(b"36".to_vec()));
    /// # db.close().await }
    /// ```
    pub fn typed<V>(&self) -> crate::Typed<Vec<u8>, V> {
        crate::Typed::new(self.clone())
    }

    /// A put of `key` = `value` in this sublevel, for a batch on its store (or on any view
    /// of the same store with no prefix, e.g. the handle): batches spanning sublevels.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// assert_eq!(db.sublevel("a").put_op("k", "v"), rave::BatchOp::put("!a!k", "v"));
    /// # db.close().await }
    /// ```
    pub fn put_op(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> BatchOp {
        BatchOp::put(self.key(key.as_ref()), value.as_ref())
    }

    /// A delete of `key` in this sublevel, for a batch on its store (see [`Sublevel::put_op`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// assert_eq!(db.sublevel("a").del_op("k"), rave::BatchOp::del("!a!k"));
    /// # db.close().await }
    /// ```
    pub fn del_op(&self, key: impl AsRef<[u8]>) -> BatchOp {
        BatchOp::del(self.key(key.as_ref()))
    }

    /// The store's key of `key`.
    pub(crate) fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + key.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(key);
        out
    }

    /// The first key above this sublevel: the prefix with its last `!` raised to `"`.
    fn end(&self) -> Vec<u8> {
        let mut end = self.prefix.to_vec();
        if let Some(last) = end.last_mut() {
            *last = SEPARATOR + 1;
        }
        end
    }

    /// `range` in the store's keys: every bound prefixed, and the sublevel's own bounds where
    /// the range has none, so it never leaves the sublevel.
    pub(crate) fn store_range(&self, range: Range) -> Range {
        if self.prefix.is_empty() {
            return range;
        }
        let has_lower = range.gt.is_some() || range.gte.is_some();
        let has_upper = range.lt.is_some() || range.lte.is_some();
        let map = |bound: Option<Vec<u8>>| bound.map(|k| self.key(&k));
        let mut out = Range {
            gt: map(range.gt),
            gte: map(range.gte),
            lt: map(range.lt),
            lte: map(range.lte),
            ..range
        };
        if !has_lower {
            out.gte = Some(self.prefix.to_vec());
        }
        if !has_upper {
            out.lt = Some(self.end());
        }
        out
    }

    /// The key of this view for a store key of it (`None` for a key outside it).
    fn strip(&self, key: &[u8]) -> Option<Vec<u8>> {
        key.strip_prefix(&*self.prefix).map(<[u8]>::to_vec)
    }

    /// A store `range` (inside this sublevel, as a watch reports a clear) in this view's keys:
    /// bounds inside are stripped, bounds at or beyond the sublevel's edges dropped.
    fn view_range(&self, range: Range) -> Range {
        if self.prefix.is_empty() {
            return range;
        }
        // A lower bound below the first key, or an upper one above the last, bounds nothing
        // inside the sublevel; one inside it is stripped.
        let lower = |b: Option<Vec<u8>>| b.and_then(|k| self.strip(&k));
        let upper = |b: Option<Vec<u8>>| b.and_then(|k| self.strip(&k));
        let mut out = Range {
            gt: lower(range.gt),
            gte: lower(range.gte),
            lt: upper(range.lt),
            lte: upper(range.lte),
            ..range
        };
        if out.gte.as_deref() == Some(b"") {
            out.gte = None;
        }
        out
    }

    /// `write` in the store's keys.
    fn store_write(&self, write: Write) -> Write {
        match write {
            Write::Batch(ops) => Write::Batch(self.store_ops(ops)),
            Write::Clear(range) => Write::Clear(self.store_range(range)),
            Write::Conditional { checks, ops } => Write::Conditional {
                checks: checks
                    .into_iter()
                    .map(|check| rave_api::Check {
                        key: self.key(&check.key),
                        expected: check.expected,
                    })
                    .collect(),
                ops: self.store_ops(ops),
            },
        }
    }

    /// An error of the store in this view's keys (a failed condition names the view's key).
    fn view_error(&self, err: rave_api::Error) -> rave_api::Error {
        match err {
            rave_api::Error::ConditionFailed { key, current } => rave_api::Error::ConditionFailed {
                key: key
                    .strip_prefix(&self.prefix[..])
                    .map_or(key.clone(), <[u8]>::to_vec),
                current,
            },
            other => other,
        }
    }

    fn store_ops(&self, ops: Vec<BatchOp>) -> Vec<BatchOp> {
        if self.prefix.is_empty() {
            return ops;
        }
        ops.into_iter()
            .map(|op| match op {
                BatchOp::Put { key, value } => BatchOp::Put {
                    key: self.key(&key),
                    value,
                },
                BatchOp::Del { key } => BatchOp::Del {
                    key: self.key(&key),
                },
            })
            .collect()
    }

    fn view_change(&self, change: Change) -> Change {
        match change {
            // A key emptied by the projection (values only) stays empty.
            Change::Put { key, value } => Change::Put {
                key: self.strip(&key).unwrap_or(key),
                value,
            },
            Change::Del { key } => Change::Del {
                key: self.strip(&key).unwrap_or(key),
            },
            Change::Clear { range } => Change::Clear {
                range: self.view_range(range),
            },
        }
    }

    /// A watch stream of the store in this view's keys.
    fn view_events(&self, events: WatchStream) -> WatchStream {
        if self.prefix.is_empty() {
            return events;
        }
        let view = self.clone();
        Box::pin(events.map(move |event| match event? {
            WatchEvent::Commit(mut commit) => {
                commit.changes = std::mem::take(&mut commit.changes)
                    .into_iter()
                    .map(|c| view.view_change(c))
                    .collect();
                Ok(WatchEvent::Commit(commit))
            }
            progress @ WatchEvent::Progress { .. } => Ok(progress),
        }))
    }
}

/// A sublevel's iterator: its store's, with the prefix stripped from each key.
struct SubIter {
    inner: Box<dyn KvIterator>,
    prefix_len: usize,
}

#[async_trait]
impl KvIterator for SubIter {
    async fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        let mut chunk = self.inner.next_chunk(max).await?;
        for entry in &mut chunk {
            // Keys are empty with a values-only projection.
            if !entry.key.is_empty() {
                entry.key.drain(..self.prefix_len.min(entry.key.len()));
            }
        }
        Ok(chunk)
    }

    fn snapshot_sequence(&self) -> Option<u64> {
        self.inner.snapshot_sequence()
    }
}

#[async_trait]
impl KvStore for Sublevel {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.store.get(&self.key(key)).await
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k)).collect();
        self.store.get_many(&keys).await
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.store.put(&self.key(key), value).await
    }

    async fn del(&self, key: &[u8]) -> Result<()> {
        self.store.del(&self.key(key)).await
    }

    async fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
        self.store.batch(self.store_ops(ops)).await
    }

    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
        let inner = self.store.iterator(self.store_range(range)).await?;
        if self.prefix.is_empty() {
            return Ok(inner);
        }
        Ok(Box::new(SubIter {
            inner,
            prefix_len: self.prefix.len(),
        }))
    }

    async fn clear(&self, range: Range) -> Result<()> {
        self.store.clear(self.store_range(range)).await
    }

    async fn write(&self, write: Write) -> Result<()> {
        let write = self.store_write(write);
        self.store
            .write(write)
            .await
            .map_err(|e| self.view_error(e))
    }

    async fn write_stamped(&self, stamp: WriteStamp, write: Write) -> Result<()> {
        let write = self.store_write(write);
        self.store
            .write_stamped(stamp, write)
            .await
            .map_err(|e| self.view_error(e))
    }

    async fn sequence(&self) -> Result<u64> {
        self.store.sequence().await
    }

    /// Watches `range` of this sublevel: keys (and the ranges of clears) arrive without the
    /// prefix.
    async fn watch(&self, range: Range, from: Option<u64>) -> Result<WatchStream> {
        rave_api::watch::check_range(&range)?;
        let events = self.store.watch(self.store_range(range), from).await?;
        Ok(self.view_events(events))
    }

    /// Closes the store this view shares (a view has no state of its own).
    async fn close(&self) -> Result<()> {
        self.store.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Commit, MemoryBackend};
    use rave_api::Backend;

    fn memory() -> Sublevel {
        let dir = std::env::temp_dir().join("rave-sublevel-unit");
        let store = MemoryBackend.open(&dir, &Default::default()).unwrap();
        Sublevel::root(Arc::new(store))
    }

    #[test]
    fn names_follow_abstract_level() {
        let root = memory();
        assert_eq!(root.sublevel("a").sublevel("b").prefix(), b"!a!!b!");
        assert_eq!(root.sublevel("!!a!").prefix(), b"!a!");
        assert_eq!(root.sublevel("#~").prefix(), b"!#~!");
        for bad in ["a\"", "a b", "é", "a!b", "a\x7f"] {
            let err = root.try_sublevel(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn ranges_stay_inside() {
        let sub = memory().sublevel("a");
        assert_eq!(
            sub.store_range(Range::all().reverse().limit(2)),
            Range::all().gte("!a!").lt("!a\"").reverse().limit(2)
        );
        assert_eq!(
            sub.store_range(Range::all().gt("k").lte("m")),
            Range::all().gt("!a!k").lte("!a!m")
        );
        assert_eq!(
            sub.store_range(Range::all().lt("")),
            Range::all().gte("!a!").lt("!a!")
        );
        let nested = sub.sublevel("b");
        assert_eq!(
            nested.store_range(Range::all()),
            Range::all().gte("!a!!b!").lt("!a!!b\"")
        );
    }

    /// A watch of a sublevel asks its store for the sublevel's range and strips the prefix
    /// from what comes back (a fake stream stands for the store's).
    #[tokio::test]
    async fn watched_changes_lose_the_prefix() {
        let sub = memory().sublevel("a").sublevel("b");
        let commit = Commit {
            sequence: 9,
            changes: vec![
                Change::Put {
                    key: b"!a!!b!k".to_vec(),
                    value: b"v".to_vec(),
                },
                Change::Del {
                    key: b"!a!!b!".to_vec(),
                },
                Change::Put {
                    key: Vec::new(),
                    value: b"values only".to_vec(),
                },
                // What a store reports for a clear of the whole sublevel, and of a part.
                Change::Clear {
                    range: Range::all().gte("!a!!b!").lt("!a!!b\""),
                },
                Change::Clear {
                    range: Range::all().gt("!a!!b!x").lte("!a!!b!z"),
                },
            ],
        };
        let events: WatchStream = Box::pin(futures::stream::iter(vec![
            Ok(WatchEvent::Progress { sequence: 8 }),
            Ok(WatchEvent::Commit(commit)),
            Err(Error::Lagged { resume_from: 9 }),
        ]));
        let got: Vec<Result<WatchEvent>> = sub.view_events(events).collect().await;
        assert_eq!(
            got[0].as_ref().unwrap(),
            &WatchEvent::Progress { sequence: 8 }
        );
        let WatchEvent::Commit(commit) = got[1].as_ref().unwrap() else {
            panic!("{got:?}")
        };
        assert_eq!(commit.sequence, 9);
        assert_eq!(
            commit.changes,
            vec![
                Change::Put {
                    key: b"k".to_vec(),
                    value: b"v".to_vec()
                },
                Change::Del { key: Vec::new() },
                Change::Put {
                    key: Vec::new(),
                    value: b"values only".to_vec()
                },
                Change::Clear {
                    range: Range::all()
                },
                Change::Clear {
                    range: Range::all().gt("x").lte("z")
                },
            ]
        );
        assert_eq!(
            got[2].as_ref().unwrap_err().kind(),
            crate::ErrorKind::Lagged
        );
        // And the store is asked for the sublevel's range only.
        assert_eq!(
            sub.store_range(Range::prefix("p")),
            Range::all().gte("!a!!b!p").lt("!a!!b!q")
        );
        let Err(err) = sub.watch(Range::all().reverse(), None).await else {
            panic!("a reverse watch was accepted")
        };
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    }
}
