//! P7: scanning every entry through a follower, against the same scan on the leader.
//!
//! A leader process writes the small entries once; each run scans them all on the leader (its
//! own handle, no socket) and through this process's follower handle, in alternating order,
//! both reading `DEFAULT_CHUNK` entries at a time as `collect_all` does.

use std::time::{Duration, Instant};

use rave::{Backend, Error, KvStore, Rave, RaveOptions, Result};

use crate::child::{Helper, field, follow, temp_dir};
use crate::cli::Sizes;
use crate::engines::{EngineName, with_engine};
use crate::helper::scan_all;
use crate::report::{Figure, Target};

/// The iterator window of the diagnostic follower, in bytes (8× the default).
const WIDE_WINDOW: u32 = 8 << 20;

/// How long one scan may take.
const SCAN_LIMIT: Duration = Duration::from_secs(600);

/// Measures P7 for `engine`.
pub async fn measure(engine: EngineName, sizes: &Sizes) -> Result<Vec<Figure>> {
    with_engine!(engine, B => measure_with::<B>(engine, sizes).await)
}

async fn measure_with<B: Backend + Default>(
    engine: EngineName,
    sizes: &Sizes,
) -> Result<Vec<Figure>> {
    let tmp = temp_dir()?;
    let dir = tmp.path().join("db");
    let mut leader = Helper::leader(engine, &dir, &[("small", sizes.scan_entries)])?;
    leader.expect("ready", SCAN_LIMIT).await?;
    let db = follow::<B>(&dir, RaveOptions::default()).await?;
    // A second follower with a wider iterator window: how much the default window bounds P7.
    let mut wide_options = RaveOptions::default();
    wide_options.limits.iter_window_bytes = WIDE_WINDOW;
    let wide = Rave::<B>::open_engine(&dir, wide_options)?;
    wide.ready().await?;
    let expected = sizes.scan_entries as u64;
    let (mut on_leader, mut through_follower, mut through_wide) = (vec![], vec![], vec![]);
    for run in 0..sizes.runs {
        for side in 0..2 {
            if (run + side) % 2 == 0 {
                leader.send("scan").await?;
                let words = leader.expect("scan", SCAN_LIMIT).await?;
                let n: u64 = field(&words, 0, "a count")?;
                let nanos: u64 = field(&words, 1, "a duration")?;
                check(n, expected)?;
                on_leader.push(n as f64 / (nanos as f64 / 1e9));
            } else {
                through_follower.push(timed_scan(&db, expected).await?);
            }
        }
        through_wide.push(timed_scan(&wide, expected).await?);
    }
    wide.close().await?;
    db.close().await?;
    leader.stop().await;
    Ok(vec![
        Figure::new(
            "P7",
            format!("scan of {} small entries", sizes.scan_entries),
            "entries/s",
        )
        .higher_is_better()
        .subject(
            "through a follower (another process, over the socket)",
            through_follower,
        )
        .baseline("on the leader, through its own handle", on_leader.clone())
        .target(Target::ratio_at_least(0.5)),
        Figure::new(
            "P7·d",
            format!("scan, follower iterator window {} MiB", WIDE_WINDOW >> 20),
            "entries/s",
        )
        .higher_is_better()
        .subject(
            format!(
                "through a follower opened with `limits.iter_window_bytes = {WIDE_WINDOW}` \
                 (default {})",
                rave_transport::Limits::default().iter_window_bytes
            ),
            through_wide,
        )
        .baseline("on the leader, through its own handle", on_leader),
    ])
}

/// Scans all of `store` (within [`SCAN_LIMIT`]), checks it saw `expected` entries, and returns
/// the entries per second.
async fn timed_scan(store: &dyn KvStore, expected: u64) -> Result<f64> {
    let started = Instant::now();
    let n = tokio::time::timeout(SCAN_LIMIT, scan_all(store))
        .await
        .map_err(|_| Error::Timeout { waited: SCAN_LIMIT })??;
    check(n, expected)?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn check(n: u64, expected: u64) -> Result<()> {
    if n == expected {
        Ok(())
    } else {
        Err(Error::other(format!(
            "a scan saw {n} entries, not {expected}"
        )))
    }
}
