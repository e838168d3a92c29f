//! The tests. Each is `async fn(&dyn Harness) -> TestResult`, uses a fresh scratch directory,
//! and closes every store it opens.

mod basic;
mod batch;
mod clear;
mod conditional;
mod iterators;
mod lifecycle;
mod once;
mod random;
mod ranges;
mod sequence;
mod watch;

pub(crate) use basic::{
    binary_keys, empty_key_and_value, get_many, large_value, overwrite, put_get_del,
};
pub(crate) use batch::{batch_atomic_under_snapshots, batch_mixed, concurrent_writes};
pub(crate) use clear::clear_ranges;
pub(crate) use conditional::conditional_writes;
pub(crate) use iterators::{
    abandoned_iterators, concurrent_iterators, long_scans, next_vs_next_chunk, snapshot_isolation,
};
pub(crate) use lifecycle::{
    close_twice, close_with_open_iterators, closed_operations, reopen_persistence,
};
pub(crate) use once::exactly_once_writes;
pub(crate) use random::randomized_model;
pub(crate) use ranges::{
    binary_edge_bounds, keys_only_values_only, range_empty_and_inverted, range_limits,
    range_paired_bounds, range_prefixes, range_single_bounds, reverse_order,
};
pub(crate) use sequence::commit_sequence_grows;
pub(crate) use watch::{watch_follows_every_commit, watch_from_a_position, watch_progress_marks};
