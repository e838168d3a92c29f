// A fuzzed session of the `dispatch` target, built with `arbitrary` from the fuzzer's bytes:
// valid-ish messages over a small key and id space (so they meet each other), mixed with raw
// junk. Shared, word for word, by the fuzz crate (fuzz/src/lib.rs) and by rave-transport's
// replay of the committed `dispatch` corpus (src/tests/fuzz_regressions.rs), which pull it in
// with `include!` next to `exchange`: hence no inner attributes or `//!` docs here, and the
// transport is reached as `super::rt`.

use std::time::Duration;

use arbitrary::Arbitrary;
use rave_api::{BatchOp, Projection, Range};

use super::exchange::Wire;
use super::rt::wire::{self, ClientMessage, Limits, MAGIC, Op, PROTOCOL_VERSION};

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
            send_buffer_bytes: 8 << 20,
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
            OpSpec::Put(key, value) => Op::put(key.bytes(), value.bytes()),
            OpSpec::Del(key) => Op::del(key.bytes()),
            OpSpec::Batch(ops) => Op::batch(
                ops.iter()
                    .map(|(key, value)| match value {
                        Some(value) => BatchOp::put(key.bytes(), value.bytes()),
                        None => BatchOp::del(key.bytes()),
                    })
                    .collect(),
            ),
            OpSpec::Clear(range) => Op::clear(range.range()),
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
