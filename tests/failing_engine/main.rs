//! A custom engine that fails on purpose (panics, errors on every write, a disk that fills up,
//! hangs), through `EngineStore` directly and through `Rave` (a leader and a follower in this
//! process): every failure is a typed error within a deadline, the engine thread survives and
//! reopens the engine, and writes succeed again once the fault is gone, without restarting
//! anything. A leader that drops every connection does not make its followers spin.

#[allow(unused_macros)] // `per_engine!`: this engine is not one of the compiled-in ones
#[path = "../common/mod.rs"]
mod common;
mod faulty;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{tempdir, within};
use faulty::{Faults, FaultyBackend};
use rave::engine_thread::EngineStore;
use rave::{
    Backend, BatchOp, ClientId, Error, ErrorKind, KvIterator, KvStore, OpenOptions, Range, Rave,
    RaveOptions, Role, Write, WriteStamp,
};

const LIMIT: Duration = Duration::from_secs(20);
const TEST_LIMIT: Duration = Duration::from_secs(60);

fn set(flag: &std::sync::atomic::AtomicBool, on: bool) {
    flag.store(on, Ordering::SeqCst);
}

/// A store on the faulty engine, opened directly (no election, no socket).
fn store(faults: &Arc<Faults>) -> (EngineStore, tempfile::TempDir) {
    let tmp = tempdir();
    let store = FaultyBackend(faults.clone())
        .open(tmp.path(), &OpenOptions::default())
        .unwrap();
    (store, tmp)
}

fn assert_panicked(err: &Error) {
    assert_eq!(err.kind(), ErrorKind::Other, "{err:?}");
    assert!(err.to_string().contains("panicked"), "{err}");
}

async fn keys(iter: &mut Box<dyn KvIterator>) -> rave::Result<Vec<Vec<u8>>> {
    Ok(iter
        .collect_all()
        .await?
        .into_iter()
        .map(|e| e.key)
        .collect())
}

#[tokio::test]
async fn a_panicking_write_is_an_error_and_the_engine_is_reopened_with_its_records() {
    // No call may hang, even when the healing is broken.
    within("the test", TEST_LIMIT, async {
        let faults = Arc::new(Faults::default());
        let (store, _tmp) = store(&faults);
        let stamp = WriteStamp {
            client: ClientId::random(),
            seq: 1,
            floor: 1,
        };
        let first = Write::Batch(vec![BatchOp::put(b"k".to_vec(), b"first".to_vec())]);
        store.write_stamped(stamp, first.clone()).await.unwrap();
        store.put(b"k", b"second").await.unwrap();

        set(&faults.panic_write, true);
        let err = store.put(b"x", b"1").await.unwrap_err();
        assert_panicked(&err);
        // Every caller is answered, not only the first: a second write fails the same way.
        assert_panicked(&store.put(b"x", b"2").await.unwrap_err());
        set(&faults.panic_write, false);

        store.put(b"x", b"3").await.unwrap();
        assert_eq!(store.get(b"x").await.unwrap(), Some(b"3".to_vec()));
        assert!(faults.opens() >= 2, "the engine was not reopened");
        // The reopened engine's exactly-once records came back: the re-sent write is not applied
        // again over the newer value.
        store.write_stamped(stamp, first).await.unwrap();
        assert_eq!(store.get(b"k").await.unwrap(), Some(b"second".to_vec()));
        store.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_panicking_iterator_fails_typed_and_open_iterators_do_not_end_silently() {
    // No call may hang, even when the healing is broken.
    within("the test", TEST_LIMIT, async {
        let faults = Arc::new(Faults::default());
        let (store, _tmp) = store(&faults);
        for key in [b"a", b"b", b"c"] {
            store.put(key, b"v").await.unwrap();
        }
        let mut early = store.iterator(Range::all()).await.unwrap();
        assert_eq!(early.next_chunk(1).await.unwrap().len(), 1);

        set(&faults.panic_iterate, true);
        let mut panicking = store.iterator(Range::all()).await.unwrap();
        assert_panicked(&panicking.next_chunk(10).await.unwrap_err());
        set(&faults.panic_iterate, false);

        // The reopen dropped every cursor: the early iterator fails, typed, instead of ending.
        let err = early.next_chunk(10).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Other, "{err:?}");
        assert!(err.to_string().contains("snapshot is gone"), "{err}");
        assert!(panicking.next_chunk(10).await.is_err());
        drop((early, panicking));
        let mut fresh = store.iterator(Range::all()).await.unwrap();
        assert_eq!(
            keys(&mut fresh).await.unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        drop(fresh);
        // Drops reach the engine thread asynchronously.
        let cursors = store.open_cursors();
        within("the cursors' release", LIMIT, async {
            while cursors.get() != 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        store.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn writes_heal_once_the_disk_has_room_and_reopens_are_paced() {
    // No call may hang, even when the healing is broken.
    within("the test", TEST_LIMIT, async {
        let faults = Arc::new(Faults::default());
        let (store, _tmp) = store(&faults);
        store.put(b"k1", b"v").await.unwrap();
        set(&faults.full, true);
        let err = store.put(b"k2", b"v").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err:?}");
        // Reads still work on the engine that refuses writes.
        assert_eq!(store.get(b"k1").await.unwrap(), Some(b"v".to_vec()));

        // Room again: that engine instance refuses writes for good, so the store reopens it.
        set(&faults.full, false);
        store.put(b"k3", b"v").await.unwrap();
        assert_eq!(faults.opens(), 2);

        // A stream of writes on a full disk: each fails, typed, at once; the reopens are paced
        // (the first at once, then at most one per 50 ms, the pause doubling up to 1 s).
        set(&faults.full, true);
        let opens = faults.opens();
        let started = Instant::now();
        for i in 0..200 {
            let err = store
                .put(format!("f{i}").as_bytes(), b"v")
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Io, "{err:?}");
        }
        let reopens = faults.opens() - opens;
        let bound = 2 + started.elapsed().as_millis() / 50;
        assert!(
            (reopens as u128) <= bound,
            "{reopens} reopens for 200 failing writes in {:?}",
            started.elapsed()
        );
        set(&faults.full, false);
        within("a healed write", LIMIT, until_ok(|| store.put(b"k4", b"v"))).await;
        store.close().await.unwrap();
    })
    .await;
}

/// Retries `op` until it succeeds, 10 ms apart; returns the errors seen on the way.
async fn until_ok<F, Fut>(op: F) -> Vec<Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = rave::Result<()>>,
{
    let mut errors = Vec::new();
    loop {
        match op().await {
            Ok(()) => return errors,
            Err(e) => errors.push(e),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_engine_that_cannot_reopen_answers_at_once_and_is_retried() {
    // No call may hang, even when the healing is broken.
    within("the test", TEST_LIMIT, async {
        let faults = Arc::new(Faults::default());
        let (store, _tmp) = store(&faults);
        store.put(b"k", b"v").await.unwrap();
        set(&faults.full, true);
        store.put(b"k2", b"v").await.unwrap_err();
        set(&faults.fail_open, true);
        // The reopen fails: the write, and reads while no engine is open, get its error, at once.
        let err = store.put(b"k2", b"v").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err:?}");
        assert!(err.to_string().contains("faulty open"), "{err}");
        let err = within("a read", LIMIT, store.get(b"k")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err:?}");
        assert!(store.iterator(Range::all()).await.is_err());

        set(&faults.full, false);
        set(&faults.fail_open, false);
        let errors = within("a healed write", LIMIT, until_ok(|| store.put(b"k2", b"v"))).await;
        assert!(
            errors.iter().all(|e| e.kind() == ErrorKind::Io),
            "{errors:?}"
        );
        assert_eq!(store.get(b"k").await.unwrap(), Some(b"v".to_vec()));
        store.close().await.unwrap();
    })
    .await;
}

/// A leader and a follower on the faulty engine, in this process.
async fn pair(
    faults: &Arc<Faults>,
    options: RaveOptions,
) -> (Rave<FaultyBackend>, Rave<FaultyBackend>, tempfile::TempDir) {
    let tmp = tempdir();
    let open = |options| Rave::open_with(FaultyBackend(faults.clone()), tmp.path(), options);
    let leader = open(options.clone()).unwrap();
    assert_eq!(
        within("election", LIMIT, leader.ready()).await.unwrap(),
        Role::Leader
    );
    let follower = open(options).unwrap();
    assert_eq!(
        within("election", LIMIT, follower.ready()).await.unwrap(),
        Role::Follower
    );
    (leader, follower, tmp)
}

async fn close(handles: [Rave<FaultyBackend>; 2]) {
    for handle in handles {
        within("close", LIMIT, handle.close()).await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_engine_gives_typed_errors_to_leader_and_follower() {
    let faults = Arc::new(Faults::default());
    let (leader, follower, _tmp) = pair(&faults, RaveOptions::default()).await;
    follower.put(b"a", b"1").await.unwrap();

    set(&faults.panic_write, true);
    for db in [&leader, &follower] {
        assert_panicked(
            &within("a write", LIMIT, db.put(b"b", b"2"))
                .await
                .unwrap_err(),
        );
    }
    set(&faults.panic_write, false);
    set(&faults.panic_iterate, true);
    for db in [&leader, &follower] {
        // A follower's iterator reads ahead as it opens: the panic may come with the open.
        let scan = async { db.iterator(Range::all()).await?.next_chunk(10).await };
        assert_panicked(&within("a scan", LIMIT, scan).await.unwrap_err());
    }
    set(&faults.panic_iterate, false);

    // Nobody failed over: the same leader serves, with everything acknowledged.
    assert_eq!(
        (leader.role(), follower.role()),
        (Role::Leader, Role::Follower)
    );
    for db in [&leader, &follower] {
        within("a write", LIMIT, db.put(b"c", b"3")).await.unwrap();
        let mut iter = db.iterator(Range::all()).await.unwrap();
        assert_eq!(
            keys(&mut iter).await.unwrap(),
            vec![b"a".to_vec(), b"c".to_vec()]
        );
    }
    close([follower, leader]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_heal_through_leader_and_follower() {
    let faults = Arc::new(Faults::default());
    let (leader, follower, _tmp) = pair(&faults, RaveOptions::default()).await;
    follower.put(b"a", b"1").await.unwrap();
    set(&faults.full, true);
    for db in [&follower, &leader, &follower] {
        let err = within("a write", LIMIT, db.put(b"b", b"2"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err:?}");
    }
    set(&faults.full, false);
    within(
        "a healed write",
        LIMIT,
        until_ok(|| follower.put(b"b", b"2")),
    )
    .await;
    within("a healed write", LIMIT, until_ok(|| leader.put(b"c", b"3"))).await;
    assert_eq!(follower.get(b"b").await.unwrap(), Some(b"2".to_vec()));
    assert_eq!(
        (leader.role(), follower.role()),
        (Role::Leader, Role::Follower)
    );
    close([follower, leader]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_failing_every_write_gives_typed_errors_without_spinning() {
    let faults = Arc::new(Faults::default());
    let (leader, follower, _tmp) = pair(&faults, RaveOptions::default()).await;
    set(&faults.fail_writes, true);
    let opens = faults.opens();
    let writes = faults.writes.load(Ordering::SeqCst);
    let started = Instant::now();
    for i in 0..50 {
        let db = if i % 2 == 0 { &follower } else { &leader };
        let err = within("a write", LIMIT, db.put(b"k", b"v"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err:?}");
    }
    // One engine write per operation (no retry loop), and paced reopens.
    assert_eq!(faults.writes.load(Ordering::SeqCst) - writes, 50);
    let bound = 2 + started.elapsed().as_millis() / 50;
    assert!((faults.opens() - opens) as u128 <= bound);
    assert_eq!(
        (leader.role(), follower.role()),
        (Role::Leader, Role::Follower)
    );
    set(&faults.fail_writes, false);
    within(
        "a healed write",
        LIMIT,
        until_ok(|| follower.put(b"k", b"v")),
    )
    .await;
    close([follower, leader]).await;
}

/// Ends every hang of `faults` when dropped, so that a failing test does not leave the engine
/// thread blocked.
struct Release(Arc<Faults>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_engine_times_out_on_leader_and_follower() {
    let faults = Arc::new(Faults::default());
    let _release = Release(faults.clone());
    let options = RaveOptions::default().op_timeout(Some(Duration::from_millis(500)));
    let (leader, follower, _tmp) = pair(&faults, options).await;
    leader.put(b"a", b"1").await.unwrap();
    set(&faults.hang_write, true);
    for db in [&leader, &follower] {
        let err = within("a write", LIMIT, db.put(b"b", b"2"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    }
    set(&faults.hang_write, false);
    faults.release();
    within(
        "a write after the hang",
        LIMIT,
        until_ok(|| follower.put(b"c", b"3")),
    )
    .await;
    assert_eq!(leader.get(b"c").await.unwrap(), Some(b"3".to_vec()));
    close([follower, leader]).await;
}

/// A leader whose store is gone: every call answers `Closed`, so the server drops every
/// connection before replying.
struct Gone(AtomicUsize);

#[async_trait]
impl KvStore for Gone {
    async fn get(&self, _key: &[u8]) -> rave::Result<Option<Vec<u8>>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Error::Closed)
    }
    async fn get_many(&self, _keys: &[Vec<u8>]) -> rave::Result<Vec<Option<Vec<u8>>>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Error::Closed)
    }
    async fn put(&self, _key: &[u8], _value: &[u8]) -> rave::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Error::Closed)
    }
    async fn del(&self, _key: &[u8]) -> rave::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Error::Closed)
    }
    async fn batch(&self, _ops: Vec<BatchOp>) -> rave::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Error::Closed)
    }
    async fn iterator(&self, _range: Range) -> rave::Result<Box<dyn KvIterator>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Error::Closed)
    }
    async fn clear(&self, _range: Range) -> rave::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Error::Closed)
    }
    async fn write(&self, _write: Write) -> rave::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Error::Closed)
    }
    async fn write_stamped(&self, _stamp: WriteStamp, _write: Write) -> rave::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Error::Closed)
    }
    async fn sequence(&self) -> rave::Result<u64> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Error::Closed)
    }
    async fn watch(&self, _range: Range, _from: Option<u64>) -> rave::Result<rave::WatchStream> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Error::Closed)
    }
    async fn close(&self) -> rave::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_dropping_every_connection_does_not_make_followers_spin() {
    let tmp = tempdir();
    let dir = tmp.path();
    // The broken leader: holds the lock and serves a store that is gone.
    let lock = rave_election::DirLock::try_acquire(dir).unwrap().unwrap();
    let path = rave_election::socket_path(dir).unwrap();
    let listener = rave_election::bind(&path, &lock).unwrap();
    let store = Arc::new(Gone(AtomicUsize::new(0)));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(rave_transport::serve(
        listener.incoming(),
        store.clone(),
        rave_transport::ServerInfo {
            epoch: lock.epoch(),
            pid: std::process::id(),
        },
        rave_transport::Limits::default(),
        shutdown.clone(),
    ));

    // The operation's deadline is what ends its retries.
    let deadline = Duration::from_secs(2);
    let follower = Rave::open_with(
        FaultyBackend::default(),
        dir,
        RaveOptions::default().deadline(deadline),
    )
    .unwrap();
    let started = Instant::now();
    let err = within("a write", LIMIT, follower.put(b"k", b"v"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    // Reconnections back off (5 ms doubling to 1 s): a dozen or so in 2 s, not thousands.
    let calls = store.0.load(Ordering::SeqCst);
    println!("{calls} connections in {took:?}");
    let bound = 10 + took.as_millis() / 100;
    assert!(calls as u128 <= bound, "{calls} connections in {took:?}");
    within("close", LIMIT, follower.close()).await.ok();
    shutdown.cancel();
    let _ = server.await;
    rave_election::unbind(&path);
    drop(lock);
}

/// A follower whose leaders keep dying soon after it connects (as under frequent kills) follows
/// each successor at once: only a reconnection to the very leader (epoch) that dropped it early
/// is paced. Pacing every short-lived connection grew to a second between kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_of_short_lived_leaders_follows_each_successor_at_once() {
    let tmp = tempdir();
    let dir = tmp.path();
    // The test plays the successive leaders: it holds the lock and serves a working store
    // under a newer epoch each time.
    let lock = rave_election::DirLock::try_acquire(dir).unwrap().unwrap();
    let path = rave_election::socket_path(dir).unwrap();
    let store: Arc<dyn KvStore> = Arc::new(
        rave::MemoryBackend
            .open(dir, &OpenOptions::default())
            .unwrap(),
    );
    let follower = Rave::open_with(FaultyBackend::default(), dir, RaveOptions::default()).unwrap();
    let mut waits = Vec::new();
    for term in 0..10 {
        let listener = rave_election::bind(&path, &lock).unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(rave_transport::serve(
            listener.incoming(),
            store.clone(),
            rave_transport::ServerInfo {
                epoch: lock.epoch() + term,
                pid: std::process::id(),
            },
            rave_transport::Limits::default(),
            shutdown.clone(),
        ));
        let started = Instant::now();
        within("a write", LIMIT, follower.put(b"k", b"v"))
            .await
            .unwrap();
        waits.push(started.elapsed());
        // This leader dies well within a second of the follower connecting: every connection
        // ends.
        shutdown.cancel();
        let _ = server.await;
        rave_election::unbind(&path);
    }
    // Pacing grew 5 ms, 10 ms, ... to 1 s (jittered to half of each): by the 9th term the
    // follower waited at least 320 ms. Without it each wait is a reconnection or a few polls.
    let worst = waits.iter().max().copied().unwrap_or_default();
    assert!(worst < Duration::from_millis(250), "{waits:?}");
    within("close", LIMIT, follower.close()).await.ok();
    store.close().await.unwrap();
    drop(lock);
}
