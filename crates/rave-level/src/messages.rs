//! The many-level messages (many-level's `schema.proto`, proto2), hand-written for prost.
//!
//! Required fields are declared `required`, so prost always writes them, even when zero, as
//! Node's generated code does (`seq = 0` is `10 00`); prost does not check their presence on
//! decode, so [`crate::codec`] scans for them before a message is accepted. Optional bytes are
//! `Option<Vec<u8>>`, so an empty value or bound is written (`1a 00`) and stays distinct from an
//! absent one. `limit` is declared `sint32` in the schema, but Node's generated code zigzags it
//! as a 64-bit number (a JS number): it is `sint64` here, which has the same encoding for every
//! `sint32` value and does not truncate a larger one.

/// Request tags (guest → host): the first byte of a frame's payload.
pub mod request {
    /// [`super::Get`].
    pub const GET: u8 = 0;
    /// [`super::Put`].
    pub const PUT: u8 = 1;
    /// [`super::Delete`].
    pub const DELETE: u8 = 2;
    /// [`super::Batch`].
    pub const BATCH: u8 = 3;
    /// [`super::Iterator`] (open or resume).
    pub const ITERATOR: u8 = 4;
    /// [`super::Clear`].
    pub const CLEAR: u8 = 5;
    /// [`super::GetMany`].
    pub const GET_MANY: u8 = 6;
    /// [`super::IteratorClose`].
    pub const ITERATOR_CLOSE: u8 = 7;
    /// [`super::IteratorAck`].
    pub const ITERATOR_ACK: u8 = 8;
    /// [`super::IteratorSeek`].
    pub const ITERATOR_SEEK: u8 = 9;
}

/// Reply tags (host → guest).
pub mod reply {
    /// [`super::Callback`].
    pub const CALLBACK: u8 = 0;
    /// [`super::IteratorData`].
    pub const ITERATOR_DATA: u8 = 1;
    /// [`super::GetManyCallback`].
    pub const GET_MANY_CALLBACK: u8 = 2;
    /// [`super::IteratorError`].
    pub const ITERATOR_ERROR: u8 = 3;
    /// [`super::IteratorEnd`].
    pub const ITERATOR_END: u8 = 4;
}

/// Reads one key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Get {
    /// Request id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// The key.
    #[prost(bytes = "vec", required, tag = "2")]
    pub key: Vec<u8>,
}

/// Writes one key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Put {
    /// Request id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// The key.
    #[prost(bytes = "vec", required, tag = "2")]
    pub key: Vec<u8>,
    /// The value (absent is refused with `LEVEL_INVALID_VALUE`).
    #[prost(bytes = "vec", optional, tag = "3")]
    pub value: Option<Vec<u8>>,
}

/// Removes one key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Delete {
    /// Request id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// The key.
    #[prost(bytes = "vec", required, tag = "2")]
    pub key: Vec<u8>,
}

/// An atomic batch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Batch {
    /// Request id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// The operations, in order.
    #[prost(message, repeated, tag = "2")]
    pub ops: Vec<Operation>,
}

/// One operation of a [`Batch`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Operation {
    /// `"put"` or `"del"`.
    #[prost(string, required, tag = "1")]
    pub r#type: String,
    /// The key.
    #[prost(bytes = "vec", required, tag = "2")]
    pub key: Vec<u8>,
    /// The value of a put.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub value: Option<Vec<u8>>,
}

/// Removes a range.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Clear {
    /// Request id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// The range (absent: every default, so limit 0 and nothing is removed).
    #[prost(message, optional, tag = "2")]
    pub options: Option<RangeOptions>,
}

/// A range, as `Clear` and `Iterator` carry it (the schema's `ClearOptions` and `Options`, one
/// struct: `ClearOptions` is `Options` without fields 1 and 2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeOptions {
    /// Return keys (iterators only).
    #[prost(bool, optional, tag = "1")]
    pub keys: Option<bool>,
    /// Return values (iterators only).
    #[prost(bool, optional, tag = "2")]
    pub values: Option<bool>,
    /// Keys greater than this (ignored when `gte` is set).
    #[prost(bytes = "vec", optional, tag = "3")]
    pub gt: Option<Vec<u8>>,
    /// Keys greater than or equal to this.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub gte: Option<Vec<u8>>,
    /// Keys less than this (ignored when `lte` is set).
    #[prost(bytes = "vec", optional, tag = "5")]
    pub lt: Option<Vec<u8>>,
    /// Keys less than or equal to this.
    #[prost(bytes = "vec", optional, tag = "6")]
    pub lte: Option<Vec<u8>>,
    /// At most this many entries; negative is unlimited, absent is 0.
    #[prost(sint64, optional, tag = "7")]
    pub limit: Option<i64>,
    /// From the highest key down.
    #[prost(bool, optional, tag = "8")]
    pub reverse: Option<bool>,
}

/// Opens an iterator, or resumes one after a reconnect.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Iterator {
    /// Iterator id (its own id space).
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// The current seek generation.
    #[prost(uint32, required, tag = "2")]
    pub seq: u32,
    /// The range and projection.
    #[prost(message, required, tag = "3")]
    pub options: RangeOptions,
    /// Entries the guest already consumed (counts against the limit).
    #[prost(uint64, required, tag = "4")]
    pub consumed: u64,
    /// Resume strictly after this key (in iteration order).
    #[prost(bytes = "vec", optional, tag = "5")]
    pub bookmark: Option<Vec<u8>>,
    /// Start at this seek target.
    #[prost(bytes = "vec", optional, tag = "6")]
    pub seek: Option<Vec<u8>>,
}

/// Closes an iterator (no reply).
#[derive(Clone, PartialEq, prost::Message)]
pub struct IteratorClose {
    /// Iterator id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
}

/// The guest consumed a data message: the host may read ahead.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IteratorAck {
    /// Iterator id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// The seek generation the ack belongs to.
    #[prost(uint32, required, tag = "2")]
    pub seq: u32,
    /// Entries consumed so far.
    #[prost(uint64, required, tag = "3")]
    pub consumed: u64,
}

/// Moves an iterator.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IteratorSeek {
    /// Iterator id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// The new seek generation.
    #[prost(uint32, required, tag = "2")]
    pub seq: u32,
    /// The target.
    #[prost(bytes = "vec", required, tag = "3")]
    pub target: Vec<u8>,
}

/// Reads several keys.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMany {
    /// Request id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// The keys.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub keys: Vec<Vec<u8>>,
}

/// The answer to a point request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Callback {
    /// Request id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// An error code (`LEVEL_NOT_FOUND`, ...).
    #[prost(string, optional, tag = "2")]
    pub error: Option<String>,
    /// The value of a get.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub value: Option<Vec<u8>>,
}

/// The answer to a [`GetMany`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetManyCallback {
    /// Request id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// An error code.
    #[prost(string, optional, tag = "2")]
    pub error: Option<String>,
    /// One per key, in order; an absent value means not found.
    #[prost(message, repeated, tag = "3")]
    pub values: Vec<Value>,
}

/// One value of a [`GetManyCallback`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    /// The value; absent when the key was not found.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub value: Option<Vec<u8>>,
}

/// Entries of an iterator: `[k1, v1, k2, v2, ...]` with keys and values, else one list.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IteratorData {
    /// Iterator id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// The seek generation.
    #[prost(uint32, required, tag = "2")]
    pub seq: u32,
    /// The entries (never empty).
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub data: Vec<Vec<u8>>,
}

/// An iterator failed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IteratorError {
    /// Iterator id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// The seek generation.
    #[prost(uint32, required, tag = "2")]
    pub seq: u32,
    /// The error code.
    #[prost(string, required, tag = "3")]
    pub error: String,
}

/// An iterator has no more entries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IteratorEnd {
    /// Iterator id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// The seek generation.
    #[prost(uint32, required, tag = "2")]
    pub seq: u32,
}
