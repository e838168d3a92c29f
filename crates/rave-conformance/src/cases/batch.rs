//! Atomic batches and concurrent writers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rave_api::{BatchOp, KvStore, Range};

use crate::support::{Ctx, Db, Failure, Scratch, drain, ensure, expect_value, show};
use crate::{Harness, LeaderChanges, Model, Outcome, TestResult};

/// Puts and dels mixed in one batch, a later op on the same key winning.
pub(crate) async fn batch_mixed(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let mut model = Model::new();
    for (k, v) in [("x", "old"), ("y", "old"), ("z", "old")] {
        db.put(k.as_bytes(), v.as_bytes())
            .await
            .ctx(format!("put {k}"))?;
        model.put(k.as_bytes(), v.as_bytes());
    }
    let ops = vec![
        BatchOp::put("a", "1"),
        BatchOp::put("b", "2"),
        BatchOp::del("x"),
        BatchOp::put("c", "3"),
        BatchOp::del("a"),
        BatchOp::put("a", "4"),
        BatchOp::put("d", "5"),
        BatchOp::del("d"),
        BatchOp::del("never-written"),
        BatchOp::put("y", "new"),
        BatchOp::put("y", "newer"),
        BatchOp::put("x", "back"),
        BatchOp::del("z"),
    ];
    db.batch(ops.clone()).await.ctx("a mixed batch")?;
    model.apply(&ops);
    for (key, expected) in [
        ("a", Some("4")),
        ("b", Some("2")),
        ("c", Some("3")),
        ("d", None),
        ("x", Some("back")),
        ("y", Some("newer")),
        ("z", None),
    ] {
        let got = db.get(key.as_bytes()).await.ctx(format!("get {key}"))?;
        expect_value(
            format!("get {key} after the batch (the later op on a key wins)"),
            got.as_deref(),
            expected.map(str::as_bytes),
        )?;
    }
    db.check_state(&model).await?;
    db.batch(Vec::new()).await.ctx("an empty batch")?;
    db.check_state(&model).await?;
    // A large batch, and one deleting everything it is given.
    let big: Vec<BatchOp> = (0..1000)
        .map(|i| BatchOp::put(format!("big{i:04}"), format!("value {i}")))
        .collect();
    db.batch(big.clone()).await.ctx("a batch of 1000 puts")?;
    model.apply(&big);
    db.check_state(&model).await?;
    let dels: Vec<BatchOp> = (0..1000)
        .step_by(2)
        .map(|i| BatchOp::del(format!("big{i:04}")))
        .collect();
    db.batch(dels.clone()).await.ctx("a batch of 500 dels")?;
    model.apply(&dels);
    db.check_state(&model).await?;
    db.close().await?;
    Ok(Outcome::Passed)
}

const GROUP: usize = 40;
const ROUNDS: usize = 40;

/// Batch `round`: every `g..` key set to `round`, marker `m{round-1}` replaced by `m{round}`.
fn round_ops(round: usize) -> Vec<BatchOp> {
    let value = format!("{round:04}");
    let mut ops: Vec<BatchOp> = (0..GROUP)
        .map(|i| BatchOp::put(format!("g{i:02}"), value.clone()))
        .collect();
    if round > 1 {
        ops.insert(GROUP / 2, BatchOp::del(format!("m{:04}", round - 1)));
    }
    ops.push(BatchOp::put(format!("m{round:04}"), value));
    ops
}

/// Checks that a snapshot holds the whole of one round's batch, or nothing at all; returns the
/// round it holds (0 for nothing).
fn check_snapshot(entries: &[rave_api::Entry], reverse: bool) -> Result<usize, Failure> {
    if entries.is_empty() {
        return Ok(0);
    }
    let mut entries = entries.to_vec();
    if reverse {
        entries.reverse();
    }
    let listing = || crate::support::show_entries(&entries);
    ensure!(
        entries.len() == GROUP + 1,
        "a snapshot taken while batches ran saw part of a batch: expected {} entries (all {GROUP} g keys and one m marker) or none, got {}: {}",
        GROUP + 1,
        entries.len(),
        listing()
    );
    let round = entries[0].value.clone();
    for e in &entries[..GROUP] {
        ensure!(
            e.key.first() == Some(&b'g') && e.value == round,
            "a snapshot taken while batches ran mixed two batches: expected every g key = {}, got {}",
            show(&round),
            listing()
        );
    }
    let marker = &entries[GROUP];
    let mut expected_marker = b"m".to_vec();
    expected_marker.extend_from_slice(&round);
    ensure!(
        marker.key == expected_marker && marker.value == round,
        "a snapshot taken while batches ran saw marker {} for round {}: expected {} (the del and put of the markers are in the same batch as the g keys): {}",
        show(&marker.key),
        show(&round),
        show(&expected_marker),
        listing()
    );
    std::str::from_utf8(&round)
        .ok()
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| Failure::new(format!("a round that is not a number: {}", show(&round))))
}

/// What the writer and the readers of `batch_atomic_under_snapshots` share.
#[derive(Default)]
struct Progress {
    /// The rounds whose batch was acknowledged.
    acked: AtomicUsize,
    /// Set once the last batch was acknowledged (or the writer gave up).
    done: AtomicBool,
    /// Snapshots that saw a state between the first and the last batch, within one leader.
    overlapping: AtomicUsize,
    /// Snapshots whose life spanned a change of leader (their iterator resumed on a new leader,
    /// with a new snapshot, so they are not one snapshot).
    spanned: AtomicUsize,
    /// Readers still running.
    readers: AtomicUsize,
}

/// A reader: iterators opened in a loop from another task while batches run; each must see
/// all of a batch or none of it, and at least the rounds acknowledged before it opened.
async fn snapshot_reader(
    store: Arc<dyn KvStore>,
    progress: Arc<Progress>,
    changes: LeaderChanges,
    id: usize,
) -> Result<usize, Failure> {
    struct Running(Arc<Progress>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.readers.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _running = Running(Arc::clone(&progress));
    let mut snapshots = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while (!progress.done.load(Ordering::SeqCst) || snapshots < 5) && Instant::now() < deadline {
        let reverse = (snapshots + id) % 2 == 1;
        let range = if reverse {
            Range::all().reverse()
        } else {
            Range::all()
        };
        let changes_before = changes.count();
        let acked_before = progress.acked.load(Ordering::SeqCst);
        let mut iter = store
            .iterator(range)
            .await
            .ctx("open an iterator while batches run")?;
        // Small chunks: the batches land while this iterator is being read.
        let entries = drain(&mut *iter, 3 + id, "an iterator opened while batches run").await?;
        drop(iter);
        // Read after the drain: the snapshot was surely taken before.
        let acked_after = progress.acked.load(Ordering::SeqCst);
        snapshots += 1;
        if changes.count() != changes_before {
            progress.spanned.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        let round = check_snapshot(&entries, reverse)?;
        // The writer sends a batch only after the previous one was acknowledged, so the
        // snapshot holds a round acknowledged by then or the one in flight.
        ensure!(
            acked_before <= round && round <= acked_after + 1,
            "a snapshot opened after {acked_before} batches were acknowledged, and read before {} were, saw round {round}",
            acked_after + 1
        );
        if (1..ROUNDS).contains(&round) {
            progress.overlapping.fetch_add(1, Ordering::SeqCst);
        }
        tokio::task::yield_now().await;
    }
    Ok(snapshots)
}

/// A batch is all or nothing to a snapshot taken while it runs; at least one snapshot must see
/// a state between the first and the last batch (the writer waits halfway for one).
pub(crate) async fn batch_atomic_under_snapshots(h: &dyn Harness) -> TestResult {
    let snapshots = h.capabilities().snapshots;
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let progress = Arc::new(Progress::default());
    let readers: Vec<_> = if snapshots {
        (0..2)
            .map(|id| {
                progress.readers.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(snapshot_reader(
                    db.shared(),
                    Arc::clone(&progress),
                    h.leader_changes(),
                    id,
                ))
            })
            .collect()
    } else {
        eprintln!(
            "rave-conformance: batch_atomic_under_snapshots on {}: no snapshots, so no concurrent readers; checking the batches only",
            h.name()
        );
        Vec::new()
    };
    let mut model = Model::new();
    let mut write_result = Ok(());
    for round in 1..=ROUNDS {
        let ops = round_ops(round);
        if let Err(e) = db.batch(ops.clone()).await {
            write_result = Err(Failure::new(format!(
                "batch of round {round}: expected success, got error of kind {}: {e}",
                e.kind()
            )));
            break;
        }
        model.apply(&ops);
        progress.acked.store(round, Ordering::SeqCst);
        if round == ROUNDS / 2 {
            // Halfway, until a reader has seen a state between batches (or every reader has
            // stopped): the overlap does not depend on how the tasks happen to be scheduled.
            while progress.overlapping.load(Ordering::SeqCst) == 0
                && progress.readers.load(Ordering::SeqCst) > 0
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tokio::task::yield_now().await;
    }
    progress.done.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    for reader in readers {
        let result = reader
            .await
            .map_err(|e| Failure::new(format!("a reader task failed: {e}")))?;
        seen.push(result?);
    }
    write_result?;
    db.check_state(&model).await?;
    let overlapping = progress.overlapping.load(Ordering::SeqCst);
    let spanned = progress.spanned.load(Ordering::SeqCst);
    if snapshots {
        ensure!(
            overlapping > 0,
            "no snapshot saw a state between the first and the last batch ({seen:?} snapshots per reader, {spanned} spanning a change of leader): nothing was checked while batches ran"
        );
    }
    tracing::debug!(?seen, overlapping, spanned, "snapshots per reader");
    db.close().await?;
    Ok(Outcome::Passed)
}

/// Many tasks writing at once (the engine may merge them into one commit): every write lands,
/// and each writer reads its own write back at once.
pub(crate) async fn concurrent_writes(h: &dyn Harness) -> TestResult {
    const WRITERS: usize = 8;
    const PUTS: usize = 40;
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = db.shared();
        tasks.push(tokio::spawn(async move {
            for i in 0..PUTS {
                let key = format!("w{w}-{i:03}");
                let value = format!("value {w} {i}");
                if i % 10 == 9 {
                    let mut ops = vec![
                        BatchOp::put(key.clone(), value.clone()),
                        BatchOp::put(format!("{key}-batch"), "b"),
                    ];
                    if i >= 10 {
                        // The previous batch's extra key goes in the same commit.
                        ops.push(BatchOp::del(format!("w{w}-{:03}-batch", i - 10)));
                    }
                    store.batch(ops).await.ctx(format!("batch of writer {w}"))?;
                } else {
                    store
                        .put(key.as_bytes(), value.as_bytes())
                        .await
                        .ctx(format!("put {key}"))?;
                }
                let got = store.get(key.as_bytes()).await.ctx(format!("get {key}"))?;
                expect_value(
                    format!("get {key} right after its write was acknowledged"),
                    got.as_deref(),
                    Some(value.as_bytes()),
                )?;
            }
            Ok::<(), Failure>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| Failure::new(format!("a writer task failed: {e}")))??;
    }
    let mut model = Model::new();
    for w in 0..WRITERS {
        for i in 0..PUTS {
            let key = format!("w{w}-{i:03}");
            model.put(key.as_bytes(), format!("value {w} {i}").as_bytes());
            if i % 10 == 9 {
                model.put(format!("{key}-batch").as_bytes(), b"b");
                if i >= 10 {
                    model.del(format!("w{w}-{:03}-batch", i - 10).as_bytes());
                }
            }
        }
    }
    db.check_state(&model).await?;
    db.close().await?;
    Ok(Outcome::Passed)
}
