//! What every engine that runs on an [`EngineStore`] thread has in common: its [`Backend`]
//! (prepare the directory, start the engine thread, open there), the names of what it was
//! doing when it failed ([`EngineOp`]), and the guard that turns its panics into errors
//! ([`guard`]).
//!
//! An engine implements [`EngineBackend`] and gets [`Backend`] from the blanket implementation
//! here, so the directory checks and the thread's name are the same for every engine.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use crate::engine_thread::{Engine, EngineStore};
use crate::{Backend, Capabilities, Error, OpenOptions, Result};

/// A [`Backend`] whose engine runs on a thread of its own through [`EngineStore`].
///
/// Implementing it implements [`Backend`]: `open` checks and records the directory with
/// [`crate::dir::prepare`] (under [`EngineBackend::NAME`]), starts the thread `rave-<NAME>` and
/// opens the engine there with [`EngineBackend::open_engine`].
pub trait EngineBackend: Send + Sync + 'static {
    /// The engine's name, recorded in the directory and naming its thread.
    const NAME: &'static str;

    /// The engine this backend opens.
    type Engine: Engine;

    /// What the engine offers (see [`Backend::capabilities`]). A constant rather than a method,
    /// so that it never clashes with [`Backend::capabilities`] where both traits are in scope.
    const CAPABILITIES: Capabilities;

    /// Opens (or creates) the engine in `dir`, which [`crate::dir::prepare`] has checked.
    /// Called on the engine thread, so the engine need not be `Send`.
    fn open_engine(dir: &Path, options: &OpenOptions) -> Result<Self::Engine>;
}

impl<B: EngineBackend> Backend for B {
    type Store = EngineStore;

    fn name(&self) -> &'static str {
        B::NAME
    }

    /// The engine's own, plus [`Capabilities::exactly_once`], [`Capabilities::watch`] and
    /// [`Capabilities::conditional_writes`]: every [`EngineStore`] keeps the records and the
    /// change log, and evaluates conditions on its engine thread.
    fn capabilities(&self) -> Capabilities {
        B::CAPABILITIES
            .with_exactly_once(true)
            .with_watch(true)
            .with_conditional_writes(true)
    }

    fn open(&self, path: &Path, options: &OpenOptions) -> Result<EngineStore> {
        crate::dir::prepare(path, options, B::NAME)?;
        let dir = path.to_path_buf();
        let options = options.clone();
        // Callable again: the engine thread reopens the engine after a panic or a failed write.
        let watch = options.watch.clone();
        EngineStore::spawn_with(B::NAME, watch, move || B::open_engine(&dir, &options))
    }
}

/// What an engine was doing when it failed: it goes into the error's message, and decides how
/// some failures read (a held lock or a missing file means something else at open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineOp {
    /// Opening the database.
    Open,
    /// A point read.
    Read,
    /// A write or a batch.
    Write,
    /// Creating or advancing an iterator.
    Iterate,
    /// Closing the database.
    Close,
}

impl EngineOp {
    /// The word used in messages: `open`, `read`, `write`, `iterate`, `close`.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineOp::Open => "open",
            EngineOp::Read => "read",
            EngineOp::Write => "write",
            EngineOp::Iterate => "iterate",
            EngineOp::Close => "close",
        }
    }
}

/// Runs `f`, turning a panic inside engine `engine` into [`Error::Corruption`].
///
/// Engines that trust what they read from disk (redb, rusty-leveldb) assert on and unwrap it, so
/// damaged files can make them panic; a panic must never take the engine thread, or the leader
/// process, down with it. `path` is the database file or directory, for the message.
pub fn guard<T>(
    engine: &str,
    op: EngineOp,
    path: &Path,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let detail = panic_detail(payload.as_ref());
            let op = op.as_str();
            tracing::error!(path = %path.display(), op, detail, "the {engine} engine panicked");
            Err(Error::corruption(format!(
                "{engine} {op} {}: the engine failed on damaged data ({detail})",
                path.display()
            )))
        }
    }
}

/// The message a panic carried (`panic!("...")` payloads), or "unknown panic".
pub(crate) fn panic_detail(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_corruption_naming_the_engine_and_the_op() {
        let err = guard("toy", EngineOp::Read, Path::new("/db"), || -> Result<()> {
            panic!("bad page")
        })
        .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corruption);
        let text = err.to_string();
        assert!(text.contains("toy read /db"), "{text}");
        assert!(text.contains("bad page"), "{text}");
        assert_eq!(
            guard("toy", EngineOp::Read, Path::new("/db"), || Ok(7)).unwrap(),
            7
        );
    }
}
