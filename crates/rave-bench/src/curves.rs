//! Curves C1 to C5: how rave's cost grows with the number of follower processes, the value
//! size, the database size and the connected followers, each beside its baseline.
//!
//! A curve is a few points on an x axis; at each point every series (rave and its baselines)
//! is measured back to back, once per run, and reported as the median of the runs with their
//! minimum and maximum. To fit the time of a full run the curves use fewer runs than the
//! figures (at most [`CURVE_RUNS`]) and short windows (about a second per point); the
//! report says so. `curve_chart` draws them.

pub mod failover_size;
pub mod latency_size;
pub mod memory_followers;
pub mod throughput;
pub mod worker;

use std::time::Duration;

use rave::{Error, Result};
use serde::Serialize;

use crate::child::{Helper, SHORT, field};
use crate::cli::Sizes;
use crate::engines::EngineName;
use crate::stats::Summary;

/// The most runs a curve takes in a full run, whatever `--runs` says: curves have many
/// points, and the time of a full run is bounded.
pub const CURVE_RUNS: usize = 3;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// The points and windows of the curves.
#[derive(Clone, Debug, Serialize)]
pub struct CurveSizes {
    /// Runs per curve.
    pub runs: usize,
    /// Follower processes of C1 and C2.
    pub processes: Vec<usize>,
    /// How long each C1 and C2 measurement runs, in seconds.
    pub seconds: f64,
    /// GETs per point of Redis in C1 (redis-benchmark takes a count, not a time).
    pub redis_requests: usize,
    /// Keys of C1's data set (100 B values, as P1 to P4).
    pub keys: usize,
    /// Value sizes of C3, in bytes.
    pub value_sizes: Vec<usize>,
    /// How long each C3 measurement runs, in seconds.
    pub latency_seconds: f64,
    /// Database sizes of C4, in bytes of values written.
    pub db_sizes: Vec<usize>,
    /// The value size C4 fills the database with.
    pub fill_value_size: usize,
    /// Failovers and engine opens per point and run (C4).
    pub failovers: usize,
    /// Connected followers of C5.
    pub followers: Vec<usize>,
    /// The processes C5's followers are spread over.
    pub follower_processes: usize,
}

impl CurveSizes {
    /// The curves' sizes for a run with `sizes`.
    pub fn new(quick: bool, sizes: &Sizes) -> Self {
        if quick {
            CurveSizes {
                runs: 1,
                processes: vec![1, 2],
                seconds: 0.2,
                redis_requests: 2_000,
                keys: 1_000,
                value_sizes: vec![16, 4 * KIB],
                latency_seconds: 0.1,
                db_sizes: vec![MIB],
                fill_value_size: 4 * KIB,
                failovers: 1,
                followers: vec![0, 10],
                follower_processes: 5,
            }
        } else {
            CurveSizes {
                runs: sizes.runs.min(CURVE_RUNS),
                processes: vec![1, 2, 4, 8, 16, 32, 64],
                seconds: 1.0,
                redis_requests: 50_000,
                keys: sizes.keys,
                value_sizes: vec![16, 256, 4 * KIB, 64 * KIB, MIB],
                latency_seconds: 0.3,
                db_sizes: vec![MIB, 16 * MIB, 256 * MIB, 1024 * MIB],
                fill_value_size: 4 * KIB,
                failovers: 3,
                followers: vec![0, 10, 100, 1_000],
                follower_processes: 20,
            }
        }
    }
}

/// One series of a curve: rave or a baseline, measured at every point of the curve.
#[derive(Clone, Debug, Serialize)]
pub struct Series {
    /// The legend's name.
    pub name: String,
    /// What exactly is measured.
    pub what: String,
    /// Whether this is a baseline (rave's series are drawn first and bolder).
    pub baseline: bool,
    /// A companion of an earlier series (a p99 beside its p50): drawn thin, without markers,
    /// in the colour of the series of the same rank.
    pub secondary: bool,
    /// The runs at each point (`runs[i]` belongs to the curve's `x[i]`).
    pub runs: Vec<Vec<f64>>,
    /// Why the series was not measured.
    pub skipped: Option<String>,
}

impl Series {
    /// A series named `name` (`what` says exactly what it measures) with no runs yet.
    pub fn new(name: impl Into<String>, what: impl Into<String>, points: usize) -> Self {
        Series {
            name: name.into(),
            what: what.into(),
            baseline: false,
            secondary: false,
            runs: vec![Vec::new(); points],
            skipped: None,
        }
    }

    /// Marks the series as a baseline.
    pub fn baseline(mut self) -> Self {
        self.baseline = true;
        self
    }

    /// The median, minimum and maximum of the runs at each point.
    pub fn summaries(&self) -> Vec<Summary> {
        self.runs.iter().map(|r| Summary::of(r)).collect()
    }

    /// Whether there is something to draw.
    pub fn measured(&self) -> bool {
        self.skipped.is_none() && self.runs.iter().any(|r| !r.is_empty())
    }
}

/// A curve of one engine.
#[derive(Clone, Debug, Serialize)]
pub struct Curve {
    /// C1 to C5.
    pub id: String,
    /// The chart's file name without the engine and extension (`c3-get`).
    pub slug: String,
    /// What is measured against what.
    pub name: String,
    /// What the x axis counts.
    pub x_name: String,
    /// The points of the x axis.
    pub x: Vec<f64>,
    /// How each point is written (`4 KiB`, `64`).
    pub x_labels: Vec<String>,
    /// The unit of every series.
    pub unit: String,
    /// Whether the y axis is logarithmic (latencies that span decades).
    pub log_y: bool,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
    /// rave's series first, then the baselines (serialized by [`Curve::result`], with their
    /// summaries).
    #[serde(skip)]
    pub series: Vec<Series>,
    /// Conditions a reader must know.
    pub note: String,
}

impl Curve {
    /// A curve with no series yet.
    pub fn new(
        id: &str,
        name: impl Into<String>,
        x_name: impl Into<String>,
        x: Vec<f64>,
        x_labels: Vec<String>,
        unit: &str,
    ) -> Self {
        Curve {
            id: id.into(),
            slug: id.to_ascii_lowercase(),
            name: name.into(),
            x_name: x_name.into(),
            x,
            x_labels,
            unit: unit.into(),
            log_y: false,
            higher_is_better: false,
            series: Vec::new(),
            note: String::new(),
        }
    }
}

/// A series as reported: its runs and, at each point, their median, minimum and maximum.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesResult {
    /// The series as measured.
    #[serde(flatten)]
    pub series: Series,
    /// The summary of the runs at each point.
    pub points: Vec<Summary>,
}

/// A curve as reported in the JSON.
#[derive(Clone, Debug, Serialize)]
pub struct CurveResult {
    /// The curve's axis, unit and note.
    #[serde(flatten)]
    pub curve: Curve,
    /// Its series with their summaries.
    pub series: Vec<SeriesResult>,
}

impl Curve {
    /// The curve with the summaries of its series, as reported.
    pub fn result(&self) -> CurveResult {
        CurveResult {
            curve: self.clone(),
            series: self
                .series
                .iter()
                .map(|s| SeriesResult {
                    series: s.clone(),
                    points: s.summaries(),
                })
                .collect(),
        }
    }
}

/// A byte count as written on an axis: `16 B`, `4 KiB`, `1 MiB`, `1 GiB`.
pub fn fmt_bytes(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (MIB, "MiB"), (KIB, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} B")
}

/// Measures the curves `wanted` (by id) for `engine`; `step` announces each.
pub async fn measure(
    engine: EngineName,
    sizes: &Sizes,
    quick: bool,
    wanted: &dyn Fn(&str) -> bool,
    step: &dyn Fn(&str, &str),
) -> Result<Vec<Curve>> {
    let cs = CurveSizes::new(quick, sizes);
    let mut curves = Vec::new();
    if wanted("C1") {
        step("C1", "get throughput against follower processes");
        curves.push(throughput::gets(engine, &cs).await?);
    }
    if wanted("C2") {
        step("C2", "durable-put throughput against writer processes");
        curves.push(throughput::puts(engine, &cs).await?);
    }
    if wanted("C3") {
        step("C3", "latency against value size");
        curves.extend(latency_size::measure(engine, &cs).await?);
    }
    if wanted("C4") {
        step("C4", "failover time against database size");
        curves.push(failover_size::measure(engine, sizes, &cs).await?);
    }
    if wanted("C5") {
        step("C5", "leader memory against connected followers");
        curves.push(memory_followers::measure(engine, sizes, &cs).await?);
    }
    Ok(curves)
}

/// Sends `command` to every helper at once, then collects their `done <ops> <nanos> <errors>`
/// answers: the total operations per second (each helper's rate over its own window, summed)
/// and the failed operations.
pub async fn run_all(helpers: &mut [Helper], command: &str, seconds: f64) -> Result<(f64, u64)> {
    for h in helpers.iter_mut() {
        h.send(command).await?;
    }
    let limit = Duration::from_secs_f64(seconds) + SHORT;
    let (mut rate, mut errors) = (0.0, 0u64);
    for h in helpers.iter_mut() {
        let words = h.expect("done", limit).await?;
        let ops: u64 = field(&words, 0, "a count")?;
        let nanos: u64 = field(&words, 1, "a duration")?;
        errors += field::<u64>(&words, 2, "an error count")?;
        if nanos == 0 {
            return Err(Error::other("a worker measured no time"));
        }
        rate += ops as f64 / (nanos as f64 / 1e9);
    }
    Ok((rate, errors))
}

/// Spawns `n` workers with `args(i)` at once and waits until each is ready.
pub async fn spawn_workers(
    what: &str,
    n: usize,
    args: impl Fn(usize) -> Vec<String>,
) -> Result<Vec<Helper>> {
    let mut helpers = Vec::with_capacity(n);
    for i in 0..n {
        helpers.push(Helper::spawn(format!("{what} {i}"), args(i))?);
    }
    for h in &mut helpers {
        h.expect("ready", SHORT).await?;
    }
    Ok(helpers)
}

/// Kills every helper (nothing is checked after a measurement).
pub async fn kill_all(helpers: Vec<Helper>) {
    for h in helpers {
        h.kill_and_reap().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(fmt_bytes(16), "16 B");
        assert_eq!(fmt_bytes(4096), "4 KiB");
        assert_eq!(fmt_bytes(1 << 20), "1 MiB");
        assert_eq!(fmt_bytes(1 << 30), "1 GiB");
        assert_eq!(fmt_bytes(1500), "1500 B");
    }

    #[test]
    fn quick_curves_are_small() {
        let quick = CurveSizes::new(true, &Sizes::new(true, None));
        assert_eq!(quick.runs, 1);
        assert!(quick.processes.iter().all(|&n| n <= 2));
        let full = CurveSizes::new(false, &Sizes::new(false, Some(5)));
        assert_eq!(full.runs, CURVE_RUNS);
        assert_eq!(full.processes.last(), Some(&64));
        assert_eq!(full.followers.last(), Some(&1_000));
        assert!(full.db_sizes.last().is_some_and(|&s| s >= 1 << 30));
    }
}
