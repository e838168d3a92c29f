//! The nemesis: starts the worker processes, keeps W writers and R readers alive, and breaks
//! things on a schedule drawn from the run's seed.
//!
//! Faults: SIGKILL of the leader (its pid is in `<db>/rave.leader`), sometimes again right after
//! the leader record changes (while the new leader opens its engine and rebinds the socket),
//! SIGKILL of followers, SIGSTOP/SIGCONT of the leader (sometimes killed while stopped),
//! election storms of 8–32 short-lived processes, and the stale socket every killed leader
//! leaves behind; and, through the after-commit fault point of rave-api (feature
//! `fault-injection`), leaders that SIGKILL themselves between an engine commit and its replies:
//! a share of the processes are started with `RAVE_FAULT_KILL_AFTER_COMMIT` set. Every action is logged with its time in `nemesis.log` before it is taken.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::history::{NemEvent, now_ns};
use crate::watcher::resume_position;
use crate::watchlog::{enc_range, watcher_range};

/// What the nemesis needs to start workers.
#[derive(Clone, Debug)]
pub struct Config {
    /// This binary.
    pub exe: PathBuf,
    /// The engine.
    pub backend: String,
    /// The database directory.
    pub db: PathBuf,
    /// Where histories go.
    pub hist: PathBuf,
    /// Writer processes.
    pub writers: usize,
    /// Reader processes.
    pub readers: usize,
    /// Watcher processes.
    pub watchers: usize,
    /// Frozen prefix size.
    pub frozen: u32,
    /// Worker op timeout (ms).
    pub op_timeout_ms: u64,
    /// Worker election timeout (ms).
    pub election_timeout_ms: u64,
    /// Worker pause between operations (µs).
    pub pace_us: u64,
    /// Share of the processes started with the after-commit kill hook armed.
    pub fault_share: f64,
    /// The hook's probability per commit (`RAVE_FAULT_KILL_AFTER_COMMIT`).
    pub fault_p: f64,
}

/// The environment variable of rave-api's after-commit fault point.
pub const FAULT_ENV: &str = "RAVE_FAULT_KILL_AFTER_COMMIT";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Writer,
    Reader,
    Watcher,
    Storm,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Writer => "writer",
            Kind::Reader => "reader",
            Kind::Watcher => "watcher",
            Kind::Storm => "storm",
        }
    }
}

struct Proc {
    child: Child,
    kind: Kind,
    slot: usize,
    stopped: bool,
    history: PathBuf,
}

/// The running nemesis.
pub struct Nemesis {
    cfg: Config,
    rng: ChaCha8Rng,
    log: File,
    procs: HashMap<u32, Proc>,
    incarnation: HashMap<(Kind, usize), u32>,
    /// Each watcher slot's position: where its next incarnation starts (`None`: from now).
    watch_from: HashMap<usize, Option<u64>>,
    storms: u32,
    /// Leader SIGKILLs so far.
    pub leader_kills: u64,
    last_record: Option<(u64, u32)>,
    /// The epoch of the last leader killed: the next target must be newer.
    last_killed_epoch: u64,
    restarting: bool,
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is one of our own children,
        // not yet reaped, so it cannot name an unrelated process.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn status_text(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("code:{code}"),
        (None, Some(sig)) => format!("signal:{sig}"),
        _ => "unknown".to_string(),
    }
}

impl Nemesis {
    /// A nemesis logging to `<hist>/nemesis.log`.
    pub fn new(cfg: Config, rng: ChaCha8Rng) -> std::io::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cfg.hist.join("nemesis.log"))?;
        Ok(Nemesis {
            cfg,
            rng,
            log,
            procs: HashMap::new(),
            incarnation: HashMap::new(),
            watch_from: HashMap::new(),
            storms: 0,
            leader_kills: 0,
            last_record: None,
            last_killed_epoch: 0,
            restarting: true,
        })
    }

    fn note(&mut self, event: &NemEvent) {
        let line = format!("{} {event}\n", now_ns());
        if let Err(e) = self.log.write_all(line.as_bytes()) {
            eprintln!("rave-torture: cannot write nemesis.log: {e}");
        }
    }

    fn spawn(&mut self, kind: Kind, slot: usize) {
        let n = self.incarnation.entry((kind, slot)).or_insert(0);
        let uid = match kind {
            Kind::Writer => format!("w{slot}i{n}"),
            Kind::Reader => format!("r{slot}i{n}"),
            Kind::Watcher => format!("v{slot}i{n}"),
            Kind::Storm => format!("s{slot}"),
        };
        *n += 1;
        let history = self.cfg.hist.join(format!("{uid}.log"));
        let stderr = File::create(self.cfg.hist.join(format!("{uid}.err")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let mut cmd = Command::new(&self.cfg.exe);
        cmd.arg("worker")
            .args(["--kind", kind.name()])
            .args(["--backend", &self.cfg.backend])
            .arg("--db")
            .arg(&self.cfg.db)
            .arg("--history")
            .arg(&history)
            .args(["--uid", &uid])
            .args(["--seed", &self.rng.next_u64().to_string()])
            .args(["--frozen", &self.cfg.frozen.to_string()])
            .args(["--op-timeout-ms", &self.cfg.op_timeout_ms.to_string()])
            .args([
                "--election-timeout-ms",
                &self.cfg.election_timeout_ms.to_string(),
            ])
            .args(["--pace-us", &self.cfg.pace_us.to_string()]);
        if kind == Kind::Watcher {
            // The first incarnation starts at the beginning; the next ones where the previous
            // one's history ends.
            if let Some(from) = *self.watch_from.entry(slot).or_insert(Some(0)) {
                cmd.args(["--from", &from.to_string()]);
            }
            cmd.args(["--range", &enc_range(&watcher_range(slot))]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // Never inherit the hook from the harness's own environment: the seed decides.
        cmd.env_remove(FAULT_ENV);
        let fault = self.cfg.fault_p > 0.0 && self.rng.random_bool(self.cfg.fault_share);
        if fault {
            cmd.env(FAULT_ENV, self.cfg.fault_p.to_string());
        }
        // The last writer runs without retries, so the LeaderLost path is exercised too.
        if kind == Kind::Writer && slot + 1 == self.cfg.writers && self.cfg.writers > 1 {
            cmd.arg("--no-retry");
        }
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours; it
        // makes a worker die with the nemesis, so an aborted run leaves no process behind.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => {
                let pid = child.id();
                self.note(&NemEvent::Spawn { pid, uid, fault });
                self.procs.insert(
                    pid,
                    Proc {
                        child,
                        kind,
                        slot,
                        stopped: false,
                        history,
                    },
                );
            }
            Err(e) => eprintln!("rave-torture: cannot start a worker: {e}"),
        }
    }

    /// Starts the writers and readers.
    pub fn start(&mut self) {
        for slot in 0..self.cfg.writers {
            self.spawn(Kind::Writer, slot);
        }
        for slot in 0..self.cfg.readers {
            self.spawn(Kind::Reader, slot);
        }
        for slot in 0..self.cfg.watchers {
            self.spawn(Kind::Watcher, slot);
        }
    }

    /// Reaps exited processes and starts replacements for workers.
    fn reap(&mut self) {
        let mut gone = Vec::new();
        for (&pid, proc) in &mut self.procs {
            if let Ok(Some(status)) = proc.child.try_wait() {
                gone.push((pid, status_text(status), proc.kind, proc.slot));
            }
        }
        for (pid, status, kind, slot) in gone {
            if let Some(proc) = self.procs.remove(&pid)
                && kind == Kind::Watcher
            {
                // Its history is complete now: the next incarnation resumes where it ends.
                let start = self.watch_from.get(&slot).copied().flatten();
                let text = std::fs::read_to_string(&proc.history).unwrap_or_default();
                self.watch_from.insert(slot, resume_position(&text, start));
            }
            self.note(&NemEvent::Exit { pid, status });
            if self.restarting && kind != Kind::Storm {
                self.spawn(kind, slot);
            }
        }
    }

    fn sleep(&mut self, d: Duration) {
        let until = Instant::now() + d;
        loop {
            self.reap();
            let now = Instant::now();
            if now >= until {
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(1)));
        }
    }

    /// Reads the leader record; logs each change.
    fn record(&mut self) -> Option<(u64, u32)> {
        let rec = rave_election::read_leader_record(&self.cfg.db)
            .ok()
            .flatten()?;
        let pair = (rec.epoch, rec.pid);
        if self.last_record != Some(pair) {
            self.last_record = Some(pair);
            self.note(&NemEvent::Leader {
                epoch: rec.epoch,
                pid: rec.pid,
            });
        }
        Some(pair)
    }

    /// The current leader, when it is one of our live processes newer than the last one killed.
    fn live_leader(&mut self) -> Option<(u64, u32)> {
        self.reap();
        let (epoch, pid) = self.record()?;
        (epoch > self.last_killed_epoch && self.procs.contains_key(&pid)).then_some((epoch, pid))
    }

    /// Waits for a live leader, polling every `poll`.
    fn wait_leader(&mut self, limit: Duration, poll: Duration) -> Option<(u64, u32)> {
        let start = Instant::now();
        loop {
            if let Some(found) = self.live_leader() {
                return Some(found);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(poll);
        }
    }

    fn kill(&mut self, pid: u32, epoch: Option<u64>, target: &str, tag: &str) {
        // A process may have died meanwhile (killed itself at the fault point): reap it first,
        // or the kill logged now would say it lived, and led, until now.
        self.reap();
        if !self.procs.contains_key(&pid) {
            return;
        }
        self.note(&NemEvent::Kill {
            pid,
            epoch,
            target: target.to_string(),
            tag: tag.to_string(),
        });
        signal(pid, libc::SIGKILL);
        if let Some(e) = epoch {
            self.leader_kills += 1;
            self.last_killed_epoch = self.last_killed_epoch.max(e);
        }
    }

    fn random_follower(&mut self, leader: u32) -> Option<u32> {
        let mut pids: Vec<u32> = self
            .procs
            .iter()
            .filter(|(pid, p)| **pid != leader && p.kind != Kind::Storm)
            .map(|(pid, _)| *pid)
            .collect();
        pids.sort_unstable();
        pids.choose(&mut self.rng).copied()
    }

    fn storm(&mut self) {
        let n = self.rng.random_range(8..=32u32);
        self.note(&NemEvent::Storm { n });
        for _ in 0..n {
            self.storms += 1;
            let slot = self.storms as usize;
            self.spawn(Kind::Storm, slot);
        }
    }

    /// Runs until `kills` leader SIGKILLs were done or `until` passed.
    pub fn run(&mut self, kills: u64, until: Instant) {
        while self.leader_kills < kills && Instant::now() < until {
            let waited = Instant::now();
            let Some((epoch, leader)) =
                self.wait_leader(Duration::from_secs(20), Duration::from_millis(1))
            else {
                let ms = u64::try_from(waited.elapsed().as_millis()).unwrap_or(u64::MAX);
                self.note(&NemEvent::Stall { ms });
                eprintln!("rave-torture: no live leader for {ms} ms");
                continue;
            };
            // When to strike: right after the lock was won (the new leader is still opening its
            // engine or binding the socket), while the system is busy, or after a calm spell.
            let delay_ms = match self.rng.random_range(0..100) {
                0..25 => self.rng.random_range(0..5),
                25..80 => self.rng.random_range(20..300),
                _ => self.rng.random_range(300..800),
            };
            self.sleep(Duration::from_millis(delay_ms));
            // The leader may have changed meanwhile (a storm process closed, say): re-read it.
            let (epoch, leader) = self.live_leader().unwrap_or((epoch, leader));
            if !self.procs.contains_key(&leader) {
                continue;
            }
            match self.rng.random_range(0..100) {
                0..45 => self.kill(leader, Some(epoch), "leader", "plain"),
                45..57 => {
                    self.kill(leader, Some(epoch), "leader", "plain");
                    // Strike the successor as soon as it has taken the lock.
                    if self.leader_kills < kills
                        && let Some((e2, p2)) =
                            self.wait_leader(Duration::from_secs(10), Duration::from_micros(200))
                    {
                        let extra = self.rng.random_range(0..3000);
                        std::thread::sleep(Duration::from_micros(extra));
                        self.kill(p2, Some(e2), "leader", "rekill");
                    }
                }
                57..67 => {
                    if let Some(f) = self.random_follower(leader) {
                        self.kill(f, None, "follower", "plain");
                    }
                }
                67..80 => {
                    self.note(&NemEvent::Stop { pid: leader });
                    signal(leader, libc::SIGSTOP);
                    if let Some(p) = self.procs.get_mut(&leader) {
                        p.stopped = true;
                    }
                    // Mostly shorter than the op timeout; sometimes longer, so followers time out.
                    let ms = if self.rng.random_bool(0.05) {
                        self.cfg.op_timeout_ms + 500
                    } else {
                        self.rng.random_range(20..400)
                    };
                    self.sleep(Duration::from_millis(ms));
                    if self.rng.random_bool(0.3) {
                        self.kill(leader, Some(epoch), "leader", "stopped");
                    } else if self.procs.contains_key(&leader) {
                        self.note(&NemEvent::Cont { pid: leader });
                        signal(leader, libc::SIGCONT);
                        if let Some(p) = self.procs.get_mut(&leader) {
                            p.stopped = false;
                        }
                    }
                }
                80..92 => {
                    if self
                        .procs
                        .values()
                        .filter(|p| p.kind == Kind::Storm)
                        .count()
                        < 64
                    {
                        self.storm();
                    }
                    if self.rng.random_bool(0.5) {
                        self.kill(leader, Some(epoch), "leader", "storm");
                    }
                }
                _ => {
                    let follower = self.random_follower(leader);
                    self.kill(leader, Some(epoch), "leader", "pair");
                    if let Some(f) = follower {
                        self.kill(f, None, "follower", "pair");
                    }
                }
            }
        }
    }

    /// Ends the run: resumes stopped processes, lets the system settle, asks every process to
    /// finish (SIGTERM) and waits `grace`; whoever is still alive then is hung: it is killed and
    /// logged as such.
    pub fn shutdown(&mut self, grace: Duration) {
        let stopped: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| p.stopped)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in stopped {
            self.note(&NemEvent::Cont { pid });
            signal(pid, libc::SIGCONT);
        }
        self.sleep(Duration::from_millis(500));
        self.restarting = false;
        // Let the last leader be known in the log.
        let _ = self.record();
        // Writers and readers first; watchers once they are gone, so that a watcher's last
        // probe of the sequence follows every acknowledged write.
        for watchers in [false, true] {
            let mut pids: Vec<u32> = self
                .procs
                .iter()
                .filter(|(_, p)| (p.kind == Kind::Watcher) == watchers)
                .map(|(pid, _)| *pid)
                .collect();
            pids.sort_unstable();
            for pid in pids {
                self.note(&NemEvent::Term { pid });
                signal(pid, libc::SIGTERM);
            }
            let start = Instant::now();
            while start.elapsed() < grace
                && self
                    .procs
                    .values()
                    .any(|p| watchers || p.kind != Kind::Watcher)
            {
                self.sleep(Duration::from_millis(5));
            }
        }
        let mut hung: Vec<u32> = self.procs.keys().copied().collect();
        hung.sort_unstable();
        for pid in hung {
            self.note(&NemEvent::Kill {
                pid,
                epoch: None,
                target: "end".to_string(),
                tag: "hung".to_string(),
            });
            signal(pid, libc::SIGKILL);
        }
        let pids: Vec<u32> = self.procs.keys().copied().collect();
        for pid in pids {
            if let Some(mut p) = self.procs.remove(&pid)
                && let Ok(status) = p.child.wait()
            {
                self.note(&NemEvent::Exit {
                    pid,
                    status: status_text(status),
                });
            }
        }
    }
}

impl Drop for Nemesis {
    fn drop(&mut self) {
        // A run that ends early (an error, a panic) must not leave workers behind.
        for (pid, p) in &mut self.procs {
            signal(*pid, libc::SIGKILL);
            let _ = p.child.wait();
        }
    }
}

/// The history directory's files: every worker history and the nemesis log.
pub fn history_files(hist: &Path) -> std::io::Result<(Vec<PathBuf>, PathBuf)> {
    let mut workers = Vec::new();
    for entry in std::fs::read_dir(hist)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".log") && name != "nemesis.log" {
            workers.push(path);
        }
    }
    workers.sort();
    Ok((workers, hist.join("nemesis.log")))
}
