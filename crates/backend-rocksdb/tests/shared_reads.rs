//! Point reads on the caller's thread (RocksDB's shared reader): they answer without the engine
//! thread, see every acknowledged write from any task, and stop cleanly at close, which releases
//! the file even while reads are running.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rave_api::engine_thread::EngineStore;
use rave_api::{Backend, Error, KvStore, OpenOptions};
use rave_backend_rocksdb::RocksDbBackend;

/// Opens a store. Blocking (RocksDB's open is quick on these small databases).
fn open(path: &Path) -> rave_api::Result<EngineStore> {
    RocksDbBackend.open(path, &OpenOptions::default())
}

/// The output of `future`, which must be ready on its first poll.
fn first_poll<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the read waited: it went through the engine thread"),
    }
}

#[tokio::test]
async fn point_reads_complete_on_their_first_poll() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    assert_eq!(first_poll(store.get(b"k")).unwrap(), None);
    store.put(b"k", b"1").await.unwrap();
    assert_eq!(first_poll(store.get(b"k")).unwrap(), Some(b"1".to_vec()));
    store.put(b"k", b"2").await.unwrap();
    store.put(b"j", b"3").await.unwrap();
    assert_eq!(
        first_poll(store.get_many(&[b"k".to_vec(), b"x".to_vec(), b"j".to_vec()])).unwrap(),
        vec![Some(b"2".to_vec()), None, Some(b"3".to_vec())]
    );
    store.del(b"k").await.unwrap();
    assert_eq!(first_poll(store.get(b"k")).unwrap(), None);
    store.close().await.unwrap();
    assert!(matches!(store.get(b"j").await, Err(Error::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_after_acknowledged_writes_see_them_from_every_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()).unwrap());
    // The last value of `counter` whose write was acknowledged.
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    store.put(b"counter", &0u64.to_be_bytes()).await.unwrap();

    // Readers on other tasks: a value read after an acknowledgement is never older than it.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, acked, done) = (store.clone(), acked.clone(), done.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while !done.load(Ordering::SeqCst) {
                    let floor = acked.load(Ordering::SeqCst);
                    let value = store.get(b"counter").await.unwrap().unwrap();
                    let seen = u64::from_be_bytes(value.try_into().unwrap());
                    assert!(seen >= floor, "read {seen} after {floor} was acknowledged");
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();
    // Writers that read their own writes back at once.
    let writers: Vec<_> = (0..4u8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..50u32 {
                    let key = [b'w', w];
                    store.put(&key, &i.to_be_bytes()).await.unwrap();
                    assert_eq!(
                        store.get(&key).await.unwrap(),
                        Some(i.to_be_bytes().to_vec())
                    );
                }
            })
        })
        .collect();
    for n in 1..=100u64 {
        store.put(b"counter", &n.to_be_bytes()).await.unwrap();
        acked.store(n, Ordering::SeqCst);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }
    store.close().await.unwrap();
}

/// Reads from several threads and tasks run while the store closes; once `close` returns the
/// file is released (RocksDB locks `LOCK`: a second open fails while it is held), so reopening
/// succeeds at once, and the readers end with `Closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_reads_releases_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let handle = tokio::runtime::Handle::current();
    for round in 0..5u8 {
        let store = Arc::new(open(dir.path()).unwrap());
        store.put(b"k", &[round]).await.unwrap();
        let reads = Arc::new(AtomicU64::new(0));
        let expect = Some(vec![round]);
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (store, reads, handle, expect) =
                    (store.clone(), reads.clone(), handle.clone(), expect.clone());
                std::thread::spawn(move || {
                    loop {
                        match handle.block_on(store.get(b"k")) {
                            Ok(value) => assert_eq!(value, expect),
                            Err(Error::Closed) => return,
                            Err(e) => panic!("unexpected error: {e}"),
                        }
                        reads.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let (store, reads, expect) = (store.clone(), reads.clone(), expect.clone());
                tokio::spawn(async move {
                    loop {
                        match store.get_many(&[b"k".to_vec(), b"x".to_vec()]).await {
                            Ok(values) => assert_eq!(values, vec![expect.clone(), None]),
                            Err(Error::Closed) => return,
                            Err(e) => panic!("unexpected error: {e}"),
                        }
                        reads.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        while reads.load(Ordering::SeqCst) < 100 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        store.close().await.unwrap();
        let reopened = open(dir.path()).unwrap();
        for thread in threads {
            thread.join().unwrap();
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(reopened.get(b"k").await.unwrap(), Some(vec![round]));
        reopened.close().await.unwrap();
    }
}
