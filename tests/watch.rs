//! Change subscriptions at their limits, with real handles and processes: a position older
//! than the history is refused (`Compacted`, typed in every process, and by `rave watch`); a
//! watcher that stops reading never blocks writers and ends with `Lagged` rather than skip; a
//! `rave watch` process stopped with SIGSTOP costs the leader bounded memory while writers go
//! on, and prints, once resumed, a gap-free prefix of the commits or a `Lagged` error.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Engine, Proc, open_handle, run_rave, tempdir, within};
use futures::StreamExt;
use rave::{Error, KvStore, Range, Rave, RaveOptions, Role, WatchEvent, WatchStream};

per_engine!(
    positions_older_than_the_history_are_refused,
    a_watcher_that_stops_reading_ends_lagged_without_blocking_writers,
    a_stopped_watch_process_costs_the_leader_bounded_memory,
);

const LIMIT: Duration = Duration::from_secs(60);

/// Options whose history keeps `entries` commits and whose live ring keeps `live`.
fn small_history(entries: u64, live: usize) -> RaveOptions {
    let mut options = RaveOptions::default();
    options.open.watch.history_entries = entries;
    options.open.watch.live_commits = live;
    options
}

async fn next(stream: &mut WatchStream) -> Option<rave::Result<WatchEvent>> {
    within("the next watch event", LIMIT, stream.next()).await
}

async fn positions_older_than_the_history_are_refused<B: Engine>() {
    let dir = tempdir();
    let (leader, role) = open_handle::<B>(dir.path(), small_history(5, 1024)).await;
    assert_eq!(role, Role::Leader);
    let (follower, role) = open_handle::<B>(dir.path(), RaveOptions::default()).await;
    assert_eq!(role, Role::Follower);
    for i in 0..20u32 {
        follower
            .put(format!("k{i:02}").as_bytes(), b"v")
            .await
            .unwrap();
    }
    let now = follower.sequence().await.unwrap();
    let oldest = match leader.watch(Range::all(), Some(2)).await {
        Err(Error::Compacted { oldest }) => oldest,
        Err(e) => panic!("a compacted position on the leader: {e}"),
        Ok(_) => panic!("a position older than the history was accepted on the leader"),
    };
    assert_eq!(oldest, now - 5, "the history keeps the last 5 commits");
    match follower.watch(Range::all(), Some(2)).await {
        Err(Error::Compacted { oldest: o }) => assert_eq!(o, oldest),
        Err(e) => panic!("a compacted position on a follower: {e}"),
        Ok(_) => panic!("a position older than the history was accepted on a follower"),
    }
    // The oldest accepted position gives exactly the 5 commits the history keeps.
    let mut stream = follower.watch(Range::all(), Some(oldest)).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        match next(&mut stream).await {
            Some(Ok(WatchEvent::Commit(commit))) => seen.push(commit.sequence),
            Some(Ok(WatchEvent::Progress { .. })) => {}
            other => panic!("watch from the oldest position: {other:?}"),
        }
    }
    assert_eq!(seen, (oldest + 1..=now).collect::<Vec<_>>());
    drop(stream);

    let out = run_rave::<B>(&[], dir.path(), &["watch", "--from", "2"], None).await;
    assert_eq!(out.status.code(), Some(3), "rave watch --from 2: {out:?}");
    assert!(
        out.stderr.contains(&format!("oldest accepted: {oldest}")),
        "rave watch names the oldest position: {}",
        out.stderr
    );
    follower.close().await.unwrap();
    leader.close().await.unwrap();
}

/// Through a follower and on the leader itself: a watcher that is not read while writers go
/// on hands out a gap-free run of commits, then `Lagged` naming the last one it handed out.
async fn a_watcher_that_stops_reading_ends_lagged_without_blocking_writers<B: Engine>() {
    let dir = tempdir();
    let (leader, _) = open_handle::<B>(dir.path(), small_history(20, 16)).await;
    let (follower, _) = open_handle::<B>(dir.path(), RaveOptions::default()).await;
    let mut watchers = Vec::new();
    for db in [&leader as &dyn KvStore, &follower as &dyn KvStore] {
        let mut stream = db.watch(Range::all(), None).await.unwrap();
        let Some(Ok(WatchEvent::Progress { sequence })) = next(&mut stream).await else {
            panic!("a watch starts with its position");
        };
        watchers.push((stream, sequence));
    }
    // Nobody reads the watchers meanwhile: the writes must all go through.
    let value = vec![7u8; 8 << 10];
    within("500 writes with stalled watchers", LIMIT, async {
        for i in 0..500u32 {
            follower
                .put(format!("k{i:03}").as_bytes(), &value)
                .await
                .unwrap();
        }
    })
    .await;
    for (which, (mut stream, start)) in ["leader", "follower"].into_iter().zip(watchers) {
        let mut last = start;
        loop {
            match next(&mut stream).await {
                Some(Ok(WatchEvent::Commit(commit))) => {
                    assert_eq!(commit.sequence, last + 1, "{which}: a gap or a repeat");
                    last = commit.sequence;
                }
                Some(Ok(WatchEvent::Progress { sequence })) => assert!(sequence >= last),
                Some(Err(Error::Lagged { resume_from })) => {
                    assert_eq!(resume_from, last, "{which}: Lagged names the last commit");
                    break;
                }
                other => panic!("{which}: a stalled watcher must end with Lagged: {other:?}"),
            }
        }
        assert!(
            next(&mut stream).await.is_none(),
            "{which}: nothing after Lagged"
        );
        match follower.watch(Range::all(), Some(last)).await {
            Err(Error::Compacted { .. }) => {}
            other => panic!("{which}: resuming a lagged position: {:?}", other.err()),
        }
    }
    follower.close().await.unwrap();
    leader.close().await.unwrap();
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number");
    kib * 1024
}

/// The size of each value the memory test writes: above the live ring's inline size, so the
/// ring holds markers only and what is measured is whatever else the leader would keep for
/// a watcher that does not read.
const VALUE: usize = 80 << 10;

/// Writes `count` puts of [`VALUE`] bytes under `prefix`; returns the keys in order.
async fn write_burst<B: Engine>(db: &Rave<B>, prefix: &str, count: u32) -> Vec<String> {
    let value = vec![1u8; VALUE];
    let mut keys = Vec::new();
    within("a burst of writes", Duration::from_secs(300), async {
        for i in 0..count {
            let key = format!("{prefix}{i:05}");
            db.put(key.as_bytes(), &value).await.unwrap();
            keys.push(key);
        }
    })
    .await;
    keys
}

async fn a_stopped_watch_process_costs_the_leader_bounded_memory<B: Engine>() {
    const BURST: u32 = 1000; // 1000 × 80 KiB = 78 MiB of values per burst
    let dir = tempdir();
    let mut leader = common::start_leader::<B>(dir.path()).await;
    let (writer, role) = open_handle::<B>(dir.path(), RaveOptions::default()).await;
    assert_eq!(role, Role::Follower);
    // The engine's own caches grow with what is written: a first burst warms them, a second
    // without a watcher is the baseline.
    write_burst(&writer, "a", BURST).await;
    let before = rss(leader.pid());
    write_burst(&writer, "c", BURST).await;
    let baseline = rss(leader.pid()).saturating_sub(before);

    let mut watcher = Proc::rave::<B>(
        &[],
        dir.path(),
        &[
            "watch",
            "--keys-only",
            "--progress",
            "--gte",
            "b",
            "--lt",
            "c",
        ],
    );
    // Watching once it printed its starting position.
    watcher.next_line(LIMIT).await.expect("the watcher starts");
    let keys_before = write_burst(&writer, "b", 1).await;
    watcher.signal(libc::SIGSTOP);
    let before = rss(leader.pid());
    let keys = write_burst(&writer, "b", BURST).await;
    let grown = rss(leader.pid()).saturating_sub(before);
    let burst_bytes = u64::from(BURST) * VALUE as u64;
    assert!(
        grown < baseline + burst_bytes / 2,
        "the leader grew by {grown} bytes while a stopped watcher fell {burst_bytes} bytes \
         behind (without a watcher: {baseline})"
    );
    watcher.signal(libc::SIGCONT);

    // Resumed, the watcher prints a gap-free prefix of the writes, then all of them or Lagged.
    let mut want = keys_before.into_iter().chain(keys).peekable();
    let mut printed = 0;
    let reading = std::time::Instant::now();
    loop {
        assert!(
            reading.elapsed() < Duration::from_secs(120),
            "the resumed watcher printed {printed} changes in 2 minutes and neither the rest nor \
             an error: {}",
            watcher.stderr()
        );
        let line = match watcher.next_line(Duration::from_secs(5)).await {
            Ok(line) => line,
            Err(()) if want.peek().is_none() => break,
            Err(()) => panic!("the watcher stopped printing after {printed} changes"),
        };
        let Some(line) = line else {
            break;
        };
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.get(1) == Some(&"progress") {
            continue;
        }
        assert_eq!(fields.get(1), Some(&"put"), "line {line:?}");
        assert_eq!(
            fields.get(2).copied(),
            want.next().as_deref(),
            "a gap at {line:?}"
        );
        printed += 1;
        if want.peek().is_none() {
            break;
        }
    }
    watcher.signal(libc::SIGTERM);
    let status = watcher.wait_exit(LIMIT).await;
    if want.peek().is_some() {
        assert_eq!(status.code(), Some(3), "a watcher that fell behind fails");
        assert!(
            watcher.stderr().contains("fell behind"),
            "and says it lagged: {}",
            watcher.stderr()
        );
    }
    eprintln!(
        "{}: printed {printed} of {} changes; leader grew {grown} bytes (baseline {baseline})",
        B::CLI,
        BURST + 1
    );
    writer.close().await.unwrap();
    leader.kill();
}
