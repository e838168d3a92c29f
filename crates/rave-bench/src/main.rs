//! `rave-bench`: measures rave's figures beside their baselines, in one run on one machine.
//!
//! ```text
//! rave-bench [--quick] [--backend redb,leveldb] [--runs 5] [--out BENCHMARKS.md]
//! ```
//!
//! Every figure (P1 to P8, W1, W2 for change subscriptions, R1 to R3 against redb's
//! own multi-process mode; see `BENCHMARKS.md`) is measured together with its baseline in each
//! run, back to back, and reported as the median of the runs with their minimum and maximum,
//! as a ratio against the baseline beside both absolute numbers. The harness spawns itself in
//! hidden helper modes (`rave-bench helper ...`) for the other processes a figure needs: a
//! leader, a raw ping-pong server, idle followers, the writers of the durable-put comparison.
//!
//! Quick mode (`--quick`) uses tiny sizes and one run: it keeps the harness working in CI and
//! says nothing about speed.

#![warn(missing_docs)]

#[cfg(target_os = "linux")]
mod child;
#[cfg(target_os = "linux")]
mod cli;
#[cfg(target_os = "linux")]
mod curve_chart;
#[cfg(target_os = "linux")]
mod curves;
#[cfg(target_os = "linux")]
mod durable;
#[cfg(target_os = "linux")]
mod engines;
#[cfg(all(target_os = "linux", feature = "etcd", feature = "redb"))]
mod etcd;
#[cfg(target_os = "linux")]
mod failover;
#[cfg(target_os = "linux")]
mod follower;
#[cfg(target_os = "linux")]
mod fsync;
#[cfg(target_os = "linux")]
mod helper;
#[cfg(target_os = "linux")]
mod leader;
#[cfg(target_os = "linux")]
mod machine;
#[cfg(target_os = "linux")]
mod memory;
#[cfg(target_os = "linux")]
mod pubsub;
#[cfg(target_os = "linux")]
mod redb_readers;
#[cfg(target_os = "linux")]
mod redis;
#[cfg(target_os = "linux")]
mod report;
#[cfg(target_os = "linux")]
mod scan;
#[cfg(target_os = "linux")]
mod stats;
#[cfg(target_os = "linux")]
mod tally;
#[cfg(target_os = "linux")]
mod watch_helper;
#[cfg(target_os = "linux")]
mod watch_latency;
#[cfg(target_os = "linux")]
mod watch_throughput;

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    cli::main()
}

/// The harness reads `/proc` and speaks unix sockets: Linux only.
#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("rave-bench runs on Linux only");
    std::process::ExitCode::from(2)
}
