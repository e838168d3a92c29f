//! Point reads that bypass the engine thread ([`rave_api::Capabilities::concurrent_reads`]):
//! an [`EngineStore`](rave_api::engine_thread::EngineStore) whose engine offers a
//! [`SharedReader`](rave_api::engine_thread::SharedReader) answers `get` and `get_many` on the
//! caller's thread.
//!
//! The engine contract ([`crate::backend_suite!`]) checks such reads through the store:
//! `shared_point_reads_complete_on_their_first_poll`,
//! `shared_reads_see_acknowledged_writes_from_every_task` and
//! `closing_during_shared_reads_releases_the_directory` (skipped, with a note, on an engine
//! without `concurrent_reads`). [`leftover_reader_holds_nothing`] checks the close promise of
//! [`Engine::shared_reader`] on the engine itself, which the store cannot show: its tests call
//! it with a function that opens the engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rave_api::engine_thread::Engine;
use rave_api::{BatchOp, ErrorKind, KvStore};

use crate::support::{
    Ctx, Db, Failure, Scratch, ensure, expect_closed, expect_value, show, show_opt, skip,
    skip_named,
};
use crate::{DirectHarness, Model, Outcome, TestResult};

/// How long readers may take to make their first reads before a test fails as stuck.
const READERS_START: Duration = Duration::from_secs(10);

/// `None` (the test goes on) for an engine with concurrent reads (and persistence, when the
/// test reopens its directory), the skip outcome otherwise.
fn not_applicable(h: &dyn DirectHarness, test: &str, reopens: bool) -> Option<TestResult> {
    let capabilities = h.capabilities();
    if !capabilities.concurrent_reads {
        let reason = "the engine answers point reads on its engine thread (no concurrent_reads)";
        return Some(skip(h, test, reason));
    }
    (reopens && !capabilities.persistent)
        .then(|| skip(h, test, "the engine is not persistent: nothing to reopen"))
}

/// The output of a read that must complete on its first poll: a read that waits went through
/// the engine thread.
fn at_once<T>(what: &str, read: impl std::future::Future<Output = T>) -> Result<T, Failure> {
    read.now_or_never().ok_or_else(|| {
        Failure::new(format!(
            "{what}: expected the read to complete on its first poll (answered on the caller's \
             thread), it waited (it queued on the engine thread)"
        ))
    })
}

/// Reads `keys` one by one and all at once, each completing on its first poll, and compares
/// them with the model.
fn read_at_once(
    db: &dyn KvStore,
    model: &Model,
    keys: &[Vec<u8>],
    when: &str,
) -> Result<(), Failure> {
    for key in keys {
        let what = format!("get {} {when}", show(key));
        let got = at_once(&what, db.get(key))?.ctx(&what)?;
        expect_value(&what, got.as_deref(), model.get(key))?;
    }
    let what = format!("get_many {when}");
    let got = at_once(&what, db.get_many(keys))?.ctx(&what)?;
    ensure!(
        got.len() == keys.len(),
        "{what}: expected {} values, got {}",
        keys.len(),
        got.len()
    );
    for (key, value) in keys.iter().zip(&got) {
        let what = format!("{what}, value of {}", show(key));
        expect_value(what, value.as_deref(), model.get(key))?;
    }
    Ok(())
}

/// Point reads complete on their first poll (they do not wait for the engine thread), in an
/// empty store, after every kind of write and while a large batch is being committed, and see
/// every write acknowledged before them; after close they fail with `Closed`.
pub(crate) async fn shared_point_reads_complete_on_their_first_poll(
    h: &dyn DirectHarness,
) -> TestResult {
    if let Some(skipped) =
        not_applicable(h, "shared_point_reads_complete_on_their_first_poll", false)
    {
        return skipped;
    }
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let keys: Vec<Vec<u8>> = ["k", "x", "j"].map(|k| k.as_bytes().to_vec()).into();
    let mut model = Model::new();
    read_at_once(&*db, &model, &keys, "in an empty store")?;
    for op in [
        BatchOp::put("k", "1"),
        BatchOp::put("k", "2"),
        BatchOp::put("j", "3"),
        BatchOp::del("k"),
    ] {
        let what = match &op {
            BatchOp::Put { key, value } => {
                db.put(key, value).await.ctx("put")?;
                format!("after put {}", show(key))
            }
            BatchOp::Del { key } => {
                db.del(key).await.ctx("del")?;
                format!("after del {}", show(key))
            }
        };
        model.apply(&[op]);
        read_at_once(&*db, &model, &keys, &what)?;
    }

    // A batch large enough to keep the engine busy for a while: reads during its commit still
    // complete at once, and see the key as it was before the batch or after it.
    let big: Vec<BatchOp> = (0..32u8)
        .map(|i| BatchOp::put(format!("big-{i:02}"), vec![i; 128 << 10]))
        .collect();
    let writer = tokio::spawn({
        let store = db.shared();
        let ops = big.clone();
        async move { store.batch(ops).await }
    });
    let mut during = 0u64;
    while !writer.is_finished() {
        let what = "get big-00 while a 4 MiB batch is committed";
        let got = at_once(what, db.get(b"big-00"))?.ctx(what)?;
        ensure!(
            got.as_deref().is_none_or(|v| v == vec![0u8; 128 << 10]),
            "{what}: expected None or the batch's value, got {}",
            show_opt(got.as_deref())
        );
        during += 1;
        tokio::task::yield_now().await;
    }
    writer
        .await
        .map_err(|e| Failure::new(format!("the batch task failed: {e}")))?
        .ctx("the 4 MiB batch")?;
    model.apply(&big);
    tracing::debug!(
        reads = during,
        "reads completed while the batch was committed"
    );
    let big_keys: Vec<Vec<u8>> = big.iter().map(|op| op.key().to_vec()).collect();
    read_at_once(&*db, &model, &big_keys, "after the 4 MiB batch")?;

    let store = db.shared();
    db.close().await?;
    expect_closed("get", store.get(b"j").await)?;
    expect_closed("get_many", store.get_many(&keys).await)?;
    Ok(Outcome::Passed)
}

/// Decodes the counter of [`shared_reads_see_acknowledged_writes_from_every_task`].
fn counter(value: Option<Vec<u8>>) -> Result<u64, Failure> {
    let bytes = value.ok_or_else(|| Failure::new("get counter: expected a value, got None"))?;
    let bytes: [u8; 8] = bytes.try_into().map_err(|b: Vec<u8>| {
        Failure::new(format!("get counter: expected 8 bytes, got {}", show(&b)))
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Many tasks read a counter while it is written: no read issued after a write's
/// acknowledgement returns an older value; writers running at the same time read their own
/// writes back at once.
pub(crate) async fn shared_reads_see_acknowledged_writes_from_every_task(
    h: &dyn DirectHarness,
) -> TestResult {
    const READERS: usize = 4;
    const WRITERS: u8 = 4;
    const COUNTER_WRITES: u64 = 100;
    if let Some(skipped) = not_applicable(
        h,
        "shared_reads_see_acknowledged_writes_from_every_task",
        false,
    ) {
        return skipped;
    }
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    db.put(b"counter", &0u64.to_be_bytes())
        .await
        .ctx("put counter 0")?;
    // The last value of the counter whose write was acknowledged.
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (store, acked, done) = (db.shared(), acked.clone(), done.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                loop {
                    let floor = acked.load(Ordering::SeqCst);
                    let seen = counter(store.get(b"counter").await.ctx("get counter")?)?;
                    ensure!(
                        seen >= floor,
                        "get counter after {floor} was acknowledged: expected at least \
                         {floor}, got {seen} (after {reads} good reads)"
                    );
                    reads += 1;
                    if done.load(Ordering::SeqCst) {
                        return Ok::<u64, Failure>(reads);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = db.shared();
            tokio::spawn(async move {
                let key = [b'w', w];
                for i in 0..50u32 {
                    let what = format!("writer {w}'s put {i}");
                    store.put(&key, &i.to_be_bytes()).await.ctx(&what)?;
                    let got = store.get(&key).await.ctx(format!("get after {what}"))?;
                    expect_value(
                        format!("get right after {what} was acknowledged"),
                        got.as_deref(),
                        Some(&i.to_be_bytes()[..]),
                    )?;
                }
                Ok::<(), Failure>(())
            })
        })
        .collect();

    let mut result = Ok(());
    for n in 1..=COUNTER_WRITES {
        if let Err(e) = db.put(b"counter", &n.to_be_bytes()).await {
            result = Err(Failure::new(format!("put counter {n}: {e}")));
            break;
        }
        acked.store(n, Ordering::SeqCst);
    }
    for writer in writers {
        let outcome = writer
            .await
            .map_err(|e| Failure::new(format!("a writer task failed: {e}")))
            .and_then(|r| r);
        result = result.and(outcome);
    }
    // The readers stop on their next read, whatever happened above.
    done.store(true, Ordering::SeqCst);
    let mut reads = 0u64;
    for reader in readers {
        reads += reader
            .await
            .map_err(|e| Failure::new(format!("a reader task failed: {e}")))??;
    }
    result?;
    tracing::debug!(reads, "counter reads");
    let got = db.get(b"counter").await.ctx("get counter at the end")?;
    ensure!(
        counter(got)? == COUNTER_WRITES,
        "get counter at the end: expected {COUNTER_WRITES}"
    );
    db.close().await?;
    Ok(Outcome::Passed)
}

/// Sets the flag when dropped, so that reader threads stop on every way out of a test.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Reads `key` in a loop until the store is closed (or `stop`): each read gives `expected`.
/// Returns how many reads gave it.
async fn read_until_closed(
    store: Arc<dyn KvStore>,
    key: &[u8],
    expected: Option<&[u8]>,
    reads: &AtomicU64,
    stop: &AtomicBool,
) -> Result<u64, Failure> {
    let mut ok = 0u64;
    while !stop.load(Ordering::SeqCst) {
        // Half the reads one key at a time, half two at once (one of them missing).
        let got = if ok.is_multiple_of(2) {
            store.get(key).await
        } else {
            store
                .get_many(&[key.to_vec(), b"missing".to_vec()])
                .await
                .map(|mut values| values.swap_remove(0))
        };
        match got {
            Ok(value) => expect_value("a read while the store closes", value.as_deref(), expected)?,
            Err(e) if e.kind() == ErrorKind::Closed => return Ok(ok),
            Err(e) => {
                return Err(Failure::new(format!(
                    "a read while the store closes: expected the value or an error of kind \
                     Closed, got kind {}: {e}",
                    e.kind()
                )));
            }
        }
        ok += 1;
        reads.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
    }
    Ok(ok)
}

/// Reads run from blocking threads and from tasks while the store closes; once `close`
/// returns the engine has let go of the directory (the open's lock is released), so it reopens
/// at once, with its data, and every reader ends with `Closed`. Five rounds on one directory.
pub(crate) async fn closing_during_shared_reads_releases_the_directory(
    h: &dyn DirectHarness,
) -> TestResult {
    if let Some(skipped) = not_applicable(
        h,
        "closing_during_shared_reads_releases_the_directory",
        true,
    ) {
        return skipped;
    }
    let scratch = Scratch::new()?;
    let path = scratch.db();
    for round in 0..5u8 {
        let db = Db::open(h, &path)
            .await
            .map_err(|f| f.context(format!("round {round}")))?;
        db.put(b"k", &[round]).await.ctx("put k")?;
        close_while_reading(db, round)
            .await
            .map_err(|f| f.context(format!("round {round}")))?;
        let reopened = h.open(&path).await.ctx(format!(
            "round {round}: reopen at once after a close during reads"
        ))?;
        let reopened = Db::from_store(reopened);
        let got = reopened.get(b"k").await.ctx("get k after reopening")?;
        expect_value(
            format!("round {round}: get k after reopening"),
            got.as_deref(),
            Some(&[round][..]),
        )?;
        reopened.close().await?;
    }
    Ok(Outcome::Passed)
}

/// Starts readers of `db` on three blocking threads and three tasks, waits until they have
/// made 100 reads, then closes the store and checks that every reader ended with `Closed`.
async fn close_while_reading(db: Db, round: u8) -> Result<(), Failure> {
    let reads = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_readers = StopOnDrop(stop.clone());
    let handle = tokio::runtime::Handle::current();
    let read = |db: &Db| {
        let (store, reads, stop) = (db.shared(), Arc::clone(&reads), Arc::clone(&stop));
        async move { read_until_closed(store, b"k", Some(&[round][..]), &reads, &stop).await }
    };
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (on_a_thread, handle) = (read(&db), handle.clone());
        readers.push(tokio::task::spawn_blocking(move || {
            handle.block_on(on_a_thread)
        }));
        readers.push(tokio::spawn(read(&db)));
    }
    let start = Instant::now();
    while reads.load(Ordering::SeqCst) < 100 {
        ensure!(
            start.elapsed() < READERS_START,
            "expected 100 reads within {READERS_START:?}, got {}",
            reads.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    db.close()
        .await
        .map_err(|f| f.context("close during reads"))?;
    for reader in readers {
        reader
            .await
            .map_err(|e| Failure::new(format!("a reader failed: {e}")))??;
    }
    Ok(())
}

/// Checks the close promise of [`Engine::shared_reader`] on the engine itself: a copy of the
/// shared reader kept after [`Engine::close`] reads nothing (it fails with `Closed`) and holds
/// nothing (`open` opens the same database again while the copy is alive, with its data).
///
/// `engine` names the engine in messages; `open` opens (or creates) the engine on one
/// directory, the same every call (redb's `tests/engine.rs` passes a closure running
/// [`rave_api::dir::prepare`] and `RedbEngine::open`). Blocking: call it from a plain `#[test]`
/// or a blocking thread. An engine without a shared reader is skipped.
pub fn leftover_reader_holds_nothing<E: Engine>(
    engine: &str,
    mut open: impl FnMut() -> rave_api::Result<E>,
) -> TestResult {
    let test = "leftover_reader_holds_nothing";
    let first = open().ctx(format!("open {engine}"))?;
    let Some(reader) = first.shared_reader() else {
        let _ = first.close();
        return skip_named(engine, test, "the engine offers no shared reader");
    };
    first
        .write(&[BatchOp::put("k", "v")])
        .ctx("write k through the engine")?;
    let got = reader
        .get(b"k")
        .ctx("the shared reader's get before close")?;
    expect_value(
        "the shared reader's get before close",
        got.as_deref(),
        Some(b"v"),
    )?;
    first.close().ctx(format!("close {engine}"))?;
    expect_closed("a leftover reader's get", reader.get(b"k"))?;
    expect_closed(
        "a leftover reader's get_many",
        reader.get_many(&[b"k".to_vec()]),
    )?;

    let again = open().ctx(format!(
        "reopen {engine} while a copy of the closed engine's shared reader is alive"
    ))?;
    let got = again.get(b"k").ctx("get k after reopening")?;
    expect_value("get k after reopening", got.as_deref(), Some(b"v"))?;
    again.close().ctx(format!("close the reopened {engine}"))?;
    drop(reader);
    Ok(Outcome::Passed)
}
