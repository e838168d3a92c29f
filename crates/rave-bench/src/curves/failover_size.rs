//! C4: failover time against database size, beside the engine's own open after a crash.
//!
//! One database grows from point to point: before each point this process opens the bare
//! engine, writes the increment (distinct keys, values of [`CurveSizes::fill_value_size`]) and
//! closes it. Then, per run, P6's measurement: a leader process opens the directory, this
//! process follows, the leader is SIGKILLed, and the clock stops at the first get served by
//! the next leader (this handle: loss detection, election, the engine's crash-recovery open,
//! binding the socket). The baseline is the bare engine's own open of the directory right
//! after its leader was SIGKILLed (P6's baseline).

use std::path::Path;

use rave::{Backend, Error, KvStore, Result};

use super::{Curve, CurveSizes, Series, fmt_bytes};
use crate::child::temp_dir;
use crate::cli::Sizes;
use crate::engines::{self, EngineName, with_engine};
use crate::failover::{crashed_open, failover_once};
use crate::helper::fill;
use crate::leader::open_bare;
use crate::stats::percentile;

/// Measures C4 for `engine` (`sizes` gives P6's value size to the leader it spawns).
pub async fn measure(engine: EngineName, sizes: &Sizes, cs: &CurveSizes) -> Result<Curve> {
    with_engine!(engine, B => measure_with::<B>(engine, sizes, cs).await)
}

async fn measure_with<B: Backend + Default>(
    engine: EngineName,
    sizes: &Sizes,
    cs: &CurveSizes,
) -> Result<Curve> {
    let tmp = temp_dir()?;
    let dir = tmp.path().join("db");
    let points = cs.db_sizes.len();
    let mut rave = Series::new(
        format!("rave failover ({engine})"),
        format!(
            "SIGKILL of the leader process → first get completed by this follower on the next \
             leader (it is the only follower, so it becomes the leader); the median of {} per \
             run",
            cs.failovers
        ),
        points,
    );
    let mut open = Series::new(
        format!("{engine} open after SIGKILL"),
        format!(
            "the engine's own open (Backend::open) of the directory right after its leader was \
             SIGKILLed, crash recovery included; the median of {} per run",
            cs.failovers
        ),
        points,
    )
    .baseline();
    let value_size = cs.fill_value_size.max(1);
    let mut entries = 0;
    let mut on_disk = Vec::new();
    for (i, &bytes) in cs.db_sizes.iter().enumerate() {
        let target = bytes / value_size;
        grow::<B>(&dir, entries, target, value_size).await?;
        entries = target.max(entries);
        on_disk.push(dir_bytes(&dir)?);
        for _run in 0..cs.runs {
            let (mut failovers, mut opens) = (Vec::new(), Vec::new());
            for _ in 0..cs.failovers.max(1) {
                failovers.push(failover_once::<B>(engine, &dir, 0, sizes).await?);
                opens.push(crashed_open::<B>(engine, &dir, sizes).await?);
            }
            rave.runs[i].push(percentile(&failovers, 50.0));
            open.runs[i].push(percentile(&opens, 50.0));
        }
    }

    let mut curve = Curve::new(
        "C4",
        "failover time against database size",
        "database size (values written)",
        cs.db_sizes.iter().map(|&b| b as f64).collect(),
        cs.db_sizes.iter().map(|&b| fmt_bytes(b)).collect(),
        "ms",
    );
    let disk: Vec<String> = cs
        .db_sizes
        .iter()
        .zip(&on_disk)
        .map(|(&b, &d)| format!("{} → {:.0} MiB", fmt_bytes(b), d as f64 / (1 << 20) as f64))
        .collect();
    curve.note = format!(
        "One database grown from point to point with {} values under distinct 16 B keys, \
         written through the bare engine in batches of 10 000 and closed cleanly; {} failovers \
         and {} opens per point and run, {} run(s). On disk after growing: {}.",
        fmt_bytes(value_size),
        cs.failovers.max(1),
        cs.failovers.max(1),
        cs.runs,
        disk.join(", ")
    );
    curve.series = vec![rave, open];
    Ok(curve)
}

/// Writes entries `from..to` into the bare engine at `dir`, then closes it.
async fn grow<B: Backend + Default>(
    dir: &Path,
    from: usize,
    to: usize,
    value_size: usize,
) -> Result<()> {
    if to <= from {
        return Ok(());
    }
    let store = open_bare::<B>(dir).await?;
    fill(
        &store,
        to - from,
        |j| engines::key(from + j),
        &engines::value(value_size),
    )
    .await?;
    store.close().await
}

/// The bytes of every file under `dir` (0 when there is no `dir`: the memory engine).
fn dir_bytes(dir: &Path) -> Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), &e)),
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), &e))?;
        let meta = entry
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", entry.path().display()), &e))?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
