//! The blocking byte API of [`super::Rave`] and [`super::Sublevel`]: one body for both.

/// The blocking byte methods; `$parts` maps `self` to the [`Sublevel`] that runs them.
macro_rules! blocking_methods {
    (|$this:ident| $parts:expr) => {
        fn run<T: Send + 'static, F: Future<Output = Result<T>> + Send + 'static>(
            &self,
            call: impl FnOnce(crate::Sublevel) -> F,
        ) -> Result<T> {
            let $this = self;
            let sub: &Sublevel = $parts;
            sub.exec.run(call(sub.view.clone()))
        }

        /// The value of `key`, or `None` when it is absent.
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
        /// db.put("a", "1")?;
        /// assert_eq!(db.get("a")?, Some(b"1".to_vec()));
        /// # Ok::<(), rave::Error>(())
        /// ```
        pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
            let key = key.as_ref().to_vec();
            self.run(|v| async move { v.get(&key).await })
        }

        /// The values of `keys`, in order, `None` for each absent one.
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
        /// db.put("a", "1")?;
        /// assert_eq!(db.get_many(["a", "b"])?, [Some(b"1".to_vec()), None]);
        /// # Ok::<(), rave::Error>(())
        /// ```
        pub fn get_many<K: AsRef<[u8]>>(
            &self,
            keys: impl IntoIterator<Item = K>,
        ) -> Result<Vec<Option<Vec<u8>>>> {
            let keys: Vec<Vec<u8>> = keys.into_iter().map(|k| k.as_ref().to_vec()).collect();
            self.run(|v| async move { KvStore::get_many(&v, &keys).await })
        }

        /// Sets `key` to `value`; once this returns `Ok` the write survives a crash.
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
        /// db.put("a", vec![1u8, 2])?;
        /// # Ok::<(), rave::Error>(())
        /// ```
        pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
            let (key, value) = (key.as_ref().to_vec(), value.as_ref().to_vec());
            self.run(|v| async move { v.put(&key, &value).await })
        }

        /// Sets `key` to `new` (`None`: deletes it) only if it holds `expected` (`None`: is
        /// absent); `Ok(Err(CasError))` says what it held instead (see the async
        /// [`crate::Rave::compare_and_swap`]).
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
        /// assert!(db.compare_and_swap("n", None::<&str>, Some("1"))?.is_ok());
        /// assert!(db.compare_and_swap("n", None::<&str>, Some("1"))?.is_err());
        /// # Ok::<(), rave::Error>(())
        /// ```
        pub fn compare_and_swap(
            &self,
            key: impl AsRef<[u8]>,
            expected: Option<impl AsRef<[u8]>>,
            new: Option<impl AsRef<[u8]>>,
        ) -> Result<std::result::Result<(), crate::CasError>> {
            let key = key.as_ref().to_vec();
            let expected = expected.map(|v| v.as_ref().to_vec());
            let new = new.map(|v| v.as_ref().to_vec());
            self.run(|v| async move { v.compare_and_swap(&key, expected, new).await })
        }

        /// Applies `ops` atomically only if every check holds (see
        /// [`crate::Rave::conditional_batch`]).
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
        /// let done = db.conditional_batch(
        ///     vec![rave::Check::new("a", None::<&str>)],
        ///     vec![rave::BatchOp::put("a", "1")],
        /// )?;
        /// assert!(done.is_ok());
        /// # Ok::<(), rave::Error>(())
        /// ```
        pub fn conditional_batch(
            &self,
            checks: Vec<crate::Check>,
            ops: Vec<crate::BatchOp>,
        ) -> Result<std::result::Result<(), crate::CasError>> {
            self.run(|v| async move { v.conditional_batch(checks, ops).await })
        }

        /// Removes `key` (an absent key is not an error).
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
        /// db.put("a", "1")?;
        /// db.del("a")?;
        /// assert_eq!(db.get("a")?, None);
        /// # Ok::<(), rave::Error>(())
        /// ```
        pub fn del(&self, key: impl AsRef<[u8]>) -> Result<()> {
            let key = key.as_ref().to_vec();
            self.run(|v| async move { v.del(&key).await })
        }

        /// Applies `ops` atomically.
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
        /// db.batch(vec![rave::BatchOp::put("a", "1"), rave::BatchOp::del("b")])?;
        /// # Ok::<(), rave::Error>(())
        /// ```
        pub fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
            self.run(|v| async move { v.batch(ops).await })
        }

        /// The entries of `range` as an iterator of `(key, value)`, read from one snapshot in
        /// chunks (one wait per chunk, not per entry).
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
        /// for k in ["a", "b", "c"] { db.put(k, "v")?; }
        /// let keys: Vec<Vec<u8>> = db.range("b"..)?.map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>()?;
        /// assert_eq!(keys, [b"b".to_vec(), b"c".to_vec()]);
        /// # Ok::<(), rave::Error>(())
        /// ```
        pub fn range(&self, range: impl IntoRange) -> Result<Iter> {
            let range = range.into_range();
            let iter = self.run(|v| async move { KvStore::iterator(&v, range).await })?;
            let $this = self;
            let sub: &Sublevel = $parts;
            Ok(Iter::new(iter, sub.exec.clone(), |e| Ok((e.key, e.value))))
        }

        /// Removes every key of `range`.
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
        /// db.put("a", "1")?;
        /// db.clear(..)?;
        /// assert_eq!(db.get("a")?, None);
        /// # Ok::<(), rave::Error>(())
        /// ```
        pub fn clear(&self, range: impl IntoRange) -> Result<()> {
            let range = range.into_range();
            self.run(|v| async move { v.clear(range).await })
        }

        /// The number of the last commit that applied writes.
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
        /// let before = db.sequence()?;
        /// db.put("a", "1")?;
        /// assert!(db.sequence()? > before);
        /// # Ok::<(), rave::Error>(())
        /// ```
        pub fn sequence(&self) -> Result<u64> {
            self.run(|v| async move { v.sequence().await })
        }

        /// The commits that change `range` after commit `from`, as a blocking iterator of
        /// events (see [`crate::KvStore::watch`]).
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
        /// use rave::{Change, WatchEvent};
        /// let mut events = db.watch(.., None)?;
        /// // The first event marks where the watch starts: persist it to resume later.
        /// let Some(Ok(WatchEvent::Progress { sequence: start })) = events.next() else {
        ///     panic!("a watch starts with a progress mark")
        /// };
        /// db.put("k", "v")?;
        /// let Some(Ok(WatchEvent::Commit(commit))) = events.next() else { panic!() };
        /// assert!(commit.sequence > start);
        /// assert_eq!(commit.changes, [Change::Put { key: b"k".to_vec(), value: b"v".to_vec() }]);
        /// # Ok::<(), rave::Error>(())
        /// ```
        pub fn watch(&self, range: impl IntoRange, from: Option<u64>) -> Result<Watch> {
            let range = range.into_range();
            let stream = self.run(|v| async move { v.watch(range, from).await })?;
            let $this = self;
            let sub: &Sublevel = $parts;
            Ok(Watch {
                stream: Some(stream),
                exec: sub.exec.clone(),
            })
        }

        /// Closes the handle (for a view: the store it shares); later calls fail with
        /// `Closed`.
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
        /// db.close()?;
        /// assert_eq!(db.get("a").unwrap_err().kind(), rave::ErrorKind::Closed);
        /// # Ok::<(), rave::Error>(())
        /// ```
        pub fn close(&self) -> Result<()> {
            self.run(|v| async move { v.close().await })
        }
    };
}

pub(super) use blocking_methods;
