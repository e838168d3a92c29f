//! Change subscriptions across processes and leader kills: three watcher processes and two
//! writer processes on one directory, the leader SIGKILLed mid-stream several times (a killed
//! watcher restarted after the last position it printed, a killed writer replaced); at the end
//! every watcher has printed every acknowledged put exactly once, all in the same order, with
//! strictly increasing sequence numbers. Runs once per compiled-in engine.
//!
//! The watchers and writers are this test binary run again as a child (as in
//! `multiprocess::idle_follower_exits_by_itself`), told its role by the environment.

#[macro_use]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Engine, Proc, open_handle, tempdir, within};
use futures::StreamExt;
use rave::{Change, Range, Rave, RaveOptions, WatchEvent};

per_engine!(watchers_see_every_acknowledged_put_once_in_one_order_across_leader_kills);

/// The child's role: `watcher:FROM` (`-`: from now) or `writer:ID`.
const ROLE: &str = "RAVE_TEST_WATCH_ROLE";
/// The child's database directory.
const DIR: &str = "RAVE_TEST_WATCH_DIR";

const WATCHERS: usize = 3;
const WRITERS: usize = 2;
const LEADER_KILLS: usize = 10;
/// Acknowledged puts to wait for between two kills.
const PUTS_BETWEEN_KILLS: usize = 40;

fn key(writer: &str, n: u64) -> String {
    format!("k/{writer}/{n:06}")
}

fn value(writer: &str, n: u64) -> String {
    format!("v-{writer}-{n}")
}

/// A watcher child: watches `k/` after `from`, printing `P SEQ` and `C SEQ KEY=VALUE...` (one
/// line each, flushed), and watches again from its position when the stream fails.
async fn child_watcher<B: Engine>(dir: &Path, from: Option<u64>) {
    let db = Rave::<B>::open_engine(dir, RaveOptions::default()).expect("open");
    let mut position = from;
    loop {
        let mut stream = match db.watch(Range::prefix("k/"), position).await {
            Ok(stream) => stream,
            Err(e) => {
                println!("X {}", e.kind().as_str());
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Progress { sequence }) => {
                    println!("P {sequence}");
                    position = Some(sequence);
                }
                Ok(WatchEvent::Commit(commit)) => {
                    let changes: Vec<String> = commit
                        .changes
                        .iter()
                        .map(|c| match c {
                            Change::Put { key, value } => format!(
                                "{}={}",
                                String::from_utf8_lossy(key),
                                String::from_utf8_lossy(value)
                            ),
                            other => format!("{other:?}").replace(' ', ""),
                        })
                        .collect();
                    println!("C {} {}", commit.sequence, changes.join(" "));
                    position = Some(commit.sequence);
                }
                Err(e) => {
                    println!("X {}", e.kind().as_str());
                    break;
                }
            }
        }
    }
}

/// A writer child: puts `k/ID/N` = `v-ID-N` for N = 1, 2, ..., printing `ack N` after each
/// acknowledgement, until killed.
async fn child_writer<B: Engine>(dir: &Path, id: &str) {
    let db = Rave::<B>::open_engine(dir, RaveOptions::default()).expect("open");
    for n in 1.. {
        match db.put(key(id, n).as_bytes(), value(id, n).as_bytes()).await {
            Ok(()) => println!("ack {n}"),
            Err(e) => println!("err {n} {}", e.kind().as_str()),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn child<B: Engine>(dir: &Path, role: &str) -> Proc {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            &format!(
                "{}::watchers_see_every_acknowledged_put_once_in_one_order_across_leader_kills",
                B::CLI
            ),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(DIR, dir);
    Proc::spawn(format!("{role} (this test binary)"), command, None)
}

/// One watcher slot: its running incarnation and the lines its earlier ones printed.
struct Watcher {
    proc: Proc,
    past: Vec<String>,
}

impl Watcher {
    /// Every line its incarnations printed so far.
    fn lines(&mut self) -> Vec<String> {
        self.proc.drain_lines();
        let mut all = self.past.clone();
        all.extend(self.proc.seen().iter().cloned());
        all
    }

    /// The position of its last event (where a restart resumes).
    fn position(&mut self) -> Option<u64> {
        self.lines().iter().rev().find_map(|l| {
            let mut words = l.split(' ');
            match words.next() {
                Some("P" | "C") => words.next()?.parse().ok(),
                _ => None,
            }
        })
    }
}

struct Writer {
    id: String,
    proc: Proc,
}

impl Writer {
    /// The highest put number it printed `ack` for (it acknowledges them in order).
    fn acked(&mut self) -> u64 {
        self.proc.drain_lines();
        self.proc
            .seen()
            .iter()
            .filter_map(|l| l.strip_prefix("ack ")?.parse().ok())
            .max()
            .unwrap_or(0)
    }
}

fn leader_pid(dir: &Path) -> Option<u32> {
    rave_election::read_leader_record(dir)
        .ok()
        .flatten()
        .map(|r| r.pid)
}

async fn watchers_see_every_acknowledged_put_once_in_one_order_across_leader_kills<B: Engine>() {
    if let (Some(role), Some(dir)) = (std::env::var_os(ROLE), std::env::var_os(DIR)) {
        let role = role.to_string_lossy().into_owned();
        let dir = Path::new(&dir);
        match role.split_once(':') {
            Some(("watcher", from)) => child_watcher::<B>(dir, from.parse().ok()).await,
            Some(("writer", id)) => child_writer::<B>(dir, id).await,
            _ => panic!("unknown role {role}"),
        }
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path();
    // The watchers first, from the beginning (position 0), then the writers.
    let mut watchers: Vec<Watcher> = (0..WATCHERS)
        .map(|_| Watcher {
            proc: child::<B>(dir, "watcher:0"),
            past: Vec::new(),
        })
        .collect();
    let mut finished_writers: Vec<(String, u64)> = Vec::new();
    let mut next_writer = 0;
    let new_writer = |next: &mut usize| {
        let id = format!("w{next}");
        *next += 1;
        Writer {
            proc: child::<B>(dir, &format!("writer:{id}")),
            id,
        }
    };
    let mut writers: Vec<Writer> = (0..WRITERS).map(|_| new_writer(&mut next_writer)).collect();
    let total = |writers: &mut Vec<Writer>, done: &[(String, u64)]| {
        writers.iter_mut().map(Writer::acked).sum::<u64>()
            + done.iter().map(|(_, n)| n).sum::<u64>()
    };

    let mut kills = 0;
    let mut watcher_kills = 0;
    while kills < LEADER_KILLS {
        // Let the writers get some puts acknowledged under this leader.
        let want = total(&mut writers, &finished_writers) + PUTS_BETWEEN_KILLS as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while total(&mut writers, &finished_writers) < want {
            assert!(
                Instant::now() < deadline,
                "no progress: {} puts acknowledged",
                total(&mut writers, &finished_writers)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let Some(pid) = leader_pid(dir) else {
            continue;
        };
        if let Some(w) = watchers.iter_mut().find(|w| w.proc.pid() == pid) {
            w.proc.kill();
            w.proc.finish(Duration::from_secs(5)).await;
            w.past = w.lines();
            // Restart it after the last position it printed.
            let from = w.position().map_or("0".to_string(), |p| p.to_string());
            w.proc = child::<B>(dir, &format!("watcher:{from}"));
            watcher_kills += 1;
        } else if let Some(i) = writers.iter().position(|w| w.proc.pid() == pid) {
            let mut w = writers.swap_remove(i);
            w.proc.kill();
            w.proc.finish(Duration::from_secs(5)).await;
            finished_writers.push((w.id.clone(), w.acked()));
            writers.push(new_writer(&mut next_writer));
        } else {
            // The record names a process that already died: wait for the next leader.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        kills += 1;
    }
    // Stop the writers: every put they printed `ack` for was acknowledged.
    for mut w in writers.drain(..) {
        w.proc.kill();
        w.proc.finish(Duration::from_secs(5)).await;
        finished_writers.push((w.id.clone(), w.acked()));
    }
    // Every watcher must reach the store's sequence now.
    let (db, _) = open_handle::<B>(dir, RaveOptions::default()).await;
    let last = within("the final sequence", Duration::from_secs(20), db.sequence())
        .await
        .expect("sequence");
    db.close().await.expect("close");
    for w in &mut watchers {
        let deadline = Instant::now() + Duration::from_secs(30);
        while w.position().is_none_or(|p| p < last) {
            assert!(
                Instant::now() < deadline,
                "a watcher did not reach sequence {last}: {:?}",
                w.lines().last()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        w.proc.kill();
        w.proc.finish(Duration::from_secs(5)).await;
    }

    let acked: HashSet<String> = finished_writers
        .iter()
        .flat_map(|(id, n)| (1..=*n).map(move |i| format!("{}={}", key(id, i), value(id, i))))
        .collect();
    let attempted_writers: HashSet<String> = (0..next_writer).map(|i| format!("w{i}")).collect();
    let mut orders = Vec::new();
    let mut by_seq: HashMap<u64, String> = HashMap::new();
    for (slot, w) in watchers.iter_mut().enumerate() {
        let (order, commits) = check_watcher(slot, &w.lines(), &attempted_writers);
        for (seq, text) in commits {
            let other = by_seq.entry(seq).or_insert_with(|| text.clone());
            assert_eq!(*other, text, "watchers disagree on commit {seq}");
        }
        let seen: BTreeMap<&String, usize> = order.iter().fold(BTreeMap::new(), |mut m, p| {
            *m.entry(p).or_insert(0) += 1;
            m
        });
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "watcher {slot} saw puts twice: {twice:?}");
        let missed: Vec<_> = acked.iter().filter(|p| !seen.contains_key(p)).collect();
        assert!(
            missed.is_empty(),
            "watcher {slot} missed {} acknowledged puts, e.g. {:?}",
            missed.len(),
            missed.iter().take(5).collect::<Vec<_>>()
        );
        orders.push(order);
    }
    for (slot, order) in orders.iter().enumerate().skip(1) {
        assert_eq!(
            order, &orders[0],
            "watcher {slot}'s order differs from watcher 0's"
        );
    }
    println!(
        "{}: {} acknowledged puts, {} puts delivered to each of {WATCHERS} watchers in one order, \
         {kills} leader kills ({watcher_kills} of a watcher), last sequence {last}",
        B::CLI,
        acked.len(),
        orders[0].len()
    );
}

/// Reads one watcher slot's lines: the puts it delivered, in order, and each commit's text by
/// sequence. Asserts strictly increasing sequences (across its restarts), resumes that start
/// where they were asked to, and puts that some writer attempted.
fn check_watcher(
    slot: usize,
    lines: &[String],
    writers: &HashSet<String>,
) -> (Vec<String>, Vec<(u64, String)>) {
    let mut order = Vec::new();
    let mut commits = Vec::new();
    let mut position = 0;
    for line in lines {
        let mut words = line.splitn(3, ' ');
        match (
            words.next(),
            words.next().and_then(|s| s.parse::<u64>().ok()),
        ) {
            (Some("P"), Some(seq)) => {
                assert!(
                    seq >= position,
                    "watcher {slot}: progress {seq} after {position}"
                );
                position = seq;
            }
            (Some("C"), Some(seq)) => {
                assert!(
                    seq > position,
                    "watcher {slot}: commit {seq} after position {position}"
                );
                position = seq;
                let text = words.next().unwrap_or("").to_string();
                for put in text.split(' ') {
                    let (k, v) = put.split_once('=').expect("a put");
                    let mut parts = k.split('/').skip(1);
                    let (id, n) = (parts.next().unwrap(), parts.next().unwrap());
                    assert!(writers.contains(id), "watcher {slot}: phantom put {put}");
                    assert_eq!(v, value(id, n.parse().unwrap()), "watcher {slot}: {put}");
                    order.push(put.to_string());
                }
                commits.push((seq, text));
            }
            _ => {}
        }
    }
    (order, commits)
}

/// Found by the torture harness's watchers (RELIABILITY.md, "Findings"): a watch stream that is
/// resuming on the next leader when its own handle becomes that leader held the handle's turn
/// (the operations queued during an election run one at a time) until the stream was polled
/// again, so an operation queued behind it failed with `NoLeader`. Here the election is held
/// open with the directory's lock while the watch queues its resume; then the stream is left
/// unpolled and `sequence()` is asked. Fixed by running the resume as a task of its own
/// (`src/watcher.rs`).
#[cfg(feature = "redb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpolled_resuming_watch_does_not_hold_up_its_handle() {
    type B = rave::backends::RedbBackend;
    for attempt in 0..20 {
        let tmp = tempdir();
        let dir = tmp.path();
        let mut leader = common::start_leader::<B>(dir).await;
        let options = RaveOptions::default().election_timeout(Duration::from_secs(10));
        let (db, role) = open_handle::<B>(dir, options).await;
        assert_eq!(role, rave::Role::Follower);
        let mut stream = db.watch(Range::prefix("k/"), None).await.expect("watch");
        let first = within("the first event", Duration::from_secs(10), stream.next()).await;
        assert!(
            matches!(first, Some(Ok(WatchEvent::Progress { .. }))),
            "{first:?}"
        );
        leader.kill();
        // Hold the election open: take the lock before the handle does (else try again).
        let Some(lock) = rave_election::DirLock::try_acquire(dir).expect("lock") else {
            db.close().await.expect("close");
            continue;
        };
        // The stream notices the lost leader and queues its resume behind the election.
        let polled = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
        assert!(polled.is_err(), "attempt {attempt}: {polled:?}");
        let probe = {
            let db = db.clone();
            tokio::spawn(async move { db.sequence().await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(lock);
        let answer = within("sequence", Duration::from_secs(30), probe)
            .await
            .expect("the task");
        assert!(
            answer.is_ok(),
            "sequence() on the new leader, with a resuming watch unpolled: {answer:?}"
        );
        drop(stream);
        db.close().await.expect("close");
        return;
    }
    panic!("the handle always took the lock first");
}
