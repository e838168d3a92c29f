//! P8: resident memory (VmRSS) of an idle follower, and of a leader serving many followers.
//!
//! Every process here is this binary in a helper mode, so the baseline of the follower is the
//! same binary with a tokio runtime and nothing else; the leader serving followers is compared
//! with itself serving none.

use std::time::Duration;

use rave::{Error, Result};

use crate::child::{Helper, SHORT, temp_dir};
use crate::cli::Sizes;
use crate::engines::EngineName;
use crate::machine::rss_bytes;
use crate::report::{Figure, Target};

/// How long a process idles before its memory is read, so that start-up work has settled.
const SETTLE: Duration = Duration::from_millis(500);

const MIB: f64 = 1024.0 * 1024.0;

/// Measures P8 for `engine`.
pub async fn measure(engine: EngineName, sizes: &Sizes) -> Result<Vec<Figure>> {
    let (mut idle, mut follower, mut alone, mut serving) = (vec![], vec![], vec![], vec![]);
    for _ in 0..sizes.runs {
        let tmp = temp_dir()?;
        let dir = tmp.path().join("db");
        let dir_arg = dir.display().to_string();

        let mut bare = Helper::spawn("idle", ["idle"])?;
        bare.expect("ready", SHORT).await?;
        tokio::time::sleep(SETTLE).await;
        idle.push(rss_mib(&bare)?);
        bare.stop().await;

        let mut leader = Helper::leader(engine, &dir, &sizes.point_data())?;
        leader.expect("ready", SHORT).await?;
        tokio::time::sleep(SETTLE).await;
        alone.push(rss_mib(&leader)?);

        let mut followers = Vec::new();
        for i in 0..sizes.followers.max(1) {
            let mut f = Helper::spawn(
                format!("follower {i}"),
                [
                    "idle-follower".to_string(),
                    "--backend".into(),
                    engine.to_string(),
                    "--dir".into(),
                    dir_arg.clone(),
                ],
            )?;
            f.expect("ready", SHORT).await?;
            followers.push(f);
        }
        tokio::time::sleep(SETTLE).await;
        follower.push(rss_mib(&followers[0])?);
        serving.push(rss_mib(&leader)?);
        for f in followers {
            f.stop().await;
        }
        leader.stop().await;
    }
    let n = sizes.followers.max(1);
    Ok(vec![
        Figure::new("P8", "idle follower, resident memory", "MiB")
            .subject(
                "a follower process (rave-bench helper) after one get, idle",
                follower,
            )
            .baseline(
                "the same binary with a multi-thread tokio runtime and nothing else",
                idle,
            )
            .target(Target::absolute_at_most(10.0)),
        Figure::new(
            "P8",
            format!("leader serving {n} followers, resident memory"),
            "MiB",
        )
        .subject(
            format!("the leader process with {n} idle followers connected"),
            serving,
        )
        .baseline(
            format!(
                "the same leader before any follower connected ({} keys written)",
                sizes.keys
            ),
            alone,
        ),
    ])
}

fn rss_mib(helper: &Helper) -> Result<f64> {
    let pid = helper
        .pid()
        .ok_or_else(|| Error::other("a helper exited before its memory was read"))?;
    rss_bytes(pid)
        .map(|b| b as f64 / MIB)
        .ok_or_else(|| Error::other(format!("cannot read VmRSS of process {pid}")))
}
