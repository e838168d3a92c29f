//! Blocking typed views.

use std::sync::Arc;

use super::{Exec, Iter};
use crate::view::{AsKey, Codec, Json, Key};
use crate::{BatchOp, KvStore, Range, Result};

/// A blocking [`crate::Typed`] view: keys `K`, values `V` in codec `C`.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct User { name: String, age: u8 }
/// let users = db.sublevel("users").typed::<User>();
/// users.put("ada", &User { name: "Ada".into(), age: 36 })?;
/// let ada: Option<User> = users.get("ada")?;
/// assert_eq!(ada.map(|u| u.age), Some(36));
/// # Ok::<(), rave::Error>(())
/// ```
pub struct Typed<K = Vec<u8>, V = Vec<u8>, C = Json> {
    pub(super) view: crate::Typed<K, V, C>,
    pub(super) exec: Arc<Exec>,
}

impl<K, V, C> Clone for Typed<K, V, C> {
    fn clone(&self) -> Self {
        Typed {
            view: self.view.clone(),
            exec: self.exec.clone(),
        }
    }
}

impl<K, V, C> std::fmt::Debug for Typed<K, V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("blocking::Typed").field(&self.view).finish()
    }
}

impl<K: Key, V: Send + 'static, C: Codec<V>> Typed<K, V, C> {
    /// This view with keys of type `K2` (see [`crate::Typed::with_keys`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let by_id = db.typed::<String>().with_keys::<u64>();
    /// by_id.put(7u64, &"seven".to_string())?;
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn with_keys<K2: Key>(self) -> Typed<K2, V, C> {
        Typed {
            view: self.view.with_keys(),
            exec: self.exec,
        }
    }

    /// This view with values in codec `C2` (see [`crate::Typed::with_codec`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let packed = db.typed::<u8>().with_codec::<rave::view::MsgPack>();
    /// packed.put("k", &200)?;
    /// assert_eq!(db.get("k")?, Some(vec![0xcc, 200]));
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn with_codec<C2: Codec<V>>(self) -> Typed<K, V, C2> {
        Typed {
            view: self.view.with_codec(),
            exec: self.exec,
        }
    }

    /// The async typed view underneath.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let typed = db.typed::<u8>();
    /// assert_eq!(typed.view().bytes().prefix(), b"");
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn view(&self) -> &crate::Typed<K, V, C> {
        &self.view
    }

    /// The value of `key`, decoded (see [`crate::Typed::get`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// assert_eq!(db.typed::<u8>().get("absent")?, None);
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn get(&self, key: impl AsKey<K>) -> Result<Option<V>> {
        let (view, key) = (self.view.clone(), key.to_key_bytes());
        self.exec.run(async move { view.get_raw(key).await })
    }

    /// The values of `keys`, in order (see [`crate::Typed::get_many`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let t = db.typed::<u8>();
    /// t.put("a", &1)?;
    /// assert_eq!(t.get_many(["a", "b"])?, [Some(1), None]);
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn get_many<Q: AsKey<K>>(
        &self,
        keys: impl IntoIterator<Item = Q>,
    ) -> Result<Vec<Option<V>>> {
        let keys: Vec<Vec<u8>> = keys.into_iter().map(|k| k.to_key_bytes()).collect();
        let view = self.view.clone();
        self.exec.run(async move { view.get_many_raw(keys).await })
    }

    /// Sets `key` to `value`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// db.typed::<bool>().put("k", &true)?;
    /// assert_eq!(db.get("k")?, Some(b"true".to_vec()));
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn put(&self, key: impl AsKey<K>, value: &V) -> Result<()> {
        let op = self.view.put_op(key, value)?;
        let root = self.view.bytes().store().clone();
        self.exec.run(async move { root.batch(vec![op]).await })
    }

    /// Removes `key`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let t = db.typed::<bool>();
    /// t.put("k", &true)?;
    /// t.del("k")?;
    /// assert_eq!(t.get("k")?, None);
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn del(&self, key: impl AsKey<K>) -> Result<()> {
        let key = self.view.bytes().key(&key.to_key_bytes());
        let root = self.view.bytes().store().clone();
        self.exec.run(async move { root.del(&key).await })
    }

    /// Sets `key` to `new` only if it holds `expected`, atomically and exactly once (see
    /// [`crate::Typed::compare_and_swap`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let n = db.typed::<u64>();
    /// assert!(n.compare_and_swap("n", None, Some(&1))?.is_ok());
    /// assert_eq!(n.compare_and_swap("n", Some(&5), Some(&6))?.unwrap_err().current, Some(1));
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn compare_and_swap(
        &self,
        key: impl AsKey<K>,
        expected: Option<&V>,
        new: Option<&V>,
    ) -> Result<std::result::Result<(), crate::TypedCasError<V>>> {
        let expected = expected.map(C::encode).transpose()?;
        let new = new.map(C::encode).transpose()?;
        let (view, key) = (self.view.bytes().clone(), key.to_key_bytes());
        let outcome = self
            .exec
            .run(async move { view.compare_and_swap(key, expected, new).await })?;
        match outcome {
            Ok(()) => Ok(Ok(())),
            Err(failed) => Ok(Err(crate::TypedCasError {
                current: failed.current.map(|b| C::decode(&b)).transpose()?,
            })),
        }
    }

    /// The commits that change `range` after commit `from`, decoded, as a blocking iterator
    /// (see [`crate::Typed::watch`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// use rave::{TypedChange, TypedEvent};
    /// let t = db.sublevel("t").typed::<String>().with_keys::<u32>();
    /// let mut events = t.watch(100u32.., None)?;
    /// let Some(Ok(TypedEvent::Progress { .. })) = events.next() else { panic!() };
    /// t.put(7u32, &"seven".into())?; // outside the range
    /// t.put(700u32, &"seven hundred".into())?;
    /// let Some(Ok(TypedEvent::Commit { changes, .. })) = events.next() else { panic!() };
    /// assert_eq!(changes, [TypedChange::Put { key: 700, value: "seven hundred".into() }]);
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn watch<Q: AsKey<K>>(
        &self,
        range: impl std::ops::RangeBounds<Q>,
        from: Option<u64>,
    ) -> Result<super::Watch<crate::TypedEvent<K, V>>> {
        let range =
            crate::view::bounds_range(range.start_bound(), range.end_bound(), |k| k.to_key_bytes());
        let view = self.view.clone();
        let stream = self
            .exec
            .run(async move { view.watch_range(range, from).await })?;
        Ok(super::Watch {
            stream: Some(stream),
            exec: self.exec.clone(),
        })
    }

    /// A put for a batch on the handle (see [`crate::Typed::put_op`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let t = db.sublevel("t").typed::<u8>();
    /// db.batch(vec![t.put_op("a", &1)?, t.put_op("b", &2)?])?;
    /// assert_eq!(t.get("b")?, Some(2));
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn put_op(&self, key: impl AsKey<K>, value: &V) -> Result<BatchOp> {
        self.view.put_op(key, value)
    }

    /// A delete for a batch on the handle.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// assert_eq!(db.typed::<u8>().del_op("a"), rave::BatchOp::del("a"));
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn del_op(&self, key: impl AsKey<K>) -> BatchOp {
        self.view.del_op(key)
    }

    /// The entries whose keys are in `range`, in key order, decoded.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let t = db.typed::<u8>().with_keys::<u16>();
    /// for k in [300u16, 2, 20] { t.put(k, &0)?; }
    /// let keys: Vec<u16> = t.range(1u16..=300)?.map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>()?;
    /// assert_eq!(keys, [2, 20, 300]);
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn range<Q: AsKey<K>>(&self, range: impl std::ops::RangeBounds<Q>) -> Result<Iter<(K, V)>> {
        let range =
            crate::view::bounds_range(range.start_bound(), range.end_bound(), |k| k.to_key_bytes());
        self.scan(range)
    }

    /// Every entry, in key order.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let t = db.sublevel("s").typed::<u8>();
    /// t.put("a", &1)?;
    /// assert_eq!(t.iter()?.count(), 1);
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn iter(&self) -> Result<Iter<(K, V)>> {
        self.scan(Range::all())
    }

    /// The entries of a byte [`Range`] of this view (see [`crate::Typed::scan`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let t = db.typed::<u8>().with_keys::<u8>();
    /// for k in 1u8..=3 { t.put(k, &k)?; }
    /// let last = t.scan(rave::Range::all().reverse().limit(1))?.next().transpose()?;
    /// assert_eq!(last, Some((3, 3)));
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn scan(&self, mut range: Range) -> Result<Iter<(K, V)>> {
        range.projection = crate::Projection::KeysAndValues;
        let view = self.view.bytes().clone();
        let iter = self
            .exec
            .run(async move { KvStore::iterator(&view, range).await })?;
        Ok(Iter::new(iter, self.exec.clone(), |entry| {
            Ok((K::from_key(&entry.key)?, C::decode(&entry.value)?))
        }))
    }

    /// Removes every entry whose key is in `range`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let t = db.typed::<u8>().with_keys::<u8>();
    /// t.put(1u8, &1)?;
    /// t.clear(..=1u8)?;
    /// assert_eq!(t.get(1u8)?, None);
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn clear<Q: AsKey<K>>(&self, range: impl std::ops::RangeBounds<Q>) -> Result<()> {
        let range =
            crate::view::bounds_range(range.start_bound(), range.end_bound(), |k| k.to_key_bytes());
        let view = self.view.bytes().clone();
        self.exec
            .run(async move { KvStore::clear(&view, range).await })
    }
}
