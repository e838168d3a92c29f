//! Tests over real unix sockets: a socket pair or a listener in a temporary directory, with a
//! [`rave_api::MemoryBackend`] store behind the server.

mod abuse;
mod fairness;
mod fuzz_regressions;
mod lifecycle;
mod ops;
mod props;
mod strategies;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rave_api::{
    Backend, BatchOp, Entry, Error, KvIterator, KvStore, MemoryBackend, OpenOptions, Range, Result,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::codec::LengthDelimitedCodec;
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;

use crate::wire::{self, ClientMessage, Limits, MAGIC, PROTOCOL_VERSION, ServerMessage};
use crate::{Client, ServerInfo, serve, serve_connection};

/// Every test step is bounded by this, so a bug shows up as a failure, not a hang.
const STEP: Duration = Duration::from_secs(10);

const INFO: ServerInfo = ServerInfo {
    epoch: 7,
    pid: 4242,
};

/// Awaits `fut` for at most [`STEP`].
async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(STEP, fut)
        .await
        .expect("a test step took longer than its bound")
}

/// Waits (for at most [`STEP`]) until `condition` holds.
async fn until(mut condition: impl FnMut() -> bool) {
    bounded(async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A fresh in-memory engine, opened through [`Backend::open`].
fn memory() -> rave_api::engine_thread::EngineStore {
    MemoryBackend
        .open(Path::new("unused"), &OpenOptions::default())
        .unwrap()
}

/// The memory engine, with a few keys that misbehave on `get` and a count of live iterators:
/// - `!slow`: answers after 300 ms;
/// - `!hang`: never answers;
/// - `!fail`: a corruption error;
/// - `!closed`: the `Closed` error of a store that is shutting down;
/// - `!panic`: panics;
/// - `!task`: answers at once with the id of the tokio task that polled it;
/// - `!gather`: answers once [`GATHER`] of them are being answered at once (so they finish only
///   if the server runs that many requests together).
struct TestStore {
    inner: rave_api::engine_thread::EngineStore,
    live_iters: Arc<AtomicUsize>,
    /// How many `!gather` reads have started.
    gathered: tokio::sync::watch::Sender<usize>,
}

/// How many `!gather` reads wait for each other.
const GATHER: usize = 50;

impl TestStore {
    fn new() -> Arc<Self> {
        Arc::new(TestStore {
            inner: memory(),
            live_iters: Arc::new(AtomicUsize::new(0)),
            gathered: tokio::sync::watch::Sender::new(0),
        })
    }

    /// A test store holding entries `0..n` of [`fill`].
    async fn filled(n: usize) -> Arc<Self> {
        let store = Self::new();
        fill(&*store, n).await;
        store
    }

    fn live_iters(&self) -> usize {
        self.live_iters.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl KvStore for TestStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match key {
            b"!slow" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(Some(b"slow".to_vec()))
            }
            b"!hang" => std::future::pending().await,
            b"!fail" => Err(Error::corruption("bad block")),
            b"!closed" => Err(Error::Closed),
            b"!panic" => panic!("test store panics on purpose"),
            b"!task" => Ok(Some(format!("{:?}", tokio::task::try_id()).into_bytes())),
            b"!gather" => {
                let mut started = self.gathered.subscribe();
                self.gathered.send_modify(|n| *n += 1);
                let _ = started.wait_for(|n| *n >= GATHER).await;
                Ok(Some(b"gathered".to_vec()))
            }
            _ => self.inner.get(key).await,
        }
    }
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.inner.get_many(keys).await
    }
    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.put(key, value).await
    }
    async fn del(&self, key: &[u8]) -> Result<()> {
        self.inner.del(key).await
    }
    async fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
        self.inner.batch(ops).await
    }
    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
        let inner = self.inner.iterator(range).await?;
        self.live_iters.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(CountedIter {
            inner,
            live: self.live_iters.clone(),
        }))
    }
    async fn clear(&self, range: Range) -> Result<()> {
        self.inner.clear(range).await
    }
    async fn write(&self, write: rave_api::Write) -> Result<()> {
        self.inner.write(write).await
    }
    async fn write_stamped(
        &self,
        stamp: rave_api::WriteStamp,
        write: rave_api::Write,
    ) -> Result<()> {
        self.inner.write_stamped(stamp, write).await
    }
    async fn sequence(&self) -> Result<u64> {
        self.inner.sequence().await
    }
    async fn watch(
        &self,
        range: rave_api::Range,
        from: Option<u64>,
    ) -> Result<rave_api::WatchStream> {
        self.inner.watch(range, from).await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

struct CountedIter {
    inner: Box<dyn KvIterator>,
    live: Arc<AtomicUsize>,
}

#[async_trait]
impl KvIterator for CountedIter {
    fn snapshot_sequence(&self) -> Option<u64> {
        self.inner.snapshot_sequence()
    }

    async fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        self.inner.next_chunk(max).await
    }
}

impl Drop for CountedIter {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `serve_connection` on `store`, spawned on one end of a socket pair; the other end is returned.
fn serve_pair(store: Arc<dyn KvStore>, limits: &Limits) -> (UnixStream, JoinHandle<Result<()>>) {
    let (a, b) = UnixStream::pair().unwrap();
    (
        a,
        tokio::spawn(serve_connection(b, store, INFO, limits.clone())),
    )
}

/// A client connected over a socket pair to `serve_connection` on `store`.
async fn pair_with(store: Arc<dyn KvStore>, limits: &Limits) -> (Client, JoinHandle<Result<()>>) {
    let (a, server) = serve_pair(store, limits);
    let (client, welcome) = bounded(Client::connect(a, limits.clone())).await.unwrap();
    assert_eq!(welcome.epoch, INFO.epoch);
    assert_eq!(welcome.pid, INFO.pid);
    assert_eq!(welcome.version, PROTOCOL_VERSION);
    (client, server)
}

/// A `serve` accept loop on a socket in a temporary directory.
struct Server {
    _dir: tempfile::TempDir,
    path: PathBuf,
    shutdown: CancellationToken,
    task: JoinHandle<Result<()>>,
}

impl Server {
    fn start(store: Arc<dyn KvStore>, limits: &Limits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rave.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let shutdown = CancellationToken::new();
        let incoming = futures::stream::unfold(listener, |listener| async move {
            Some((listener.accept().await.map(|(stream, _)| stream), listener))
        });
        let task = tokio::spawn(serve(
            Box::pin(incoming),
            store,
            INFO,
            limits.clone(),
            shutdown.clone(),
        ));
        Server {
            _dir: dir,
            path,
            shutdown,
            task,
        }
    }

    async fn client(&self, limits: &Limits) -> Client {
        let stream = UnixStream::connect(&self.path).await.unwrap();
        bounded(Client::connect(stream, limits.clone()))
            .await
            .unwrap()
            .0
    }

    async fn raw(&self, limits: &Limits) -> Raw {
        Raw::new(UnixStream::connect(&self.path).await.unwrap(), limits)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        bounded(self.task).await.unwrap().unwrap();
    }
}

/// A hand-driven peer speaking (or abusing) the protocol.
struct Raw {
    framed: Framed<UnixStream, LengthDelimitedCodec>,
}

impl Raw {
    fn new(stream: UnixStream, limits: &Limits) -> Raw {
        Raw {
            framed: Framed::new(stream, limits.codec()),
        }
    }

    async fn send(&mut self, message: &ClientMessage) {
        self.send_frame(wire::encode(message).unwrap()).await;
    }

    async fn send_frame(&mut self, frame: Bytes) {
        self.framed.send(frame).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.framed.get_mut().write_all(bytes).await.unwrap();
    }

    async fn hello(&mut self) {
        self.send(&ClientMessage::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
        })
        .await;
        match self.recv().await {
            Some(ServerMessage::Welcome { epoch, .. }) => assert_eq!(epoch, INFO.epoch),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// The next message, or `None` at EOF (or a connection reset).
    async fn recv(&mut self) -> Option<ServerMessage> {
        match bounded(self.framed.next()).await {
            Some(Ok(frame)) => Some(wire::decode(&frame).unwrap()),
            Some(Err(_)) | None => None,
        }
    }

    /// The next message if one comes within `wait`.
    async fn recv_within(&mut self, wait: Duration) -> Option<ServerMessage> {
        match tokio::time::timeout(wait, self.framed.next()).await {
            Ok(Some(Ok(frame))) => Some(wire::decode(&frame).unwrap()),
            _ => None,
        }
    }

    /// Whether the peer still has the connection open and has sent nothing, asked of the socket
    /// itself with a read that does not wait (the runtime may not have seen an EOF yet).
    /// Returns `self` rebuilt around the same socket.
    fn still_open(self) -> (bool, Raw) {
        use std::io::Read;
        let parts = self.framed.into_parts();
        assert!(parts.read_buf.is_empty(), "the peer has sent something");
        let mut socket = parts.io.into_std().unwrap();
        let open = match socket.read(&mut [0u8; 1]) {
            Ok(0) => false,
            Ok(_) => panic!("the peer has sent something"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            Err(_) => false,
        };
        let mut rebuilt =
            FramedParts::new::<Bytes>(UnixStream::from_std(socket).unwrap(), parts.codec);
        rebuilt.write_buf = parts.write_buf;
        let framed = Framed::from_parts(rebuilt);
        (open, Raw { framed })
    }

    /// Reads frames without decoding them until EOF (a fake leader ignoring its client).
    async fn drain(&mut self) {
        while let Some(Ok(_)) = bounded(self.framed.next()).await {}
    }

    /// Reads until EOF, returning every message on the way; fails if EOF does not come.
    async fn until_eof(&mut self) -> Vec<ServerMessage> {
        let mut seen = Vec::new();
        while let Some(message) = self.recv().await {
            seen.push(message);
        }
        seen
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("k{i:06}").into_bytes()
}

/// Default limits but an iterator window of what the first `entries` entries of [`fill`] cost.
fn window(entries: usize) -> Limits {
    Limits {
        iter_window_bytes: cost(0, entries),
        ..Limits::default()
    }
}

/// The credit, in bytes, that entries `from..to` of [`fill`] cost.
fn cost(from: usize, to: usize) -> u32 {
    (from..to)
        .map(|i| Entry::new(key(i), format!("v{i}").into_bytes()))
        .map(|e| u32::try_from(wire::entry_cost(&e)).unwrap())
        .sum()
}

async fn fill(store: &dyn KvStore, n: usize) {
    let ops = (0..n)
        .map(|i| BatchOp::put(key(i), format!("v{i}")))
        .collect();
    store.batch(ops).await.unwrap();
}

async fn collect(iter: &mut dyn KvIterator, chunk: usize) -> Result<Vec<Entry>> {
    let mut all = Vec::new();
    loop {
        let got = iter.next_chunk(chunk).await?;
        if got.is_empty() {
            return Ok(all);
        }
        assert!(got.len() <= chunk);
        all.extend(got);
    }
}
