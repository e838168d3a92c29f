//! P5: durable puts, one put per operation, from several processes at once.
//!
//! rave (whichever process wins the election leads; group commit shares each fsync) against
//! SQLite in WAL mode with `synchronous=FULL` (autocommit), LMDB (heed, one write transaction
//! per put, synced at commit) and redb's own multi-process mode (`ConcurrencyMode::MultiWriter`,
//! one write transaction per put, `Durability::Immediate`).
//!
//! Every system runs the same number of processes. Each baseline is measured with one writer
//! per process and with as many writers per process as rave; the ratio is taken against the
//! better of the two, so rave is never compared with a baseline's weaker configuration.

use std::path::Path;
use std::time::Duration;

use rave::{Error, Result};

use crate::child::{Helper, SHORT, field, temp_dir};
use crate::cli::Sizes;
use crate::engines::EngineName;
use crate::helper;
use crate::report::{Figure, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Rave(EngineName),
    Sqlite,
    Lmdb,
    Redb,
}

/// One measurement: total puts per second, and puts that failed.
struct Outcome {
    ops_per_sec: f64,
    errors: u64,
}

/// Measures P5 for `engine`.
pub async fn measure(engine: EngineName, sizes: &Sizes) -> Result<Vec<Figure>> {
    let many = sizes.writers_per_process;
    let systems = [
        System::Rave(engine),
        System::Sqlite,
        System::Lmdb,
        System::Redb,
    ];
    // results[system][0] = one writer per process, [1] = `many` per process.
    let mut results: Vec<[Vec<f64>; 2]> = vec![[Vec::new(), Vec::new()]; systems.len()];
    let mut errors = 0u64;
    // The fsync ceiling, once per run beside the systems (see `fsync`).
    let mut fsync_rates = Vec::new();
    for _run in 0..sizes.runs {
        fsync_rates.push(crate::fsync::rate(sizes.value_size, sizes.durable_seconds).await?);
        for (i, system) in systems.iter().enumerate() {
            for (j, writers) in [1, many].into_iter().enumerate() {
                let outcome = run_once(*system, sizes, writers).await?;
                errors += outcome.errors;
                results[i][j].push(outcome.ops_per_sec);
            }
        }
    }
    let best = |i: usize| -> Vec<f64> {
        results[i][0]
            .iter()
            .zip(&results[i][1])
            .map(|(a, b)| a.max(*b))
            .collect()
    };
    let procs = sizes.writer_processes;
    let rave = format!(
        "rave ({engine}, sync on), {procs} processes × {many} concurrent put tasks on one handle each"
    );
    let better = format!("the better of 1 and {many} writer threads per process");
    let mut note = format!(
        "Values of {} B, a distinct key per put, {} s per measurement, a fresh database each time.",
        sizes.value_size, sizes.durable_seconds
    );
    if errors > 0 {
        note.push_str(&format!(
            " {errors} puts failed across all systems (see stderr)."
        ));
    }
    let mut figures = vec![
        Figure::new("P5", "durable puts vs SQLite WAL FULL", "puts/s")
            .higher_is_better()
            .subject(&rave, results[0][1].clone())
            .baseline(
                format!(
                    "SQLite (bundled), WAL, synchronous=FULL, autocommit INSERT OR REPLACE, \
                     {procs} processes, {better}"
                ),
                best(1),
            )
            .target(Target::ratio_at_least(10.0))
            .note(note),
        Figure::new("P5", "durable puts vs LMDB", "puts/s")
            .higher_is_better()
            .subject(&rave, results[0][1].clone())
            .baseline(
                format!(
                    "LMDB (heed), one write transaction per put, synced at commit, \
                     {procs} processes, {better}"
                ),
                best(2),
            )
            .target(Target::ratio_at_least(3.0)),
        Figure::new("P5", "durable puts vs redb multi-process", "puts/s")
            .higher_is_better()
            .subject(&rave, results[0][1].clone())
            .baseline(
                format!(
                    "redb 4.6 ConcurrencyMode::MultiWriter (every process opens the file for \
                     writing), one Immediate transaction per put, {procs} processes, {better}"
                ),
                best(3),
            )
            .target(Target::ratio_at_least(3.0)),
    ];
    let one_each = format!("rave ({engine}, sync on), {procs} processes × 1 put in flight");
    // A perfect leader commits every process's put at once: one fdatasync per `procs` puts.
    let ceiling: Vec<f64> = fsync_rates.iter().map(|r| r * procs as f64).collect();
    let ceiling_what = format!(
        "the fsync ceiling: {procs} × this machine's fdatasync rate (one thread appending \
         {} B and syncing, same file system, same run)",
        sizes.value_size
    );
    figures.extend([
        Figure::new(
            "P5",
            "durable puts, 1 in flight per process, vs SQLite",
            "puts/s",
        )
        .higher_is_better()
        .subject(&one_each, results[0][0].clone())
        .baseline(
            format!("SQLite WAL FULL, {procs} processes × 1 writer"),
            results[1][0].clone(),
        )
        .target(Target::ratio_at_least(2.0)),
        Figure::new(
            "P5·c",
            "durable puts, 1 in flight per process, of the fsync ceiling",
            "puts/s",
        )
        .higher_is_better()
        .subject(&one_each, results[0][0].clone())
        .baseline(&ceiling_what, ceiling.clone())
        .target(Target::ratio_at_least(0.5)),
        Figure::new(
            "P5·i",
            "durable puts, many in flight, of the fsync ceiling",
            "puts/s",
        )
        .higher_is_better()
        .subject(&rave, results[0][1].clone())
        .baseline(&ceiling_what, ceiling)
        .note(format!(
            "Given for information: with {many} puts in flight per process a commit may carry up \
             to {} puts, so this ceiling is not the bound (the engine's commit cost is).",
            procs * many
        )),
    ]);
    Ok(figures)
}

async fn run_once(system: System, sizes: &Sizes, writers: usize) -> Result<Outcome> {
    let tmp = temp_dir()?;
    let (path, mode, backend) = match system {
        System::Rave(engine) => (tmp.path().join("db"), "rave-writer", Some(engine)),
        System::Sqlite => {
            let path = tmp.path().join("kv.sqlite");
            helper::sqlite_create(&path)?;
            (path, "sqlite-writer", None)
        }
        System::Lmdb => (tmp.path().join("lmdb"), "lmdb-writer", None),
        System::Redb => {
            let path = tmp.path().join("kv.redb");
            // Created here once, so the writers only open it.
            drop(helper::redb_open(&path)?);
            (path, "redb-writer", None)
        }
    };
    let mut helpers = Vec::new();
    for id in 0..sizes.writer_processes {
        helpers.push(Helper::spawn(
            format!("{mode} {id}"),
            args(mode, backend, &path, id, writers, sizes),
        )?);
    }
    for h in &mut helpers {
        h.expect("ready", SHORT).await?;
    }
    for h in &mut helpers {
        h.send("go").await?;
    }
    let limit = Duration::from_secs_f64(sizes.durable_seconds) + SHORT;
    let mut ops_per_sec = 0.0;
    let mut errors = 0;
    for h in &mut helpers {
        let words = h.expect("done", limit).await?;
        let ops: u64 = field(&words, 0, "a count")?;
        let nanos: u64 = field(&words, 1, "a duration")?;
        errors += field::<u64>(&words, 2, "an error count")?;
        if nanos == 0 {
            return Err(Error::other("a writer measured no time"));
        }
        ops_per_sec += ops as f64 / (nanos as f64 / 1e9);
    }
    // Nothing is checked after the measurement: SIGKILL is the quickest way out.
    for h in helpers {
        h.kill_and_reap().await;
    }
    Ok(Outcome {
        ops_per_sec,
        errors,
    })
}

fn args(
    mode: &str,
    backend: Option<EngineName>,
    path: &Path,
    id: usize,
    writers: usize,
    sizes: &Sizes,
) -> Vec<String> {
    let mut args = vec![mode.to_string()];
    if let Some(engine) = backend {
        args.extend(["--backend".into(), engine.to_string()]);
    }
    args.extend([
        "--path".into(),
        path.display().to_string(),
        "--id".into(),
        id.to_string(),
        "--writers".into(),
        writers.to_string(),
        "--seconds".into(),
        sizes.durable_seconds.to_string(),
        "--value-size".into(),
        sizes.value_size.to_string(),
    ]);
    args
}
