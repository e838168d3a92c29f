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
//! - [`backend_suite!`] (and [`run_backend_suite`]) is the engine contract: what an engine,
//!   opened directly through a [`DirectHarness`], does with the directory it owns (open
//!   options, a file or another engine's directory in its place, a second open while the first
//!   is open). It does not apply to rave handles, where a second open becomes a follower;
//! - [`shared_reads`] checks point reads that bypass the engine thread (in the engine contract,
//!   and on an engine's shared reader itself);
//! - [`crash`] proves that acknowledged writes survive `kill -9`;
//! - [`damage`] says what must follow when an engine's own tests damage its files.
//!
//! Tests that do not apply to an engine (see [`rave_api::Capabilities`]) return early, say so
//! on stderr and count as passing.
//!
//! A harness may change the leader during a test (a rave follower whose leader goes): it then
//! counts the changes ([`Harness::leader_changes`]) so that snapshot checks hold an iterator
//! spanning one to what a resumed iterator promises, and checks after each passed test that
//! the change it planned happened ([`Harness::verify`]).
//!
//! ```
//! // tests/conformance.rs of an engine crate, with rave-conformance as a dev-dependency
//! // (here for the in-memory reference engine, which skips the engine contract: it ignores
//! // its directory):
//! use rave_conformance::BackendHarness;
//! rave_conformance::suite!(memory, BackendHarness::new(rave_api::MemoryBackend));
//! rave_conformance::backend_suite!(memory_contract, rave_api::MemoryBackend);
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
//! | `batch_atomic_under_snapshots` | iterators opened from other tasks while batches run see all of a batch or none, and at least the batches acknowledged before they opened; at least one must see a state between the first and the last batch (`snapshots`) |
//! | `concurrent_writes` | many writers at once; each reads its own write back |
//! | `range_single_bounds`, `range_paired_bounds`, `range_empty_and_inverted`, `range_prefixes`, `reverse_order`, `range_limits`, `keys_only_values_only` | every bound alone and in pairs on present and absent keys, both directions, limits, projections |
//! | `snapshot_isolation` | an iterator sees the store as it was at its creation (`snapshots`); one whose life spans a change of leader, its snapshot up to where it resumed and then the new leader's state |
//! | `binary_edge_bounds` | every bound kind alone and in pairs, both directions, limits, projections and clear, over the empty key, 0x00/0xff bytes and keys next to their immediate successors |
//! | `concurrent_iterators`, `next_vs_next_chunk`, `abandoned_iterators` | 32 iterators at once; chunking does not change the sequence; dropped iterators release their engine cursor and snapshot (when the harness sees the engine's cursors, [`Harness::open_cursors`]) |
//! | `long_scans` | 5000 entries (about 4 MiB) scanned in both directions with bounds and limits: chunks never larger than asked, the model's sequence |
//! | `clear_ranges` | clear with bounds, limits and direction (limit 2 reverse removes the 2 highest) |
//! | `closed_operations`, `close_twice`, `close_with_open_iterators` | everything fails with `Closed` after close; closing is idempotent and does not wait for iterators |
//! | `reopen_persistence` | data survives close and reopen (`persistent`) |
//! | `conditional_writes` | compare-and-swap with absent and present values on either side; a conditional batch applies all or nothing and names the check that failed; 8 concurrent compare-and-swap loops increment a counter exactly 200 times (`conditional_writes`) |
//! | `commit_sequence_grows` | the commit sequence grows strictly after each acknowledged `put`, `del`, `batch` and `clear` (even one that changes nothing), reads leave it unchanged, and it never goes back across close and reopen (`persistent`) or a change of leader |
//! | `watch_follows_every_commit` | a watcher of a prefix receives one commit per write inside it (put, del, a batch whole, clears with limits, in reverse, across its edge), numbered as the store numbered it, in order; applying them to a replica keeps it equal to the model; writes outside send nothing; a watched range with a direction or limit is `InvalidArgument` (`watch`) |
//! | `watch_from_a_position` | a watch from a past position delivers exactly the commits after it from the history, then live ones; a listing's `snapshot_sequence` plus the commits after it is the data; the history survives close and reopen (`persistent`) (`watch`) |
//! | `watch_progress_marks` | an idle watcher receives progress marks reaching the store's sequence, also when commits are outside its range (`watch`) |
//! | `randomized_model` | a few hundred random operations against the model; seed from `RAVE_SEED`, printed on failure |
//!
//! # The engine contract
//!
//! Run by [`backend_suite!`] on an engine opened directly. The directory tests need
//! `persistent`, the shared-read tests `concurrent_reads` (point reads answered on the caller's
//! thread, see [`shared_reads`]). Expected error kinds come from [`rave_api::OpenOptions`] and
//! [`rave_api::dir`].
//!
//! | test | checks |
//! | --- | --- |
//! | `missing_database_without_create_if_missing` | a missing directory, an empty one and one recorded as this engine's without its files are `DoesNotExist`, every time (the missing one is not created, the empty one stays empty); with `create_if_missing` each opens empty and gets recorded |
//! | `open_options_on_an_existing_database` | `error_if_exists` opens a new directory and refuses an existing database with `AlreadyExists`, untouched; without `create_if_missing` it opens with its data |
//! | `regular_file_is_not_a_database` | a regular file in place of the directory is `InvalidArgument` under any options, and left untouched |
//! | `other_engines_directories_are_refused` | another engine's directory (its record, or a plain redb/LevelDB/RocksDB layout) is `WrongEngine` naming both engines, untouched; this engine's directory records its name, so the others refuse it |
//! | `busy_directory_is_refused_until_released` | a second open while the first store is open is an I/O error of kind `ResourceBusy` and does not disturb the first; the directory opens at once after close, and soon after a drop |
//! | `sync_option_round_trip` | writes of every kind made with `sync` read back after reopening without it, and the other way round |
//! | `shared_point_reads_complete_on_their_first_poll` | `get` and `get_many` complete on their first poll (no wait for the engine thread) in an empty store, after every kind of write and during a 4 MiB batch's commit, seeing every acknowledged write; after close they fail with `Closed` (`concurrent_reads`) |
//! | `shared_reads_see_acknowledged_writes_from_every_task` | tasks reading a counter while it is written never see a value older than the last acknowledged one; concurrent writers read their own writes back (`concurrent_reads`) |
//! | `closing_during_shared_reads_releases_the_directory` | closing while threads and tasks read ends every reader with `Closed`, and the directory reopens at once with its data, five rounds (`concurrent_reads`, `persistent`) |

#![warn(missing_docs)]

mod cases;
mod contract;
pub mod crash;
pub mod damage;
mod harness;
mod model;
mod report;
pub mod shared_reads;
mod support;

pub use harness::{BackendHarness, CursorGauges, DirectHarness, Harness, LeaderChanges};
pub use model::Model;
pub use report::{Report, TestReport, run_all, run_backend_suite, run_backend_test, run_test};
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

/// One named test of the engine contract (see [`backend_suite!`]).
#[derive(Clone, Copy)]
pub struct BackendTest {
    /// The test's name, as it appears in `cargo test` output.
    pub name: &'static str,
    run: for<'a> fn(&'a dyn DirectHarness) -> BoxFuture<'a, TestResult>,
}

impl BackendTest {
    /// Runs the test against `harness`, without a time limit or panic catching (see
    /// [`run_backend_test`] for both).
    pub fn run<'a>(&self, harness: &'a dyn DirectHarness) -> BoxFuture<'a, TestResult> {
        (self.run)(harness)
    }
}

impl std::fmt::Debug for BackendTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTest")
            .field("name", &self.name)
            .finish()
    }
}

/// Every test of the engine contract, in the order [`run_backend_suite`] runs them.
pub fn backend_tests() -> &'static [BackendTest] {
    BACKEND_TESTS
}

/// The test of the engine contract named `name`, if there is one.
pub fn backend_test(name: &str) -> Option<BackendTest> {
    BACKEND_TESTS.iter().find(|t| t.name == name).copied()
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
            binary_edge_bounds
            snapshot_isolation
            concurrent_iterators
            next_vs_next_chunk
            abandoned_iterators
            long_scans
            clear_ranges
            closed_operations
            close_twice
            close_with_open_iterators
            reopen_persistence
            exactly_once_writes
            conditional_writes
            commit_sequence_grows
            watch_follows_every_commit
            watch_from_a_position
            watch_progress_marks
            randomized_model
        }
    };
}

/// Expands a list of test names: `suite` into one `#[tokio::test]` each, calling `$runner` of
/// `__private` with the harness; `list` into the static table `$tests` of `$test`s, whose
/// functions run the `async fn`s of module `$cases` on a `&dyn $harness`.
#[doc(hidden)]
#[macro_export]
macro_rules! __expand_tests {
    ([suite $module:ident, $harness:expr, $runner:ident] $($name:ident)*) => {
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
                    $crate::__private::$runner(&harness, ::core::stringify!($name)).await;
                }
            )*
        }
    };
    ([list $boxed:ident, $tests:ident, $test:ident, $harness:ident, $cases:ident] $($name:ident)*) => {
        mod $boxed {
            $(
                pub(crate) fn $name<'a>(
                    harness: &'a dyn $crate::$harness,
                ) -> ::futures::future::BoxFuture<'a, $crate::TestResult> {
                    ::std::boxed::Box::pin($crate::$cases::$name(harness))
                }
            )*
        }

        static $tests: &[$crate::$test] = &[
            $( $crate::$test { name: ::core::stringify!($name), run: $boxed::$name }, )*
        ];
    };
}

__with_test_names!(list boxed, TESTS, Test, Harness, cases);

/// The one list of the engine contract's test names, like [`__with_test_names`]. Each name is
/// an `async fn` in `contract`.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_backend_test_names {
    ($($mode:tt)*) => {
        $crate::__expand_tests! { [$($mode)*]
            missing_database_without_create_if_missing
            open_options_on_an_existing_database
            regular_file_is_not_a_database
            other_engines_directories_are_refused
            busy_directory_is_refused_until_released
            sync_option_round_trip
            shared_point_reads_complete_on_their_first_poll
            shared_reads_see_acknowledged_writes_from_every_task
            closing_during_shared_reads_releases_the_directory
        }
    };
}

__with_backend_test_names!(list backend_boxed, BACKEND_TESTS, BackendTest, DirectHarness, contract);

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
        $crate::__with_test_names!(suite $module, $harness, run_named);
    };
}

/// Expands to `mod $module { ... }` holding one
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` per test of the engine
/// contract, each running against `BackendHarness::new($backend)` (`$backend` is evaluated once
/// per test, inside the module, which imports `super::*`).
///
/// The engine contract is about the directory a [`rave_api::Backend`] owns; see the table in
/// the crate docs. Invoke it next to [`suite!`] in an engine crate's tests. A failing test
/// panics with what was expected and what came.
///
/// ```
/// rave_conformance::backend_suite!(memory_contract, rave_api::MemoryBackend);
/// ```
#[macro_export]
macro_rules! backend_suite {
    ($module:ident, $backend:expr $(,)?) => {
        $crate::__with_backend_test_names!(
            suite $module, $crate::BackendHarness::new($backend), run_backend_named
        );
    };
}

/// What the [`suite!`] and [`backend_suite!`] macros need at their expansion site. Not a public
/// API.
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

    /// Runs the engine contract's test named `name` and panics with its failure message.
    pub async fn run_backend_named(harness: &dyn crate::DirectHarness, name: &str) {
        let Some(test) = crate::backend_test(name) else {
            panic!("rave-conformance has no engine contract test named {name}");
        };
        let report = crate::run_backend_test(harness, test).await;
        if let Some(message) = report.failure() {
            panic!("{} [{}] failed: {message}", report.name, harness.name());
        }
    }
}
