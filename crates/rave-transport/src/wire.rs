//! The wire protocol between a follower ([`crate::Client`]) and a leader ([`crate::serve`]).
//!
//! # Framing
//!
//! Every message is one frame: a 4-byte big-endian length followed by that many bytes of body
//! (`tokio_util::codec::LengthDelimitedCodec`). A frame longer than [`Limits::max_frame`] is a
//! protocol error that closes the connection before its body is read.
//!
//! # Bodies
//!
//! Bodies are MessagePack, written with `rmp_serde::to_vec_named`: structs and struct variants
//! are maps keyed by field name, enum variants are keyed by their name, and every byte field is
//! a MessagePack `bin` (`serde_bytes`). Named fields cost a few bytes per entry but make traces
//! readable and let a later version add a defaulted field without breaking older peers. A body
//! that does not decode (including an enum variant this version does not know) is a protocol
//! error for that connection only.
//!
//! # Conversation
//!
//! 1. The client sends [`ClientMessage::Hello`] with [`MAGIC`] and [`PROTOCOL_VERSION`]; the
//!    server answers [`ServerMessage::Welcome`] (with the leader's epoch and pid) or
//!    [`ServerMessage::Refused`] and closes. The handshake must complete within
//!    [`Limits::handshake_timeout`].
//! 2. Point operations: [`ClientMessage::Request`] with a client-chosen `id`; the server answers
//!    [`ServerMessage::Response`] with the same `id`. Requests are pipelined and replies may come
//!    in any order.
//! 3. Iterators: [`ClientMessage::IterOpen`] grants an initial credit, in bytes of
//!    [`entry_cost`]; the server streams [`ServerMessage::IterChunk`]s and may send an entry only
//!    while what it has sent so far costs less than the credit granted so far (so it overdraws
//!    by at most one entry, which lets an entry larger than the whole window through); the client
//!    grants more with [`ClientMessage::IterCredit`] as its user consumes, and ends early with
//!    [`ClientMessage::IterClose`]. The last chunk has `end = true`; a failure ends the iterator
//!    with [`ServerMessage::IterError`]. Credit in bytes keeps a follower's buffer bounded in
//!    bytes whatever the entries' sizes, and lets small entries stream in long runs.
//! 4. Watches (protocol 5): [`ClientMessage::WatchOpen`] asks for the commits of a range after a
//!    position ([`rave_api::KvStore::watch`]) with an initial credit, in bytes of
//!    [`event_cost`]; the server streams [`ServerMessage::WatchEvents`] under the same credit
//!    rule as iterators (the first frame carries at least the starting
//!    [`rave_api::WatchEvent::Progress`] mark, or the failure comes as
//!    [`ServerMessage::WatchError`]); [`ClientMessage::WatchCredit`] grants more as the user
//!    consumes, [`ClientMessage::WatchClose`] ends it. A watch never ends by itself: only with
//!    an error (or the connection). A watcher whose credit has run out is simply not read from:
//!    on the leader it falls behind the live feed and catches up from the change log, or ends
//!    with `Lagged`, so a stopped follower costs the leader bounded memory.

use std::time::Duration;

use bytes::Bytes;
use rave_api::{BatchOp, Entry, Error, ErrorKind, Range, WatchEvent, Write, WriteStamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

/// The first field of every [`ClientMessage::Hello`]: `b"RAVE"` read as a big-endian `u32`.
pub const MAGIC: u32 = u32::from_be_bytes(*b"RAVE");

/// The protocol version this crate speaks. Peers of another version are refused.
pub const PROTOCOL_VERSION: u32 = 6;

/// How deep a body may nest. Our messages nest a handful of levels; the limit stops a hostile
/// body from recursing deeply while an unknown field is skipped.
const MAX_DEPTH: usize = 64;

/// The bounds that keep a connection's memory and waits finite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame body, in bytes, either side accepts (default 64 MiB). A value or batch
    /// that does not fit is refused with `InvalidArgument` before it is sent.
    pub max_frame: usize,
    /// How long the handshake may take, start to finish (default 5 s). A peer that says nothing,
    /// or trickles bytes, is dropped after this.
    pub handshake_timeout: Duration,
    /// The most entries the server reads from the store at a time for one iterator
    /// (default 256).
    pub chunk_entries: usize,
    /// The byte budget of one iterator frame (default 1 MiB); a frame always carries at least
    /// one entry.
    pub chunk_bytes: usize,
    /// The client's iterator window, in bytes of [`entry_cost`]: the most a follower has
    /// granted but not yet consumed, so, with at most one entry more, the most it buffers per
    /// iterator (default 1 MiB).
    pub iter_window_bytes: u32,
    /// The most requests one connection may have running on the server (default 1024); beyond
    /// it the server stops reading that socket until some finish. The same number caps the
    /// iterators open at once on one connection.
    pub max_in_flight: usize,
    /// How long a client call, or an iterator waiting for its next chunk, waits for the leader
    /// before failing with [`rave_api::ErrorKind::Timeout`] (default: `None`, forever). One
    /// watchdog task per connection enforces it (a call may wait up to an eighth longer), so
    /// calls arm no timer of their own. A leader that is stopped (SIGSTOP) but keeps its socket
    /// open is only noticed this way.
    pub call_timeout: Option<Duration>,
    /// The most bytes of requests a follower buffers for a leader that does not read them
    /// (default 8 MiB): a call that finds the buffer full waits for room (backpressure) instead
    /// of growing it. One request is always admitted into a buffer below the bound, so the
    /// buffer holds at most this plus one frame ([`Limits::max_frame`]). The small frames that
    /// return iterator credit or close an iterator are admitted regardless (at most two per
    /// open iterator are outstanding).
    pub send_buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 64 << 20,
            handshake_timeout: Duration::from_secs(5),
            chunk_entries: 256,
            chunk_bytes: 1 << 20,
            iter_window_bytes: 1 << 20,
            max_in_flight: 1024,
            call_timeout: None,
            send_buffer_bytes: 8 << 20,
        }
    }
}

impl Limits {
    /// The frame codec for these limits: 4-byte big-endian length, at most `max_frame` bytes.
    pub fn codec(&self) -> LengthDelimitedCodec {
        LengthDelimitedCodec::builder()
            .length_field_length(4)
            .big_endian()
            .max_frame_length(self.max_frame)
            .new_codec()
    }
}

/// A message from a follower to the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The first message of a connection.
    Hello {
        /// Must be [`MAGIC`].
        magic: u32,
        /// The client's [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// A point operation.
    Request {
        /// Chosen by the client; echoed in the [`ServerMessage::Response`].
        id: u64,
        /// What to do.
        op: Op,
    },
    /// Opens an iterator over a snapshot of `range`.
    IterOpen {
        /// Chosen by the client; names the iterator in later messages.
        iter: u64,
        /// What to iterate.
        range: Range,
        /// How many bytes of entries ([`entry_cost`]) the server may send before more credit
        /// arrives.
        credit: u32,
    },
    /// Lets the server send `credit` more bytes of entries ([`entry_cost`]) of iterator `iter`.
    IterCredit {
        /// The iterator.
        iter: u64,
        /// Additional bytes.
        credit: u32,
    },
    /// Ends iterator `iter` early and releases its snapshot.
    IterClose {
        /// The iterator.
        iter: u64,
    },
    /// Opens a watch of `range` after position `from` (protocol 5).
    WatchOpen {
        /// Chosen by the client; names the watch in later messages.
        watch: u64,
        /// The watched keys (bounds and projection only).
        range: Range,
        /// The last position already seen; `None`: from now.
        from: Option<u64>,
        /// How many bytes of events ([`event_cost`]) the server may send before more credit
        /// arrives.
        credit: u32,
    },
    /// Lets the server send `credit` more bytes of events of watch `watch`.
    WatchCredit {
        /// The watch.
        watch: u64,
        /// Additional bytes.
        credit: u32,
    },
    /// Ends watch `watch`.
    WatchClose {
        /// The watch.
        watch: u64,
    },
}

/// A point operation of [`ClientMessage::Request`], mirroring [`rave_api::KvStore`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// [`rave_api::KvStore::get`]; replies [`Reply::Value`].
    Get {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// [`rave_api::KvStore::get_many`]; replies [`Reply::Values`].
    GetMany {
        /// The keys.
        #[serde(with = "bytes_seq")]
        keys: Vec<Vec<u8>>,
    },
    /// Does nothing; replies [`Reply::Done`]. Proves the leader is alive and answering.
    Ping,
    /// [`rave_api::KvStore::sequence`]; replies [`Reply::Sequence`] (protocol 4).
    Sequence,
    /// How many connections the leader serves; replies [`Reply::Stats`] (protocol 6).
    Stats,
    /// A write (`put`, `del` and `batch` are [`Write::Batch`]es, `clear` is [`Write::Clear`]);
    /// replies [`Reply::Done`]. With a stamp it is applied once per stamp however often it is
    /// re-sent ([`rave_api::KvStore::write_stamped`]); without one, each time it arrives.
    Write {
        /// Which write of which handle, for exactly-once delivery.
        stamp: Option<WriteStamp>,
        /// What to apply.
        write: Write,
    },
}

impl Op {
    /// An unstamped put.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Op::batch(vec![BatchOp::put(key, value)])
    }

    /// An unstamped delete.
    pub fn del(key: impl Into<Vec<u8>>) -> Self {
        Op::batch(vec![BatchOp::del(key)])
    }

    /// An unstamped atomic batch.
    pub fn batch(ops: Vec<BatchOp>) -> Self {
        Op::Write {
            stamp: None,
            write: Write::Batch(ops),
        }
    }

    /// An unstamped `clear`.
    pub fn clear(range: Range) -> Self {
        Op::Write {
            stamp: None,
            write: Write::Clear(range),
        }
    }
}

/// A message from the leader to a follower.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The handshake succeeded.
    Welcome {
        /// The server's [`PROTOCOL_VERSION`].
        version: u32,
        /// The leader's epoch (one more each time leadership changes hands).
        epoch: u64,
        /// The leader's process id.
        pid: u32,
    },
    /// The server will not talk to this peer (wrong magic or version, or a protocol error);
    /// the connection closes after this message.
    Refused {
        /// Why, for the follower's logs.
        message: String,
    },
    /// The answer to [`ClientMessage::Request`] `id`.
    Response {
        /// The request's id.
        id: u64,
        /// What the store answered.
        result: Result<Reply, WireError>,
    },
    /// Entries of iterator `iter`, in iteration order.
    IterChunk {
        /// The iterator.
        iter: u64,
        /// The commit sequence the iterator's snapshot was taken at (first chunk only, when
        /// the store knows it: [`rave_api::KvIterator::snapshot_sequence`]).
        #[serde(default)]
        snapshot: Option<u64>,
        /// The next entries (possibly none when `end` is set).
        entries: Vec<Entry>,
        /// No entries follow: the iterator is finished on the server.
        end: bool,
    },
    /// Iterator `iter` failed; no more chunks follow.
    IterError {
        /// The iterator.
        iter: u64,
        /// What went wrong.
        error: WireError,
    },
    /// The next events of watch `watch`, in order.
    WatchEvents {
        /// The watch.
        watch: u64,
        /// At least one event.
        events: Vec<WatchEvent>,
    },
    /// Watch `watch` failed (or could not start); no more events follow.
    WatchError {
        /// The watch.
        watch: u64,
        /// What went wrong.
        error: WireError,
    },
}

/// The successful answer to an [`Op`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The value of a [`Op::Get`] (`None`: absent).
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// The values of a [`Op::GetMany`], in order.
    Values(#[serde(with = "opt_bytes_seq")] Vec<Option<Vec<u8>>>),
    /// A write, `clear` or ping succeeded.
    Done,
    /// The commit sequence number asked by [`Op::Sequence`].
    Sequence(u64),
    /// What [`Op::Stats`] asked.
    Stats {
        /// The connections the leader serves (followers, this one included).
        connections: u64,
    },
}

/// An error as it travels on the wire: its stable kind and its message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// The kind the leader's store reported.
    pub kind: ErrorKind,
    /// The leader's description.
    pub message: String,
    /// The position a watch error carries ([`Error::watch_position`]), so that the follower
    /// rebuilds the typed [`Error::Compacted`] or [`Error::Lagged`].
    #[serde(default)]
    pub position: Option<u64>,
    /// What a failed condition found ([`Error::ConditionFailed`]), so that the follower
    /// rebuilds it.
    #[serde(default)]
    pub condition: Option<ConditionDetail>,
}

/// The key and value a failed condition names, on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionDetail {
    /// The key whose check did not hold.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// What it held (`None`: absent).
    #[serde(with = "serde_bytes")]
    pub current: Option<Vec<u8>>,
}

impl From<&Error> for WireError {
    fn from(err: &Error) -> Self {
        let message = match err {
            // Already relayed once: keep the original words rather than nesting prefixes.
            Error::Remote { message, .. } => message.clone(),
            other => other.to_string(),
        };
        WireError {
            kind: err.kind(),
            message,
            position: err.watch_position(),
            condition: match err {
                Error::ConditionFailed { key, current } => Some(ConditionDetail {
                    key: key.clone(),
                    current: current.clone(),
                }),
                _ => None,
            },
        }
    }
}

impl From<WireError> for Error {
    fn from(err: WireError) -> Self {
        match (err.kind, err.position, err.condition) {
            (ErrorKind::Compacted, Some(oldest), _) => Error::Compacted { oldest },
            (ErrorKind::Lagged, Some(resume_from), _) => Error::Lagged { resume_from },
            (ErrorKind::ConditionFailed, _, Some(detail)) => Error::ConditionFailed {
                key: detail.key,
                current: detail.current,
            },
            (kind, ..) => Error::Remote {
                kind,
                message: err.message,
            },
        }
    }
}

/// Encodes `msg` as a frame body.
pub fn encode<T: Serialize>(msg: &T) -> rave_api::Result<Bytes> {
    rmp_serde::to_vec_named(msg)
        .map(Bytes::from)
        .map_err(|e| Error::protocol(format!("cannot encode a message: {e}")))
}

/// Decodes a frame body. Any failure (truncated, malformed, unknown variant) is
/// [`ErrorKind::Protocol`]; it never panics.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> rave_api::Result<T> {
    let mut de = rmp_serde::Deserializer::from_read_ref(body);
    de.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut de).map_err(|e| Error::protocol(format!("undecodable message: {e}")))
}

/// What an entry costs against an iterator's credit: its bytes plus a fixed 16 for its framing,
/// so that even empty entries (key-only or value-only projections of empty values) are paid for.
pub fn entry_cost(entry: &Entry) -> u64 {
    (entry.key.len() + entry.value.len()) as u64 + 16
}

/// What a watch event costs against a watch's credit: its bytes plus a fixed 32.
pub fn event_cost(event: &WatchEvent) -> u64 {
    match event {
        WatchEvent::Commit(commit) => {
            (commit.payload_len() + 16 * commit.changes.len()) as u64 + 32
        }
        WatchEvent::Progress { .. } => 32,
    }
}

/// An upper bound of the encoded size of `event` inside a [`ServerMessage::WatchEvents`].
pub(crate) fn event_wire_size(event: &WatchEvent) -> usize {
    match event {
        // Per change: a map with a variant name, field names and bin headers (a `Clear`'s
        // four bounds at most); per commit: the variant, `sequence` and the array.
        WatchEvent::Commit(commit) => commit.payload_len() + 64 * commit.changes.len() + 48,
        WatchEvent::Progress { .. } => 48,
    }
}

/// An upper bound of the encoded size of `entry` inside an [`ServerMessage::IterChunk`] (field
/// names, markers and lengths included), used to split chunks under a byte budget.
pub(crate) fn entry_wire_size(entry: &Entry) -> usize {
    // fixmap + "key" + bin32 header + "value" + bin32 header = 1 + 4 + 5 + 6 + 5.
    entry.key.len() + entry.value.len() + 21
}

/// An upper bound of the bytes an [`ServerMessage::IterChunk`] adds around its entries.
pub(crate) const CHUNK_OVERHEAD: usize = 64;

/// `Vec<Vec<u8>>` as a sequence of `bin`.
mod bytes_seq {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|b| Bytes::new(b)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let bufs = Vec::<ByteBuf>::deserialize(d)?;
        Ok(bufs.into_iter().map(ByteBuf::into_vec).collect())
    }
}

/// `Vec<Option<Vec<u8>>>` as a sequence of `bin` or `nil`.
mod opt_bytes_seq {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub fn serialize<S: Serializer>(v: &[Option<Vec<u8>>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|b| b.as_deref().map(Bytes::new)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Option<Vec<u8>>>, D::Error> {
        let bufs = Vec::<Option<ByteBuf>>::deserialize(d)?;
        Ok(bufs.into_iter().map(|b| b.map(ByteBuf::into_vec)).collect())
    }
}
