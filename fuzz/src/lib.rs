//! Shared pieces of rave's fuzz targets.
//!
//! - [`exchange`]: one follower session against `serve_connection` and the invariants every
//!   answer keeps (the same file runs as a proptest inside rave-transport's tests);
//! - [`Session`]: a session built with `arbitrary` from the fuzzer's bytes: valid-ish messages
//!   over a small key and id space (so they meet each other), mixed with raw junk;
//! - [`Harness`]: a runtime and two live stores (the memory engine and redb in a temporary
//!   directory), each with a well-behaved client, opened once per fuzzing process;
//! - [`check_client_body`] / [`check_server_body`]: decode, and round-trip what decodes;
//!   [`check_frames`]: the frame codec's invariants, then one of those on every frame.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use rave_api::{Backend, BatchOp, KvStore, MemoryBackend, OpenOptions, Projection, Range};
use rave_transport as rt;
use rt::wire::{self, ClientMessage, Limits, MAGIC, Op, PROTOCOL_VERSION, ServerMessage};

#[allow(missing_docs)]
pub mod exchange {
    include!("exchange.rs");
}

pub use exchange::{Outcome, Wire};

/// Decodes a body as a `ClientMessage`; what decodes must encode and decode to itself.
pub fn check_client_body(body: &[u8]) {
    check_round_trip::<ClientMessage>(body);
}

/// Decodes a body as a `ServerMessage`; what decodes must encode and decode to itself.
pub fn check_server_body(body: &[u8]) {
    check_round_trip::<ServerMessage>(body);
}

/// What decodes as `T` must encode and decode to itself.
fn check_round_trip<T>(body: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(message) = wire::decode::<T>(body) {
        let again = wire::encode(&message).expect("a decoded message encodes");
        let back = wire::decode::<T>(&again).expect("an encoded message decodes");
        assert_eq!(
            back,
            message,
            "a {} does not survive a round trip",
            std::any::type_name::<T>()
        );
    }
}

/// A decoding target's whole run: the first input byte picks the frame limit
/// ([`max_frame_for`]), the rest is a byte stream cut into frames by the codec, and each frame,
/// then the whole stream as one body, goes to `check_body`. Asserts that no frame over the limit
/// is ever returned and that a length prefix over the limit is refused at once (an error, not a
/// wait for a body that would have to be buffered).
pub fn check_frames(data: &[u8], check_body: fn(&[u8])) {
    use tokio_util::codec::Decoder;

    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let max_frame = max_frame_for(selector);
    let mut codec = Limits {
        max_frame,
        ..Limits::default()
    }
    .codec();
    let mut buf = bytes::BytesMut::from(stream);
    loop {
        let head = buf
            .get(..4)
            .map(|h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize);
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= max_frame, "a frame of {} bytes", frame.len());
                check_body(&frame);
            }
            Ok(None) => {
                if let Some(len) = head {
                    assert!(len <= max_frame, "a {len}-byte length prefix is waited on");
                }
                break;
            }
            Err(_) => break,
        }
    }
    // The whole input as one body, too.
    check_body(stream);
}

/// The frame limits a decoding target runs with, picked by one input byte: tiny limits find
/// the edges, the default one is what runs in production.
pub fn max_frame_for(selector: u8) -> usize {
    match selector % 4 {
        0 => 0,
        1 => 16,
        2 => 4096,
        _ => Limits::default().max_frame,
    }
}

/// Which engine serves a session.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum EngineChoice {
    /// rave-api's in-memory engine.
    Memory,
    /// redb, on a file in a temporary directory.
    Redb,
}

/// The server's limits, from a few interesting shapes.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct LimitsChoice {
    frame: u8,
    chunk_entries: u8,
    chunk_bytes: u8,
    in_flight: u8,
}

impl LimitsChoice {
    /// The limits.
    pub fn limits(self) -> Limits {
        Limits {
            max_frame: [256, 4096, 64 * 1024, 1 << 20][usize::from(self.frame % 4)],
            // Never hit by a session: it writes without pauses and EOF ends a silent one.
            handshake_timeout: Duration::from_secs(30),
            chunk_entries: [1, 3, 256][usize::from(self.chunk_entries % 3)],
            chunk_bytes: [1, 64, 1 << 20][usize::from(self.chunk_bytes % 3)],
            iter_window_bytes: 1 << 20,
            max_in_flight: [1, 2, 16][usize::from(self.in_flight % 3)],
            call_timeout: None,
        }
    }
}

/// A key: mostly from a small set, so that writes, reads and ranges meet.
#[derive(Arbitrary, Clone, Debug)]
pub enum Key {
    /// `[b'k', n % 16]`.
    Small(u8),
    /// The empty key (valid).
    Empty,
    /// Any bytes.
    Raw(Vec<u8>),
}

impl Key {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Small(n) => vec![b'k', n % 16],
            Key::Empty => Vec::new(),
            Key::Raw(bytes) => bytes.clone(),
        }
    }
}

/// A value: short, empty, or long enough to cross small frame and chunk limits.
#[derive(Arbitrary, Clone, Debug)]
pub enum Value {
    /// Any bytes.
    Raw(Vec<u8>),
    /// `n * 64` bytes of one value, up to 16 KiB.
    Long(u8, u8),
}

impl Value {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Value::Raw(bytes) => bytes.clone(),
            Value::Long(n, byte) => vec![*byte; usize::from(*n) * 64],
        }
    }
}

/// A range over the same keys.
#[derive(Arbitrary, Clone, Debug)]
pub struct RangeSpec {
    gt: Option<Key>,
    gte: Option<Key>,
    lt: Option<Key>,
    lte: Option<Key>,
    reverse: bool,
    limit: Option<u8>,
    huge_limit: bool,
    projection: u8,
}

impl RangeSpec {
    fn range(&self) -> Range {
        Range {
            gt: self.gt.as_ref().map(Key::bytes),
            gte: self.gte.as_ref().map(Key::bytes),
            lt: self.lt.as_ref().map(Key::bytes),
            lte: self.lte.as_ref().map(Key::bytes),
            reverse: self.reverse,
            limit: if self.huge_limit {
                Some(u64::MAX)
            } else {
                self.limit.map(u64::from)
            },
            projection: match self.projection % 3 {
                0 => Projection::KeysAndValues,
                1 => Projection::KeysOnly,
                _ => Projection::ValuesOnly,
            },
        }
    }
}

/// A point operation.
#[derive(Arbitrary, Clone, Debug)]
pub enum OpSpec {
    /// `get`.
    Get(Key),
    /// `get_many`.
    GetMany(Vec<Key>),
    /// `put`.
    Put(Key, Value),
    /// `del`.
    Del(Key),
    /// `batch` of puts (`Some`) and dels (`None`).
    Batch(Vec<(Key, Option<Value>)>),
    /// `clear`.
    Clear(RangeSpec),
    /// `ping`.
    Ping,
}

impl OpSpec {
    fn op(&self) -> Op {
        match self {
            OpSpec::Get(key) => Op::Get { key: key.bytes() },
            OpSpec::GetMany(keys) => Op::GetMany {
                keys: keys.iter().map(Key::bytes).collect(),
            },
            OpSpec::Put(key, value) => Op::Put {
                key: key.bytes(),
                value: value.bytes(),
            },
            OpSpec::Del(key) => Op::Del { key: key.bytes() },
            OpSpec::Batch(ops) => Op::Batch {
                ops: ops
                    .iter()
                    .map(|(key, value)| match value {
                        Some(value) => BatchOp::put(key.bytes(), value.bytes()),
                        None => BatchOp::del(key.bytes()),
                    })
                    .collect(),
            },
            OpSpec::Clear(range) => Op::Clear {
                range: range.range(),
            },
            OpSpec::Ping => Op::Ping,
        }
    }
}

/// A message, over a small id space (ids 0..8) so that they collide and refer to each other.
#[derive(Arbitrary, Clone, Debug)]
pub enum MessageSpec {
    /// `Hello`, valid or not.
    Hello {
        /// `MAGIC` or this.
        magic: Option<u32>,
        /// `PROTOCOL_VERSION` or this.
        version: Option<u32>,
    },
    /// A `Request`.
    Request(u8, OpSpec),
    /// `IterOpen` with an initial credit.
    IterOpen(u8, RangeSpec, u32),
    /// `IterCredit`.
    IterCredit(u8, u32),
    /// `IterClose`.
    IterClose(u8),
}

impl MessageSpec {
    fn message(&self) -> ClientMessage {
        let id = |n: &u8| u64::from(n % 8);
        match self {
            MessageSpec::Hello { magic, version } => ClientMessage::Hello {
                magic: magic.unwrap_or(MAGIC),
                version: version.unwrap_or(PROTOCOL_VERSION),
            },
            MessageSpec::Request(n, op) => ClientMessage::Request {
                id: id(n),
                op: op.op(),
            },
            MessageSpec::IterOpen(n, range, credit) => ClientMessage::IterOpen {
                iter: id(n),
                range: range.range(),
                credit: *credit,
            },
            MessageSpec::IterCredit(n, credit) => ClientMessage::IterCredit {
                iter: id(n),
                credit: *credit,
            },
            MessageSpec::IterClose(n) => ClientMessage::IterClose { iter: id(n) },
        }
    }
}

/// One step of a fuzzed session.
#[derive(Arbitrary, Clone, Debug)]
pub enum Step {
    /// A well-formed message.
    Message(MessageSpec),
    /// A well-formed message with one byte of its body replaced.
    Mutated(MessageSpec, u16, u8),
    /// A frame around junk.
    Body(Vec<u8>),
    /// Junk, unframed.
    Bytes(Vec<u8>),
    /// A bare length prefix (a frame whose body may never come, or is far too long).
    Length(u32),
    /// Let the server run.
    Yield,
}

/// A whole fuzzed session.
#[derive(Arbitrary, Clone, Debug)]
pub struct Session {
    /// Which store serves it.
    pub engine: EngineChoice,
    /// The server's limits.
    pub limits: LimitsChoice,
    /// Start with a valid Hello (most sessions should get past the handshake).
    pub hello: bool,
    /// What the follower writes.
    pub steps: Vec<Step>,
}

impl Session {
    /// The bytes-on-the-wire form of the steps.
    pub fn wire(&self) -> Vec<Wire> {
        let mut wire = Vec::with_capacity(self.steps.len() + 1);
        if self.hello {
            wire.push(Wire::Message(ClientMessage::Hello {
                magic: MAGIC,
                version: PROTOCOL_VERSION,
            }));
        }
        for step in &self.steps {
            wire.push(match step {
                Step::Message(spec) => Wire::Message(spec.message()),
                Step::Mutated(spec, at, byte) => {
                    let mut body = wire::encode(&spec.message())
                        .expect("a message encodes")
                        .to_vec();
                    if !body.is_empty() {
                        let i = usize::from(*at) % body.len();
                        body[i] = *byte;
                    }
                    Wire::Body(body)
                }
                Step::Body(body) => Wire::Body(body.clone()),
                Step::Bytes(bytes) => Wire::Bytes(bytes.clone()),
                Step::Length(len) => Wire::Bytes(len.to_be_bytes().to_vec()),
                Step::Yield => Wire::Yield,
            });
        }
        wire
    }
}

/// A runtime and the two stores, shared by every run of one fuzzing process.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    memory: Arc<dyn KvStore>,
    redb: Arc<dyn KvStore>,
    /// A well-behaved client of each store, connected for the whole fuzzing run.
    good_memory: rt::Client,
    good_redb: rt::Client,
}

impl Harness {
    /// The process's harness, opened on first use.
    pub fn get() -> &'static Harness {
        static HARNESS: OnceLock<Harness> = OnceLock::new();
        HARNESS.get_or_init(Harness::open)
    }

    fn open() -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let memory: Arc<dyn KvStore> = Arc::new(
            MemoryBackend
                .open("unused".as_ref(), &OpenOptions::default())
                .expect("the memory engine"),
        );
        // On tmpfs when there is one: redb fsyncs every commit.
        let base = std::path::Path::new("/dev/shm");
        let dir = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        let redb: Arc<dyn KvStore> = Arc::new(
            rave_backend_redb::RedbBackend
                .open(dir.path(), &OpenOptions::default())
                .expect("redb opens"),
        );
        // redb keeps its file open: the directory can go now, so no fuzzing run leaves files
        // behind however it ends.
        drop(dir);
        let (good_memory, good_redb) = runtime.block_on(async {
            (
                exchange::good_client(memory.clone(), &Limits::default()).await,
                exchange::good_client(redb.clone(), &Limits::default()).await,
            )
        });
        Harness {
            runtime,
            memory,
            redb,
            good_memory,
            good_redb,
        }
    }

    /// Runs one session and checks it (panics on a broken invariant).
    pub fn run(&self, session: &Session) -> Outcome {
        let (store, good) = match session.engine {
            EngineChoice::Memory => (self.memory.clone(), &self.good_memory),
            EngineChoice::Redb => (self.redb.clone(), &self.good_redb),
        };
        let limits = session.limits.limits();
        let wire = session.wire();
        self.runtime.block_on(async move {
            // Each session starts from an empty store, so runs do not slow down over time.
            store
                .clear(Range::all())
                .await
                .expect("clear before a session");
            let outcome = exchange::exchange(store, limits, wire).await;
            // The client connected all along (through every earlier session) still works.
            exchange::still_works(good).await;
            outcome
        })
    }
}

impl Harness {
    /// A follower's side: see [`exchange::follower_session`].
    pub fn follower(&self, data: &[u8]) {
        self.runtime
            .block_on(exchange::follower_session(data.to_vec()));
    }
}
