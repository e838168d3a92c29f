//! The shared behaviour suite of rave.
//!
//! Every engine behind [`rave_api::Backend`] (redb, LevelDB, RocksDB, or your own) and every
//! rave handle (leader, follower, follower across a failover) must behave the same. This crate
//! holds the tests that say how, the way `object_store` exposes its integration tests and
//! `abstract-level` its suite:
//!
//! - a [`Harness`] opens (and reopens) a store in a directory the suite owns;
//!   [`BackendHarness`] is the harness of any [`rave_api::Backend`];
//! - [`suite!`] expands to one `#[tokio::test]` per named test, so every engine shows the same
//!   list of tests in `cargo test` output;
//! - [`run_all`] runs the same tests programmatically and returns a [`Report`];
//! - [`crash`] proves that acknowledged writes survive `kill -9`.
//!
//! Tests that do not apply to an engine (see [`rave_api::Capabilities`]) return early, say so
//! on stderr and count as passing.
//!
//! ```
//! // tests/conformance.rs of an engine crate, with rave-conformance as a dev-dependency
//! // (here for the in-memory reference engine):
//! use rave_conformance::BackendHarness;
//! rave_conformance::suite!(memory, BackendHarness::new(rave_api::MemoryBackend));
//! ```
//!
//! Expected results are always computed from a `BTreeMap` model ([`Model`]) with
//! [`rave_api::Range::contains`], never from the engine under test.
//!
//! # The tests
//!
//! | test | checks |
//! | --- | --- |
//! | `put_get_del`, `overwrite`, `get_many` | point operations; missing keys are `None`, in place |
//! | `binary_keys`, `empty_key_and_value`, `large_value` | 0x00/0xff bytes in unsigned order, the empty key and value, a 10 MiB value |
//! | `batch_mixed` | puts and dels in one batch, the later op on a key winning |
//! | `batch_atomic_under_snapshots` | iterators opened from other tasks while batches run see all of a batch or none (`snapshots`) |
//! | `concurrent_writes` | many writers at once; each reads its own write back |
//! | `range_single_bounds`, `range_paired_bounds`, `range_empty_and_inverted`, `range_prefixes`, `reverse_order`, `range_limits`, `keys_only_values_only` | every bound alone and in pairs on present and absent keys, both directions, limits, projections |
//! | `snapshot_isolation` | an iterator sees the store as it was at its creation (`snapshots`) |
//! | `concurrent_iterators`, `next_vs_next_chunk`, `abandoned_iterators` | 32 iterators at once; chunking does not change the sequence; dropped iterators release their snapshot |
//! | `clear_ranges` | clear with bounds, limits and direction (limit 2 reverse removes the 2 highest) |
//! | `closed_operations`, `close_twice`, `close_with_open_iterators` | everything fails with `Closed` after close; closing is idempotent and does not wait for iterators |
//! | `reopen_persistence` | data survives close and reopen (`persistent`) |
//! | `randomized_model` | a few hundred random operations against the model; seed from `RAVE_SEED`, printed on failure |

#![warn(missing_docs)]

mod cases;
pub mod crash;
mod harness;
mod model;
mod report;
mod support;

pub use harness::{BackendHarness, Harness};
pub use model::Model;
pub use report::{Report, TestReport, run_all, run_test};
pub use support::{Failure, Outcome, TestResult};

use futures::future::BoxFuture;

/// One named test of the suite.
#[derive(Clone, Copy)]
pub struct Test {
    /// The test's name, as it appears in `cargo test` output.
    pub name: &'static str,
    run: for<'a> fn(&'a dyn Harness) -> BoxFuture<'a, TestResult>,
}

impl Test {
    /// Runs the test against `harness`, without a time limit or panic catching (see
    /// [`run_test`] for both).
    pub fn run<'a>(&self, harness: &'a dyn Harness) -> BoxFuture<'a, TestResult> {
        (self.run)(harness)
    }
}

impl std::fmt::Debug for Test {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Test").field("name", &self.name).finish()
    }
}

/// Every test of the suite, in the order [`run_all`] runs them.
pub fn tests() -> &'static [Test] {
    TESTS
}

/// The test named `name`, if the suite has one.
pub fn test(name: &str) -> Option<Test> {
    TESTS.iter().find(|t| t.name == name).copied()
}

/// The one list of test names. Every consumer (the [`suite!`] macro, [`TESTS`]) expands from it,
/// so every engine runs the same tests under the same names. Each name is an `async fn` in
/// `cases`.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_test_names {
    ($($mode:tt)*) => {
        $crate::__expand_tests! { [$($mode)*]
            put_get_del
            binary_keys
            empty_key_and_value
            large_value
            overwrite
            get_many
            batch_mixed
            batch_atomic_under_snapshots
            concurrent_writes
            range_single_bounds
            range_paired_bounds
            range_empty_and_inverted
            range_prefixes
            reverse_order
            range_limits
            keys_only_values_only
            snapshot_isolation
            concurrent_iterators
            next_vs_next_chunk
            abandoned_iterators
            clear_ranges
            closed_operations
            close_twice
            close_with_open_iterators
            reopen_persistence
            randomized_model
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __expand_tests {
    ([suite $module:ident, $harness:expr] $($name:ident)*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[$crate::__private::tokio::test(
                    flavor = "multi_thread",
                    worker_threads = 2,
                    crate = "rave_conformance::__private::tokio"
                )]
                async fn $name() {
                    let harness = $harness;
                    $crate::__private::run_named(&harness, ::core::stringify!($name)).await;
                }
            )*
        }
    };
    ([list] $($name:ident)*) => {
        mod boxed {
            $(
                pub(crate) fn $name<'a>(
                    harness: &'a dyn $crate::Harness,
                ) -> ::futures::future::BoxFuture<'a, $crate::TestResult> {
                    ::std::boxed::Box::pin($crate::cases::$name(harness))
                }
            )*
        }

        static TESTS: &[$crate::Test] = &[
            $( $crate::Test { name: ::core::stringify!($name), run: boxed::$name }, )*
        ];
    };
}

__with_test_names!(list);

/// Expands to `mod $module { ... }` holding one
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` per test of the suite, each
/// running against the harness that `$harness` evaluates to (evaluated once per test, inside
/// the module, which imports `super::*`).
///
/// A failing test panics with what was expected and what came. The crate must be a dependency
/// under its own name, `rave_conformance` (the tests use its re-export of tokio).
///
/// ```
/// rave_conformance::suite!(memory, rave_conformance::BackendHarness::new(rave_api::MemoryBackend));
/// ```
#[macro_export]
macro_rules! suite {
    ($module:ident, $harness:expr $(,)?) => {
        $crate::__with_test_names!(suite $module, $harness);
    };
}

/// What the [`suite!`] macro needs at its expansion site. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use tokio;

    use crate::Harness;

    /// Runs the test named `name` and panics with its failure message.
    pub async fn run_named(harness: &dyn Harness, name: &str) {
        let Some(test) = crate::test(name) else {
            panic!("rave-conformance has no test named {name}");
        };
        let report = crate::run_test(harness, test).await;
        if let Some(message) = report.failure() {
            panic!("{} [{}] failed: {message}", report.name, harness.name());
        }
    }
}
