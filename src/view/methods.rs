//! The byte API every handle and view has as inherent methods (no trait to import): one body,
//! expanded into each type's `impl` block.

/// Expands to the inherent byte methods of a type that implements [`crate::KvStore`]; `$setup`
/// is the doc examples' code making `db` one of that type (with `dir` a temporary directory).
macro_rules! byte_methods {
    ($setup:literal) => {
        /// The value of `key`, or `None` when it is absent. Keys are anything `AsRef<[u8]>`.
        ///
        #[doc = concat!("```\n# #[tokio::main(flavor = \"current_thread\")] async fn main() -> rave::Result<()> {\n# let dir = tempfile::tempdir().unwrap();\n", $setup)]
        /// db.put("a", "1").await?;
        /// assert_eq!(db.get("a").await?, Some(b"1".to_vec()));
        /// assert_eq!(db.get(b"missing").await?, None);
        /// # db.close().await }
        /// ```
        pub async fn get(&self, key: impl AsRef<[u8]>) -> $crate::Result<Option<Vec<u8>>> {
            $crate::KvStore::get(self, key.as_ref()).await
        }

        /// The values of `keys`, in the same order, `None` in place of each absent key.
        ///
        #[doc = concat!("```\n# #[tokio::main(flavor = \"current_thread\")] async fn main() -> rave::Result<()> {\n# let dir = tempfile::tempdir().unwrap();\n", $setup)]
        /// db.put("a", "1").await?;
        /// assert_eq!(db.get_many(["a", "b"]).await?, [Some(b"1".to_vec()), None]);
        /// # db.close().await }
        /// ```
        pub async fn get_many<K: AsRef<[u8]>>(
            &self,
            keys: impl IntoIterator<Item = K>,
        ) -> $crate::Result<Vec<Option<Vec<u8>>>> {
            let keys: Vec<Vec<u8>> = keys.into_iter().map(|k| k.as_ref().to_vec()).collect();
            $crate::KvStore::get_many(self, &keys).await
        }

        /// Sets `key` to `value`; once this returns `Ok` the write survives a crash.
        ///
        #[doc = concat!("```\n# #[tokio::main(flavor = \"current_thread\")] async fn main() -> rave::Result<()> {\n# let dir = tempfile::tempdir().unwrap();\n", $setup)]
        /// db.put("name", String::from("Ada")).await?;
        /// db.put(vec![0u8, 1], [2u8]).await?;
        /// assert_eq!(db.get([0u8, 1]).await?, Some(vec![2]));
        /// # db.close().await }
        /// ```
        pub async fn put(
            &self,
            key: impl AsRef<[u8]>,
            value: impl AsRef<[u8]>,
        ) -> $crate::Result<()> {
            $crate::KvStore::put(self, key.as_ref(), value.as_ref()).await
        }

        /// Removes `key`; removing an absent key is not an error.
        ///
        #[doc = concat!("```\n# #[tokio::main(flavor = \"current_thread\")] async fn main() -> rave::Result<()> {\n# let dir = tempfile::tempdir().unwrap();\n", $setup)]
        /// db.put("a", "1").await?;
        /// db.del("a").await?;
        /// assert_eq!(db.get("a").await?, None);
        /// # db.close().await }
        /// ```
        pub async fn del(&self, key: impl AsRef<[u8]>) -> $crate::Result<()> {
            $crate::KvStore::del(self, key.as_ref()).await
        }

        /// Applies `ops` atomically: all of them or none.
        ///
        #[doc = concat!("```\n# #[tokio::main(flavor = \"current_thread\")] async fn main() -> rave::Result<()> {\n# let dir = tempfile::tempdir().unwrap();\n", $setup)]
        /// use rave::BatchOp;
        /// db.batch(vec![BatchOp::put("a", "1"), BatchOp::put("b", "2"), BatchOp::del("a")]).await?;
        /// assert_eq!(db.get_many(["a", "b"]).await?, [None, Some(b"2".to_vec())]);
        /// # db.close().await }
        /// ```
        pub async fn batch(&self, ops: Vec<$crate::BatchOp>) -> $crate::Result<()> {
            $crate::KvStore::batch(self, ops).await
        }

        /// The entries of `range` (`"a".."c"`, `..`, a [`crate::Range`] with a direction or a
        /// limit: see [`crate::IntoRange`]) as a stream of `(key, value)`, read from one
        /// snapshot and fetched in chunks.
        ///
        #[doc = concat!("```\n# #[tokio::main(flavor = \"current_thread\")] async fn main() -> rave::Result<()> {\n# let dir = tempfile::tempdir().unwrap();\n", $setup)]
        /// use rave::stream::StreamExt;
        /// for k in ["a", "b", "c"] { db.put(k, "v").await?; }
        /// let mut entries = db.range("a".."c").await?;
        /// let mut keys = Vec::new();
        /// while let Some(entry) = entries.next().await {
        ///     let (key, _value) = entry?;
        ///     keys.push(key);
        /// }
        /// assert_eq!(keys, [b"a".to_vec(), b"b".to_vec()]);
        /// # db.close().await }
        /// ```
        pub async fn range(
            &self,
            range: impl $crate::IntoRange,
        ) -> $crate::Result<$crate::stream::Entries> {
            let iter = $crate::KvStore::iterator(self, range.into_range()).await?;
            Ok($crate::stream::Entries::new(iter, |e| Ok((e.key, e.value))))
        }

        /// Removes every key of `range` (see [`crate::IntoRange`]).
        ///
        #[doc = concat!("```\n# #[tokio::main(flavor = \"current_thread\")] async fn main() -> rave::Result<()> {\n# let dir = tempfile::tempdir().unwrap();\n", $setup)]
        /// for k in ["a", "b", "c"] { db.put(k, "v").await?; }
        /// db.clear("b"..).await?;
        /// assert_eq!(db.get_many(["a", "b", "c"]).await?, [Some(b"v".to_vec()), None, None]);
        /// # db.close().await }
        /// ```
        pub async fn clear(&self, range: impl $crate::IntoRange) -> $crate::Result<()> {
            $crate::KvStore::clear(self, range.into_range()).await
        }

        /// Sets `key` to `new` (`None`: deletes it) only if it holds `expected` (`None`: is
        /// absent), atomically, evaluated by the leader in commit order and applied exactly once
        /// across failovers. `Ok(Err(CasError))` says what the key held instead; nothing was
        /// written then.
        ///
        #[doc = concat!("```\n# #[tokio::main(flavor = \"current_thread\")] async fn main() -> rave::Result<()> {\n# let dir = tempfile::tempdir().unwrap();\n", $setup)]
        /// // A counter several processes can increment.
        /// assert!(db.compare_and_swap("n", None::<&str>, Some("1")).await?.is_ok());
        /// let lost = db.compare_and_swap("n", None::<&str>, Some("1")).await?;
        /// assert_eq!(lost.unwrap_err().current, Some(b"1".to_vec()));
        /// assert!(db.compare_and_swap("n", Some("1"), Some("2")).await?.is_ok());
        /// assert!(db.compare_and_swap("n", Some("2"), None::<&str>).await?.is_ok());
        /// assert_eq!(db.get("n").await?, None);
        /// # db.close().await }
        /// ```
        pub async fn compare_and_swap(
            &self,
            key: impl AsRef<[u8]>,
            expected: Option<impl AsRef<[u8]>>,
            new: Option<impl AsRef<[u8]>>,
        ) -> $crate::Result<::std::result::Result<(), $crate::CasError>> {
            let key = key.as_ref().to_vec();
            let op = match new {
                Some(value) => $crate::BatchOp::put(key.clone(), value.as_ref()),
                None => $crate::BatchOp::del(key.clone()),
            };
            let check = $crate::Check {
                key,
                expected: expected.map(|v| v.as_ref().to_vec()),
            };
            self.conditional_batch(vec![check], vec![op]).await
        }

        /// Applies `ops` atomically only if every check holds (see
        /// [`crate::Write::Conditional`]); `Ok(Err(CasError))` names the first key whose check
        /// failed and what it held. Checks and operations may name keys of any sublevels
        /// sharing this handle (use [`crate::Sublevel::put_op`] and the sublevels' keys).
        ///
        #[doc = concat!("```\n# #[tokio::main(flavor = \"current_thread\")] async fn main() -> rave::Result<()> {\n# let dir = tempfile::tempdir().unwrap();\n", $setup)]
        /// use rave::{BatchOp, Check};
        /// db.put("stock", "1").await?;
        /// let sold = db
        ///     .conditional_batch(
        ///         vec![Check::new("stock", Some("1")), Check::new("order", None::<&str>)],
        ///         vec![BatchOp::put("stock", "0"), BatchOp::put("order", "ada")],
        ///     )
        ///     .await?;
        /// assert!(sold.is_ok());
        /// # db.close().await }
        /// ```
        pub async fn conditional_batch(
            &self,
            checks: Vec<$crate::Check>,
            ops: Vec<$crate::BatchOp>,
        ) -> $crate::Result<::std::result::Result<(), $crate::CasError>> {
            match $crate::KvStore::write(self, $crate::Write::Conditional { checks, ops }).await {
                Ok(()) => Ok(Ok(())),
                Err($crate::Error::ConditionFailed { key, current }) => {
                    Ok(Err($crate::CasError { key, current }))
                }
                Err(e) => Err(e),
            }
        }

        /// The number of the last commit that applied writes (see [`crate::KvStore::sequence`]).
        ///
        #[doc = concat!("```\n# #[tokio::main(flavor = \"current_thread\")] async fn main() -> rave::Result<()> {\n# let dir = tempfile::tempdir().unwrap();\n", $setup)]
        /// let before = db.sequence().await?;
        /// db.put("a", "1").await?;
        /// assert!(db.sequence().await? > before);
        /// # db.close().await }
        /// ```
        pub async fn sequence(&self) -> $crate::Result<u64> {
            $crate::KvStore::sequence(self).await
        }

        /// The commits that change `range` after commit `from` (see [`crate::KvStore::watch`]
        /// and [`crate::watch`]).
        ///
        #[doc = concat!("```\n# #[tokio::main(flavor = \"current_thread\")] async fn main() -> rave::Result<()> {\n# let dir = tempfile::tempdir().unwrap();\n", $setup)]
        /// use rave::{Change, WatchEvent, stream::StreamExt};
        /// let mut events = db.watch("a".."m", None).await?;
        /// // The first event marks where the watch starts: persist it to resume later.
        /// let Some(Ok(WatchEvent::Progress { sequence: start })) = events.next().await else {
        ///     panic!("a watch starts with a progress mark")
        /// };
        /// db.put("b", "1").await?;
        /// db.put("z", "outside the range").await?;
        /// let Some(Ok(WatchEvent::Commit(commit))) = events.next().await else { panic!() };
        /// assert!(commit.sequence > start);
        /// assert_eq!(commit.changes, [Change::Put { key: b"b".to_vec(), value: b"1".to_vec() }]);
        /// # db.close().await }
        /// ```
        pub async fn watch(
            &self,
            range: impl $crate::IntoRange,
            from: Option<u64>,
        ) -> $crate::Result<$crate::WatchStream> {
            $crate::KvStore::watch(self, range.into_range(), from).await
        }

        /// Closes the handle (for a view: the store it shares); later operations fail with
        /// `Closed`, and closing twice is not an error.
        ///
        #[doc = concat!("```\n# #[tokio::main(flavor = \"current_thread\")] async fn main() -> rave::Result<()> {\n# let dir = tempfile::tempdir().unwrap();\n", $setup)]
        /// db.close().await?;
        /// assert_eq!(db.get("a").await.unwrap_err().kind(), rave::ErrorKind::Closed);
        /// # Ok(()) }
        /// ```
        pub async fn close(&self) -> $crate::Result<()> {
            $crate::KvStore::close(self).await
        }
    };
}

pub(crate) use byte_methods;
