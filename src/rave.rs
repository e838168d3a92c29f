//! The user's handle: `Rave<B>`, where the engine, the election and the transport meet.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rave_api::{Backend, BatchOp, Error, KvIterator, KvStore, Range, Result, Write, WriteStamp};
use rave_election::Role;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::iter::ResumingIter;
use crate::leadership::{Leadership, Opener, drive};
use crate::{AnyBackend, RaveOptions};

/// A handle on a database directory shared by any number of processes.
///
/// It is leader or follower transparently and switches roles on failover; either way it is a
/// [`KvStore`]. Clones share one handle (one role, one connection). Dropping the last clone ends
/// its background task; a leader's followers then elect a new leader. It must be used within a
/// Tokio runtime ([`crate::blocking::Rave`] brings its own). Its engine is `B`: by default
/// [`AnyBackend`], whatever the directory holds (see `rave_methods.rs` for `open` and the
/// inherent byte API).
pub struct Rave<B: Backend = AnyBackend> {
    core: Arc<Leadership>,
    owner: Arc<Owner>,
    _backend: PhantomData<fn() -> B>,
}

impl<B: Backend> Clone for Rave<B> {
    fn clone(&self) -> Self {
        Rave {
            core: self.core.clone(),
            owner: self.owner.clone(),
            _backend: PhantomData,
        }
    }
}

/// Ends the driver when the last clone of a handle goes away.
struct Owner {
    core: Arc<Leadership>,
    driver: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.core.cancel.cancel();
    }
}

impl<B: Backend> Rave<B> {
    /// Opens `path` with the given engine. On a shared engine ([`rave_api::Capabilities::shared`])
    /// `path` names a database of that engine (it is not created as a directory) and the handle
    /// has the role [`Role::Direct`].
    pub fn open_with(backend: B, path: impl AsRef<Path>, options: RaveOptions) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::invalid("rave::Rave must be opened within a Tokio runtime"))?;
        let shared = backend.capabilities().shared;
        let dir = if shared {
            path.as_ref().to_path_buf()
        } else {
            prepare_dir(path.as_ref(), &options)?
        };
        if !shared {
            crate::level_compat::check(backend.name(), &dir, &options)?;
        }
        let backend = Arc::new(backend);
        let opener: Opener = Arc::new(move |path, open_options| {
            let store = backend.open(path, open_options)?;
            Ok(Arc::new(store) as Arc<dyn KvStore>)
        });
        let core = Arc::new(Leadership::new(dir, options, opener));
        let driver = if shared {
            runtime.spawn(crate::direct::drive(core.clone()))
        } else {
            runtime.spawn(drive(core.clone()))
        };
        Ok(Rave {
            owner: Arc::new(Owner {
                core: core.clone(),
                driver: Mutex::new(Some(driver)),
            }),
            core,
            _backend: PhantomData,
        })
    }

    /// This handle's role right now.
    pub fn role(&self) -> Role {
        self.core.role()
    }

    /// A watch of this handle's role: it changes at every election.
    pub fn watch_role(&self) -> watch::Receiver<Role> {
        self.core.watch_role()
    }

    /// Waits until this handle leads or follows (or the election fails) and returns the role.
    pub async fn ready(&self) -> Result<Role> {
        let ticket = self.core.acquire().await?;
        Ok(ticket.role)
    }

    /// The epoch of the leader this handle last led or followed.
    pub fn epoch(&self) -> Option<u64> {
        self.core.epoch()
    }

    /// How many follower connections the leader serves now (each follower handle holds one):
    /// counted locally when this handle leads, asked of the leader when it follows, `None`
    /// when nobody leads this store (a shared backend, role [`Role::Direct`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let leader = rave::Rave::open(dir.path(), Default::default())?;
    /// leader.ready().await?;
    /// let follower = rave::Rave::open(dir.path(), Default::default())?;
    /// assert_eq!(follower.ready().await?, rave::Role::Follower);
    /// assert_eq!(leader.connected_followers().await?, Some(1));
    /// assert_eq!(follower.connected_followers().await?, Some(1));
    /// # follower.close().await?; leader.close().await }
    /// ```
    pub async fn connected_followers(&self) -> Result<Option<u64>> {
        if self.core.role() == Role::Leader
            && let Some(count) = self.core.served_connections()
        {
            return Ok(Some(count));
        }
        self.core
            .run(|s| async move { (*s).leader_connections().await })
            .await
    }

    /// The directory (absolute).
    pub fn path(&self) -> &Path {
        &self.core.dir
    }

    /// The socket followers of this directory connect to.
    pub fn socket_path(&self) -> Result<std::path::PathBuf> {
        rave_election::socket_path(&self.core.dir)
            .map_err(|e| Error::io(format!("socket path of {}", self.core.dir.display()), &e))
    }

    /// The leader last recorded in the directory (its epoch and pid).
    pub fn leader_record(&self) -> Result<Option<rave_election::LeaderRecord>> {
        rave_election::read_leader_record(&self.core.dir).map_err(|e| {
            Error::io(
                format!("read the leader record of {}", self.core.dir.display()),
                &e,
            )
        })
    }
}

/// Checks the directory and creates it when allowed; returns its absolute path.
fn prepare_dir(path: &Path, options: &RaveOptions) -> Result<std::path::PathBuf> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::invalid(format!(
                "{} is not a directory (a database is a directory)",
                path.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !options.open.create_if_missing {
                return Err(Error::DoesNotExist {
                    path: path.to_path_buf(),
                });
            }
            std::fs::create_dir_all(path)
                .map_err(|e| Error::io(format!("create {}", path.display()), &e))?;
        }
        Err(e) => return Err(Error::io(format!("stat {}", path.display()), &e)),
    }
    std::path::absolute(path).map_err(|e| Error::io(format!("resolve {}", path.display()), &e))
}

#[async_trait]
impl<B: Backend> KvStore for Rave<B> {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.core.run(|s| async move { (*s).get(key).await }).await
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.core
            .run(|s| async move { (*s).get_many(keys).await })
            .await
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.core
            .write(Write::Batch(vec![BatchOp::put(key, value)]))
            .await
    }

    async fn del(&self, key: &[u8]) -> Result<()> {
        self.core.write(Write::Batch(vec![BatchOp::del(key)])).await
    }

    async fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        self.core.write(Write::Batch(ops)).await
    }

    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
        Ok(Box::new(
            ResumingIter::open(self.core.clone(), range).await?,
        ))
    }

    async fn clear(&self, range: Range) -> Result<()> {
        self.core.write(Write::Clear(range)).await
    }

    /// Applies `write` once under the caller's `stamp` (for callers that number their own
    /// writes); [`KvStore::put`] and the other writes of a handle are already stamped.
    /// Stamps `write` and applies it exactly once on whoever leads (see
    /// [`rave_api::KvStore::write`]).
    async fn write(&self, write: Write) -> Result<()> {
        self.core.write(write).await
    }

    async fn write_stamped(&self, stamp: WriteStamp, write: Write) -> Result<()> {
        self.core
            .run(|s| {
                let write = write.clone();
                async move { (*s).write_stamped(stamp, write).await }
            })
            .await
    }

    /// Asks the leader; across a leader change the number continues from the last one persisted.
    async fn sequence(&self) -> Result<u64> {
        self.core
            .run(|s| async move { (*s).sequence().await })
            .await
    }

    /// The connections of whoever leads (see [`Rave::connected_followers`]).
    async fn leader_connections(&self) -> Result<Option<u64>> {
        self.connected_followers().await
    }

    /// Watches `range` after `from` on whoever leads, resuming on the next leader from the
    /// last event handed out (see [`rave_api::watch`]).
    async fn watch(&self, range: Range, from: Option<u64>) -> Result<rave_api::WatchStream> {
        rave_api::watch::check_range(&range)?;
        crate::watcher::open(self.core.clone(), range, from).await
    }

    /// Closes the handle: waiting operations fail with `Closed`; a leader stops serving (its
    /// followers re-elect at once), closes its engine and releases the lock before this returns.
    async fn close(&self) -> Result<()> {
        self.core.close();
        let driver = self
            .owner
            .driver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(driver) = driver {
            driver
                .await
                .map_err(|e| Error::other(format!("the election task failed: {e}")))?;
        }
        Ok(())
    }
}
