//! The engine chosen at run time: whatever the directory holds, else a default.

use std::path::Path;

use rave_api::engine_thread::EngineStore;
use rave_api::{Backend, Capabilities, Error, OpenOptions, Result};

/// One of the engines compiled into this build (one per Cargo feature, and the in-memory one).
///
/// ```
/// use rave::EngineKind;
/// assert_eq!(EngineKind::from_name("memory"), Some(EngineKind::Memory));
/// assert!(EngineKind::compiled().contains(&EngineKind::default()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EngineKind {
    /// [`crate::backends::MemoryBackend`]: nothing survives the leader's process.
    Memory,
    /// [`crate::backends::RedbBackend`].
    #[cfg(feature = "redb")]
    Redb,
    /// [`crate::backends::LevelDbBackend`].
    #[cfg(feature = "leveldb")]
    LevelDb,
    /// [`crate::backends::RocksDbBackend`].
    #[cfg(feature = "rocksdb")]
    RocksDb,
}

impl Default for EngineKind {
    /// The engine of [`crate::DefaultBackend`] (redb with the default features).
    fn default() -> Self {
        #[cfg(feature = "redb")]
        return EngineKind::Redb;
        #[cfg(all(not(feature = "redb"), feature = "leveldb"))]
        return EngineKind::LevelDb;
        #[cfg(all(not(feature = "redb"), not(feature = "leveldb"), feature = "rocksdb"))]
        return EngineKind::RocksDb;
        #[cfg(not(any(feature = "redb", feature = "leveldb", feature = "rocksdb")))]
        return EngineKind::Memory;
    }
}

impl EngineKind {
    /// Every engine compiled into this build.
    ///
    /// ```
    /// assert!(rave::EngineKind::compiled().contains(&rave::EngineKind::Memory));
    /// ```
    pub fn compiled() -> &'static [EngineKind] {
        &[
            EngineKind::Memory,
            #[cfg(feature = "redb")]
            EngineKind::Redb,
            #[cfg(feature = "leveldb")]
            EngineKind::LevelDb,
            #[cfg(feature = "rocksdb")]
            EngineKind::RocksDb,
        ]
    }

    /// The engine's name, as recorded in a directory ([`Backend::name`]).
    ///
    /// ```
    /// assert_eq!(rave::EngineKind::Memory.name(), "memory");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Memory => crate::backends::MemoryBackend.name(),
            #[cfg(feature = "redb")]
            EngineKind::Redb => crate::backends::RedbBackend.name(),
            #[cfg(feature = "leveldb")]
            EngineKind::LevelDb => crate::backends::LevelDbBackend.name(),
            #[cfg(feature = "rocksdb")]
            EngineKind::RocksDb => crate::backends::RocksDbBackend.name(),
        }
    }

    /// The compiled-in engine called `name`, if any.
    ///
    /// ```
    /// assert_eq!(rave::EngineKind::from_name("no such engine"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<EngineKind> {
        EngineKind::compiled()
            .iter()
            .copied()
            .find(|e| e.name() == name)
    }

    fn capabilities(self) -> Capabilities {
        match self {
            EngineKind::Memory => crate::backends::MemoryBackend.capabilities(),
            #[cfg(feature = "redb")]
            EngineKind::Redb => crate::backends::RedbBackend.capabilities(),
            #[cfg(feature = "leveldb")]
            EngineKind::LevelDb => crate::backends::LevelDbBackend.capabilities(),
            #[cfg(feature = "rocksdb")]
            EngineKind::RocksDb => crate::backends::RocksDbBackend.capabilities(),
        }
    }

    fn open(self, path: &Path, options: &OpenOptions) -> Result<EngineStore> {
        match self {
            EngineKind::Memory => crate::backends::MemoryBackend.open(path, options),
            #[cfg(feature = "redb")]
            EngineKind::Redb => crate::backends::RedbBackend.open(path, options),
            #[cfg(feature = "leveldb")]
            EngineKind::LevelDb => crate::backends::LevelDbBackend.open(path, options),
            #[cfg(feature = "rocksdb")]
            EngineKind::RocksDb => crate::backends::RocksDbBackend.open(path, options),
        }
    }
}

/// The engine of `rave::Rave::open`: the one whose database the directory holds (its engine
/// record, or the engines' own file names: [`rave_api::dir::detect`]), or, for a new
/// directory, a fallback ([`EngineKind::default`], the [`crate::DefaultBackend`], unless set
/// with [`AnyBackend::new`]).
///
/// Each leader decides when it opens the directory, so every process of a directory uses the
/// engine that is there whatever its own fallback. A directory holding an engine this build
/// lacks is [`Error::Unsupported`] (turn on its Cargo feature).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use rave::{AnyBackend, EngineKind, Rave};
/// let db = Rave::open(dir.path(), Default::default())?; // a Rave<AnyBackend>
/// db.put("a", "1").await?;
/// if EngineKind::default() != EngineKind::Memory {
///     // (The in-memory engine records nothing in the directory.)
///     assert_eq!(AnyBackend::detect(dir.path())?, Some(EngineKind::default()));
/// }
/// # db.close().await }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnyBackend {
    fallback: EngineKind,
}

impl AnyBackend {
    /// Opens what a directory holds, and creates new ones with `fallback`.
    ///
    /// ```
    /// let any = rave::AnyBackend::new(rave::EngineKind::Memory);
    /// assert_eq!(any.fallback(), rave::EngineKind::Memory);
    /// ```
    pub fn new(fallback: EngineKind) -> Self {
        AnyBackend { fallback }
    }

    /// The engine new directories get.
    ///
    /// ```
    /// assert_eq!(rave::AnyBackend::default().fallback(), rave::EngineKind::default());
    /// ```
    pub fn fallback(&self) -> EngineKind {
        self.fallback
    }

    /// The engine whose database `path` holds (`None`: no database yet).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// assert_eq!(rave::AnyBackend::detect(dir.path())?, None);
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn detect(path: &Path) -> Result<Option<EngineKind>> {
        let Some(name) = rave_api::dir::detect(path)? else {
            return Ok(None);
        };
        match EngineKind::from_name(&name) {
            Some(engine) => Ok(Some(engine)),
            None => Err(Error::Unsupported {
                message: format!(
                    "{} holds a {name} database, and this build of rave has no {name} engine \
                     (it has: {}); turn on the `{name}` feature",
                    path.display(),
                    EngineKind::compiled()
                        .iter()
                        .map(|e| e.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }
}

impl Backend for AnyBackend {
    type Store = EngineStore;

    /// The fallback's name (the engine actually opened is the directory's).
    fn name(&self) -> &'static str {
        self.fallback.name()
    }

    /// The fallback's capabilities.
    fn capabilities(&self) -> Capabilities {
        self.fallback.capabilities()
    }

    fn open(&self, path: &Path, options: &OpenOptions) -> Result<EngineStore> {
        let engine = AnyBackend::detect(path)?.unwrap_or(self.fallback);
        engine.open(path, options)
    }
}
