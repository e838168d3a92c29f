//! The store of the `follower`, `failover` and `crash` modes: a follower handle of this process
//! and its leader (another handle of this process, or a child process), and the failover a
//! test plans.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rave::{Backend, BatchOp, Entry, Error, KvIterator, KvStore, Range, Rave, Result, Role};
use rave_conformance::LeaderChanges;

use crate::common::Proc;

/// How long a follower may take to lead once its leader is gone (a bound against hangs only).
const TAKEOVER_LIMIT: Duration = Duration::from_secs(30);

/// The failover one test plans: the leader goes after operation `fail_at` (iterator chunks
/// count too), or, when the test closes a store before that, just before the close. One per
/// test; every store the test opens shares it.
pub struct Plan {
    /// After which operation the leader goes.
    pub fail_at: u64,
    /// Operations made so far.
    ops: AtomicU64,
    /// Failovers made (0 or 1).
    pub changes: LeaderChanges,
    /// Failovers after which the follower was seen leading with a newer epoch.
    pub took_over: AtomicU64,
}

impl Plan {
    /// A plan for the failover after operation `RAVE_FAILOVER_AT` (to replay a failing run: the
    /// operation is printed) or a random one of 1 to 12.
    pub fn new() -> Self {
        let fail_at = std::env::var("RAVE_FAILOVER_AT")
            .ok()
            .and_then(|k| k.parse().ok())
            .unwrap_or_else(|| rand::random_range(1..=12u64));
        Plan {
            fail_at,
            ops: AtomicU64::new(0),
            changes: LeaderChanges::default(),
            took_over: AtomicU64::new(0),
        }
    }

    /// Operations made so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }
}

/// The leader of a [`Pair`].
pub enum Leader<B: Backend> {
    /// Another handle of this process, closed gracefully at the failover.
    Handle(Rave<B>),
    /// A `rave hold` child process, killed with SIGKILL at the failover.
    Child(Proc),
}

/// A follower handle and its leader: the store the suite gets.
pub struct Pair<B: Backend>(Arc<Shared<B>>);

/// What a [`Pair`] and its iterators share.
struct Shared<B: Backend> {
    follower: Rave<B>,
    /// `None` once gone (failed over, or closed).
    leader: Mutex<Option<Leader<B>>>,
    /// The failover plan, `None` in `follower` mode.
    plan: Option<Arc<Plan>>,
    /// Whether the engine keeps its data when its process or handle goes.
    persistent: bool,
    /// The epoch the follower followed before this pair's failover, once it happened.
    failed_over_from: Mutex<Option<u64>>,
}

impl<B: Backend> Pair<B> {
    /// A pair whose follower follows `leader` already.
    pub fn new(
        follower: Rave<B>,
        leader: Leader<B>,
        plan: Option<Arc<Plan>>,
        persistent: bool,
    ) -> Self {
        Pair(Arc::new(Shared {
            follower,
            leader: Mutex::new(Some(leader)),
            plan,
            persistent,
            failed_over_from: Mutex::new(None),
        }))
    }

    /// Makes the planned failover now (see [`Shared::fail_over`]).
    pub async fn fail_over(&self, why: &str) -> Result<()> {
        self.0.fail_over(why).await
    }
}

impl<B: Backend> Shared<B> {
    /// Makes the planned failover now (`why` says when), unless the test already had its one.
    /// The follower takes over when it notices (at once, or at its next operation); closing the
    /// pair checks it did.
    pub async fn fail_over(&self, why: &str) -> Result<()> {
        let Some(plan) = &self.plan else {
            return Ok(());
        };
        if plan.changes.count() > 0 {
            return Ok(());
        }
        let Some(leader) = self.take_leader() else {
            return Ok(());
        };
        let epoch = self.follower.epoch().unwrap_or(0);
        plan.changes.record();
        *lock(&self.failed_over_from) = Some(epoch);
        match leader {
            Leader::Handle(leader) => {
                eprintln!("failover {why}: closing the leader handle (epoch {epoch})");
                leader.close().await.map_err(|e| {
                    Error::other(format!("closing the leader handle for the failover: {e}"))
                })?;
            }
            Leader::Child(mut child) => {
                eprintln!(
                    "failover {why}: SIGKILL of the leader process {} (epoch {epoch})",
                    child.pid()
                );
                child.kill();
            }
        }
        Ok(())
    }

    /// Fails unless the follower leads, with an epoch newer than its old leader's, within
    /// [`TAKEOVER_LIMIT`] of this call, when this pair made a failover not checked yet (a
    /// closed follower leads no more: only the first close checks).
    async fn check_takeover(&self) -> Result<()> {
        let Some(old) = lock(&self.failed_over_from).take() else {
            return Ok(());
        };
        let mut roles = self.follower.watch_role();
        let start = Instant::now();
        while *roles.borrow_and_update() != Role::Leader {
            let left = TAKEOVER_LIMIT.saturating_sub(start.elapsed());
            if !matches!(
                tokio::time::timeout(left, roles.changed()).await,
                Ok(Ok(()))
            ) {
                return Err(Error::other(format!(
                    "after the failover the follower did not lead within {TAKEOVER_LIMIT:?}: its role is {}",
                    self.follower.role()
                )));
            }
        }
        let epoch = self.follower.epoch();
        if epoch.is_none_or(|e| e <= old) {
            return Err(Error::other(format!(
                "after the failover the follower leads with epoch {epoch:?}, expected one newer than its old leader's {old}"
            )));
        }
        if let Some(plan) = &self.plan {
            plan.took_over.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn take_leader(&self) -> Option<Leader<B>> {
        lock(&self.leader).take()
    }

    /// Counts one operation; the planned one fails the leader over.
    async fn counted<T>(&self, result: Result<T>) -> Result<T> {
        if let Some(plan) = &self.plan {
            let n = plan.ops.fetch_add(1, Ordering::SeqCst) + 1;
            if n == plan.fail_at
                && let Err(e) = self.fail_over(&format!("after operation {n}")).await
            {
                return Err(e);
            }
        }
        result
    }

    /// Everything the store holds, read through the follower without counting.
    async fn everything(&self) -> Result<Vec<Entry>> {
        let mut iter = self.follower.iterator(Range::all()).await?;
        let mut all = Vec::new();
        loop {
            let chunk = iter.next_chunk(1000).await?;
            if chunk.is_empty() {
                return Ok(all);
            }
            all.extend(chunk);
        }
    }

    /// The failover of a test that closes its store before the planned operation: the store
    /// must hold the same after it (when the engine is persistent).
    async fn fail_over_at_close(&self) -> Result<()> {
        let Some(plan) = &self.plan else {
            return Ok(());
        };
        if plan.changes.count() > 0 || self.follower.role() != Role::Follower {
            return Ok(());
        }
        let before = if self.persistent {
            Some(self.everything().await?)
        } else {
            None
        };
        let why = format!(
            "at close, after {} operations (planned after operation {})",
            plan.ops(),
            plan.fail_at
        );
        self.fail_over(&why).await?;
        if let Some(before) = before {
            let after = self.everything().await?;
            if after != before {
                return Err(Error::other(format!(
                    "the store held {} entries before the failover at close and {} after (or other ones)",
                    before.len(),
                    after.len()
                )));
            }
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl<B: Backend> KvStore for Pair<B> {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.counted(self.0.follower.get(key).await).await
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.0.counted(self.0.follower.get_many(keys).await).await
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.0.counted(self.0.follower.put(key, value).await).await
    }

    async fn del(&self, key: &[u8]) -> Result<()> {
        self.0.counted(self.0.follower.del(key).await).await
    }

    async fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
        self.0.counted(self.0.follower.batch(ops).await).await
    }

    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
        let inner = self
            .0
            .counted(self.0.follower.iterator(range).await)
            .await?;
        Ok(Box::new(CountingIter {
            inner,
            shared: Arc::clone(&self.0),
        }))
    }

    async fn clear(&self, range: Range) -> Result<()> {
        self.0.counted(self.0.follower.clear(range).await).await
    }

    async fn write(&self, write: rave::Write) -> Result<()> {
        self.0.counted(self.0.follower.write(write).await).await
    }

    async fn write_stamped(&self, stamp: rave::WriteStamp, write: rave::Write) -> Result<()> {
        self.0
            .counted(self.0.follower.write_stamped(stamp, write).await)
            .await
    }

    async fn sequence(&self) -> Result<u64> {
        self.0.counted(self.0.follower.sequence().await).await
    }

    async fn watch(&self, range: Range, from: Option<u64>) -> Result<rave::WatchStream> {
        self.0.follower.watch(range, from).await
    }

    /// Makes the planned failover if it has not happened yet, checks the follower took over,
    /// then closes the follower and what is left of the leader.
    async fn close(&self) -> Result<()> {
        let pair = &self.0;
        let failover = pair.fail_over_at_close().await;
        let takeover = pair.check_takeover().await;
        let follower = pair.follower.close().await;
        let leader = match pair.take_leader() {
            Some(Leader::Handle(leader)) => leader.close().await,
            Some(Leader::Child(mut child)) => {
                child.kill();
                Ok(())
            }
            None => Ok(()),
        };
        failover.and(takeover).and(follower).and(leader)
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
    fn snapshot_sequence(&self) -> Option<u64> {
        self.inner.snapshot_sequence()
    }

    async fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        let chunk = self.inner.next_chunk(max).await;
        self.shared.counted(chunk).await
    }
}
