//! `Rave`'s opening functions and its inherent byte, sublevel and typed API (the methods users
//! call without importing a trait); the handle itself is in `rave.rs`.

use std::path::Path;
use std::sync::Arc;

use rave_api::{Backend, KvStore, Result};

use crate::view::{Sublevel, Typed, byte_methods};
use crate::{AnyBackend, Rave, RaveOptions};

impl Rave<AnyBackend> {
    /// Opens `path` with the engine its directory holds, or the default engine
    /// ([`crate::DefaultBackend`]) for a new one (see [`AnyBackend`]). No type annotation is
    /// needed; for one engine only, use [`Rave::open_engine`] or [`Rave::open_with`].
    ///
    /// Returns at once: the election runs in the background and operations wait for it (up to
    /// [`RaveOptions::election_timeout`]). Use [`Rave::ready`] to wait for a role explicitly.
    /// It must be called within a Tokio runtime (see [`crate::blocking::Rave`] otherwise).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = rave::Rave::open(dir.path(), Default::default())?;
    /// db.put("a", "1").await?;
    /// # db.close().await }
    /// ```
    pub fn open(path: impl AsRef<Path>, options: RaveOptions) -> Result<Self> {
        Self::open_with(AnyBackend::default(), path, options)
    }
}

impl<B: Backend + Default> Rave<B> {
    /// Opens `path` with the engine `B` (a directory holding another engine's database is
    /// refused by the leader with [`crate::Error::WrongEngine`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use rave::{Rave, backends::MemoryBackend};
    /// let db = Rave::<MemoryBackend>::open_engine(dir.path(), Default::default())?;
    /// db.put("a", "1").await?;
    /// # db.close().await }
    /// ```
    pub fn open_engine(path: impl AsRef<Path>, options: RaveOptions) -> Result<Self> {
        Self::open_with(B::default(), path, options)
    }
}

impl<B: Backend> Rave<B> {
    byte_methods!("let db = rave::Rave::open(dir.path(), Default::default())?;\n");

    /// A view of the whole store, with no prefix (what [`Rave::sublevel`] and [`Rave::typed`]
    /// start from). It holds a clone of this handle.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// assert_eq!(db.root().prefix(), b"");
    /// # db.close().await }
    /// ```
    pub fn root(&self) -> Sublevel {
        Sublevel::root(Arc::new(self.clone()) as Arc<dyn KvStore>)
    }

    /// The sublevel `name`: keys under `!name!`, as abstract-level's `db.sublevel(name)` (see
    /// [`Sublevel`]).
    ///
    /// # Panics
    ///
    /// When abstract-level would refuse the name (see [`Sublevel::sublevel`]); use
    /// [`Rave::try_sublevel`] for names from input.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// db.sublevel("users").put("ada", "1").await?;
    /// assert_eq!(db.get("!users!ada").await?, Some(b"1".to_vec()));
    /// # db.close().await }
    /// ```
    pub fn sublevel(&self, name: &str) -> Sublevel {
        self.root().sublevel(name)
    }

    /// The sublevel `name`, or [`crate::Error::InvalidArgument`] for a name abstract-level
    /// refuses.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// assert!(db.try_sublevel("a\"b").is_err());
    /// # db.close().await }
    /// ```
    pub fn try_sublevel(&self, name: &str) -> Result<Sublevel> {
        self.root().try_sublevel(name)
    }

    /// A typed view of the whole store: values `V` in JSON, keys as bytes (see [`Typed`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let flags = db.typed::<bool>();
    /// flags.put("on", &true).await?;
    /// assert_eq!(flags.get("on").await?, Some(true));
    /// # db.close().await }
    /// ```
    pub fn typed<V>(&self) -> Typed<Vec<u8>, V> {
        self.root().typed()
    }
}
