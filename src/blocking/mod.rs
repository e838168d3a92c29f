//! The blocking API: the same handles without async, for plain `fn main`, threads, scripts.
//!
//! ```
//! # fn main() -> rave::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! use rave::blocking::Rave;
//! let db = Rave::open(dir.path(), Default::default())?;
//! db.put("a", "1")?;
//! let users = db.sublevel("users");
//! users.put("ada", "36")?;
//! for entry in db.range("a".."z")? {
//!     let (key, value) = entry?;
//!     assert_eq!((key, value), (b"a".to_vec(), b"1".to_vec()));
//! }
//! # Ok(()) }
//! ```
//!
//! # How it runs
//!
//! A [`Rave`] owns a small multi-thread Tokio runtime (two worker threads named
//! `rave-blocking`), as `reqwest::blocking` does; its sublevels, typed views and iterators
//! share it. Each call is spawned as a task on that runtime and the calling thread waits for
//! the task's result, so the async handle does all the work, with the same semantics in every
//! role (leader, follower, failover).
//!
//! Because the caller only waits (it never runs the runtime itself), a call **does not panic
//! inside an async program**, unlike `Runtime::block_on`: from a Tokio task it blocks that
//! worker thread until the answer comes, like any blocking call. In async code prefer the async
//! handle ([`Rave::handle`] gives the one underneath), or make blocking calls inside
//! `tokio::task::spawn_blocking`. Dropping the last clone of a handle (or of a view or iterator
//! made from it) closes the database and stops the runtime without waiting for its threads, so
//! that is safe anywhere too.

mod iter;
mod methods;
mod typed;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

pub use iter::{Iter, Watch};
use methods::blocking_methods;
pub use typed::Typed;

use crate::view::IntoRange;
use crate::{AnyBackend, Backend, BatchOp, Error, KvStore, RaveOptions, Result, Role};

/// The runtime of a blocking handle, and the store it closes when the last user goes.
pub(crate) struct Exec {
    runtime: Option<tokio::runtime::Runtime>,
    store: Option<Arc<dyn KvStore>>,
}

impl Exec {
    /// Runs `future` on the runtime and waits for it on this thread.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let Some(runtime) = &self.runtime else {
            return Err(Error::Closed);
        };
        let task = runtime.spawn(future);
        // Waiting on the task's handle needs no runtime on this thread, so this works from
        // any thread, an async one included.
        match futures::executor::block_on(task) {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::other(format!("the blocking runtime stopped: {e}"))),
        }
    }

    /// Drops `value` (an async iterator or stream) inside the runtime's context, in case its
    /// drop needs one.
    pub(crate) fn drop_inside<T>(&self, value: T) {
        let _guard = self.runtime.as_ref().map(|r| r.enter());
        drop(value);
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            // Close gracefully (a leader hands over at once); closing twice is not an error.
            let _ = self.run(async move { store.close().await });
        }
        if let Some(runtime) = self.runtime.take() {
            // Never blocks, so it is safe in an async context too.
            runtime.shutdown_background();
        }
    }
}

/// A blocking handle on a database directory shared by any number of processes: the async
/// [`crate::Rave`] with its own runtime (see [the module](self)). Clones share one handle.
///
/// ```
/// # fn main() -> rave::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
/// let worker = {
///     let db = db.clone();
///     std::thread::spawn(move || db.put("from", "thread"))
/// };
/// worker.join().unwrap()?;
/// assert_eq!(db.get("from")?, Some(b"thread".to_vec()));
/// # Ok(()) }
/// ```
pub struct Rave<B: Backend = AnyBackend> {
    handle: crate::Rave<B>,
    root: Sublevel,
}

impl<B: Backend> Clone for Rave<B> {
    fn clone(&self) -> Self {
        Rave {
            handle: self.handle.clone(),
            root: self.root.clone(),
        }
    }
}

impl<B: Backend> std::fmt::Debug for Rave<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Rave")
            .field("path", &self.handle.path())
            .field("role", &self.handle.role())
            .finish()
    }
}

impl Rave<AnyBackend> {
    /// Opens `path` with the engine its directory holds, or the default engine for a new one
    /// (see [`crate::Rave::open`]). Returns at once; operations wait for the election.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn open(path: impl AsRef<Path>, options: RaveOptions) -> Result<Self> {
        Self::open_with(AnyBackend::default(), path, options)
    }
}

impl<B: Backend + Default> Rave<B> {
    /// Opens `path` with the engine `B` (see [`crate::Rave::open_engine`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use rave::backends::MemoryBackend;
    /// let db = rave::blocking::Rave::<MemoryBackend>::open_engine(dir.path(), Default::default())?;
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn open_engine(path: impl AsRef<Path>, options: RaveOptions) -> Result<Self> {
        Self::open_with(B::default(), path, options)
    }
}

impl<B: Backend> Rave<B> {
    /// Opens `path` with the given engine (see [`crate::Rave::open_with`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let engine = rave::AnyBackend::new(rave::EngineKind::Memory);
    /// let db = rave::blocking::Rave::open_with(engine, dir.path(), Default::default())?;
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn open_with(backend: B, path: impl AsRef<Path>, options: RaveOptions) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rave-blocking")
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the runtime of a blocking handle", &e))?;
        let opened = {
            let _guard = runtime.enter();
            crate::Rave::open_with(backend, path, options)
        };
        let handle = match opened {
            Ok(handle) => handle,
            Err(err) => {
                runtime.shutdown_background();
                return Err(err);
            }
        };
        let store: Arc<dyn KvStore> = Arc::new(handle.clone());
        let exec = Arc::new(Exec {
            runtime: Some(runtime),
            store: Some(store.clone()),
        });
        Ok(Rave {
            handle,
            root: Sublevel {
                view: crate::Sublevel::root(store),
                exec,
            },
        })
    }

    /// The async handle underneath (clones share everything with this one): for async code.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let path = db.handle().path().to_path_buf();
    /// assert!(path.is_absolute());
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn handle(&self) -> &crate::Rave<B> {
        &self.handle
    }

    /// Waits until this handle leads or follows and returns the role.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// assert_eq!(db.ready()?, rave::Role::Leader);
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn ready(&self) -> Result<Role> {
        let handle = self.handle.clone();
        self.root.exec.run(async move { handle.ready().await })
    }

    /// This handle's role right now.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// db.ready()?;
    /// assert_eq!(db.role(), rave::Role::Leader);
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn role(&self) -> Role {
        self.handle.role()
    }

    /// A view of the whole store (see [`crate::Rave::root`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// assert_eq!(db.root().prefix(), b"");
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn root(&self) -> Sublevel {
        self.root.clone()
    }

    /// The sublevel `name` (keys under `!name!`; see [`crate::Sublevel`]).
    ///
    /// # Panics
    ///
    /// When abstract-level would refuse the name; see [`Rave::try_sublevel`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// db.sublevel("users").put("ada", "1")?;
    /// assert_eq!(db.get("!users!ada")?, Some(b"1".to_vec()));
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn sublevel(&self, name: &str) -> Sublevel {
        self.root.sublevel(name)
    }

    /// The sublevel `name`, or [`Error::InvalidArgument`] for a name abstract-level refuses.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// assert!(db.try_sublevel("a b").is_err());
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn try_sublevel(&self, name: &str) -> Result<Sublevel> {
        self.root.try_sublevel(name)
    }

    /// A typed view of the whole store: values `V` in JSON, keys as bytes.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// db.typed::<Vec<u8>>().put("k", &vec![1, 2])?;
    /// assert_eq!(db.get("k")?, Some(b"[1,2]".to_vec()));
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn typed<V: Send + 'static>(&self) -> Typed<Vec<u8>, V> {
        self.root.typed()
    }

    blocking_methods!(|this| &this.root);
}

/// A blocking [`crate::Sublevel`]: a namespace of a blocking handle, with the same API.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
/// let posts = db.sublevel("posts");
/// posts.put("1", "hello")?;
/// let keys: Vec<Vec<u8>> = posts.range(..)?.map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>()?;
/// assert_eq!(keys, [b"1".to_vec()]);
/// # Ok::<(), rave::Error>(())
/// ```
#[derive(Clone)]
pub struct Sublevel {
    view: crate::Sublevel,
    exec: Arc<Exec>,
}

impl std::fmt::Debug for Sublevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("blocking::Sublevel")
            .field(&self.view)
            .finish()
    }
}

impl Sublevel {
    /// The sublevel `name` of this one (see [`crate::Sublevel::sublevel`]).
    ///
    /// # Panics
    ///
    /// When abstract-level would refuse the name; see [`Sublevel::try_sublevel`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// assert_eq!(db.sublevel("a").sublevel("b").prefix(), b"!a!!b!");
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn sublevel(&self, name: &str) -> Sublevel {
        Sublevel {
            view: self.view.sublevel(name),
            exec: self.exec.clone(),
        }
    }

    /// The sublevel `name` of this one, or [`Error::InvalidArgument`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// assert!(db.sublevel("a").try_sublevel("é").is_err());
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn try_sublevel(&self, name: &str) -> Result<Sublevel> {
        Ok(Sublevel {
            view: self.view.try_sublevel(name)?,
            exec: self.exec.clone(),
        })
    }

    /// The bytes every key of this sublevel starts with in the store.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// assert_eq!(db.sublevel("x").prefix(), b"!x!");
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn prefix(&self) -> &[u8] {
        self.view.prefix()
    }

    /// The async view underneath.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let x = db.sublevel("x");
    /// let async_view: &rave::Sublevel = x.view();
    /// assert_eq!(async_view.prefix(), b"!x!");
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn view(&self) -> &crate::Sublevel {
        &self.view
    }

    /// A typed view of this sublevel: values `V` in JSON, keys as bytes.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let ages = db.sublevel("ages").typed::<u8>();
    /// ages.put("ada", &36)?;
    /// assert_eq!(ages.get("ada")?, Some(36));
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn typed<V: Send + 'static>(&self) -> Typed<Vec<u8>, V> {
        Typed {
            view: self.view.typed(),
            exec: self.exec.clone(),
        }
    }

    /// A put in this sublevel for a batch on the handle (see [`crate::Sublevel::put_op`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let (a, b) = (db.sublevel("a"), db.sublevel("b"));
    /// db.batch(vec![a.put_op("k", "1"), b.put_op("k", "2")])?;
    /// assert_eq!(b.get("k")?, Some(b"2".to_vec()));
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn put_op(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> BatchOp {
        self.view.put_op(key, value)
    }

    /// A delete in this sublevel for a batch on the handle.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// assert_eq!(db.sublevel("a").del_op("k"), rave::BatchOp::del("!a!k"));
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn del_op(&self, key: impl AsRef<[u8]>) -> BatchOp {
        self.view.del_op(key)
    }

    blocking_methods!(|this| this);
}
