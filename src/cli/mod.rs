//! Command-line interface: parsing, engine dispatch, exit codes.
//!
//! Exit codes:
//!
//! | code | meaning |
//! | ---- | ------- |
//! | 0 | success |
//! | 1 | `get` of a missing key |
//! | 2 | usage error (bad flags, arguments or input lines) |
//! | 3 | any other error |
//! | 4 | `cas`: the key did not hold the expected value (nothing written) |

mod codec;
mod commands;
mod demo;
mod format;
#[cfg(unix)]
mod level_serve;
mod level_worker;
mod status;
mod transfer;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Open one key-value database directory from many processes at once.
#[derive(Parser, Debug)]
#[command(name = "rave", version, about)]
pub struct Cli {
    /// The engine that holds the data.
    #[arg(long, value_enum, default_value_t = BackendName::Redb, global = true)]
    pub backend: BackendName,
    /// Fail operations in flight when the leader is lost instead of retrying them.
    #[arg(long, global = true)]
    pub no_retry: bool,
    /// Read and print keys and values as hex, so binary data round trips.
    #[arg(long, global = true)]
    pub hex: bool,
    /// Seconds an operation waits for a leader (election timeout).
    #[arg(long, value_name = "SECS", global = true)]
    pub timeout: Option<f64>,
    /// Share a LevelDB directory with Node's rave-level (needs `--backend leveldb`): lead with
    /// LevelDB's own lock and serve Node on `<DIR>/rave-level.sock` too, or follow a Node
    /// leader.
    #[arg(long, global = true)]
    pub level_compat: bool,
    /// Act inside the sublevel NAME (keys under `!NAME!`, as abstract-level's
    /// `db.sublevel(NAME)`); repeat to nest: `--sublevel a --sublevel b` is `!a!!b!`. Applies
    /// to every data command (get, put, del, scan, clear, watch, batch, export, import, cas,
    /// stats' counts); keys are printed and read without the prefix.
    #[arg(long, value_name = "NAME", global = true)]
    pub sublevel: Vec<String>,
    /// The database directory (optional for `demo`, which then uses a fresh temporary one);
    /// with `--backend etcd`, `etcd://HOST:PORT[,HOST:PORT...]/NAMESPACE`.
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The engines the CLI can name (each must be compiled in through its Cargo feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendName {
    /// redb (feature `redb`, the default).
    Redb,
    /// LevelDB through rusty-leveldb (feature `leveldb`).
    Leveldb,
    /// RocksDB (feature `rocksdb`).
    Rocksdb,
    /// A namespace of an etcd cluster (feature `etcd`), named by an `etcd://` URL in place of
    /// the directory; every process is `direct` (no election).
    Etcd,
}

impl BackendName {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendName::Redb => "redb",
            BackendName::Leveldb => "leveldb",
            BackendName::Rocksdb => "rocksdb",
            BackendName::Etcd => "etcd",
        }
    }
}

/// A key range, as flags.
#[derive(Args, Debug, Clone, Default)]
pub struct RangeArgs {
    /// Keys greater than K.
    #[arg(long, value_name = "K")]
    pub gt: Option<String>,
    /// Keys greater than or equal to K.
    #[arg(long, value_name = "K")]
    pub gte: Option<String>,
    /// Keys less than K.
    #[arg(long, value_name = "K")]
    pub lt: Option<String>,
    /// Keys less than or equal to K.
    #[arg(long, value_name = "K")]
    pub lte: Option<String>,
    /// From the highest key down.
    #[arg(long)]
    pub reverse: bool,
    /// At most N entries.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

/// What `scan` prints of each entry.
#[derive(Args, Debug, Clone, Default)]
pub struct ProjectionArgs {
    /// Print keys only.
    #[arg(long, conflicts_with = "values_only")]
    pub keys_only: bool,
    /// Print values only.
    #[arg(long)]
    pub values_only: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Set KEY to VALUE.
    Put { key: String, value: String },
    /// Print the value of KEY (exit 1 when it is absent).
    Get { key: String },
    /// Remove KEY.
    Del { key: String },
    /// Print the entries of a range, one `KEY<TAB>VALUE` line each.
    Scan {
        #[command(flatten)]
        range: RangeArgs,
        #[command(flatten)]
        projection: ProjectionArgs,
    },
    /// Remove the entries of a range.
    Clear {
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Print every change to a range, in commit order, until interrupted: one line per change,
    /// `SEQ<TAB>put<TAB>KEY<TAB>VALUE`, `SEQ<TAB>del<TAB>KEY`, or
    /// `SEQ<TAB>clear<TAB>LOWER<TAB>UPPER` (bounds as `gt=K`, `gte=K`, `lt=K`, `lte=K`, or `-`).
    /// Follows the directory through every change of leader.
    Watch {
        #[command(flatten)]
        range: RangeArgs,
        #[command(flatten)]
        projection: ProjectionArgs,
        /// Start after this sequence (as printed by an earlier `watch` or `status`) instead of
        /// now; older than the retained history fails with `Compacted`.
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Also print `SEQ<TAB>progress` marks (the start, and every second without changes).
        #[arg(long)]
        progress: bool,
    },
    /// Apply stdin lines `put<TAB>KEY<TAB>VALUE` / `del<TAB>KEY` as one atomic batch.
    Batch,
    /// Write the entries of a range to stdout, from one snapshot, in a format `import` reads
    /// back byte for byte.
    #[command(after_long_help = format::FORMATS_HELP)]
    Export(transfer::ExportArgs),
    /// Put the entries of stdin (as `export` writes them) in atomic batches of at most 1000
    /// entries or 1 MiB; prints how many lines are committed, so an interrupted import resumes
    /// with `--skip`.
    #[command(after_long_help = transfer::IMPORT_HELP)]
    Import(transfer::ImportArgs),
    /// Compare and swap: set KEY to NEW only if it holds EXPECTED, atomically. `--expect-absent`
    /// (no EXPECTED) asks for KEY to be absent, `--delete` (no NEW) removes it. On a failed
    /// condition nothing is written, KEY's current value (as `get` prints it) or `<absent>` is
    /// printed on stderr, and the exit code is 4.
    Cas(commands::CasArgs),
    /// Keep a handle open; print `leader`, `follower` or `direct` at start and at every role
    /// change.
    Hold,
    /// Print this process's role, the leader's pid and epoch, the socket address and the
    /// commit sequence (the number of the last commit that applied writes).
    Status,
    /// Print `FIELD<TAB>VALUE` lines: engine, role, leader_pid, epoch, followers, sequence, keys,
    /// bytes. `followers` counts the leader's follower connections (this process's own included
    /// when it follows; `none` on etcd), `keys` and
    /// `bytes` (of keys plus values) are `unknown` unless `--count` counts them with a scan.
    Stats(status::StatsArgs),
    /// The main job: writer and reader processes on one directory, the leader killed with
    /// SIGKILL, failover, and a summary.
    Demo(demo::DemoArgs),
    /// (test) Serve abstract-level's suite: for each directory read on stdin, open a fresh
    /// store there as leader, serve it to Node (many-level) on `<DIR>/rave-level.sock` and
    /// print `ready <DIR>` (run-suite.js's `LEADER=daemon`). Ends at the end of stdin.
    #[cfg(unix)]
    LevelServe,
    /// (internal) A worker of the mixed Node/Rust torture (tests/level_torture.rs).
    #[command(hide = true)]
    LevelWorker(level_worker::LevelWorkerArgs),
    /// (internal) A demo writer process.
    #[command(hide = true)]
    DemoWriter(demo::WriterArgs),
    /// (internal) A demo reader process.
    #[command(hide = true)]
    DemoReader(demo::ReaderArgs),
}

/// The CLI's failures, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The key is absent (exit 1).
    #[error("not found: {0}")]
    NotFound(String),
    /// Bad input (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Anything else (exit 3).
    #[error(transparent)]
    Rave(#[from] rave::Error),
    /// The demo found a broken promise, or an import stopped (exit 3).
    #[error("{0}")]
    Failed(String),
    /// `cas`: the condition failed; holds the line printed on stderr, the key's current value
    /// or `<absent>` (exit 4).
    #[error("the key does not hold the expected value")]
    ConditionFailed(Vec<u8>),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::NotFound(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Rave(_) | CliError::Failed(_) => 3,
            CliError::ConditionFailed(_) => 4,
        }
    }
}

/// Resolves at SIGTERM or SIGINT (Ctrl-C on Windows): how `hold` and the demo's workers are
/// asked to stop.
pub struct StopSignal {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignal {
    /// Starts listening (before the work starts, so no signal is missed).
    pub fn new() -> Result<Self, CliError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind, name| {
                signal(kind)
                    .map_err(|e| CliError::Rave(rave::Error::io(format!("listen for {name}"), &e)))
            };
            Ok(StopSignal {
                term: listen(SignalKind::terminate(), "SIGTERM")?,
                int: listen(SignalKind::interrupt(), "SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignal {})
    }

    /// Waits for the signal.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAVE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rave: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::ConditionFailed(current)) => {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&current);
            let _ = err.write_all(b"\n");
            ExitCode::from(4)
        }
        Err(e) => {
            eprintln!("rave: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
