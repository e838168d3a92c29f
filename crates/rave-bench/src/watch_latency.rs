//! W1: how long after a write its change event reaches a watcher in another process, beside
//! Redis pub/sub over a unix socket.
//!
//! rave: a writer process (a follower) puts `w:<index>` keys one at a time and notes, on
//! `CLOCK_MONOTONIC` (one clock for every process of the machine), when each put started and
//! when it was acknowledged; a watcher process notes when each put's event arrived. Twice per
//! run: the watcher a follower (events cross the leader's socket), then the watcher the leader
//! itself (events from its engine thread's live feed). Redis: a publisher process PUBLISHes one
//! message at a time, waiting for each reply, and a subscriber process notes arrivals. The
//! first tenth of every pass is a warm-up, left out.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rave::{Error, Result};

use crate::child::{Helper, SHORT, temp_dir};
use crate::cli::Sizes;
use crate::engines::EngineName;
use crate::redis::{self, Redis};
use crate::report::Figure;
use crate::stats::percentile;
use crate::tally::read_rows;

/// Latencies of one pass, in µs.
#[derive(Default)]
struct Pass {
    /// Event arrival − acknowledgement of the write.
    after_ack: Vec<f64>,
    /// Event arrival − start of the write.
    after_start: Vec<f64>,
    /// Acknowledgement − start: the write's own round trip.
    write: Vec<f64>,
}

struct Run {
    follower: Pass,
    leader: Pass,
    redis: Option<Pass>,
}

/// Measures W1 for `engine`.
pub async fn measure(engine: EngineName, sizes: &Sizes) -> Result<Vec<Figure>> {
    let tmp = temp_dir()?;
    let redis_missing = redis::missing();
    let redis = match &redis_missing {
        None => Some(Redis::start(tmp.path()).await?),
        Some(why) => {
            eprintln!("rave-bench: skipping the Redis pub/sub baseline: {why}");
            None
        }
    };
    let mut runs = Vec::new();
    for _ in 0..sizes.runs {
        let follower = rave_pass(engine, sizes, false).await?;
        let leader = rave_pass(engine, sizes, true).await?;
        let redis = match &redis {
            Some(r) => Some(redis_pass(r.socket(), sizes).await?),
            None => None,
        };
        runs.push(Run {
            follower,
            leader,
            redis,
        });
    }
    if let Some(r) = redis {
        r.stop().await;
    }
    Ok(figures(engine, &runs, sizes, redis_missing))
}

/// The puts (or messages) of one pass, warm-up included.
fn total(sizes: &Sizes) -> usize {
    sizes.watch_puts + warm_up(sizes)
}

fn warm_up(sizes: &Sizes) -> usize {
    sizes.watch_puts / 10
}

/// One rave pass: a writer following a leader, watched by a follower or by the leader.
async fn rave_pass(engine: EngineName, sizes: &Sizes, leader_watches: bool) -> Result<Pass> {
    let tmp = temp_dir()?;
    let dir = tmp.path().join("db");
    let (writes, arrivals) = (tmp.path().join("writes"), tmp.path().join("arrivals"));
    let mut watcher_args = vec![
        "watcher".to_string(),
        "--backend".into(),
        engine.to_string(),
        "--dir".into(),
        dir.display().to_string(),
        "--record".into(),
        arrivals.display().to_string(),
    ];
    let mut leader = None;
    if leader_watches {
        watcher_args.push("--lead".into());
    } else {
        let mut l = Helper::leader(engine, &dir, &[])?;
        l.expect("ready", SHORT).await?;
        leader = Some(l);
    }
    let mut watcher = Helper::spawn("watcher", watcher_args)?;
    watcher.expect("ready", SHORT).await?;
    let writer = Helper::spawn(
        "put loop",
        [
            "put-loop".to_string(),
            "--backend".into(),
            engine.to_string(),
            "--dir".into(),
            dir.display().to_string(),
            "--count".into(),
            total(sizes).to_string(),
            "--value-size".into(),
            sizes.value_size.to_string(),
            "--record".into(),
            writes.display().to_string(),
        ],
    )?;
    let pass = drive(writer, &mut watcher, sizes, &writes, &arrivals).await?;
    watcher.stop().await;
    if let Some(l) = leader {
        l.stop().await;
    }
    Ok(pass)
}

/// One Redis pass: a publisher and a subscriber on a fresh connection each.
async fn redis_pass(socket: &Path, sizes: &Sizes) -> Result<Pass> {
    let tmp = temp_dir()?;
    let (writes, arrivals) = (tmp.path().join("writes"), tmp.path().join("arrivals"));
    let socket = socket.display().to_string();
    let mut subscriber = Helper::spawn(
        "redis subscriber",
        [
            "redis-subscriber".to_string(),
            "--socket".into(),
            socket.clone(),
            "--record".into(),
            arrivals.display().to_string(),
        ],
    )?;
    subscriber.expect("ready", SHORT).await?;
    let publisher = Helper::spawn(
        "redis publisher",
        [
            "redis-publisher".to_string(),
            "--socket".into(),
            socket,
            "--count".into(),
            total(sizes).to_string(),
            "--value-size".into(),
            sizes.value_size.to_string(),
            "--record".into(),
            writes.display().to_string(),
        ],
    )?;
    let pass = drive(publisher, &mut subscriber, sizes, &writes, &arrivals).await?;
    subscriber.stop().await;
    Ok(pass)
}

/// Starts `writer`, waits for it and for every event at `watcher`, and joins their records.
async fn drive(
    mut writer: Helper,
    watcher: &mut Helper,
    sizes: &Sizes,
    writes: &Path,
    arrivals: &Path,
) -> Result<Pass> {
    writer.expect("ready", SHORT).await?;
    writer.send("go").await?;
    let limit = SHORT + Duration::from_millis(5) * total(sizes) as u32;
    writer.expect("done", limit).await?;
    watcher.send(&format!("until {}", total(sizes))).await?;
    watcher.expect("done", SHORT).await?;
    writer.stop().await;
    join(
        &read_rows::<3>(writes)?,
        &read_rows::<2>(arrivals)?,
        warm_up(sizes) as u64,
    )
}

/// Each write's latencies, matched with its event by index; writes below `skip` left out.
fn join(writes: &[[u64; 3]], arrivals: &[[u64; 2]], skip: u64) -> Result<Pass> {
    let arrived: HashMap<u64, u64> = arrivals.iter().map(|[i, at]| (*i, *at)).collect();
    let us = |later: u64, earlier: u64| (later as i64 - earlier as i64) as f64 / 1e3;
    let mut pass = Pass::default();
    for &[i, start, ack] in writes.iter().filter(|w| w[0] >= skip) {
        let at = *arrived
            .get(&i)
            .ok_or_else(|| Error::other(format!("write {i} never reached the watcher")))?;
        pass.after_ack.push(us(at, ack));
        pass.after_start.push(us(at, start));
        pass.write.push(us(ack, start));
    }
    Ok(pass)
}

fn figures(
    engine: EngineName,
    runs: &[Run],
    sizes: &Sizes,
    redis_missing: Option<String>,
) -> Vec<Figure> {
    let col = |f: &dyn Fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let redis_col = |f: fn(&Pass) -> &Vec<f64>, p: f64| {
        col(&|r: &Run| r.redis.as_ref().map_or(0.0, |pass| percentile(f(pass), p)))
    };
    let writer = format!(
        "a writer process (a follower, {engine}, default options) puts one key at a time \
         ({} B values) from a tokio task",
        sizes.value_size
    );
    let redis = "Redis pub/sub over a unix socket: a publisher process PUBLISHes one message at \
                 a time (waiting for the reply), a subscriber process receives; both tokio";
    let mut out = Vec::new();
    for (leader, who) in [
        (false, "a follower watcher (another process)"),
        (true, "the leader watching itself (in the leader process)"),
    ] {
        let side: fn(&Run) -> &Pass = if leader {
            |r| &r.leader
        } else {
            |r| &r.follower
        };
        let label = if leader { "leader" } else { "follower" };
        for (after, f, since) in [
            (
                "the acknowledgement",
                (|p: &Pass| &p.after_ack) as fn(&Pass) -> &Vec<f64>,
                "ack",
            ),
            ("the write's start", |p: &Pass| &p.after_start, "start"),
        ] {
            for p in [50.0, 99.0] {
                out.push(
                    Figure::new(
                        "W1",
                        format!("event at a {label} watcher after the write's {since}, p{p}"),
                        "µs",
                    )
                    .subject(
                        format!("{writer}; {who} records when each event arrives, after {after}"),
                        col(&|r| percentile(f(side(r)), p)),
                    )
                    .baseline(
                        format!("{redis}; message arrival after the PUBLISH's {since}"),
                        redis_col(f, p),
                    ),
                );
            }
        }
    }
    out.push(
        Figure::new(
            "W1·i",
            "the write itself (put vs PUBLISH round trip), p50",
            "µs",
        )
        .subject(
            format!("{writer}: acknowledgement − start, follower-watcher pass"),
            col(&|r| percentile(&r.follower.write, 50.0)),
        )
        .baseline(
            format!("{redis}: reply − start"),
            redis_col(|p| &p.write, 50.0),
        ),
    );
    if let Some(first) = out.first_mut() {
        first.note = Some(format!(
            "{} puts (messages) per pass after {} of warm-up. An event can reach a watcher \
             before its writer has the acknowledgement (the leader hands a commit to its \
             watchers before it answers the writers; Redis writes to subscribers before it \
             replies), so times after the acknowledgement can be negative; a ratio is left \
             out when either side is not positive.",
            sizes.watch_puts,
            warm_up(sizes)
        ));
    }
    if let Some(why) = redis_missing {
        for fig in &mut out {
            fig.skip(format!("skipped: {why}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_meet_their_events_by_index() {
        let writes = [[0, 100, 2_100], [1, 3_000, 5_000], [2, 6_000, 9_000]];
        let arrivals = [[2, 8_000], [1, 6_000], [0, 2_000]];
        let pass = join(&writes, &arrivals, 1).unwrap();
        assert_eq!(pass.after_ack, vec![1.0, -1.0]);
        assert_eq!(pass.after_start, vec![3.0, 2.0]);
        assert_eq!(pass.write, vec![2.0, 3.0]);
        assert!(join(&writes, &arrivals[..2], 0).is_err());
    }
}
