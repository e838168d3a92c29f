//! W2: how many change events watchers receive while writers write as fast as they can, with
//! 1 and many watcher processes, and whether watching slows the writers; beside Redis pub/sub
//! with as many subscribers.
//!
//! rave: a leader process, `k` watcher processes (followers) of the `w` prefix, and one writer
//! process (a follower, the P5 writer with default options) with `watch_in_flight` puts in
//! flight, for `watch_seconds`. Each watcher's rate is the puts it received divided by the
//! time from the writer's start to the last event's arrival, so a watcher that falls behind
//! and catches up later is charged for it. Redis: `k` subscriber processes and one publisher
//! process pipelining as many PUBLISHes. `k` = 0, 1 and `watchers`, in that order, every run.

use std::path::Path;
use std::time::Duration;

use rave::{Error, Result};

use crate::child::{Helper, SHORT, field, temp_dir};
use crate::cli::Sizes;
use crate::engines::EngineName;
use crate::redis::{self, Redis};
use crate::report::Figure;
use crate::stats::Summary;

/// What one measurement gave.
#[derive(Clone, Copy, Default)]
struct Flood {
    /// The writer's puts (or PUBLISHes) per second.
    writes_per_sec: f64,
    /// Puts (messages) received per second, the mean over the watchers (0 without any).
    items_per_sec: f64,
    /// Events (commits; for Redis, messages) received per second, the mean over the watchers.
    events_per_sec: f64,
    /// How long after the writer stopped the last watcher had its last event, in ms.
    drain_ms: f64,
}

/// Measures W2 for `engine`.
pub async fn measure(engine: EngineName, sizes: &Sizes) -> Result<Vec<Figure>> {
    let counts = [0, 1, sizes.watchers];
    let tmp = temp_dir()?;
    let redis_missing = redis::missing();
    // Subscribers that fall behind are not disconnected: rave never drops a slow watcher
    // either (it reads the change log instead).
    let redis = match &redis_missing {
        None => Some(
            Redis::start_with(
                tmp.path(),
                &[("client-output-buffer-limit", "pubsub 0 0 0")],
            )
            .await?,
        ),
        Some(why) => {
            eprintln!("rave-bench: skipping the Redis pub/sub baseline: {why}");
            None
        }
    };
    let mut rave: [Vec<Flood>; 3] = Default::default();
    let mut baseline: [Vec<Flood>; 3] = Default::default();
    for _ in 0..sizes.runs {
        for (slot, &k) in counts.iter().enumerate() {
            rave[slot].push(rave_flood(engine, sizes, k).await?);
            if let Some(r) = &redis {
                baseline[slot].push(redis_flood(r.socket(), sizes, k).await?);
            }
        }
    }
    if let Some(r) = redis {
        r.stop().await;
    }
    Ok(figures(engine, sizes, &rave, &baseline, redis_missing))
}

async fn rave_flood(engine: EngineName, sizes: &Sizes, watchers: usize) -> Result<Flood> {
    let tmp = temp_dir()?;
    let dir = tmp.path().join("db");
    let mut leader = Helper::leader(engine, &dir, &[])?;
    leader.expect("ready", SHORT).await?;
    let dir_arg = dir.display().to_string();
    let mut subscribers = Vec::new();
    for i in 0..watchers {
        subscribers.push(Helper::spawn(
            format!("watcher {i}"),
            ["watcher", "--backend", engine.as_str(), "--dir", &dir_arg],
        )?);
    }
    let writer = Helper::spawn(
        "writer",
        [
            "rave-writer".to_string(),
            "--backend".into(),
            engine.to_string(),
            "--default-options".into(),
            "--path".into(),
            dir_arg.clone(),
            "--id".into(),
            "0".into(),
            "--writers".into(),
            sizes.watch_in_flight.to_string(),
            "--seconds".into(),
            sizes.watch_seconds.to_string(),
            "--value-size".into(),
            sizes.value_size.to_string(),
        ],
    )?;
    let flood = drive(writer, &mut subscribers, sizes).await?;
    for s in subscribers {
        s.kill_and_reap().await;
    }
    leader.stop().await;
    Ok(flood)
}

async fn redis_flood(socket: &Path, sizes: &Sizes, subscribers: usize) -> Result<Flood> {
    let socket = socket.display().to_string();
    let mut subs = Vec::new();
    for i in 0..subscribers {
        subs.push(Helper::spawn(
            format!("redis subscriber {i}"),
            ["redis-subscriber", "--socket", &socket],
        )?);
    }
    let publisher = Helper::spawn(
        "redis publisher",
        [
            "redis-flood".to_string(),
            "--socket".into(),
            socket.clone(),
            "--seconds".into(),
            sizes.watch_seconds.to_string(),
            "--in-flight".into(),
            sizes.watch_in_flight.to_string(),
            "--value-size".into(),
            sizes.value_size.to_string(),
        ],
    )?;
    let flood = drive(publisher, &mut subs, sizes).await?;
    for s in subs {
        s.kill_and_reap().await;
    }
    Ok(flood)
}

/// Starts `writer` once every watcher is ready, then waits for every write at every watcher.
async fn drive(mut writer: Helper, watchers: &mut [Helper], sizes: &Sizes) -> Result<Flood> {
    for w in watchers.iter_mut() {
        w.expect("ready", SHORT).await?;
    }
    writer.expect("ready", SHORT).await?;
    writer.send("go").await?;
    let limit = SHORT + Duration::from_secs_f64(sizes.watch_seconds);
    let words = writer.expect("done", limit).await?;
    let ops: u64 = field(&words, 0, "a count")?;
    let nanos: u64 = field(&words, 1, "a duration")?;
    let errors: u64 = field(&words, 2, "an error count")?;
    let start: u64 = field(&words, 3, "a start time")?;
    if errors > 0 {
        return Err(Error::other(format!("{errors} writes failed (see stderr)")));
    }
    if nanos == 0 {
        return Err(Error::other("the writer measured no time"));
    }
    let mut flood = Flood {
        writes_per_sec: ops as f64 / (nanos as f64 / 1e9),
        ..Flood::default()
    };
    let end = start + nanos;
    for w in watchers.iter_mut() {
        w.send(&format!("until {ops}")).await?;
    }
    let n = watchers.len().max(1) as f64;
    for w in watchers.iter_mut() {
        let words = w.expect("done", SHORT).await?;
        let items: u64 = field(&words, 0, "an item count")?;
        let events: u64 = field(&words, 1, "an event count")?;
        let last: u64 = field(&words, 3, "the last arrival")?;
        let secs = last.saturating_sub(start).max(1) as f64 / 1e9;
        flood.items_per_sec += items as f64 / secs / n;
        flood.events_per_sec += events as f64 / secs / n;
        flood.drain_ms = flood.drain_ms.max(last.saturating_sub(end) as f64 / 1e6);
    }
    writer.kill_and_reap().await;
    Ok(flood)
}

fn figures(
    engine: EngineName,
    sizes: &Sizes,
    rave: &[Vec<Flood>; 3],
    redis: &[Vec<Flood>; 3],
    redis_missing: Option<String>,
) -> Vec<Figure> {
    let col = |runs: &Vec<Flood>, f: fn(&Flood) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let many = sizes.watchers;
    let flight = sizes.watch_in_flight;
    let writer = format!(
        "1 writer process (a follower, {engine}, default options) with {flight} puts in flight \
         on one handle, {} B values, {} s",
        sizes.value_size, sizes.watch_seconds
    );
    let publisher = format!(
        "1 publisher process pipelining {flight} PUBLISHes at a time ({} B messages) to Redis \
         over a unix socket, {} s",
        sizes.value_size + 12,
        sizes.watch_seconds
    );
    let watchers = |k: usize| {
        if k == 1 {
            "1 watcher process".to_string()
        } else {
            format!("{k} watcher processes")
        }
    };
    let subscribers = |k: usize| {
        if k == 1 {
            "1 subscriber process".to_string()
        } else {
            format!("{k} subscriber processes")
        }
    };
    let drains = |slot: usize| Summary::of(&col(&rave[slot], |f| f.drain_ms)).median;
    let mut redis_rows = Vec::new();
    for (slot, k) in [(1, 1), (2, many)] {
        redis_rows.push(
            Figure::new(
                "W2",
                format!("puts delivered per second per watcher, {}", watchers(k)),
                "puts/s",
            )
            .higher_is_better()
            .subject(
                format!(
                    "{writer}; {} (followers) of the written prefix: puts received ÷ (last \
                     arrival − the writer's start), the mean over the watchers",
                    watchers(k)
                ),
                col(&rave[slot], |f| f.items_per_sec),
            )
            .baseline(
                format!(
                    "{publisher}; {}: messages received ÷ (last arrival − the publisher's \
                     start), the mean over the subscribers",
                    subscribers(k)
                ),
                col(&redis[slot], |f| f.items_per_sec),
            )
            .note(format!(
                "The last event reached the watchers {} ms (median of the runs) after the \
                 writer stopped.",
                crate::report::fmt_num(drains(slot))
            )),
        );
        redis_rows.push(
            Figure::new(
                "W2·i",
                format!("events (commits) per second per watcher, {}", watchers(k)),
                "events/s",
            )
            .higher_is_better()
            .subject(
                format!(
                    "the same, counting events: one event per commit, a commit carrying \
                     every put of one group commit ({})",
                    watchers(k)
                ),
                col(&rave[slot], |f| f.events_per_sec),
            )
            .baseline(
                format!(
                    "the same Redis run: one event per message ({})",
                    subscribers(k)
                ),
                col(&redis[slot], |f| f.events_per_sec),
            ),
        );
    }
    for (slot, k) in [(0, 0), (1, 1), (2, many)] {
        let with = match k {
            0 => "no watcher".to_string(),
            k => watchers(k),
        };
        let with_subs = match k {
            0 => "no subscriber".to_string(),
            k => subscribers(k),
        };
        redis_rows.push(
            Figure::new("W2", format!("writer's puts per second, {with}"), "puts/s")
                .higher_is_better()
                .subject(
                    format!("{writer}, {with}"),
                    col(&rave[slot], |f| f.writes_per_sec),
                )
                .baseline(
                    format!("{publisher}, {with_subs}"),
                    col(&redis[slot], |f| f.writes_per_sec),
                ),
        );
    }
    if let Some(why) = &redis_missing {
        for fig in &mut redis_rows {
            fig.skip(format!("skipped: {why}"));
        }
    }
    let mut out = redis_rows;
    // Does watching slow the writer? rave against itself without watchers, run by run.
    for (slot, k) in [(1, 1), (2, many)] {
        out.push(
            Figure::new(
                "W2·s",
                format!("writer's puts per second with {} vs none", watchers(k)),
                "puts/s",
            )
            .higher_is_better()
            .subject(
                format!("{writer}, {} watching", watchers(k)),
                col(&rave[slot], |f| f.writes_per_sec),
            )
            .baseline(
                "the same writer with no watcher, same run",
                col(&rave[0], |f| f.writes_per_sec),
            ),
        );
    }
    out
}
