//! Command line, sizes, and the run of every figure for every engine asked for.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use rave::{Error, Result};

use crate::engines::EngineName;
use crate::report::{Figure, Report};
use crate::{
    curves, durable, failover, follower, helper, leader, machine, memory, redb_readers, report,
    scan, watch_latency, watch_throughput,
};

/// Measure rave against its baselines (raw sockets, Redis, the bare engine, SQLite, LMDB, redb).
#[derive(Parser, Debug)]
#[command(name = "rave-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    helper: Option<HelperCommand>,
    #[command(flatten)]
    run: RunArgs,
}

/// Options of a benchmark run.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Tiny sizes and one run: keeps the harness working; asserts nothing about speed.
    #[arg(long)]
    pub quick: bool,
    /// The engines to measure, comma-separated (each must be compiled in).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "redb")]
    pub backend: Vec<EngineName>,
    /// Runs per figure (default 5; 1 with --quick).
    #[arg(long)]
    pub runs: Option<usize>,
    /// The Markdown report; only the part between the rave-bench markers is replaced
    /// (default BENCHMARKS.md; with --quick, target/rave-bench-quick/BENCHMARKS.md).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The JSON file of the same figures (default: bench/results.json beside --out).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The SVG chart (default: bench/chart.svg beside --out); the curves' charts
    /// (curve-<id>-<engine>.svg) go beside it.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Only these figures, comma-separated (P1..P8, W1, W2, R1..R3, and the curves C1..C5; P2
    /// and P3 run with P1). The generated part of --out then holds these figures only.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum HelperCommand {
    /// (internal) A process the harness spawns: leader, ping server, writers, idle follower.
    #[command(hide = true)]
    Helper {
        #[command(subcommand)]
        mode: helper::Mode,
    },
    /// get/put through rave on a local etcd, beside etcd-client bare and a rave follower.
    #[cfg(feature = "etcd")]
    Etcd(crate::etcd::EtcdBenchArgs),
}

/// The sizes of one benchmark run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sizes {
    /// Runs per figure.
    pub runs: usize,
    /// Keys of the point-operation data set (P1 to P4).
    pub keys: usize,
    /// Bytes per value of the point-operation data set.
    pub value_size: usize,
    /// Sequential gets per run (P1, P2).
    pub latency_ops: usize,
    /// Gets per run with 32 in flight (P3).
    pub pipelined_ops: usize,
    /// Requests in flight for P3.
    pub in_flight: usize,
    /// Gets per run on the leader and on the bare engine (P4).
    pub leader_gets: usize,
    /// Puts per run on the leader and on the bare engine (P4).
    pub leader_puts: usize,
    /// Writing processes (P5).
    pub writer_processes: usize,
    /// Concurrent writers per process (P5).
    pub writers_per_process: usize,
    /// How long each P5 measurement writes, in seconds.
    pub durable_seconds: f64,
    /// Failovers per run (P6).
    pub failovers: usize,
    /// Crash-recovery opens of the bare engine per run (P6).
    pub engine_opens: usize,
    /// Entries scanned (P7).
    pub scan_entries: usize,
    /// Followers served by the leader whose memory is measured (P8).
    pub followers: usize,
    /// Puts (and PUBLISHes) timed one at a time per pass (W1), after a tenth as many of warm-up.
    pub watch_puts: usize,
    /// How long each W2 measurement writes, in seconds.
    pub watch_seconds: f64,
    /// Puts (PUBLISHes) in flight in W2's writer.
    pub watch_in_flight: usize,
    /// Watcher (subscriber) processes of W2's larger case.
    pub watchers: usize,
    /// Reader processes of R1 and R2's larger cases.
    pub reader_processes: usize,
    /// How long each R1, R2 measurement reads, in seconds.
    pub read_seconds: f64,
}

impl Sizes {
    /// The leader helper's flags that load the point-operation data set (see
    /// [`crate::child::Helper::leader`]).
    pub fn point_data(&self) -> [(&'static str, usize); 2] {
        [("keys", self.keys), ("value-size", self.value_size)]
    }

    /// The sizes of a full or a quick run, with `runs` overriding the default count.
    pub fn new(quick: bool, runs: Option<usize>) -> Self {
        if quick {
            Sizes {
                runs: runs.unwrap_or(1),
                keys: 1_000,
                value_size: 100,
                latency_ops: 300,
                pipelined_ops: 2_000,
                in_flight: 32,
                leader_gets: 300,
                leader_puts: 10,
                writer_processes: 4,
                writers_per_process: 4,
                durable_seconds: 0.3,
                failovers: 2,
                engine_opens: 1,
                scan_entries: 10_000,
                followers: 4,
                watch_puts: 100,
                watch_seconds: 0.3,
                watch_in_flight: 16,
                watchers: 4,
                reader_processes: 2,
                read_seconds: 0.1,
            }
        } else {
            Sizes {
                runs: runs.unwrap_or(5),
                keys: 10_000,
                value_size: 100,
                latency_ops: 20_000,
                pipelined_ops: 200_000,
                in_flight: 32,
                leader_gets: 50_000,
                leader_puts: 300,
                writer_processes: 4,
                writers_per_process: 16,
                durable_seconds: 2.0,
                failovers: 20,
                engine_opens: 5,
                scan_entries: 1_000_000,
                followers: 16,
                watch_puts: 5_000,
                watch_seconds: 2.0,
                watch_in_flight: 16,
                watchers: 16,
                reader_processes: 4,
                read_seconds: 0.8,
            }
        }
    }
}

/// Parses the command line and runs the benchmark or a helper mode.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.helper {
        Some(HelperCommand::Helper { mode }) => helper::run(mode),
        #[cfg(feature = "etcd")]
        Some(HelperCommand::Etcd(args)) => crate::etcd::run(args),
        None => run(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rave-bench: {e}");
            ExitCode::from(1)
        }
    }
}

/// A multi-threaded runtime like the one an application would use (`#[tokio::main]`).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start the tokio runtime", &e))
}

fn run(args: RunArgs) -> Result<()> {
    let sizes = Sizes::new(args.quick, args.runs);
    if sizes.runs == 0 {
        return Err(Error::invalid("--runs must be at least 1"));
    }
    let quick_dir = PathBuf::from("target/rave-bench-quick");
    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            quick_dir.join("BENCHMARKS.md")
        } else {
            PathBuf::from("BENCHMARKS.md")
        }
    });
    // The JSON and the chart live in `bench/` beside the Markdown report by default.
    let beside_out = |name: &str| {
        out.parent()
            .unwrap_or(Path::new(""))
            .join("bench")
            .join(name)
    };
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| beside_out("results.json"));
    let chart = args
        .chart
        .clone()
        .unwrap_or_else(|| beside_out("chart.svg"));
    let only: Vec<String> = args.only.iter().map(|s| s.to_ascii_uppercase()).collect();
    let wanted = |id: &str| only.is_empty() || only.iter().any(|o| o == id);

    let started = Instant::now();
    let machine_before = machine::Machine::read();
    eprintln!(
        "rave-bench: {} run(s) per figure{}; load average {}",
        sizes.runs,
        if args.quick { " (quick)" } else { "" },
        machine_before.load_average
    );
    let rt = runtime()?;
    let mut sections = Vec::new();
    for &engine in &args.backend {
        engine.check_compiled()?;
        let mut figures: Vec<Figure> = Vec::new();
        let step = |id: &str, what: &str| {
            eprintln!(
                "rave-bench: [{:>5.0}s] {engine} {id}: {what}",
                started.elapsed().as_secs_f64()
            );
        };
        if wanted("P1") || wanted("P2") || wanted("P3") {
            step("P1-P3", "follower gets vs raw ping-pong and Redis");
            figures.extend(rt.block_on(follower::measure(engine, &sizes))?);
        }
        if wanted("P4") {
            step("P4", "leader vs bare engine");
            figures.extend(rt.block_on(leader::measure(engine, &sizes))?);
        }
        if wanted("P5") {
            step("P5", "durable puts from many processes");
            figures.extend(rt.block_on(durable::measure(engine, &sizes))?);
        }
        if wanted("P6") {
            step("P6", "failover after SIGKILL");
            figures.extend(rt.block_on(failover::measure(engine, &sizes))?);
        }
        if wanted("P7") {
            step("P7", "scan through a follower vs on the leader");
            figures.extend(rt.block_on(scan::measure(engine, &sizes))?);
        }
        if wanted("P8") {
            step("P8", "resident memory");
            figures.extend(rt.block_on(memory::measure(engine, &sizes))?);
        }
        if wanted("W1") {
            step("W1", "watch latency vs Redis pub/sub");
            figures.extend(rt.block_on(watch_latency::measure(engine, &sizes))?);
        }
        if wanted("W2") {
            step("W2", "watch throughput vs Redis pub/sub");
            figures.extend(rt.block_on(watch_throughput::measure(engine, &sizes))?);
        }
        if wanted("R1") || wanted("R2") || wanted("R3") {
            step(
                "R1-R3",
                "many-process reads and SIGKILL vs redb multi-process",
            );
            figures.extend(rt.block_on(redb_readers::measure(engine, &sizes, &wanted))?);
        }
        let curves = rt.block_on(curves::measure(engine, &sizes, args.quick, &wanted, &step))?;
        sections.push(report::Section {
            engine: engine.to_string(),
            figures,
            curves,
        });
    }
    drop(rt);
    let machine_after = machine::Machine::read();
    let report = Report {
        command: command_line(),
        quick: args.quick,
        sizes,
        machine: machine_before,
        load_average_after: machine_after.load_average,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        sections,
    };
    report::write_all(&report, &out, &json, &chart)?;
    eprintln!(
        "rave-bench: wrote {}, {} and {} in {:.0} s",
        out.display(),
        json.display(),
        chart.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The command as typed, for the report (the binary's own path shortened to its name).
fn command_line() -> String {
    let mut args = std::env::args();
    let mut words = vec!["rave-bench".to_string()];
    let _ = args.next();
    words.extend(args);
    words.join(" ")
}
