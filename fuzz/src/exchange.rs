// One hostile (or merely random) follower against `serve_connection`, with the invariants every
// answer must keep. Shared, word for word, by the `dispatch` fuzz target (fuzz/src/lib.rs) and by
// rave-transport's proptest of the same path (src/tests/fuzz_regressions.rs), which pulls it in
// with `include!`: hence no inner attributes or `//!` docs here, and the transport is reached as
// `super::rt` (the fuzz crate's `rave_transport`, or `crate` inside the transport).
//
// What a session asserts (a violation panics, which the fuzzer reports as a crash):
// - the connection ends by itself once the follower stops writing (EOF), within a bound, with
//   `Ok(())` or a `Protocol` error, never anything else and never a panic;
// - every frame the server writes is within `max_frame` and decodes as a `ServerMessage`;
// - `Welcome` comes first or not at all, and only after a valid `Hello`; nothing follows
//   `Refused`;
// - a `Response` answers a request id that was sent (no more often than it was sent);
// - an iterator never receives an entry once what it received costs its credit (bytes of
//   `wire::entry_cost`; one entry of overdraft); for an id opened once,
//   keys are in the range, strictly ordered, within the limit, and nothing follows its end;
// - a follower that spoke the protocol correctly gets an answer to every request and a clean
//   `Ok(())` when it leaves;
// - a well-behaved client connected to the same store before the session still works after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rave_api::{ErrorKind, KvStore, Projection, Range};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;

use super::rt::wire::{self, ClientMessage, Limits, MAGIC, PROTOCOL_VERSION, ServerMessage};
use super::rt::{Client, ServerInfo, serve_connection};

/// The server's identity in every session.
pub const INFO: ServerInfo = ServerInfo {
    epoch: 11,
    pid: 4711,
};

/// How long any one phase of a session may take before it counts as a hang.
pub const BOUND: Duration = Duration::from_secs(10);

/// One thing the follower writes.
#[derive(Clone, Debug)]
pub enum Wire {
    /// A message, encoded and framed as a real client would.
    Message(ClientMessage),
    /// A frame around arbitrary body bytes.
    Body(Vec<u8>),
    /// Bytes as they are, no framing (they may tear the framing apart).
    Bytes(Vec<u8>),
    /// Lets the server run before the next write.
    Yield,
}

/// How a session ended.
#[derive(Debug)]
pub struct Outcome {
    /// What `serve_connection` returned.
    pub result: rave_api::Result<()>,
    /// Frames the server wrote.
    pub frames: usize,
    /// Whether the server said `Welcome`.
    pub welcomed: bool,
    /// Whether the follower spoke the protocol correctly throughout.
    pub clean: bool,
}

fn is_valid_hello(message: &ClientMessage) -> bool {
    matches!(message, ClientMessage::Hello { magic, version } if *magic == MAGIC && *version == PROTOCOL_VERSION)
}

/// Whether `steps` is a correct conversation under `limits`: a valid Hello first, then only
/// well-formed messages that fit in a frame (a real client refuses to send a bigger one), no
/// second Hello, and no iterator id opened twice (a real client never reuses one).
pub fn is_clean(steps: &[Wire], limits: &Limits) -> bool {
    let mut messages = steps.iter().filter(|s| !matches!(s, Wire::Yield));
    match messages.next() {
        Some(Wire::Message(hello)) if is_valid_hello(hello) => {}
        _ => return false,
    }
    let mut opened = std::collections::HashSet::new();
    messages.all(|step| match step {
        Wire::Message(message) => {
            let fits = wire::encode(message).is_ok_and(|body| body.len() <= limits.max_frame);
            fits && match message {
                ClientMessage::Hello { .. } => false,
                ClientMessage::IterOpen { iter, .. } => opened.insert(*iter),
                _ => true,
            }
        }
        _ => false,
    })
}

/// What one iterator id has been granted (bytes of `entry_cost`) and has received (entries,
/// and what they cost).
#[derive(Default)]
struct IterBook {
    opened: u32,
    granted: u64,
    spent: u64,
    received: u64,
    range: Option<Range>,
    last_key: Option<Vec<u8>>,
    ended: bool,
}

/// What the follower has sent, as the reader checks the server's answers against it. The
/// writer records a message before writing it, so the server can never act on something the
/// book does not know yet.
#[derive(Default)]
struct Book {
    requests: HashMap<u64, u64>,
    answered: HashMap<u64, u64>,
    iters: HashMap<u64, IterBook>,
    /// Per watch: (credit granted, credit spent, times opened).
    watches: HashMap<u64, (u64, u64, u64)>,
}

impl Book {
    fn record(&mut self, message: &ClientMessage) {
        match message {
            ClientMessage::Request { id, .. } => *self.requests.entry(*id).or_default() += 1,
            ClientMessage::IterOpen {
                iter,
                range,
                credit,
            } => {
                let book = self.iters.entry(*iter).or_default();
                book.opened += 1;
                book.granted += u64::from(*credit);
                book.range = Some(range.clone());
                book.last_key = None;
                book.ended = false;
            }
            ClientMessage::IterCredit { iter, credit } => {
                self.iters.entry(*iter).or_default().granted += u64::from(*credit);
            }
            ClientMessage::WatchOpen { watch, credit, .. } => {
                let book = self.watches.entry(*watch).or_default();
                book.0 += u64::from(*credit);
                book.2 += 1;
            }
            ClientMessage::WatchCredit { watch, credit } => {
                self.watches.entry(*watch).or_default().0 += u64::from(*credit);
            }
            ClientMessage::Hello { .. }
            | ClientMessage::IterClose { .. }
            | ClientMessage::WatchClose { .. } => {}
        }
    }

    fn unanswered(&self) -> u64 {
        self.requests
            .iter()
            .map(|(id, sent)| sent.saturating_sub(self.answered.get(id).copied().unwrap_or(0)))
            .sum()
    }

    /// Checks one message from the server against what was sent.
    fn check(&mut self, message: &ServerMessage) {
        match message {
            ServerMessage::Response { id, .. } => {
                let answered = self.answered.entry(*id).or_default();
                *answered += 1;
                let sent = self.requests.get(id).copied().unwrap_or(0);
                assert!(
                    *answered <= sent,
                    "request {id} answered {answered} times, sent {sent} times"
                );
            }
            ServerMessage::IterChunk {
                iter, entries, end, ..
            } => {
                let book = self.iters.get_mut(iter);
                let Some(book) = book else {
                    panic!("chunk of iterator {iter}, which was never opened");
                };
                // An entry may go out only while what was sent before it costs less than the
                // credit (one entry of overdraft).
                for entry in entries {
                    assert!(
                        book.spent < book.granted,
                        "iterator {iter}: an entry sent with {} bytes spent of {} granted",
                        book.spent,
                        book.granted
                    );
                    book.spent += wire::entry_cost(entry);
                }
                book.received += entries.len() as u64;
                if book.opened == 1 {
                    assert!(!book.ended, "iterator {iter}: a chunk after its end");
                    let range = book.range.clone().unwrap_or_else(Range::all);
                    if let Some(limit) = range.limit {
                        assert!(
                            book.received <= limit,
                            "iterator {iter}: {} entries past the limit {limit}",
                            book.received
                        );
                    }
                    for entry in entries {
                        match range.projection {
                            Projection::KeysAndValues | Projection::KeysOnly => {
                                assert!(
                                    range.contains(&entry.key),
                                    "iterator {iter}: key {:?} outside {range:?}",
                                    entry.key
                                );
                                if let Some(last) = &book.last_key {
                                    let ordered = if range.reverse {
                                        entry.key < *last
                                    } else {
                                        entry.key > *last
                                    };
                                    assert!(
                                        ordered,
                                        "iterator {iter}: key {:?} after {last:?} (reverse {})",
                                        entry.key, range.reverse
                                    );
                                }
                                book.last_key = Some(entry.key.clone());
                            }
                            Projection::ValuesOnly => assert!(
                                entry.key.is_empty(),
                                "iterator {iter}: a key in a values-only chunk"
                            ),
                        }
                        if range.projection == Projection::KeysOnly {
                            assert!(
                                entry.value.is_empty(),
                                "iterator {iter}: a value in a keys-only chunk"
                            );
                        }
                    }
                    book.ended |= *end;
                }
            }
            ServerMessage::IterError { iter, .. } => {
                let Some(book) = self.iters.get_mut(iter) else {
                    panic!("error of iterator {iter}, which was never opened");
                };
                if book.opened == 1 {
                    assert!(!book.ended, "iterator {iter}: an error after its end");
                    book.ended = true;
                }
            }
            ServerMessage::Welcome { .. } | ServerMessage::Refused { .. } => {}
            ServerMessage::WatchEvents { watch, events } => {
                let Some(book) = self.watches.get_mut(watch) else {
                    panic!("events of watch {watch}, which was never opened");
                };
                for event in events {
                    assert!(
                        book.1 < book.0 || book.2 > 1,
                        "watch {watch}: an event sent with {} bytes spent of {} granted",
                        book.1,
                        book.0
                    );
                    book.1 += wire::event_cost(event);
                }
            }
            ServerMessage::WatchError { watch, .. } => {
                assert!(
                    self.watches.contains_key(watch),
                    "error of watch {watch}, which was never opened"
                );
            }
        }
    }
}

/// Awaits `fut`, panicking with `what` past [`BOUND`].
async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(BOUND, fut).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: not done within {BOUND:?}"),
    }
}

/// The bytes of each step (`None`: yield).
fn step_bytes(steps: Vec<Wire>) -> Vec<Option<Vec<u8>>> {
    steps
        .into_iter()
        .map(|step| match step {
            Wire::Yield => None,
            Wire::Message(message) => match wire::encode(&message) {
                Ok(body) => Some(framed(&body)),
                Err(e) => panic!("cannot encode {message:?}: {e}"),
            },
            Wire::Body(body) => Some(framed(&body)),
            Wire::Bytes(bytes) => Some(bytes),
        })
        .collect()
}

/// The server's view of the byte stream: the same codec over the same bytes, so the book
/// records exactly the messages the server will read, however the steps were built (a junk
/// body may well decode as a request).
struct Shadow {
    codec: tokio_util::codec::LengthDelimitedCodec,
    buffer: bytes::BytesMut,
    broken: bool,
}

impl Shadow {
    fn new(limits: &Limits) -> Shadow {
        Shadow {
            codec: limits.codec(),
            buffer: bytes::BytesMut::new(),
            broken: false,
        }
    }

    /// Feeds written bytes; returns the messages they complete (nothing after bad framing or
    /// an undecodable body, after which the server reads no more).
    fn feed(&mut self, bytes: &[u8]) -> Vec<ClientMessage> {
        use tokio_util::codec::Decoder;
        let mut messages = Vec::new();
        if self.broken {
            return messages;
        }
        self.buffer.extend_from_slice(bytes);
        loop {
            match self.codec.decode(&mut self.buffer) {
                Ok(Some(frame)) => match wire::decode::<ClientMessage>(&frame) {
                    Ok(message) => messages.push(message),
                    Err(_) => {
                        self.broken = true;
                        return messages;
                    }
                },
                Ok(None) => return messages,
                Err(_) => {
                    self.broken = true;
                    return messages;
                }
            }
        }
    }
}

/// Runs one follower session of `steps` against `store` and checks every answer.
pub async fn exchange(store: Arc<dyn KvStore>, limits: Limits, steps: Vec<Wire>) -> Outcome {
    let clean = is_clean(&steps, &limits);
    let steps = step_bytes(steps);
    // What the server reads first decides the handshake.
    let first_is_valid_hello = {
        let mut shadow = Shadow::new(&limits);
        steps
            .iter()
            .flatten()
            .find_map(|bytes| shadow.feed(bytes).into_iter().next())
            .map(|first| is_valid_hello(&first))
    };
    let (ours, theirs) = tokio::io::duplex(16 * 1024);
    let server = tokio::spawn(serve_connection(theirs, store, INFO, limits.clone()));
    let (read_half, mut write_half) = tokio::io::split(ours);
    let book = Arc::new(Mutex::new(Book::default()));
    let answers = Arc::new(tokio::sync::Notify::new());

    // The reader: every frame is checked as it arrives.
    let reader_book = book.clone();
    let reader_answers = answers.clone();
    let max_frame = limits.max_frame;
    let reader_codec = limits.codec();
    let reader = tokio::spawn(async move {
        let mut frames = FramedRead::new(read_half, reader_codec);
        let mut count = 0usize;
        let mut welcomed = false;
        let mut refused = false;
        while let Some(frame) = frames.next().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    panic!("the server wrote a frame over {max_frame} bytes or broke framing: {e}")
                }
            };
            let message: ServerMessage = match wire::decode(&frame) {
                Ok(message) => message,
                Err(e) => panic!("the server wrote an undecodable frame: {e}"),
            };
            assert!(!refused, "the server wrote {message:?} after Refused");
            match &message {
                ServerMessage::Welcome {
                    version,
                    epoch,
                    pid,
                } => {
                    assert_eq!(count, 0, "Welcome is not the first frame");
                    assert_eq!(
                        first_is_valid_hello,
                        Some(true),
                        "Welcome without a valid Hello"
                    );
                    assert_eq!(
                        (*version, *epoch, *pid),
                        (PROTOCOL_VERSION, INFO.epoch, INFO.pid)
                    );
                    welcomed = true;
                }
                ServerMessage::Refused { .. } => refused = true,
                other => {
                    assert!(welcomed, "{other:?} before Welcome");
                    reader_book
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .check(other);
                    reader_answers.notify_waiters();
                }
            }
            count += 1;
        }
        (count, welcomed)
    });

    // The writer: records what the server will read before writing it, and stops at the first
    // failed write (the server hung up).
    let writer_book = book.clone();
    let mut shadow = Shadow::new(&limits);
    let writer = async move {
        for bytes in steps {
            let Some(bytes) = bytes else {
                tokio::task::yield_now().await;
                continue;
            };
            {
                let mut book = writer_book.lock().unwrap_or_else(|e| e.into_inner());
                for message in shadow.feed(&bytes) {
                    book.record(&message);
                }
            }
            if write_half.write_all(&bytes).await.is_err() {
                break;
            }
        }
        write_half
    };
    let mut write_half = bounded("writing the session", writer).await;

    // A reader that ends early (the server hung up, or a check failed) is kept here.
    let mut reader = reader;
    let mut reader_done = None;
    if clean {
        // A correct follower gets an answer to every request before it leaves.
        bounded("answers to every request", async {
            loop {
                // Registered before the check, so an answer in between is not missed.
                let answered = answers.notified();
                if book.lock().unwrap_or_else(|e| e.into_inner()).unanswered() == 0 {
                    break;
                }
                tokio::select! {
                    _ = answered => {}
                    joined = &mut reader => {
                        reader_done = Some(joined);
                        break;
                    }
                }
            }
        })
        .await;
    }
    // EOF: the server must finish on its own now.
    let _ = write_half.shutdown().await;
    let result = match bounded("serve_connection after EOF", server).await {
        Ok(result) => result,
        Err(e) => panic!("serve_connection panicked: {e}"),
    };
    let joined = match reader_done {
        Some(joined) => joined,
        None => bounded("the reader after EOF", reader).await,
    };
    let (frames, welcomed) = match joined {
        Ok(counts) => counts,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    if clean {
        let unanswered = book.lock().unwrap_or_else(|e| e.into_inner()).unanswered();
        assert_eq!(
            unanswered, 0,
            "a correct follower's requests went unanswered"
        );
    }
    drop(write_half);
    match &result {
        Ok(()) => {}
        Err(e) => {
            assert_eq!(
                e.kind(),
                ErrorKind::Protocol,
                "the connection ended with {e}"
            );
            assert!(!clean, "a correct follower was dropped: {e}");
        }
    }
    if first_is_valid_hello == Some(true) {
        assert!(welcomed, "a valid Hello got no Welcome");
    }
    Outcome {
        result,
        frames,
        welcomed,
        clean,
    }
}

/// A length-prefixed frame around `body`.
fn framed(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// A well-behaved client of `store`, connected over its own in-memory stream.
pub async fn good_client(store: Arc<dyn KvStore>, limits: &Limits) -> Client {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(serve_connection(theirs, store, INFO, limits.clone()));
    match bounded(
        "a good client's handshake",
        Client::connect(ours, limits.clone()),
    )
    .await
    {
        Ok((client, _)) => client,
        Err(e) => panic!("a good client cannot connect: {e}"),
    }
}

/// Proves `client` (connected before a session) still works: a write, a read and a scan of
/// a key no session touches.
pub async fn still_works(client: &Client) {
    static ROUND: AtomicU64 = AtomicU64::new(0);
    let round = ROUND.fetch_add(1, AtomicOrdering::Relaxed);
    // Sessions write keys of at most a few bytes; this one is longer and unique per round.
    let key = format!("\u{1}good-client-{round:020}").into_bytes();
    bounded("the good client", async {
        client
            .put(&key, b"fine")
            .await
            .expect("the good client's put");
        assert_eq!(
            client.get(&key).await.expect("the good client's get"),
            Some(b"fine".to_vec())
        );
        let mut iter = client
            .iterator(Range::prefix(key.clone()))
            .await
            .expect("the good client's iterator");
        let entries = iter.next_chunk(16).await.expect("the good client's scan");
        assert_eq!(entries.len(), 1, "the good client's scan: {entries:?}");
    })
    .await;
}

/// A follower against a leader that says anything: a fake leader says `Welcome`, then writes
/// `data` and hangs up, while the client has a read, a write, an iterator and a ping in flight.
/// Asserts: no panic, an iterator chunk never exceeds what was asked, and every call ends (with
/// whatever result) within a bound.
pub async fn follower_session(data: Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let (ours, theirs) = tokio::io::duplex(16 * 1024);
    let leader = tokio::spawn(async move {
        let (mut read_half, mut write_half) = tokio::io::split(theirs);
        // Read whatever the client sends, so it never blocks on a full pipe.
        let drain = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while matches!(read_half.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        let welcome = match wire::encode(&ServerMessage::Welcome {
            version: PROTOCOL_VERSION,
            epoch: 1,
            pid: 1,
        }) {
            Ok(welcome) => welcome,
            Err(e) => panic!("Welcome does not encode: {e}"),
        };
        let mut bytes = framed(&welcome);
        bytes.extend_from_slice(&data);
        // In pieces, so the client sees partial frames too.
        for piece in bytes.chunks(256) {
            if write_half.write_all(piece).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let _ = write_half.shutdown().await;
        drain.abort();
    });
    let limits = Limits {
        max_frame: 4096,
        iter_window_bytes: 100,
        ..Limits::default()
    };
    let calls = async {
        let client = match Client::connect(ours, limits).await {
            Ok((client, _)) => client,
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::Protocol | ErrorKind::LeaderLost),
                    "connect failed with {e}"
                );
                return;
            }
        };
        let scan = async {
            let mut iter = client.open_iterator(Range::all()).await?;
            loop {
                let chunk = rave_api::KvIterator::next_chunk(&mut iter, 3).await?;
                assert!(chunk.len() <= 3, "{} entries for a chunk of 3", chunk.len());
                if chunk.is_empty() {
                    return Ok::<(), rave_api::Error>(());
                }
            }
        };
        let _ = futures::join!(
            client.get(b"k"),
            client.put(b"k", b"v"),
            scan,
            client.ping()
        );
    };
    if tokio::time::timeout(BOUND, calls).await.is_err() {
        panic!("a follower's calls did not end after its leader hung up");
    }
    let _ = leader.await;
}
