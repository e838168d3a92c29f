//! The shared behaviour suite (rave-conformance) through the multi-process layer, for every
//! compiled-in engine, in three modes:
//!
//! - `leader`: the store is a `Rave` handle that leads;
//! - `follower`: the store is a follower handle whose leader is another handle of this process;
//! - `failover`: like `follower`, but the leader handle is closed after the k-th operation
//!   (iterator chunks count too, so it may happen mid-iteration), and the follower takes over
//!   mid-test. A resumed iterator reads the new leader's snapshot, so this mode reports
//!   `snapshots: false`.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use rave::{
    Backend, BatchOp, Capabilities, Entry, Error, KvIterator, KvStore, Range, Rave, RaveOptions,
    Result, Role,
};
use rave_conformance::Harness;

/// How the store under test relates to the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Leader,
    Follower,
    Failover,
}

/// Opens rave handles in one of the [`Mode`]s.
struct RaveHarness<B> {
    mode: Mode,
    _backend: PhantomData<fn() -> B>,
}

impl<B: Backend + Default> RaveHarness<B> {
    fn new(mode: Mode) -> Self {
        RaveHarness {
            mode,
            _backend: PhantomData,
        }
    }
}

fn unexpected_role(which: &str, role: Role) -> Error {
    Error::other(format!("the {which} handle became {role}"))
}

#[async_trait]
impl<B: Backend + Default> Harness for RaveHarness<B> {
    fn name(&self) -> String {
        let mode = match self.mode {
            Mode::Leader => "leader handle",
            Mode::Follower => "follower handle",
            Mode::Failover => "follower handle across a failover",
        };
        format!("{} via a {mode}", B::default().name())
    }

    fn capabilities(&self) -> Capabilities {
        // A rave handle's reads go through the facade (and, on a follower, the socket): they
        // never complete on the caller's thread the way the engine's shared reader does.
        let mut capabilities = B::default().capabilities().with_concurrent_reads(false);
        if self.mode == Mode::Failover {
            capabilities.snapshots = false;
        }
        capabilities
    }

    async fn open(&self, path: &Path) -> Result<Box<dyn KvStore>> {
        let leader = Rave::<B>::open(path, RaveOptions::default())?;
        let role = leader.ready().await?;
        if role != Role::Leader {
            return Err(unexpected_role("first", role));
        }
        if self.mode == Mode::Leader {
            return Ok(Box::new(leader));
        }
        let follower = Rave::<B>::open(path, RaveOptions::default())?;
        let role = follower.ready().await?;
        if role != Role::Follower {
            return Err(unexpected_role("second", role));
        }
        let fail_at = match self.mode {
            Mode::Failover => {
                // RAVE_FAILOVER_AT=k replays a failing run (the k is printed).
                let k = std::env::var("RAVE_FAILOVER_AT")
                    .ok()
                    .and_then(|k| k.parse().ok())
                    .unwrap_or_else(|| rand::random_range(1..=12u64));
                eprintln!("failover after operation {k}");
                Some(k)
            }
            _ => None,
        };
        Ok(Box::new(Pair {
            follower,
            shared: Arc::new(Shared {
                leader,
                ops: AtomicU64::new(0),
                fail_at,
            }),
        }))
    }
}

/// What a [`Pair`] and its iterators share: the leader handle and the operation count.
struct Shared<B: Backend> {
    leader: Rave<B>,
    ops: AtomicU64,
    fail_at: Option<u64>,
}

impl<B: Backend> Shared<B> {
    /// Counts one operation; the k-th closes the leader (the follower then takes over).
    async fn tick(&self) {
        let n = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(n) == self.fail_at
            && let Err(err) = self.leader.close().await
        {
            panic!("closing the leader handle for the failover: {err}");
        }
    }
}

/// A follower handle whose leader is another handle of this process.
struct Pair<B: Backend> {
    follower: Rave<B>,
    shared: Arc<Shared<B>>,
}

impl<B: Backend> Pair<B> {
    async fn counted<T>(&self, result: Result<T>) -> Result<T> {
        self.shared.tick().await;
        result
    }
}

#[async_trait]
impl<B: Backend> KvStore for Pair<B> {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.counted(self.follower.get(key).await).await
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.counted(self.follower.get_many(keys).await).await
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.counted(self.follower.put(key, value).await).await
    }

    async fn del(&self, key: &[u8]) -> Result<()> {
        self.counted(self.follower.del(key).await).await
    }

    async fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
        self.counted(self.follower.batch(ops).await).await
    }

    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
        let inner = self.counted(self.follower.iterator(range).await).await?;
        Ok(Box::new(CountingIter {
            inner,
            shared: self.shared.clone(),
        }))
    }

    async fn clear(&self, range: Range) -> Result<()> {
        self.counted(self.follower.clear(range).await).await
    }

    /// Closes both handles, the follower first (so it does not take over on the way out).
    async fn close(&self) -> Result<()> {
        let follower = self.follower.close().await;
        let leader = self.shared.leader.close().await;
        follower.and(leader)
    }
}

/// A follower's iterator whose chunks count as operations, so the failover can happen
/// mid-iteration.
struct CountingIter<B: Backend> {
    inner: Box<dyn KvIterator>,
    shared: Arc<Shared<B>>,
}

#[async_trait]
impl<B: Backend> KvIterator for CountingIter<B> {
    async fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        let chunk = self.inner.next_chunk(max).await;
        self.shared.tick().await;
        chunk
    }
}

macro_rules! modes {
    ($backend:ty) => {
        rave_conformance::suite!(leader, RaveHarness::<$backend>::new(Mode::Leader));
        rave_conformance::suite!(follower, RaveHarness::<$backend>::new(Mode::Follower));
        rave_conformance::suite!(failover, RaveHarness::<$backend>::new(Mode::Failover));
    };
}

#[cfg(feature = "redb")]
mod redb {
    use super::*;
    modes!(rave::backends::RedbBackend);
}

#[cfg(feature = "leveldb")]
mod leveldb {
    use super::*;
    modes!(rave::backends::LevelDbBackend);
}

#[cfg(feature = "rocksdb")]
mod rocksdb {
    use super::*;
    modes!(rave::backends::RocksDbBackend);
}
