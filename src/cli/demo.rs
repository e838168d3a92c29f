//! `rave demo`: the seed's scenario with real processes and a real SIGKILL.
//!
//! Several writer processes and a reader process of this very binary share one directory. The
//! reader prints what it sees; the leader is killed with SIGKILL; a new leader is elected and the
//! reads and writes carry on. At the end every acknowledged write is checked and a summary is
//! printed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use rave::{Backend, BatchOp, Rave, RaveOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::commands::println_flush;
use super::{Cli, CliError};

/// Options of `rave demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Writer processes.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Seconds before the leader is killed.
    #[arg(long, default_value_t = 2.0)]
    pub kill_after: f64,
    /// Seconds the demo runs in all.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
}

/// Options of a demo writer.
#[derive(Args, Debug, Clone)]
pub struct WriterArgs {
    /// The writer's number (its keys are `w<ID>-<SEQ>`).
    #[arg(long)]
    pub id: usize,
    /// Milliseconds between writes.
    #[arg(long, default_value_t = 20)]
    pub interval_ms: u64,
}

/// Options of a demo reader.
#[derive(Args, Debug, Clone)]
pub struct ReaderArgs {
    /// Milliseconds between reads.
    #[arg(long, default_value_t = 250)]
    pub interval_ms: u64,
}

fn writer_key(id: usize, seq: u64) -> Vec<u8> {
    format!("w{id:02}-{seq:08}").into_bytes()
}

/// A writer: like the seed's put.js, it sets `a` to a number of its own, plus a key per write,
/// atomically; it prints `ok SEQ` once each write is acknowledged.
pub async fn writer<B: Backend>(db: Rave<B>, args: &WriterArgs) -> Result<(), CliError> {
    let mut stop = super::StopSignal::new()?;
    let base = rand::random_range(0..100_000u64);
    let mut seq = 0u64;
    loop {
        let next = seq + 1;
        let ops = vec![
            BatchOp::put(writer_key(args.id, next), next.to_string()),
            BatchOp::put("a", (base + next).to_string()),
        ];
        tokio::select! {
            result = db.batch(ops) => match result {
                Ok(()) => {
                    seq = next;
                    println_flush(&format!("ok {seq}"));
                }
                Err(e) => println_flush(&format!("err {e}")),
            },
            _ = stop.recv() => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(args.interval_ms)) => {}
            _ = stop.recv() => break,
        }
    }
    db.close().await?;
    println_flush(&format!("done {seq}"));
    Ok(())
}

/// A reader: like the seed's get.js, it prints `a= VALUE` at every interval, and its role when
/// it changes.
pub async fn reader<B: Backend>(db: Rave<B>, args: &ReaderArgs) -> Result<(), CliError> {
    let mut stop = super::StopSignal::new()?;
    let mut roles = db.watch_role();
    loop {
        tokio::select! {
            result = db.get(b"a") => match result {
                Ok(value) => {
                    let value = value.map(|v| String::from_utf8_lossy(&v).into_owned());
                    println_flush(&format!("a= {}", value.as_deref().unwrap_or("(none yet)")));
                }
                Err(e) => println_flush(&format!("err {e}")),
            },
            _ = stop.recv() => break,
        }
        if roles.has_changed().unwrap_or(false) {
            println_flush(&format!("role {}", *roles.borrow_and_update()));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(args.interval_ms)) => {}
            _ = stop.recv() => break,
        }
    }
    db.close().await?;
    println_flush("done");
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Writer(usize),
    Reader(usize),
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Writer(i) => write!(f, "writer {i}"),
            Kind::Reader(i) => write!(f, "reader {i}"),
        }
    }
}

struct Proc {
    kind: Kind,
    child: Child,
    pid: u32,
    acked: u64,
    killed: bool,
}

struct Line {
    index: usize,
    at: Instant,
    text: String,
}

struct Demo {
    exe: PathBuf,
    backend: &'static str,
    dir: PathBuf,
    procs: Vec<Proc>,
    lines: mpsc::UnboundedSender<Line>,
}

impl Demo {
    fn spawn(&mut self, kind: Kind) -> Result<(), CliError> {
        let mut command = Command::new(&self.exe);
        command.arg("--backend").arg(self.backend).arg(&self.dir);
        match kind {
            Kind::Writer(id) => command.args(["demo-writer", "--id", &id.to_string()]),
            Kind::Reader(_) => command.arg("demo-reader"),
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| rave::Error::io(format!("start {}", self.exe.display()), &e))?;
        let pid = child.id().unwrap_or(0);
        let index = self.procs.len();
        if let Some(stdout) = child.stdout.take() {
            let lines = self.lines.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stdout).lines();
                while let Ok(Some(text)) = reader.next_line().await {
                    let _ = lines.send(Line {
                        index,
                        at: Instant::now(),
                        text,
                    });
                }
            });
        }
        println_flush(&format!("[demo] started {kind} (pid {pid})"));
        self.procs.push(Proc {
            kind,
            child,
            pid,
            acked: 0,
            killed: false,
        });
        Ok(())
    }
}

#[derive(Default)]
struct Tally {
    writes: u64,
    reads: u64,
    errors: u64,
}

impl Tally {
    fn take(&mut self, demo: &mut Demo, line: &Line) {
        let proc = &mut demo.procs[line.index];
        if let Some(seq) = line.text.strip_prefix("ok ") {
            self.writes += 1;
            proc.acked = seq.parse().unwrap_or(proc.acked);
        } else if line.text.starts_with("a= ") {
            self.reads += 1;
            println_flush(&format!("[{}] {}", proc.kind, line.text));
        } else if line.text.starts_with("err ") {
            self.errors += 1;
            println_flush(&format!("[{}] {}", proc.kind, line.text));
        } else if !line.text.starts_with("done") {
            println_flush(&format!("[{}] {}", proc.kind, line.text));
        }
    }
}

/// Runs the demo and prints its summary; fails when any promise was broken.
pub async fn run<B: Backend + Clone>(
    cli: &Cli,
    backend: B,
    args: &DemoArgs,
) -> Result<(), CliError> {
    let started = Instant::now();
    let temp;
    let dir = match &cli.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("rave-demo-")
                .tempdir()
                .map_err(|e| rave::Error::io("create a temporary directory", &e))?;
            temp.path().to_path_buf()
        }
    };
    let exe = std::env::current_exe().map_err(|e| rave::Error::io("find the rave binary", &e))?;
    let (lines, mut incoming) = mpsc::unbounded_channel();
    let mut demo = Demo {
        exe,
        backend: cli.backend.as_str(),
        dir: dir.clone(),
        procs: Vec::new(),
        lines,
    };
    println_flush(&format!(
        "[demo] {} writers and a reader on {} (engine {})",
        args.writers,
        dir.display(),
        demo.backend
    ));
    let mut tally = Tally::default();
    for id in 1..=args.writers {
        demo.spawn(Kind::Writer(id))?;
        pump(
            &mut demo,
            &mut tally,
            &mut incoming,
            Duration::from_millis(200),
        )
        .await;
    }
    demo.spawn(Kind::Reader(1))?;
    let kill_at = started + Duration::from_secs_f64(args.kill_after.max(0.5));
    pump(
        &mut demo,
        &mut tally,
        &mut incoming,
        kill_at.saturating_duration_since(Instant::now()),
    )
    .await;

    // Kill the leader.
    let record = read_record(&dir)?;
    let Some(victim) = demo
        .procs
        .iter()
        .position(|p| p.pid == record.pid && !p.killed)
    else {
        return Err(CliError::Failed(format!(
            "the leader (pid {}) is not one of the demo's processes",
            record.pid
        )));
    };
    println_flush(&format!(
        "[demo] killing the leader, {} (pid {}, epoch {}), with SIGKILL",
        demo.procs[victim].kind, record.pid, record.epoch
    ));
    let killed_at = Instant::now();
    demo.procs[victim].killed = true;
    demo.procs[victim]
        .child
        .start_kill()
        .map_err(|e| rave::Error::io("kill the leader", &e))?;
    let _ = demo.procs[victim].child.wait().await;
    if let Kind::Reader(n) = demo.procs[victim].kind {
        demo.spawn(Kind::Reader(n + 1))?;
    }

    // Wait for the first acknowledged write after the kill: that is the failover.
    let mut failover = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while failover.is_none() && Instant::now() < deadline {
        let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_millis(100), incoming.recv()).await
        else {
            continue;
        };
        if line.at > killed_at && line.text.starts_with("ok ") {
            failover = Some(line.at - killed_at);
        }
        tally.take(&mut demo, &line);
    }
    let Some(failover) = failover else {
        return Err(CliError::Failed(
            "no write succeeded within 20 s of the kill".into(),
        ));
    };
    let new = read_record(&dir)?;
    let who = demo
        .procs
        .iter()
        .find(|p| p.pid == new.pid)
        .map(|p| p.kind.to_string());
    println_flush(&format!(
        "[demo] new leader: {} (pid {}, epoch {}); first write acknowledged {:.1} ms after the kill",
        who.as_deref().unwrap_or("?"),
        new.pid,
        new.epoch,
        failover.as_secs_f64() * 1000.0
    ));
    let end = started + Duration::from_secs_f64(args.seconds.max(args.kill_after + 1.0));
    pump(
        &mut demo,
        &mut tally,
        &mut incoming,
        end.saturating_duration_since(Instant::now()),
    )
    .await;

    // Stop everyone politely, then check every acknowledged write.
    for proc in demo.procs.iter_mut().filter(|p| !p.killed) {
        ask_to_stop(proc);
    }
    for proc in demo.procs.iter_mut().filter(|p| !p.killed) {
        match tokio::time::timeout(Duration::from_secs(15), proc.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                tally.errors += 1;
                println_flush(&format!("[demo] {} exited with {status}", proc.kind));
            }
            _ => {
                tally.errors += 1;
                let _ = proc.child.start_kill();
                println_flush(&format!("[demo] {} did not exit on SIGTERM", proc.kind));
            }
        }
    }
    while let Ok(line) = incoming.try_recv() {
        tally.take(&mut demo, &line);
    }
    let lost = verify(backend, &dir, &demo.procs).await?;
    let readers = demo
        .procs
        .iter()
        .filter(|p| matches!(p.kind, Kind::Reader(_)))
        .count();
    println_flush("");
    println_flush("== rave demo summary");
    println_flush(&format!(
        "processes: {} ({} writers, {} readers)",
        demo.procs.len(),
        args.writers,
        readers
    ));
    println_flush(&format!(
        "operations: {} ({} writes acknowledged, {} reads)",
        tally.writes + tally.reads,
        tally.writes,
        tally.reads
    ));
    println_flush("failovers: 1");
    println_flush(&format!(
        "time to failover: {:.1} ms",
        failover.as_secs_f64() * 1000.0
    ));
    println_flush(&format!("lost writes: {lost}"));
    println_flush(&format!("errors: {}", tally.errors));
    if lost > 0 || tally.errors > 0 {
        return Err(CliError::Failed(format!(
            "{lost} acknowledged writes lost, {} errors",
            tally.errors
        )));
    }
    Ok(())
}

/// Prints what arrives for `wait`.
async fn pump(
    demo: &mut Demo,
    tally: &mut Tally,
    incoming: &mut mpsc::UnboundedReceiver<Line>,
    wait: Duration,
) {
    let until = Instant::now() + wait;
    while let Ok(Some(line)) = tokio::time::timeout(
        until.saturating_duration_since(Instant::now()),
        incoming.recv(),
    )
    .await
    {
        tally.take(demo, &line);
    }
}

fn read_record(dir: &Path) -> Result<rave_election::LeaderRecord, CliError> {
    rave_election::read_leader_record(dir)
        .map_err(|e| rave::Error::io("read the leader record", &e))?
        .ok_or_else(|| CliError::Failed("no leader was ever elected".into()))
}

/// Counts the acknowledged writes that are missing.
async fn verify<B: Backend>(backend: B, dir: &Path, procs: &[Proc]) -> Result<u64, CliError> {
    let db = Rave::open_with(backend, dir, RaveOptions::default())?;
    let mut lost = 0;
    let mut acked: HashMap<usize, u64> = HashMap::new();
    for proc in procs {
        if let Kind::Writer(id) = proc.kind {
            acked.insert(id, proc.acked);
        }
    }
    for (id, last) in acked {
        let keys: Vec<Vec<u8>> = (1..=last).map(|seq| writer_key(id, seq)).collect();
        for (seq, value) in (1..=last).zip(db.get_many(&keys).await?) {
            if value.as_deref() != Some(seq.to_string().as_bytes()) {
                lost += 1;
            }
        }
    }
    db.close().await?;
    Ok(lost)
}

/// Asks a worker to finish (SIGTERM), so it closes its handle and reports its last write.
#[cfg(unix)]
fn ask_to_stop(proc: &mut Proc) {
    if let Ok(pid) = libc::pid_t::try_from(proc.pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child, not yet
        // reaped, so it cannot name another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

/// Windows has no SIGTERM for a child: it is terminated.
#[cfg(not(unix))]
fn ask_to_stop(proc: &mut Proc) {
    let _ = proc.child.start_kill();
}
