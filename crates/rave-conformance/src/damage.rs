//! What must follow damage to an engine's files, for the engine crates' own damage tests: only
//! the engine knows its files and how to damage them, but what comes after is the same for
//! every engine.
//!
//! ```no_run
//! # async fn example(dir: &std::path::Path) {
//! use rave_conformance::{BackendHarness, damage};
//! // ... damage the files in `dir` ...
//! let harness = BackendHarness::new(rave_api::MemoryBackend);
//! if let Err(failure) = damage::use_damaged(&harness, dir, b"key-0").await {
//!     panic!("{failure}");
//! }
//! # }
//! ```

use std::path::Path;

use rave_api::{Error, ErrorKind, KvStore, Range, Result};

use crate::DirectHarness;
use crate::support::Failure;

/// Opens the database in `path`, whose files a test has damaged, with default options, and
/// uses it: a point read of `probe`, a full scan in each direction and a write, then closes it.
///
/// The engine may make sense of what is left (every step works: `Ok(None)`) or refuse it (the
/// open or a step fails with [`ErrorKind::Corruption`]: `Ok(Some(error))`). Anything else (an
/// error of another kind, or a panic in the engine, which comes out as one) is a failure
/// saying which step.
pub async fn use_damaged(
    harness: &dyn DirectHarness,
    path: &Path,
    probe: &[u8],
) -> std::result::Result<Option<Error>, Failure> {
    let corruption = |step: &str, e: Error| {
        if e.kind() == ErrorKind::Corruption {
            Ok(Some(e))
        } else {
            Err(Failure::new(format!(
                "{step} of a damaged database in {}: expected success or an error of kind \
                 Corruption, got kind {}: {e}",
                path.display(),
                e.kind()
            )))
        }
    };
    let store = match harness
        .open_with(path, &rave_api::OpenOptions::default())
        .await
    {
        Ok(store) => store,
        Err(e) => return corruption("the open", e),
    };
    let result = use_store(&*store, probe).await;
    // The close may fail too, on a store already broken: what counts is the steps.
    let _ = store.close().await;
    match result {
        Ok(()) => Ok(None),
        Err((step, e)) => corruption(step, e),
    }
}

async fn use_store(
    store: &dyn KvStore,
    probe: &[u8],
) -> std::result::Result<(), (&'static str, Error)> {
    async fn scan(store: &dyn KvStore, range: Range) -> Result<()> {
        store.iterator(range).await?.collect_all().await.map(drop)
    }
    store.get(probe).await.map_err(|e| ("a point read", e))?;
    scan(store, Range::all())
        .await
        .map_err(|e| ("a forward scan", e))?;
    scan(store, Range::all().reverse())
        .await
        .map_err(|e| ("a reverse scan", e))?;
    store
        .put(b"written after the damage", b"1")
        .await
        .map_err(|e| ("a write", e))
}
