//! The shared behaviour suite (rave-conformance) through the multi-process layer, for the
//! in-memory engine and every compiled-in engine, in these modes:
//!
//! - `leader`: the store is a `Rave` handle that leads;
//! - `follower`: the store is a follower handle whose leader is another handle of this process;
//! - `failover`: like `follower`, but the leader handle is closed after the k-th operation
//!   (k random in 1..=12, or `RAVE_FAILOVER_AT`; iterator chunks count too, so it may happen
//!   mid-iteration) and the follower takes over mid-test;
//! - `crash` (engines the `rave` binary knows): the leader is a `rave hold` child process,
//!   killed with SIGKILL after the k-th operation.
//!
//! In `failover` and `crash` a test that closes its store before the k-th operation fails over
//! just before the close, and the store must hold the same after it. Every test that passes
//! must have had its failover, and the follower must then lead with a newer epoch
//! ([`rave_conformance::Harness::verify`]). A resumed iterator reads the new leader's state, so
//! the snapshot tests hold an iterator whose life spans the failover to that promise only
//! (see [`rave_conformance::Harness::leader_changes`]); every other iterator keeps its
//! snapshot.
//!
//! The memory engine keeps nothing when its leader goes, so its `failover` mode fails over as
//! soon as the store opens, before the test's first operation: the test runs on the follower
//! that took over. It has no `crash` mode (the `rave` binary has no memory engine, and a
//! memory engine is not crash durable).
//!
//! The engines' cursors are observed through a [`Probed`] engine, so `abandoned_iterators`
//! checks that dropped iterators release them, on the follower's leader too.

// The multi-process tests share these helpers; this file uses the child-process ones only.
#[allow(unused_macros)]
mod common;
#[path = "conformance_rave/pair.rs"]
mod pair;
#[path = "conformance_rave/sublevels.rs"]
mod sublevels;

use std::any::Any;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use rave::{Backend, Capabilities, Error, KvStore, OpenOptions, Rave, RaveOptions, Result, Role};
use rave_conformance::{CursorGauges, Failure, Harness, LeaderChanges};

use crate::common::Proc;
use crate::pair::{Leader, Pair, Plan};
use crate::sublevels::{Sublevels, typed_case};

/// How the store under test relates to the leader.
#[derive(Clone, Copy)]
enum Mode {
    Leader,
    Follower,
    Failover,
    /// With the command that starts `rave hold` with this engine on a directory.
    Crash(fn(&Path) -> std::process::Command),
}

/// An engine `B` that registers the cursor gauge of every store it opens for `path`, so the
/// harness sees the cursors of whichever handle leads.
struct Probed<B> {
    inner: B,
    path: PathBuf,
    gauges: CursorGauges,
}

impl<B: Backend> Backend for Probed<B> {
    type Store = B::Store;

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn open(&self, path: &Path, options: &OpenOptions) -> Result<B::Store> {
        let store = self.inner.open(path, options)?;
        self.gauges.register(&self.path, &store as &dyn Any);
        Ok(store)
    }
}

/// Opens rave handles in one of the [`Mode`]s. One per test (the `suite!` macro makes one per
/// test), so its failover plan is the test's.
struct RaveHarness<B> {
    mode: Mode,
    gauges: CursorGauges,
    /// The failover plan of `failover` and `crash` modes.
    plan: Option<Arc<Plan>>,
    _backend: PhantomData<fn() -> B>,
}

impl<B: Backend + Default> RaveHarness<B> {
    fn new(mode: Mode) -> Self {
        let plan = matches!(mode, Mode::Failover | Mode::Crash(_)).then(|| Arc::new(Plan::new()));
        RaveHarness {
            mode,
            gauges: CursorGauges::default(),
            plan,
            _backend: PhantomData,
        }
    }

    /// A handle on `path` whose engine reports its cursors to this harness.
    fn handle(&self, path: &Path) -> Result<Rave<Probed<B>>> {
        let backend = Probed {
            inner: B::default(),
            path: path.to_path_buf(),
            gauges: self.gauges.clone(),
        };
        Rave::open_with(backend, path, RaveOptions::default())
    }

    fn persistent(&self) -> bool {
        B::default().capabilities().persistent
    }
}

/// Waits for `handle`'s first role and fails unless it is `want`.
async fn expect_role<B: Backend>(which: &str, handle: &Rave<B>, want: Role) -> Result<()> {
    let role = handle.ready().await?;
    if role != want {
        return Err(Error::other(format!(
            "the {which} handle became {role}, expected {want}"
        )));
    }
    Ok(())
}

#[async_trait]
impl<B: Backend + Default> Harness for RaveHarness<B> {
    fn name(&self) -> String {
        let mode = match self.mode {
            Mode::Leader => "leader handle",
            Mode::Follower => "follower handle",
            Mode::Failover if !self.persistent() => {
                "follower handle that took over at open (the engine is not persistent)"
            }
            Mode::Failover => "follower handle across a failover",
            Mode::Crash(_) => "follower handle across the SIGKILL of its leader process",
        };
        format!("{} via a {mode}", B::default().name())
    }

    fn capabilities(&self) -> Capabilities {
        // A rave handle's reads go through the facade (and, on a follower, the socket): they
        // never complete on the caller's thread the way the engine's shared reader does.
        B::default().capabilities().with_concurrent_reads(false)
    }

    async fn open(&self, path: &Path) -> Result<Box<dyn KvStore>> {
        let leader = match self.mode {
            Mode::Crash(hold) => {
                let mut child = Proc::spawn("rave hold", hold(path), None);
                child.expect_line("leader", Duration::from_secs(20)).await;
                Leader::Child(child)
            }
            _ => {
                let leader = self.handle(path)?;
                expect_role("first", &leader, Role::Leader).await?;
                if matches!(self.mode, Mode::Leader) {
                    return Ok(Box::new(leader));
                }
                Leader::Handle(leader)
            }
        };
        let follower = self.handle(path)?;
        expect_role("second", &follower, Role::Follower).await?;
        let pair = Pair::new(follower, leader, self.plan.clone(), self.persistent());
        if matches!(self.mode, Mode::Failover) && !self.persistent() {
            pair.fail_over("at open (the engine is not persistent)")
                .await?;
        }
        Ok(Box::new(pair))
    }

    fn open_cursors(&self, path: &Path) -> Option<usize> {
        self.gauges.get(path)
    }

    fn leader_changes(&self) -> LeaderChanges {
        self.plan
            .as_ref()
            .map(|plan| plan.changes.clone())
            .unwrap_or_default()
    }

    fn verify(&self) -> std::result::Result<(), Failure> {
        let Some(plan) = &self.plan else {
            return Ok(());
        };
        let (changes, took_over) = (plan.changes.count(), plan.took_over.load(Ordering::SeqCst));
        if changes == 0 {
            return Err(Failure::new(format!(
                "no failover happened (planned after operation {}; the test made {} operations)",
                plan.fail_at,
                plan.ops()
            )));
        }
        if took_over < changes {
            return Err(Failure::new(format!(
                "{changes} failover(s), but the follower was seen taking over after {took_over}"
            )));
        }
        Ok(())
    }
}

macro_rules! modes {
    ($backend:ty) => {
        rave_conformance::suite!(leader, RaveHarness::<$backend>::new(Mode::Leader));
        rave_conformance::suite!(follower, RaveHarness::<$backend>::new(Mode::Follower));
        rave_conformance::suite!(failover, RaveHarness::<$backend>::new(Mode::Failover));
        // The same suite through a nested sublevel (`!x!!y!`), and typed values, directly on
        // the engine and in every mode (filter with `sublevel_` or `typed_`).
        rave_conformance::suite!(
            sublevel_direct,
            Sublevels(rave_conformance::BackendHarness::new(<$backend>::default()))
        );
        rave_conformance::suite!(
            sublevel_leader,
            Sublevels(RaveHarness::<$backend>::new(Mode::Leader))
        );
        rave_conformance::suite!(
            sublevel_follower,
            Sublevels(RaveHarness::<$backend>::new(Mode::Follower))
        );
        rave_conformance::suite!(
            sublevel_failover,
            Sublevels(RaveHarness::<$backend>::new(Mode::Failover))
        );
        typed_case!(
            typed_direct,
            rave_conformance::BackendHarness::new(<$backend>::default())
        );
        typed_case!(typed_leader, RaveHarness::<$backend>::new(Mode::Leader));
        typed_case!(typed_follower, RaveHarness::<$backend>::new(Mode::Follower));
        typed_case!(typed_failover, RaveHarness::<$backend>::new(Mode::Failover));
    };
    ($backend:ty, crash) => {
        modes!($backend);
        rave_conformance::suite!(
            crash,
            RaveHarness::<$backend>::new(Mode::Crash(|dir| {
                crate::common::rave_cmd::<$backend>(&[], dir, &["hold"])
            }))
        );
        rave_conformance::suite!(
            sublevel_crash,
            Sublevels(RaveHarness::<$backend>::new(Mode::Crash(|dir| {
                crate::common::rave_cmd::<$backend>(&[], dir, &["hold"])
            })))
        );
        typed_case!(
            typed_crash,
            RaveHarness::<$backend>::new(Mode::Crash(|dir| {
                crate::common::rave_cmd::<$backend>(&[], dir, &["hold"])
            }))
        );
    };
}

mod memory {
    use super::*;
    modes!(rave::backends::MemoryBackend);
}

#[cfg(feature = "redb")]
mod redb {
    use super::*;
    modes!(rave::backends::RedbBackend, crash);
}

#[cfg(feature = "leveldb")]
mod leveldb {
    use super::*;
    modes!(rave::backends::LevelDbBackend, crash);
}

#[cfg(feature = "rocksdb")]
mod rocksdb {
    use super::*;
    modes!(rave::backends::RocksDbBackend, crash);
}
