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
        /// match db.watch("a".."m", None).await {
        ///     Ok(_events) => {} // a stream of rave::WatchEvent
        ///     Err(e) => assert_eq!(e.kind(), rave::ErrorKind::Unsupported), // not in this build yet
        /// }
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
