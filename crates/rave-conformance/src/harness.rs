use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rave_api::{Backend, Capabilities, Error, KvStore, OpenOptions, Result};

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

#[async_trait]
impl<H: Harness + ?Sized> Harness for Box<H> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn open(&self, path: &Path) -> Result<Box<dyn KvStore>> {
        (**self).open(path).await
    }
}

#[async_trait]
impl<H: Harness + ?Sized> Harness for Arc<H> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn open(&self, path: &Path) -> Result<Box<dyn KvStore>> {
        (**self).open(path).await
    }
}

/// The harness of any [`Backend`]: opens it directly, with the given [`OpenOptions`], on a
/// blocking thread (engines block).
#[derive(Debug)]
pub struct BackendHarness<B: Backend> {
    backend: Arc<B>,
    options: OpenOptions,
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
}

#[async_trait]
impl<B: Backend> DirectHarness for BackendHarness<B> {
    fn engine(&self) -> &str {
        self.backend.name()
    }

    async fn open_with(&self, path: &Path, options: &OpenOptions) -> Result<Box<dyn KvStore>> {
        let backend = Arc::clone(&self.backend);
        let options = options.clone();
        let path = path.to_path_buf();
        let store = tokio::task::spawn_blocking(move || backend.open(&path, &options))
            .await
            .map_err(|e| Error::other(format!("the open task failed: {e}")))??;
        Ok(Box::new(store))
    }
}
