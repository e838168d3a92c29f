use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rave_api::engine_thread::{EngineStore, OpenCursors};
use rave_api::{Backend, Capabilities, Error, KvStore, OpenOptions, Result};

use crate::Failure;

/// What the suite runs against: something that opens a store in a directory.
///
/// Tests only use the [`KvStore`] and [`rave_api::KvIterator`] API and this trait, so the
/// same tests run on a bare engine ([`BackendHarness`]), on a rave leader or follower handle,
/// or on a follower whose leader is killed mid-test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A name for messages, e.g. `"redb"` or `"redb via follower"`.
    fn name(&self) -> String;

    /// What the store supports; tests that do not apply are skipped.
    fn capabilities(&self) -> Capabilities;

    /// Opens, or reopens, the database in directory `path`, which the suite owns (it may not
    /// exist yet). The test closes the store it gets before opening the same path again.
    async fn open(&self, path: &Path) -> Result<Box<dyn KvStore>>;

    /// The cursors (open iterators, each holding a snapshot) of the engine that serves the
    /// store opened last at `path`, when the harness can see them (`None` otherwise, the
    /// default). `abandoned_iterators` uses it to check that dropped iterators release theirs.
    fn open_cursors(&self, _path: &Path) -> Option<usize> {
        None
    }

    /// The count of leader changes this harness makes during a test (a harness without
    /// failovers returns one that stays at 0, the default). An iterator whose life spans a
    /// change resumes on the new leader with a new snapshot, so snapshot checks hold such an
    /// iterator to that weaker promise only.
    fn leader_changes(&self) -> LeaderChanges {
        LeaderChanges::default()
    }

    /// Checks what the harness itself promised about the test that just passed, e.g. that a
    /// planned failover happened; called after every test that passed (not after a skip). The
    /// default has nothing to check.
    fn verify(&self) -> std::result::Result<(), Failure> {
        Ok(())
    }
}

/// A count of the leader changes (failovers) a harness has made, shared with the tests (see
/// [`Harness::leader_changes`]). Clones count together.
#[derive(Clone, Debug, Default)]
pub struct LeaderChanges(Arc<AtomicU64>);

impl LeaderChanges {
    /// Counts one change of leader.
    pub fn record(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// The changes counted so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The cursor gauges of the engines a harness opened, by directory (see
/// [`Harness::open_cursors`]). Clones share the map.
#[derive(Clone, Debug, Default)]
pub struct CursorGauges(Arc<Mutex<HashMap<PathBuf, OpenCursors>>>);

impl CursorGauges {
    /// Remembers the gauge of `store` as the one of directory `path`, when `store` is an
    /// [`EngineStore`] (every engine of this workspace is); other stores are not observable.
    pub fn register(&self, path: &Path, store: &dyn Any) {
        if let Some(engine) = store.downcast_ref::<EngineStore>() {
            self.lock()
                .insert(path.to_path_buf(), engine.open_cursors());
        }
    }

    /// The cursors open in the engine last registered for `path`.
    pub fn get(&self, path: &Path) -> Option<usize> {
        self.lock().get(path).map(OpenCursors::get)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, OpenCursors>> {
        // The map stays valid whatever panicked while it was held.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the engine contract ([`crate::backend_suite!`]) runs against: an engine opened
/// directly, with no rave layer in between, with any [`OpenOptions`].
///
/// The contract is about the directory an engine owns (open options, files that are not a
/// database, other engines' directories, a second open while the first is open), so it does
/// not apply to rave handles, where a second open becomes a follower.
/// [`BackendHarness`] is the direct harness of any [`Backend`].
#[async_trait]
pub trait DirectHarness: Harness {
    /// The name the engine records in its directory ([`Backend::name`]), e.g. `"redb"`.
    fn engine(&self) -> &str;

    /// Opens, or creates, the database in directory `path` with `options`, like
    /// [`Backend::open`].
    async fn open_with(&self, path: &Path, options: &OpenOptions) -> Result<Box<dyn KvStore>>;
}

/// Implements [`Harness`] for a pointer type by forwarding every method to the harness it
/// points to: one body for `Box` and `Arc`, so the two cannot drift apart (a method with a
/// default body that one forgot would silently skip the inner harness's own version).
macro_rules! forward_harness {
    ($($ptr:ident),+) => {$(
        #[async_trait]
        impl<H: Harness + ?Sized> Harness for $ptr<H> {
            fn name(&self) -> String {
                (**self).name()
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn open(&self, path: &Path) -> Result<Box<dyn KvStore>> {
                (**self).open(path).await
            }
            fn open_cursors(&self, path: &Path) -> Option<usize> {
                (**self).open_cursors(path)
            }
            fn leader_changes(&self) -> LeaderChanges {
                (**self).leader_changes()
            }
            fn verify(&self) -> std::result::Result<(), Failure> {
                (**self).verify()
            }
        }
    )+};
}

forward_harness!(Box, Arc);

/// The harness of any [`Backend`]: opens it directly, with the given [`OpenOptions`], on a
/// blocking thread (engines block).
#[derive(Debug)]
pub struct BackendHarness<B: Backend> {
    backend: Arc<B>,
    options: OpenOptions,
    gauges: CursorGauges,
}

impl<B: Backend> BackendHarness<B> {
    /// A harness opening `backend` with default options.
    pub fn new(backend: B) -> Self {
        Self::with_options(backend, OpenOptions::default())
    }

    /// A harness opening `backend` with `options`.
    pub fn with_options(backend: B, options: OpenOptions) -> Self {
        BackendHarness {
            backend: Arc::new(backend),
            options,
            gauges: CursorGauges::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

impl<B: Backend> Clone for BackendHarness<B> {
    fn clone(&self) -> Self {
        BackendHarness {
            backend: Arc::clone(&self.backend),
            options: self.options.clone(),
            gauges: self.gauges.clone(),
        }
    }
}

#[async_trait]
impl<B: Backend> Harness for BackendHarness<B> {
    fn name(&self) -> String {
        self.backend.name().to_string()
    }

    fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    async fn open(&self, path: &Path) -> Result<Box<dyn KvStore>> {
        self.open_with(path, &self.options).await
    }

    fn open_cursors(&self, path: &Path) -> Option<usize> {
        self.gauges.get(path)
    }
}

#[async_trait]
impl<B: Backend> DirectHarness for BackendHarness<B> {
    fn engine(&self) -> &str {
        self.backend.name()
    }

    async fn open_with(&self, path: &Path, options: &OpenOptions) -> Result<Box<dyn KvStore>> {
        let backend = Arc::clone(&self.backend);
        let options = options.clone();
        let dir = path.to_path_buf();
        let store = tokio::task::spawn_blocking(move || backend.open(&dir, &options))
            .await
            .map_err(|e| Error::other(format!("the open task failed: {e}")))??;
        self.gauges.register(path, &store);
        Ok(Box::new(store))
    }
}
