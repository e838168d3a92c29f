//! `rave-torture`: the kill -9 torture harness for rave.
//!
//! `rave-torture run --backend redb --kills 100 --seed 1` starts writer, reader and watcher
//! processes (this binary, `rave-torture worker ...`) on one database directory, lets a seeded
//! nemesis SIGKILL, SIGSTOP and storm them, then checks every process's history and the final
//! state (read through rave, and again with the engine opened directly) and prints one line:
//!
//! `torture: backend=B kills=N acked=M lost=L twice=W overlapping_terms=T dup=D skip=S hung=H
//! failover_p50_ms=X failover_p99_ms=Y watchers=V watch_events=E watch_missed=0 watch_dup=0
//! watch_disagree=0 seed=Z`
//!
//! Some workers run with rave-api's after-commit fault point armed (feature `fault-injection`,
//! on through this crate's dependency on rave). Per-key histories are also handed to
//! stateright's linearizability checker, as an independent check of the checker's own rules.
//!
//! It exits non-zero when any invariant is broken. See RELIABILITY.md at the repository root.

#![warn(missing_docs)]
// Without an engine feature the harness can only report that none is compiled in.
#![cfg_attr(
    not(any(feature = "redb", feature = "leveldb", feature = "rocksdb")),
    allow(dead_code, unused_variables, unused_imports)
)]

mod check;
#[cfg(feature = "etcd")]
mod etcd;
mod history;
mod nemesis;
mod run;
mod schema;
mod watcher;
mod watchlog;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The kill -9 torture harness for rave.
#[derive(Parser, Debug)]
#[command(name = "rave-torture", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run workers under the nemesis, then check the histories.
    Run(run::RunArgs),
    /// Check the histories and database of a finished run again (`run --dir D` keeps them).
    Check(run::CheckArgs),
    /// One worker process (started by `run`).
    Worker(worker::WorkerArgs),
    /// The etcd fault run: a three-member cluster, members killed and restarted.
    #[cfg(feature = "etcd")]
    Etcd(etcd::EtcdArgs),
    /// One worker of the etcd fault run (started by `etcd`).
    #[cfg(feature = "etcd")]
    EtcdWorker(etcd::EtcdWorkerArgs),
}

/// Runs `$body` with the type `$b` bound to the engine named `$name`, or evaluates `$missing`
/// when that engine is not compiled in.
macro_rules! with_backend {
    ($name:expr, $b:ident => $body:expr, $missing:expr) => {
        match $name {
            #[cfg(feature = "redb")]
            "redb" => {
                type $b = rave::backends::RedbBackend;
                $body
            }
            #[cfg(feature = "leveldb")]
            "leveldb" => {
                type $b = rave::backends::LevelDbBackend;
                $body
            }
            #[cfg(feature = "rocksdb")]
            "rocksdb" => {
                type $b = rave::backends::RocksDbBackend;
                $body
            }
            _ => $missing,
        }
    };
}
pub(crate) use with_backend;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => run::check_again(args),
        #[cfg(feature = "etcd")]
        Command::Etcd(args) => etcd::run(args),
        #[cfg(feature = "etcd")]
        Command::EtcdWorker(args) => etcd::worker(args),
        Command::Worker(args) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("rave-torture worker: no runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            let backend = args.backend.clone();
            let result = with_backend!(
                backend.as_str(),
                B => runtime.block_on(worker::run::<B>(args)),
                Err(worker::WorkerError(format!("engine {backend:?} is not compiled in")))
            );
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rave-torture worker: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
