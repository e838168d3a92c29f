//! Bounds of the facade: one deadline per operation (retries included), a resume that fails
//! reports why and tries again, and the election's blocking file work stays off the runtime.
//!
//! The "leaders" here are this test process holding the directory's lock and serving a store
//! of its choice with the real transport: a follower cannot tell them from a `rave` leader.

#[allow(unused_macros)]
#[macro_use]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{tempdir, within};
use futures::StreamExt;
use rave::backends::MemoryBackend;
use rave::{Backend, ErrorKind, KvStore, OpenOptions, Range, Rave, RaveOptions, Role};
use rave_election::DirLock;
use rave_transport::{Limits, ServerInfo};
use tokio_util::sync::CancellationToken;

/// Serves `store` on `dir`'s socket under `lock` until the returned token is cancelled; counts
/// the connections accepted in `accepted`.
fn serve(
    dir: &Path,
    lock: &DirLock,
    store: Arc<dyn KvStore>,
    accepted: Arc<AtomicUsize>,
) -> (CancellationToken, tokio::task::JoinHandle<rave::Result<()>>) {
    let path = rave_election::socket_path(dir).unwrap();
    let listener = rave_election::bind(&path, lock).unwrap();
    let incoming = Box::pin(listener.incoming().inspect(move |_| {
        accepted.fetch_add(1, Ordering::SeqCst);
    }));
    let shutdown = CancellationToken::new();
    let info = ServerInfo {
        epoch: lock.epoch(),
        pid: std::process::id(),
    };
    let server = tokio::spawn(rave_transport::serve(
        incoming,
        store,
        info,
        Limits::default(),
        shutdown.clone(),
    ));
    (shutdown, server)
}

/// A fresh database directory whose rave lock this test process holds (so no handle leads it).
fn locked_dir() -> (tempfile::TempDir, std::path::PathBuf, DirLock) {
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    std::fs::create_dir(&dir).unwrap();
    let lock = DirLock::try_acquire(&dir)
        .unwrap()
        .expect("the lock is free");
    (tmp, dir, lock)
}

/// A leader whose store is closed drops every connection at its first request (the transport
/// does so, so that followers re-elect and retry): an operation would retry forever. The
/// deadline ends it with `Timeout`, after several retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_retried_forever_fails_at_its_deadline() {
    let (_tmp, dir, lock) = locked_dir();
    let store = MemoryBackend.open(&dir, &OpenOptions::default()).unwrap();
    store.close().await.unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (shutdown, server) = serve(&dir, &lock, Arc::new(store), accepted.clone());

    let deadline = Duration::from_secs(2);
    let options = RaveOptions::default().op_timeout(None).deadline(deadline);
    let db = Rave::<MemoryBackend>::open_engine(&dir, options).unwrap();
    type Op<'a> = std::pin::Pin<Box<dyn Future<Output = rave::Result<()>> + Send + 'a>>;
    let ops: [(&str, Op<'_>); 2] = [
        ("get", Box::pin(async { db.get(b"k").await.map(|_| ()) })),
        ("put", Box::pin(db.put(b"k", b"v"))),
    ];
    for (what, op) in ops {
        let before = accepted.load(Ordering::SeqCst);
        let started = Instant::now();
        let err = within(what, Duration::from_secs(120), op)
            .await
            .expect_err("nobody answers");
        assert_eq!(err.kind(), ErrorKind::Timeout, "{what}: {err:?}");
        assert!(
            started.elapsed() >= deadline,
            "{what} ended before its deadline"
        );
        let retries = accepted.load(Ordering::SeqCst) - before;
        assert!(retries >= 2, "{what} was sent {retries} times: not retried");
    }
    db.close().await.unwrap();
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

/// A follower's iterator whose leader goes away, with nobody to take over in time: the resume
/// fails with `NoLeader` (not `Closed`), and once a leader serves again the next call resumes
/// where the iterator stopped, nothing repeated or skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_resume_reports_why_and_the_next_call_resumes() {
    let (_tmp, dir, lock) = locked_dir();
    let store: Arc<dyn KvStore> =
        Arc::new(MemoryBackend.open(&dir, &OpenOptions::default()).unwrap());
    let keys: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| format!("k{i:05}").into_bytes())
        .collect();
    store
        .batch(
            keys.iter()
                // 8 MB in all, far more than one iterator window (1 MiB): the follower cannot
                // have it all buffered when the leader stops.
                .map(|k| rave::BatchOp::put(k.clone(), vec![b'v'; 4096]))
                .collect(),
        )
        .await
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (shutdown, server) = serve(&dir, &lock, store.clone(), accepted.clone());

    let options = RaveOptions::default().election_timeout(Duration::from_millis(300));
    let db = Rave::<MemoryBackend>::open_engine(&dir, options).unwrap();
    assert_eq!(db.ready().await.unwrap(), Role::Follower);
    let mut iter = db.iterator(Range::all()).await.unwrap();
    let mut seen: Vec<Vec<u8>> = iter
        .next_chunk(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();

    // The leader stops serving but keeps the lock: nobody can take over.
    shutdown.cancel();
    server.await.unwrap().unwrap();
    rave_election::unbind(&rave_election::socket_path(&dir).unwrap());
    let err = loop {
        match within(
            "the iterator",
            Duration::from_secs(60),
            iter.next_chunk(100),
        )
        .await
        {
            // What the lost connection had buffered.
            Ok(chunk) => {
                assert!(!chunk.is_empty(), "the iterator ended after {}", seen.len());
                seen.extend(chunk.into_iter().map(|e| e.key));
            }
            Err(err) => break err,
        }
    };
    assert_eq!(err.kind(), ErrorKind::NoLeader, "{err:?}");
    // Again: still the real reason, not `Closed`.
    let err = within(
        "the iterator",
        Duration::from_secs(60),
        iter.next_chunk(100),
    )
    .await
    .expect_err("still no leader");
    assert_eq!(err.kind(), ErrorKind::NoLeader, "{err:?}");

    // A leader serves again: the next call resumes.
    let (shutdown, server) = serve(&dir, &lock, store.clone(), accepted);
    loop {
        let chunk = within(
            "the resumed iterator",
            Duration::from_secs(60),
            iter.next_chunk(500),
        )
        .await
        .expect("the resume succeeds once a leader serves");
        if chunk.is_empty() {
            break;
        }
        seen.extend(chunk.into_iter().map(|e| e.key));
    }
    assert_eq!(seen, keys, "every key exactly once, in order");
    drop(iter);
    db.close().await.unwrap();
    shutdown.cancel();
    server.await.unwrap().unwrap();
    store.close().await.unwrap();
}

/// The election's file work (the lock file, the leader record's write, fsync and rename) runs
/// off the runtime's threads. The leader record is made a FIFO, so reading it blocks until
/// this test writes to it: on a current-thread runtime, a timer still fires meanwhile only if
/// that read is not on the runtime's one thread.
#[test]
fn the_election_blocks_no_runtime_thread() {
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    std::fs::create_dir(&dir).unwrap();
    let fifo = dir.join(rave_election::LEADER_FILE);
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);

    let blocked = Arc::new(AtomicBool::new(false));
    let (progressed_tx, progressed_rx) = std::sync::mpsc::channel::<()>();
    // The FIFO's writer: its open returns once the election opened the FIFO to read it. Then
    // it waits for the runtime to show progress (bounded, so a broken build fails instead of
    // hanging) and lets the election go on with a valid record.
    let writer = std::thread::spawn({
        let blocked = blocked.clone();
        let fifo = fifo.clone();
        move || {
            let mut file = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            blocked.store(true, Ordering::SeqCst);
            let progressed = progressed_rx.recv_timeout(Duration::from_secs(60)).is_ok();
            std::io::Write::write_all(&mut file, b"00000000000000000007 0000000001\n").unwrap();
            progressed
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = Rave::<MemoryBackend>::open_engine(&dir, RaveOptions::default()).unwrap();
        while !blocked.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The election is inside its read of the FIFO now; this timer needs the runtime.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = progressed_tx.send(());
        assert_eq!(db.ready().await.unwrap(), Role::Leader);
        assert_eq!(db.epoch(), Some(8), "the record read through the FIFO");
        db.put(b"k", b"v").await.unwrap();
        db.close().await.unwrap();
    });
    assert!(
        writer.join().unwrap(),
        "the runtime made no progress while the election read the leader record"
    );
}
