//! Typed views: keys of type `K` in an order-preserving encoding, values of type `V` in a codec.

use std::ops::RangeBounds;

use futures::StreamExt;

use super::codec::Marker;
use super::key::{AsKey, Key};
use super::range::bounds_range;
use super::{Codec, Json, Sublevel};
use crate::stream::Entries;
use crate::{BatchOp, Change, KvStore, Range, Result, WatchEvent};

/// A typed view of a store or sublevel: keys `K` ([`Key`], bytes by default), values `V`
/// encoded by the codec `C` ([`Json`] by default).
///
/// Made by `typed::<V>()` on a handle or a sublevel; change the key type with
/// [`Typed::with_keys`] and the codec with [`Typed::with_codec`]. The bytes it writes are the
/// key's encoding (see [`crate::view::key`]) and the codec's, under the sublevel's prefix, so a
/// Node program reading the same sublevel with `valueEncoding: 'json'` sees the same values.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use rave::stream::TryStreamExt;
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct User { name: String, age: u8 }
///
/// let db = rave::Rave::open(dir.path(), Default::default())?;
/// let users = db.sublevel("users").typed::<User>();
/// users.put("ada", &User { name: "Ada".into(), age: 36 }).await?;
/// assert_eq!(users.get("ada").await?.map(|u| u.age), Some(36));
/// assert_eq!(db.get("!users!ada").await?.unwrap(), br#"{"name":"Ada","age":36}"#);
///
/// // Integer keys scan in numeric order.
/// let by_id = db.sublevel("ids").typed::<String>().with_keys::<u64>();
/// for id in [10u64, 9, 100] {
///     by_id.put(id, &id.to_string()).await?;
/// }
/// let ids: Vec<(u64, String)> = by_id.range(9u64..=100).await?.try_collect().await?;
/// assert_eq!(ids.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [9, 10, 100]);
/// # db.close().await }
/// ```
pub struct Typed<K = Vec<u8>, V = Vec<u8>, C = Json> {
    view: Sublevel,
    _types: Marker<K, V, C>,
}

impl<K, V, C> Clone for Typed<K, V, C> {
    fn clone(&self) -> Self {
        Typed {
            view: self.view.clone(),
            _types: Marker::default(),
        }
    }
}

impl<K, V, C> std::fmt::Debug for Typed<K, V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed")
            .field("key", &std::any::type_name::<K>())
            .field("value", &std::any::type_name::<V>())
            .field("codec", &std::any::type_name::<C>())
            .field("view", &self.view)
            .finish()
    }
}

/// One change of a typed watch: a [`Change`] with its key and value decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum TypedChange<K, V> {
    /// `key` was set to `value`.
    Put {
        /// The key.
        key: K,
        /// The new value.
        value: V,
    },
    /// `key` was deleted.
    Del {
        /// The key.
        key: K,
    },
    /// Every key of `range` (in the view's key bytes) was deleted.
    Clear {
        /// The removed keys' range.
        range: Range,
    },
}

/// A typed compare-and-swap whose expectation did not hold (see [`Typed::compare_and_swap`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TypedCasError<V> {
    /// What the key held instead, decoded (`None`: absent).
    pub current: Option<V>,
}

/// What a typed watch yields: a [`WatchEvent`] with its changes decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum TypedEvent<K, V> {
    /// The changes one commit made inside the watched range.
    Commit {
        /// The commit's number.
        sequence: u64,
        /// Its changes, in order.
        changes: Vec<TypedChange<K, V>>,
    },
    /// Every commit up to `sequence` has been delivered.
    Progress {
        /// The position reached.
        sequence: u64,
    },
}

impl<V> Typed<Vec<u8>, V, Json> {
    pub(crate) fn new(view: Sublevel) -> Self {
        Typed {
            view,
            _types: Marker::default(),
        }
    }
}

impl<K: Key, V: Send + 'static, C: Codec<V>> Typed<K, V, C> {
    /// This view with keys of type `K2` (integers, strings, bytes, tuples of them: see
    /// [`Key`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let scores = db.typed::<u32>().with_keys::<(String, u16)>();
    /// scores.put(("ada".to_string(), 1815u16), &10).await?;
    /// assert_eq!(scores.get(("ada".to_string(), 1815u16)).await?, Some(10));
    /// # db.close().await }
    /// ```
    pub fn with_keys<K2: Key>(self) -> Typed<K2, V, C> {
        Typed {
            view: self.view,
            _types: Marker::default(),
        }
    }

    /// This view with values in codec `C2` ([`crate::view::MsgPack`], [`crate::view::Raw`],
    /// or your own [`Codec`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// use rave::view::MsgPack;
    /// let packed = db.typed::<(u8, bool)>().with_codec::<MsgPack>();
    /// packed.put("k", &(7, true)).await?;
    /// assert_eq!(db.get("k").await?, Some(vec![0x92, 0x07, 0xc3]));
    /// # db.close().await }
    /// ```
    pub fn with_codec<C2: Codec<V>>(self) -> Typed<K, V, C2> {
        Typed {
            view: self.view,
            _types: Marker::default(),
        }
    }

    /// The byte view under this typed view.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let typed = db.sublevel("s").typed::<bool>();
    /// typed.put("k", &true).await?;
    /// assert_eq!(typed.bytes().get("k").await?, Some(b"true".to_vec()));
    /// # db.close().await }
    /// ```
    pub fn bytes(&self) -> &Sublevel {
        &self.view
    }

    /// The value of `key`, or `None` when it is absent; a stored value that does not decode
    /// is [`crate::Error::InvalidArgument`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let typed = db.typed::<Vec<String>>();
    /// assert_eq!(typed.get("absent").await?, None);
    /// db.put("k", r#"["a"]"#).await?;
    /// assert_eq!(typed.get("k").await?, Some(vec!["a".to_string()]));
    /// # db.close().await }
    /// ```
    pub async fn get(&self, key: impl AsKey<K>) -> Result<Option<V>> {
        self.get_raw(key.to_key_bytes()).await
    }

    /// [`Typed::get`] of an encoded key.
    pub(crate) async fn get_raw(&self, key: Vec<u8>) -> Result<Option<V>> {
        let bytes = KvStore::get(&self.view, &key).await?;
        bytes.map(|b| C::decode(&b)).transpose()
    }

    /// The values of `keys`, in order, `None` for each absent one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let typed = db.typed::<u8>().with_keys::<u8>();
    /// typed.put(1u8, &10).await?;
    /// assert_eq!(typed.get_many([1u8, 2]).await?, [Some(10), None]);
    /// # db.close().await }
    /// ```
    pub async fn get_many<Q: AsKey<K>>(
        &self,
        keys: impl IntoIterator<Item = Q>,
    ) -> Result<Vec<Option<V>>> {
        self.get_many_raw(keys.into_iter().map(|k| k.to_key_bytes()).collect())
            .await
    }

    /// [`Typed::get_many`] of encoded keys.
    pub(crate) async fn get_many_raw(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<V>>> {
        let values = KvStore::get_many(&self.view, &keys).await?;
        values
            .into_iter()
            .map(|v| v.map(|b| C::decode(&b)).transpose())
            .collect()
    }

    /// Sets `key` to `value`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// db.typed::<String>().put("k", &"v".to_string()).await?;
    /// assert_eq!(db.get("k").await?, Some(br#""v""#.to_vec()));
    /// # db.close().await }
    /// ```
    pub async fn put(&self, key: impl AsKey<K>, value: &V) -> Result<()> {
        let value = C::encode(value)?;
        KvStore::put(&self.view, &key.to_key_bytes(), &value).await
    }

    /// Removes `key` (an absent key is not an error).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let typed = db.typed::<u8>();
    /// typed.put("k", &1).await?;
    /// typed.del("k").await?;
    /// assert_eq!(typed.get("k").await?, None);
    /// # db.close().await }
    /// ```
    pub async fn del(&self, key: impl AsKey<K>) -> Result<()> {
        KvStore::del(&self.view, &key.to_key_bytes()).await
    }

    /// Sets `key` to `new` (`None`: deletes it) only if it holds `expected` (`None`: is
    /// absent), atomically and exactly once (see [`crate::Rave::compare_and_swap`]). Values are
    /// compared as the codec encodes them, so a value another program wrote in another form
    /// (JSON with other spacing, say) does not match. `Ok(Err(_))` carries what the key held
    /// instead, decoded; nothing was written then.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let counters = db.sublevel("counters").typed::<u64>();
    /// assert!(counters.compare_and_swap("hits", None, Some(&1)).await?.is_ok());
    /// let lost = counters.compare_and_swap("hits", None, Some(&1)).await?;
    /// assert_eq!(lost.unwrap_err().current, Some(1));
    /// assert!(counters.compare_and_swap("hits", Some(&1), Some(&2)).await?.is_ok());
    /// # db.close().await }
    /// ```
    pub async fn compare_and_swap(
        &self,
        key: impl AsKey<K>,
        expected: Option<&V>,
        new: Option<&V>,
    ) -> Result<std::result::Result<(), TypedCasError<V>>> {
        let expected = expected.map(C::encode).transpose()?;
        let new = new.map(C::encode).transpose()?;
        let outcome = self
            .view
            .compare_and_swap(key.to_key_bytes(), expected, new)
            .await?;
        match outcome {
            Ok(()) => Ok(Ok(())),
            Err(failed) => Ok(Err(TypedCasError {
                current: failed.current.map(|b| C::decode(&b)).transpose()?,
            })),
        }
    }

    /// A put of `key` = `value` for a batch on the store (see [`Sublevel::put_op`]): typed
    /// writes to several views, atomically.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let names = db.sublevel("names").typed::<String>().with_keys::<u32>();
    /// let ages = db.sublevel("ages").typed::<u8>().with_keys::<u32>();
    /// db.batch(vec![names.put_op(1u32, &"Ada".into())?, ages.put_op(1u32, &36)?]).await?;
    /// assert_eq!(ages.get(1u32).await?, Some(36));
    /// # db.close().await }
    /// ```
    pub fn put_op(&self, key: impl AsKey<K>, value: &V) -> Result<BatchOp> {
        Ok(self.view.put_op(key.to_key_bytes(), C::encode(value)?))
    }

    /// A delete of `key` for a batch on the store (see [`Typed::put_op`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let ids = db.sublevel("ids").typed::<u8>().with_keys::<u16>();
    /// assert_eq!(ids.del_op(258u16), rave::BatchOp::del(*b"!ids!\x01\x02"));
    /// # db.close().await }
    /// ```
    pub fn del_op(&self, key: impl AsKey<K>) -> BatchOp {
        self.view.del_op(key.to_key_bytes())
    }

    /// The entries whose keys are in `range`, in key order, as a [`Entries`] stream of
    /// `(K, V)`, fetched in chunks.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// use rave::stream::TryStreamExt;
    /// let t = db.typed::<i8>().with_keys::<i32>();
    /// for k in [-5i32, 3, 40] { t.put(k, &(k as i8)).await?; }
    /// let got: Vec<(i32, i8)> = t.range(-10i32..10).await?.try_collect().await?;
    /// assert_eq!(got, [(-5, -5), (3, 3)]);
    /// # db.close().await }
    /// ```
    pub async fn range<Q: AsKey<K>>(&self, range: impl RangeBounds<Q>) -> Result<Entries<(K, V)>> {
        let range = bounds_range(range.start_bound(), range.end_bound(), |k| k.to_key_bytes());
        self.scan(range).await
    }

    /// Every entry, in key order (see [`Typed::range`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// use rave::stream::TryStreamExt;
    /// let t = db.sublevel("s").typed::<bool>();
    /// t.put("b", &true).await?;
    /// t.put("a", &false).await?;
    /// let got: Vec<_> = t.iter().await?.try_collect().await?;
    /// assert_eq!(got, [(b"a".to_vec(), false), (b"b".to_vec(), true)]);
    /// # db.close().await }
    /// ```
    pub async fn iter(&self) -> Result<Entries<(K, V)>> {
        self.scan(Range::all()).await
    }

    /// The entries of a byte [`Range`] of this view (for a direction, a limit: keys are in the
    /// key type's encoding; the projection is ignored, entries are whole).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// use rave::{Range, stream::TryStreamExt};
    /// let t = db.typed::<u8>().with_keys::<u8>();
    /// for k in 1u8..=3 { t.put(k, &k).await?; }
    /// let top: Vec<_> = t.scan(Range::all().reverse().limit(1)).await?.try_collect().await?;
    /// assert_eq!(top, [(3, 3)]);
    /// # db.close().await }
    /// ```
    pub async fn scan(&self, mut range: Range) -> Result<Entries<(K, V)>> {
        range.projection = crate::Projection::KeysAndValues;
        let iter = KvStore::iterator(&self.view, range).await?;
        Ok(Entries::new(iter, |entry| {
            Ok((K::from_key(&entry.key)?, C::decode(&entry.value)?))
        }))
    }

    /// Removes every entry whose key is in `range`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let t = db.typed::<u8>().with_keys::<u8>();
    /// for k in 1u8..=3 { t.put(k, &k).await?; }
    /// t.clear(2u8..).await?;
    /// assert_eq!(t.get_many([1u8, 2, 3]).await?, [Some(1), None, None]);
    /// # db.close().await }
    /// ```
    pub async fn clear<Q: AsKey<K>>(&self, range: impl RangeBounds<Q>) -> Result<()> {
        let range = bounds_range(range.start_bound(), range.end_bound(), |k| k.to_key_bytes());
        KvStore::clear(&self.view, range).await
    }

    /// Watches the keys of `range` for changes after commit `from` (see
    /// [`crate::KvStore::watch`]), decoded: keys as `K`, values as `V`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// use rave::{TypedChange, TypedEvent, stream::StreamExt};
    /// let t = db.sublevel("n").typed::<u8>().with_keys::<u8>();
    /// let mut events = t.watch(10u8.., None).await?;
    /// let Some(Ok(TypedEvent::Progress { .. })) = events.next().await else { panic!() };
    /// t.put(3u8, &30).await?; // outside the range
    /// t.put(12u8, &120).await?;
    /// let Some(Ok(TypedEvent::Commit { changes, .. })) = events.next().await else { panic!() };
    /// assert_eq!(changes, [TypedChange::Put { key: 12, value: 120 }]);
    /// # db.close().await }
    /// ```
    pub async fn watch<Q: AsKey<K>>(
        &self,
        range: impl RangeBounds<Q>,
        from: Option<u64>,
    ) -> Result<crate::stream::BoxStream<'static, Result<TypedEvent<K, V>>>> {
        let range = bounds_range(range.start_bound(), range.end_bound(), |k| k.to_key_bytes());
        self.watch_range(range, from).await
    }

    /// [`Typed::watch`] of a range of encoded keys.
    pub(crate) async fn watch_range(
        &self,
        range: Range,
        from: Option<u64>,
    ) -> Result<crate::stream::BoxStream<'static, Result<TypedEvent<K, V>>>> {
        let events = KvStore::watch(&self.view, range, from).await?;
        Ok(Box::pin(
            events.map(|event| decode_event::<K, V, C>(event?)),
        ))
    }
}

fn decode_event<K: Key, V, C: Codec<V>>(event: WatchEvent) -> Result<TypedEvent<K, V>> {
    Ok(match event {
        WatchEvent::Progress { sequence } => TypedEvent::Progress { sequence },
        WatchEvent::Commit(commit) => TypedEvent::Commit {
            sequence: commit.sequence,
            changes: commit
                .changes
                .into_iter()
                .map(|change| {
                    Ok(match change {
                        Change::Put { key, value } => TypedChange::Put {
                            key: K::from_key(&key)?,
                            value: C::decode(&value)?,
                        },
                        Change::Del { key } => TypedChange::Del {
                            key: K::from_key(&key)?,
                        },
                        Change::Clear { range } => TypedChange::Clear { range },
                    })
                })
                .collect::<Result<_>>()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Commit;
    use crate::view::MsgPack;

    #[test]
    fn watch_events_decode() {
        let event = WatchEvent::Commit(Commit {
            sequence: 4,
            changes: vec![
                Change::Put {
                    key: 7u16.to_key(),
                    value: rmp_serde::to_vec_named(&"seven").unwrap(),
                },
                Change::Del { key: 8u16.to_key() },
                Change::Clear {
                    range: Range::all(),
                },
            ],
        });
        let typed = decode_event::<u16, String, MsgPack>(event).unwrap();
        assert_eq!(
            typed,
            TypedEvent::Commit {
                sequence: 4,
                changes: vec![
                    TypedChange::Put {
                        key: 7,
                        value: "seven".into()
                    },
                    TypedChange::Del { key: 8 },
                    TypedChange::Clear {
                        range: Range::all()
                    },
                ],
            }
        );
        let bad = WatchEvent::Commit(Commit {
            sequence: 5,
            changes: vec![Change::Del { key: vec![1] }],
        });
        assert!(decode_event::<u16, String, MsgPack>(bad).is_err());
    }
}
