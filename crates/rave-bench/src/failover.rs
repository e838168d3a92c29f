//! P6: from the SIGKILL of the leader to the first operation a follower completes on the next
//! leader, beside the engine's own open time after such a crash.
//!
//! A leader process holds the directory; this process follows it. The clock starts just before
//! `kill(SIGKILL)`; the follower then issues gets until one succeeds on a leader of a newer
//! epoch (so a reply from the dying leader never counts). Being the only follower, this handle
//! detects the loss, wins the lock, opens the engine and serves itself: the whole failover path.
//!
//! The baseline is the engine's own open of a directory whose leader was just SIGKILLed
//! (crash recovery included), timed around `Backend::open` in this process.

use std::time::{Duration, Instant};

use rave::{Backend, Error, KvStore, RaveOptions, Result};

use crate::child::{Helper, SHORT, follow, temp_dir};
use crate::cli::Sizes;
use crate::engines::{self, EngineName, with_engine};
use crate::leader::open_bare;
use crate::report::{Figure, Target};
use crate::stats::percentile;

/// How long one failover may take before the run fails.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);

/// Measures P6 for `engine`.
pub async fn measure(engine: EngineName, sizes: &Sizes) -> Result<Vec<Figure>> {
    with_engine!(engine, B => measure_with::<B>(engine, sizes).await)
}

/// One failover: milliseconds from SIGKILL to the first get served by the next leader.
pub(crate) async fn failover_once<B: Backend + Default>(
    engine: EngineName,
    dir: &std::path::Path,
    keys: usize,
    sizes: &Sizes,
) -> Result<f64> {
    let mut leader = Helper::leader(
        engine,
        dir,
        &[("keys", keys), ("value-size", sizes.value_size)],
    )?;
    leader.expect("ready", SHORT).await?;
    let db = follow::<B>(dir, RaveOptions::default()).await?;
    let key = engines::key(0);
    db.get(&key).await?;
    let before = db.epoch();
    let started = Instant::now();
    leader.kill()?;
    let waited = tokio::time::timeout(FAILOVER_LIMIT, async {
        loop {
            if db.get(&key).await.is_ok() && db.epoch() != before {
                return;
            }
        }
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    if waited.is_err() {
        return Err(Error::Timeout {
            waited: FAILOVER_LIMIT,
        });
    }
    leader.reap(SHORT).await?;
    db.close().await?;
    Ok(elapsed)
}

/// One crash-recovery open of the bare engine: milliseconds.
pub(crate) async fn crashed_open<B: Backend + Default>(
    engine: EngineName,
    dir: &std::path::Path,
    sizes: &Sizes,
) -> Result<f64> {
    let mut leader = Helper::leader(
        engine,
        dir,
        &[("keys", 0), ("value-size", sizes.value_size)],
    )?;
    leader.expect("ready", SHORT).await?;
    leader.kill()?;
    leader.reap(SHORT).await?;
    let started = Instant::now();
    let store = open_bare::<B>(dir).await?;
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    store.close().await?;
    Ok(elapsed)
}

async fn measure_with<B: Backend + Default>(
    engine: EngineName,
    sizes: &Sizes,
) -> Result<Vec<Figure>> {
    let tmp = temp_dir()?;
    let dir = tmp.path().join("db");
    let (mut p50, mut p99, mut open) = (vec![], vec![], vec![]);
    for run in 0..sizes.runs {
        let mut samples = Vec::new();
        for i in 0..sizes.failovers {
            // The first leader writes the data set; later ones reopen it.
            let keys = if run == 0 && i == 0 { sizes.keys } else { 0 };
            samples.push(failover_once::<B>(engine, &dir, keys, sizes).await?);
        }
        let mut opens = Vec::new();
        for _ in 0..sizes.engine_opens {
            opens.push(crashed_open::<B>(engine, &dir, sizes).await?);
        }
        p50.push(percentile(&samples, 50.0));
        p99.push(percentile(&samples, 99.0));
        open.push(percentile(&opens, 50.0));
    }
    let subject = format!(
        "SIGKILL of the leader process → first get completed by this follower on the next \
         leader ({} failovers per run; the follower is the only one, so it becomes the leader)",
        sizes.failovers
    );
    let baseline = format!(
        "the engine's own open (Backend::open) of the directory right after its leader was \
         SIGKILLed, median of {} per run",
        sizes.engine_opens
    );
    Ok(vec![
        Figure::new("P6", "failover time, p50", "ms")
            .subject(&subject, p50)
            .baseline(&baseline, open.clone())
            .target(Target::excess_at_most(10.0)),
        Figure::new("P6", "failover time, p99", "ms")
            .subject(&subject, p99)
            .baseline(&baseline, open)
            .target(Target::excess_at_most(50.0))
            .note(format!(
                "p99 of {} samples per run is close to their maximum.",
                sizes.failovers
            )),
    ])
}
