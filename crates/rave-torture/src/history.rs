//! Histories: one append-only file per process, one line per event.
//!
//! Every line is handed to the OS with a single write(2) on an `O_APPEND` file before the next
//! step runs, so it survives the SIGKILL of its process. Times come from `CLOCK_MONOTONIC`, which
//! every process of the machine shares (an `Instant` is not comparable across processes).
//!
//! Worker lines (`T` is the time in nanoseconds):
//! - `T H kind uid pid`: the process started;
//! - `T S id op args..`: an operation started (before it is issued);
//! - `T E id outcome epoch result..`: it ended (after it returned); `outcome` is `ok` or the
//!   error kind, `epoch` is `Rave::epoch()` read right after it (`-` when none);
//! - `T R role epoch`: the handle's role changed.
//!
//! Operations (`S` lines): `put KEY UID SEQ PAD`, `batch UID N KEYS SLOT`, `get KEY`,
//! `group SLOT`, `frozen LO HI REV LIMIT PROJ`, `live REV`, `fill UID KEYS`, `clear UID LIMIT`,
//! `seq` (the store's sequence, the result), `close`.
//!
//! Watcher lines (`W`, `P`, `C`, `X`): see [`crate::watchlog`].
//!
//! Nemesis lines (`nemesis.log`): `T spawn PID UID [fault]` (`fault`: started with the
//! after-commit kill hook armed), `T kill PID EPOCH TARGET TAG`,
//! `T stop PID`, `T cont PID`, `T term PID`, `T exit PID STATUS`, `T leader EPOCH PID`,
//! `T storm N`, `T stall MS`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rave::{Change, Range};

use crate::schema::FrozenSpec;
use crate::watchlog::{dec_changes, dec_range};

/// Nanoseconds on `CLOCK_MONOTONIC`: comparable between the processes of one machine.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux and
    // the call only writes into `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// An append-only history file.
#[derive(Debug)]
pub struct Recorder {
    file: File,
    next_id: AtomicU64,
}

impl Recorder {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Recorder {
            file,
            next_id: AtomicU64::new(1),
        })
    }

    /// Appends `T body\n` in one write(2). A history that cannot be written makes the whole run
    /// meaningless, so the process stops at once (the checker reports it as crashed).
    pub fn line(&self, body: std::fmt::Arguments<'_>) {
        let text = format!("{} {}\n", now_ns(), body);
        if let Err(e) = (&self.file).write_all(text.as_bytes()) {
            eprintln!("rave-torture: cannot write the history: {e}");
            std::process::exit(3);
        }
    }

    /// Records the start of an operation and returns its id.
    pub fn start(&self, op: std::fmt::Arguments<'_>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.line(format_args!("S {id} {op}"));
        id
    }

    /// Records the end of operation `id`.
    pub fn end(&self, id: u64, outcome: &str, epoch: Option<u64>, result: &str) {
        let epoch = epoch.map_or_else(|| "-".to_string(), |e| e.to_string());
        self.line(format_args!("E {id} {outcome} {epoch} {result}"));
    }
}

/// What one `S` line started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A put of `key` with the value of writer `uid`'s sequence number `seq`, padded by `pad`.
    Put {
        /// The key.
        key: String,
        /// The writer incarnation.
        uid: String,
        /// Its sequence number.
        seq: u64,
        /// Padding bytes.
        pad: usize,
    },
    /// An atomic batch `uid:n` of `keys` unique keys plus group slot `slot`.
    Batch {
        /// The writer incarnation.
        uid: String,
        /// Its batch number.
        n: u64,
        /// How many unique keys.
        keys: u32,
        /// The group slot it overwrites.
        slot: u32,
    },
    /// A get of `key`.
    Get {
        /// The key.
        key: String,
    },
    /// A get_many of every key of group slot `slot`.
    Group {
        /// The slot.
        slot: u32,
    },
    /// An iterator over the frozen prefix.
    Frozen(FrozenSpec),
    /// An iterator over the live unique keys.
    Live {
        /// Direction.
        reverse: bool,
    },
    /// The batch that fills writer `uid`'s drain with `keys` keys.
    Fill {
        /// The writer incarnation.
        uid: String,
        /// How many keys.
        keys: u32,
    },
    /// A `clear` of writer `uid`'s drain with a limit.
    Clear {
        /// The writer incarnation.
        uid: String,
        /// Most keys removed.
        limit: u32,
    },
    /// `KvStore::sequence`: the store's sequence number (the result).
    Seq,
    /// Closing the handle.
    Close,
}

/// One line of a worker history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The process started.
    Hello {
        /// writer / reader / storm.
        kind: String,
        /// Its incarnation id.
        uid: String,
        /// Its pid.
        pid: u32,
    },
    /// An operation started.
    Start {
        /// Its id within the process.
        id: u64,
        /// What it is.
        op: Op,
    },
    /// An operation ended.
    End {
        /// Its id.
        id: u64,
        /// `ok` or an error kind.
        outcome: String,
        /// The epoch read right after it.
        epoch: Option<u64>,
        /// What it returned, per operation.
        result: String,
    },
    /// The role changed.
    Role {
        /// The new role.
        role: String,
        /// The epoch read with it.
        epoch: Option<u64>,
    },
    /// A watch was opened.
    WatchOpen {
        /// The position it was asked to start after (`None`: now).
        from: Option<u64>,
        /// The range watched.
        range: Range,
    },
    /// A progress mark.
    Progress {
        /// Its position.
        seq: u64,
    },
    /// A commit received (put values by their id, see [`crate::watchlog`]).
    Commit {
        /// Its sequence number.
        seq: u64,
        /// Its changes.
        changes: Vec<Change>,
    },
    /// The watch stream failed.
    WatchError {
        /// The error kind.
        kind: String,
        /// Its `resume_from` or `oldest`.
        pos: Option<u64>,
    },
}

fn parse_epoch(s: &str) -> Option<Option<u64>> {
    if s == "-" {
        Some(None)
    } else {
        s.parse().ok().map(Some)
    }
}

fn parse_op(words: &[&str]) -> Option<Op> {
    Some(match *words.first()? {
        "put" => Op::Put {
            key: (*words.get(1)?).to_string(),
            uid: (*words.get(2)?).to_string(),
            seq: words.get(3)?.parse().ok()?,
            pad: words.get(4)?.parse().ok()?,
        },
        "batch" => Op::Batch {
            uid: (*words.get(1)?).to_string(),
            n: words.get(2)?.parse().ok()?,
            keys: words.get(3)?.parse().ok()?,
            slot: words.get(4)?.parse().ok()?,
        },
        "get" => Op::Get {
            key: (*words.get(1)?).to_string(),
        },
        "group" => Op::Group {
            slot: words.get(1)?.parse().ok()?,
        },
        "frozen" => Op::Frozen(FrozenSpec::parse(words.get(1..)?)?),
        "live" => Op::Live {
            reverse: *words.get(1)? == "1",
        },
        "fill" => Op::Fill {
            uid: (*words.get(1)?).to_string(),
            keys: words.get(2)?.parse().ok()?,
        },
        "clear" => Op::Clear {
            uid: (*words.get(1)?).to_string(),
            limit: words.get(2)?.parse().ok()?,
        },
        "seq" => Op::Seq,
        "close" => Op::Close,
        _ => return None,
    })
}

/// Parses one worker line into its time and event; `None` for a line that is not one (a torn
/// last line cannot happen with one write(2) per line, but a damaged file must not panic).
pub fn parse_line(line: &str) -> Option<(u64, Event)> {
    let words: Vec<&str> = line.split(' ').collect();
    let t: u64 = words.first()?.parse().ok()?;
    let event = match *words.get(1)? {
        "H" => Event::Hello {
            kind: (*words.get(2)?).to_string(),
            uid: (*words.get(3)?).to_string(),
            pid: words.get(4)?.parse().ok()?,
        },
        "S" => Event::Start {
            id: words.get(2)?.parse().ok()?,
            op: parse_op(words.get(3..)?)?,
        },
        "E" => Event::End {
            id: words.get(2)?.parse().ok()?,
            outcome: (*words.get(3)?).to_string(),
            epoch: parse_epoch(words.get(4)?)?,
            result: words.get(5..).map(|w| w.join(" ")).unwrap_or_default(),
        },
        "R" => Event::Role {
            role: (*words.get(2)?).to_string(),
            epoch: parse_epoch(words.get(3)?)?,
        },
        "W" => Event::WatchOpen {
            from: parse_epoch(words.get(2)?)?,
            range: dec_range(words.get(3)?)?,
        },
        "P" => Event::Progress {
            seq: words.get(2)?.parse().ok()?,
        },
        "C" => Event::Commit {
            seq: words.get(2)?.parse().ok()?,
            changes: dec_changes(words.get(3)?)?,
        },
        "X" => Event::WatchError {
            kind: (*words.get(2)?).to_string(),
            pos: parse_epoch(words.get(3)?)?,
        },
        _ => return None,
    };
    Some((t, event))
}

/// One line of the nemesis log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NemEvent {
    /// A process was started.
    Spawn {
        /// Its pid.
        pid: u32,
        /// Its incarnation id.
        uid: String,
        /// Started with the after-commit kill hook armed: a SIGKILL it was not sent is its own.
        fault: bool,
    },
    /// A process was sent SIGKILL (recorded before the signal).
    Kill {
        /// Its pid.
        pid: u32,
        /// The leader epoch it held, when it was the leader.
        epoch: Option<u64>,
        /// `leader`, `follower`, `storm` or `end` (did not stop in time at the end).
        target: String,
        /// How the kill was timed (`plain`, `rekill`, `stopped`, `storm`, `pair`, ...).
        tag: String,
    },
    /// SIGSTOP.
    Stop {
        /// Its pid.
        pid: u32,
    },
    /// SIGCONT.
    Cont {
        /// Its pid.
        pid: u32,
    },
    /// SIGTERM at the end of the run (the worker finishes its operation and closes).
    Term {
        /// Its pid.
        pid: u32,
    },
    /// A process was reaped.
    Exit {
        /// Its pid.
        pid: u32,
        /// `code:N` or `signal:N`.
        status: String,
    },
    /// The leader record changed.
    Leader {
        /// The record's epoch.
        epoch: u64,
        /// The record's pid.
        pid: u32,
    },
    /// An election storm of `n` processes started.
    Storm {
        /// How many.
        n: u32,
    },
    /// No new leader appeared for this long after a kill.
    Stall {
        /// Milliseconds waited.
        ms: u64,
    },
}

impl std::fmt::Display for NemEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NemEvent::Spawn { pid, uid, fault } => {
                write!(f, "spawn {pid} {uid}{}", if *fault { " fault" } else { "" })
            }
            NemEvent::Kill {
                pid,
                epoch,
                target,
                tag,
            } => {
                let epoch = epoch.map_or_else(|| "-".to_string(), |e| e.to_string());
                write!(f, "kill {pid} {epoch} {target} {tag}")
            }
            NemEvent::Stop { pid } => write!(f, "stop {pid}"),
            NemEvent::Cont { pid } => write!(f, "cont {pid}"),
            NemEvent::Term { pid } => write!(f, "term {pid}"),
            NemEvent::Exit { pid, status } => write!(f, "exit {pid} {status}"),
            NemEvent::Leader { epoch, pid } => write!(f, "leader {epoch} {pid}"),
            NemEvent::Storm { n } => write!(f, "storm {n}"),
            NemEvent::Stall { ms } => write!(f, "stall {ms}"),
        }
    }
}

/// Parses one nemesis line.
pub fn parse_nemesis_line(line: &str) -> Option<(u64, NemEvent)> {
    let words: Vec<&str> = line.split(' ').collect();
    let t: u64 = words.first()?.parse().ok()?;
    let pid = |i: usize| words.get(i).and_then(|w| w.parse::<u32>().ok());
    let event = match *words.get(1)? {
        "spawn" => NemEvent::Spawn {
            pid: pid(2)?,
            uid: (*words.get(3)?).to_string(),
            fault: words.get(4) == Some(&"fault"),
        },
        "kill" => NemEvent::Kill {
            pid: pid(2)?,
            epoch: parse_epoch(words.get(3)?)?,
            target: (*words.get(4)?).to_string(),
            tag: (*words.get(5)?).to_string(),
        },
        "stop" => NemEvent::Stop { pid: pid(2)? },
        "cont" => NemEvent::Cont { pid: pid(2)? },
        "term" => NemEvent::Term { pid: pid(2)? },
        "exit" => NemEvent::Exit {
            pid: pid(2)?,
            status: (*words.get(3)?).to_string(),
        },
        "leader" => NemEvent::Leader {
            epoch: words.get(2)?.parse().ok()?,
            pid: pid(3)?,
        },
        "storm" => NemEvent::Storm {
            n: words.get(2)?.parse().ok()?,
        },
        "stall" => NemEvent::Stall {
            ms: words.get(2)?.parse().ok()?,
        },
        _ => return None,
    };
    Some((t, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let rec = Recorder::open(&path).unwrap();
        rec.line(format_args!("H writer w0i0 42"));
        let id = rec.start(format_args!("put u/w0i0/0000000001 w0i0 1 7"));
        rec.end(id, "ok", Some(3), "");
        let id = rec.start(format_args!("frozen gte:5 lt:9 1 - kv"));
        rec.end(id, "NoLeader", None, "8-5 bad=0");
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<Event> = text.lines().map(|l| parse_line(l).unwrap().1).collect();
        assert_eq!(events.len(), 5);
        assert_eq!(
            events[1],
            Event::Start {
                id: 1,
                op: Op::Put {
                    key: "u/w0i0/0000000001".into(),
                    uid: "w0i0".into(),
                    seq: 1,
                    pad: 7
                }
            }
        );
        assert_eq!(
            events[4],
            Event::End {
                id: 2,
                outcome: "NoLeader".into(),
                epoch: None,
                result: "8-5 bad=0".into()
            }
        );
        assert!(parse_line("garbage").is_none());
        assert!(parse_line("12 S x put").is_none());
    }

    #[test]
    fn nemesis_lines_round_trip() {
        let events = [
            NemEvent::Kill {
                pid: 7,
                epoch: Some(3),
                target: "leader".into(),
                tag: "rekill".into(),
            },
            NemEvent::Exit {
                pid: 7,
                status: "signal:9".into(),
            },
            NemEvent::Leader { epoch: 4, pid: 9 },
            NemEvent::Spawn {
                pid: 8,
                uid: "w0i1".into(),
                fault: true,
            },
            NemEvent::Spawn {
                pid: 9,
                uid: "w0i2".into(),
                fault: false,
            },
        ];
        for event in events {
            let line = format!("100 {event}");
            assert_eq!(parse_nemesis_line(&line), Some((100, event)));
        }
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(a > 0 && b >= a);
    }
}
