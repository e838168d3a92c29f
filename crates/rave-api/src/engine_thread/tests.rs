//! Tests of the engine thread: shared reads, close, panics, reopening, the bounded command
//! queue, clears and failed cursors.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::*;

/// The state shared by [`TestEngine`] and its reader.
#[derive(Default)]
struct State {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Point reads answered on the engine thread.
    engine_reads: AtomicUsize,
    /// Point reads answered by the shared reader.
    shared_reads: AtomicUsize,
    /// Shared reads running now.
    in_flight: AtomicUsize,
    /// How long each shared read takes, in µs.
    read_micros: AtomicUsize,
    closed: AtomicBool,
    /// Set when a shared read ran during or after the engine's close.
    read_while_closed: AtomicBool,
}

struct TestReader(Arc<State>);

impl SharedReader for TestReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let state = &self.0;
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        if state.closed.load(Ordering::SeqCst) {
            state.read_while_closed.store(true, Ordering::SeqCst);
        }
        let micros = state.read_micros.load(Ordering::SeqCst);
        if micros > 0 {
            std::thread::sleep(Duration::from_micros(micros as u64));
        }
        let value = state.map.lock().unwrap().get(key).cloned();
        state.shared_reads.fetch_add(1, Ordering::SeqCst);
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(value)
    }
}

/// An engine with a shared reader, whose writes of the key `slow` wait for `gate`.
struct TestEngine {
    state: Arc<State>,
    entered: mpsc::Sender<()>,
    gate: mpsc::Receiver<()>,
}

impl Engine for TestEngine {
    type Iter<'a> = std::vec::IntoIter<(Vec<u8>, Vec<u8>)>;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.state.engine_reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.state.map.lock().unwrap().get(key).cloned())
    }

    fn write(&self, ops: &[BatchOp]) -> Result<()> {
        if ops.iter().any(|op| op.key() == b"slow") {
            self.entered.send(()).unwrap();
            self.gate.recv().unwrap();
        }
        // Applied (so visible to the reader) before `write` returns.
        BatchOp::apply_all(ops, &mut self.state.map.lock().unwrap());
        Ok(())
    }

    fn iter<'a>(&'a self, _range: &Range) -> Result<Self::Iter<'a>> {
        Ok(Vec::new().into_iter())
    }

    fn shared_reader(&self) -> Option<Arc<dyn SharedReader>> {
        Some(Arc::new(TestReader(self.state.clone())))
    }

    fn close(self) -> Result<()> {
        if self.state.in_flight.load(Ordering::SeqCst) != 0 {
            self.state.read_while_closed.store(true, Ordering::SeqCst);
        }
        self.state.closed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// A store on a [`TestEngine`], with the channel its slow writes report on and their gate.
fn spawn() -> (
    EngineStore,
    Arc<State>,
    mpsc::Receiver<()>,
    mpsc::Sender<()>,
) {
    let state = Arc::new(State::default());
    let (entered_tx, entered_rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel();
    let engine_state = state.clone();
    // Opened once: these tests never make it reopen.
    let mut channels = Some((entered_tx, gate_rx));
    let store = EngineStore::spawn("test", move || {
        let (entered, gate) = channels
            .take()
            .ok_or_else(|| Error::other("the test engine opens once"))?;
        Ok(TestEngine {
            state: engine_state.clone(),
            entered,
            gate,
        })
    })
    .unwrap();
    (store, state, entered_rx, gate_tx)
}

/// The output of `future`, which must be ready on its first poll.
fn first_poll<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the future was not ready on its first poll"),
    }
}

#[tokio::test]
async fn point_reads_do_not_queue_behind_a_commit() {
    let (store, state, entered, gate) = spawn();
    // The open reads the layout record on the engine thread; no user read does.
    let opening_reads = state.engine_reads.load(Ordering::SeqCst);
    let store = Arc::new(store);
    store.put(b"a", b"1").await.unwrap();
    // Read after the acknowledgement: sees the write, without the engine thread.
    assert_eq!(first_poll(store.get(b"a")).unwrap(), Some(b"1".to_vec()));

    // Block the engine thread inside a commit.
    let writer = tokio::spawn({
        let store = store.clone();
        async move { store.put(b"slow", b"2").await }
    });
    tokio::task::spawn_blocking(move || entered.recv().map(|()| entered))
        .await
        .unwrap()
        .unwrap();
    // Reads still complete, at once, while the engine thread is busy.
    assert_eq!(first_poll(store.get(b"a")).unwrap(), Some(b"1".to_vec()));
    assert_eq!(
        first_poll(store.get_many(&[b"a".to_vec(), b"slow".to_vec()])).unwrap(),
        vec![Some(b"1".to_vec()), None]
    );
    assert!(!writer.is_finished());

    gate.send(()).unwrap();
    writer.await.unwrap().unwrap();
    // Acknowledged, so visible.
    assert_eq!(first_poll(store.get(b"slow")).unwrap(), Some(b"2".to_vec()));
    assert_eq!(state.engine_reads.load(Ordering::SeqCst), opening_reads);
    assert_eq!(state.shared_reads.load(Ordering::SeqCst), 5);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_shared_reads_and_ends_them() {
    let (store, state, _entered, _gate) = spawn();
    let store = Arc::new(store);
    store.put(b"k", b"v").await.unwrap();
    // Slow reads, so that the close surely lands while some are running.
    state.read_micros.store(500, Ordering::SeqCst);
    let handle = tokio::runtime::Handle::current();
    let started = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            let handle = handle.clone();
            let started = started.clone();
            std::thread::spawn(move || {
                let mut ok = 0u64;
                loop {
                    match handle.block_on(store.get(b"k")) {
                        Ok(value) => {
                            assert_eq!(value, Some(b"v".to_vec()));
                            ok += 1;
                            started.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(Error::Closed) => return ok,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            })
        })
        .collect();
    while started.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    store.close().await.unwrap();
    assert!(state.closed.load(Ordering::SeqCst));
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    assert!(
        !state.read_while_closed.load(Ordering::SeqCst),
        "a shared read ran while the engine closed"
    );
    assert!(matches!(store.get(b"k").await, Err(Error::Closed)));
    assert!(matches!(
        store.get_many(&[b"k".to_vec()]).await,
        Err(Error::Closed)
    ));
    store.close().await.unwrap();
}

/// A panic in a shared reader is an error for the caller, not a panic in its task.
#[tokio::test]
async fn a_panicking_reader_is_an_error() {
    struct Panics;
    impl SharedReader for Panics {
        fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>> {
            panic!("damaged")
        }
    }
    struct PanicEngine;
    impl Engine for PanicEngine {
        type Iter<'a> = std::vec::IntoIter<(Vec<u8>, Vec<u8>)>;
        fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(None)
        }
        fn write(&self, _ops: &[BatchOp]) -> Result<()> {
            Ok(())
        }
        fn iter<'a>(&'a self, _range: &Range) -> Result<Self::Iter<'a>> {
            Ok(Vec::new().into_iter())
        }
        fn shared_reader(&self) -> Option<Arc<dyn SharedReader>> {
            Some(Arc::new(Panics))
        }
    }
    let store = EngineStore::spawn("panics", || Ok(PanicEngine)).unwrap();
    let err = store.get(b"k").await.unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Other, "{err}");
    // The store still works.
    store.put(b"k", b"v").await.unwrap();
    store.close().await.unwrap();
}

/// A stuck engine and many callers: the engine thread's queue holds at most
/// `COMMAND_QUEUE` commands; the other callers wait for room (and all complete once the
/// engine moves again).
#[tokio::test]
async fn a_stuck_engine_queues_a_bounded_number_of_commands() {
    let (store, _state, entered, gate) = spawn();
    let store = Arc::new(store);
    let slow = tokio::spawn({
        let store = store.clone();
        async move { store.put(b"slow", b"1").await }
    });
    tokio::task::spawn_blocking(move || entered.recv().map(|()| entered))
        .await
        .unwrap()
        .unwrap();
    let callers = 4 * COMMAND_QUEUE;
    let attempted = Arc::new(AtomicUsize::new(0));
    let puts: Vec<_> = (0..callers)
        .map(|i| {
            let store = store.clone();
            let attempted = attempted.clone();
            tokio::spawn(async move {
                attempted.fetch_add(1, Ordering::SeqCst);
                // The first poll of the put tries to queue its command.
                store.put(format!("k{i}").as_bytes(), b"v").await
            })
        })
        .collect();
    while attempted.load(Ordering::SeqCst) < callers {
        tokio::task::yield_now().await;
    }
    let queued = store.queued();
    assert!(
        queued <= COMMAND_QUEUE,
        "{queued} commands queued for a stuck engine (bound {COMMAND_QUEUE})"
    );
    gate.send(()).unwrap();
    slow.await.unwrap().unwrap();
    for put in puts {
        put.await.unwrap().unwrap();
    }
    assert_eq!(store.get(b"k0").await.unwrap(), Some(b"v".to_vec()));
    store.close().await.unwrap();
}

/// An engine over a `MemoryEngine` that records the most engine operations any single
/// `write` or `delete_ranges_and_write` was given, and whose iterators can be made to fail.
/// Clones share the map and the record, so a reopen keeps both.
#[derive(Clone, Default)]
struct Recording {
    inner: crate::MemoryEngine,
    largest: Arc<AtomicUsize>,
    /// Iterators fail after this many entries (0: never).
    fail_after: usize,
}

struct FailingIter {
    inner: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    left: Option<usize>,
}

impl EngineIter for FailingIter {
    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        match &mut self.left {
            Some(0) => {
                // Failed once; a failed cursor then looks like the end.
                self.left = None;
                self.inner = Vec::new().into_iter();
                Err(Error::corruption("a damaged block"))
            }
            Some(left) => {
                *left -= 1;
                self.inner.next_entry()
            }
            None => self.inner.next_entry(),
        }
    }
}

impl Engine for Recording {
    type Iter<'a> = FailingIter;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    fn write(&self, ops: &[BatchOp]) -> Result<()> {
        self.largest.fetch_max(ops.len(), Ordering::SeqCst);
        self.inner.write(ops)
    }

    fn delete_ranges_and_write(&self, ranges: &[Range], ops: &[BatchOp]) -> Result<()> {
        self.largest.fetch_max(ops.len(), Ordering::SeqCst);
        self.inner.delete_ranges_and_write(ranges, ops)
    }

    fn iter(&self, range: &Range) -> Result<FailingIter> {
        Ok(FailingIter {
            inner: self.inner.iter(range)?,
            left: (self.fail_after > 0).then_some(self.fail_after),
        })
    }
}

/// Clearing a range of many keys (whole, limited, reversed, across the escaped side) hands
/// the engine no batch that grows with the range: the engine thread lists no key.
#[tokio::test]
async fn a_clear_holds_no_key_of_its_range() {
    let largest = Arc::new(AtomicUsize::new(0));
    let engine = Recording {
        largest: largest.clone(),
        ..Recording::default()
    };
    let store = EngineStore::spawn("recording", move || Ok(engine.clone())).unwrap();
    let n = 10_000u32;
    let key = |i: u32| format!("k{i:05}").into_bytes();
    for start in (0..n).step_by(1000) {
        let ops = (start..start + 1000)
            .map(|i| BatchOp::put(key(i), b"v".to_vec()))
            .collect();
        store.batch(ops).await.unwrap();
    }
    let mut escaped = vec![0xFF];
    escaped.extend(key(0));
    store.put(&escaped, b"high").await.unwrap();
    store.put(b"a", b"below").await.unwrap();
    largest.store(0, Ordering::SeqCst);

    // The first 3000 keys forward, the last 3000 in reverse, then the rest.
    store
        .clear(Range::all().gte("k").limit(3000))
        .await
        .unwrap();
    store
        .clear(Range::all().gte("k").lt("l").reverse().limit(3000))
        .await
        .unwrap();
    let left: Vec<Vec<u8>> = store
        .iterator(Range::all().keys_only())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    let mut want: Vec<Vec<u8>> = vec![b"a".to_vec()];
    want.extend((3000..n - 3000).map(key));
    want.push(escaped.clone());
    assert_eq!(left, want);
    // Both sides of rave's reserved block at once; its records survive.
    store.clear(Range::all().gt("a")).await.unwrap();
    let left = store
        .iterator(Range::all())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key, b"a");
    let most = largest.load(Ordering::SeqCst);
    assert!(
        most <= 8,
        "the engine was given a batch of {most} operations by a clear"
    );
    store.close().await.unwrap();
}

/// An engine cursor that failed keeps failing: its next call is never a clean end.
#[tokio::test]
async fn a_failed_cursor_never_reads_as_the_end() {
    let engine = Recording {
        fail_after: 3,
        ..Recording::default()
    };
    let store = EngineStore::spawn("failing", move || Ok(engine.clone())).unwrap();
    let ops = (0..10u8)
        .map(|i| BatchOp::put(vec![b'k', i], b"v".to_vec()))
        .collect();
    store.batch(ops).await.unwrap();
    let mut iter = store.iterator(Range::all()).await.unwrap();
    let err = iter.next_chunk(100).await.unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Corruption, "{err}");
    for _ in 0..2 {
        let again = iter.next_chunk(100).await;
        assert!(
            matches!(&again, Err(e) if e.kind() == crate::ErrorKind::Corruption),
            "after a failure: {again:?}"
        );
    }
    drop(iter);
    store.close().await.unwrap();
}
