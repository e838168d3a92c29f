//! Typed decoding of payloads, with proto2's `required` checked (prost does not check it).
//!
//! Node's decoder drops a message that misses a required field, and its sender then waits
//! forever. Here such a message is [`Undecodable`] with whatever could be read of it (its tag and
//! id), so that the host can still answer with an error code when it knows whom to answer.

use bytes::Buf;
use prost::Message;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::messages::{self as m, reply, request};

/// A request from a guest.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Tag 0.
    Get(m::Get),
    /// Tag 1.
    Put(m::Put),
    /// Tag 2.
    Delete(m::Delete),
    /// Tag 3.
    Batch(m::Batch),
    /// Tag 4.
    Iterator(m::Iterator),
    /// Tag 5.
    Clear(m::Clear),
    /// Tag 6.
    GetMany(m::GetMany),
    /// Tag 7.
    IteratorClose(m::IteratorClose),
    /// Tag 8.
    IteratorAck(m::IteratorAck),
    /// Tag 9.
    IteratorSeek(m::IteratorSeek),
}

/// A reply from a host.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Tag 0.
    Callback(m::Callback),
    /// Tag 1.
    IteratorData(m::IteratorData),
    /// Tag 2.
    GetManyCallback(m::GetManyCallback),
    /// Tag 3.
    IteratorError(m::IteratorError),
    /// Tag 4.
    IteratorEnd(m::IteratorEnd),
}

/// A payload that is not a valid message, with what could be read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// The tag byte (`None` for an empty payload).
    pub tag: Option<u8>,
    /// Field 1 (every message's id), when it could be read.
    pub id: Option<u32>,
    /// Field 2 (an iterator message's seq), when it could be read.
    pub seq: Option<u32>,
    /// What was wrong.
    pub why: String,
}

/// The field numbers (1 to 63) present in `body`, as a bit set; `Err` when the body does not
/// parse as protobuf fields (a truncated field, a group, a bad wire type).
fn present_fields(mut body: &[u8]) -> Result<u64, String> {
    let mut seen = 0u64;
    while body.has_remaining() {
        let (field, wire_type) = decode_key(&mut body).map_err(|e| e.to_string())?;
        if matches!(wire_type, WireType::StartGroup | WireType::EndGroup) {
            return Err("groups are not part of the protocol".into());
        }
        if field < 64 {
            seen |= 1 << field;
        }
        skip_field(wire_type, field, &mut body, DecodeContext::default())
            .map_err(|e| e.to_string())?;
    }
    Ok(seen)
}

/// Reads the varint fields 1 and 2 from the start of `body` (even a truncated one).
fn peek_id_seq(mut body: &[u8]) -> (Option<u32>, Option<u32>) {
    let (mut id, mut seq) = (None, None);
    while body.has_remaining() {
        let Ok((field, wire_type)) = decode_key(&mut body) else {
            break;
        };
        if wire_type != WireType::Varint {
            if skip_field(wire_type, field, &mut body, DecodeContext::default()).is_err() {
                break;
            }
            continue;
        }
        let Ok(v) = decode_varint(&mut body) else {
            break;
        };
        match field {
            1 => id = u32::try_from(v).ok(),
            2 => seq = u32::try_from(v).ok(),
            _ => {}
        }
    }
    (id, seq)
}

/// What could be read of a payload that failed, for an error answer.
pub fn salvage(payload: &[u8], why: impl Into<String>) -> Undecodable {
    let (id, seq) = payload.get(1..).map(peek_id_seq).unwrap_or((None, None));
    Undecodable {
        tag: payload.first().copied(),
        id,
        seq,
        why: why.into(),
    }
}

/// Decodes `body` as `M`, checking the `required` field numbers first.
fn decode_checked<M: Message + Default>(body: &[u8], required: &[u32]) -> Result<M, String> {
    let seen = present_fields(body)?;
    if let Some(missing) = required.iter().find(|f| seen & (1 << **f) == 0) {
        return Err(format!("required field {missing} is missing"));
    }
    M::decode(body).map_err(|e| e.to_string())
}

/// Decodes a guest's request payload (tag byte, then body).
pub fn decode_request(payload: &[u8]) -> Result<Request, Undecodable> {
    let Some((&tag, body)) = payload.split_first() else {
        return Err(salvage(payload, "empty payload"));
    };
    let decoded = match tag {
        request::GET => decode_checked(body, &[1, 2]).map(Request::Get),
        request::PUT => decode_checked(body, &[1, 2]).map(Request::Put),
        request::DELETE => decode_checked(body, &[1, 2]).map(Request::Delete),
        request::BATCH => decode_checked::<m::Batch>(body, &[1]).and_then(|b| {
            // Each operation's own required fields.
            for op in &b.ops {
                if op.r#type.is_empty() {
                    return Err("a batch operation has no type".into());
                }
            }
            Ok(Request::Batch(b))
        }),
        request::ITERATOR => decode_checked(body, &[1, 2, 3, 4]).map(Request::Iterator),
        request::CLEAR => decode_checked(body, &[1]).map(Request::Clear),
        request::GET_MANY => decode_checked(body, &[1]).map(Request::GetMany),
        request::ITERATOR_CLOSE => decode_checked(body, &[1]).map(Request::IteratorClose),
        request::ITERATOR_ACK => decode_checked(body, &[1, 2, 3]).map(Request::IteratorAck),
        request::ITERATOR_SEEK => decode_checked(body, &[1, 2, 3]).map(Request::IteratorSeek),
        other => Err(format!("unknown request tag {other}")),
    };
    decoded.map_err(|why| salvage(payload, why))
}

/// Decodes a host's reply payload (tag byte, then body).
pub fn decode_reply(payload: &[u8]) -> Result<Reply, Undecodable> {
    let Some((&tag, body)) = payload.split_first() else {
        return Err(salvage(payload, "empty payload"));
    };
    let decoded = match tag {
        reply::CALLBACK => decode_checked(body, &[1]).map(Reply::Callback),
        reply::ITERATOR_DATA => decode_checked(body, &[1, 2]).map(Reply::IteratorData),
        reply::GET_MANY_CALLBACK => decode_checked(body, &[1]).map(Reply::GetManyCallback),
        reply::ITERATOR_ERROR => decode_checked(body, &[1, 2, 3]).map(Reply::IteratorError),
        reply::ITERATOR_END => decode_checked(body, &[1, 2]).map(Reply::IteratorEnd),
        other => Err(format!("unknown reply tag {other}")),
    };
    decoded.map_err(|why| salvage(payload, why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Outgoing;

    /// Payload bytes (tag and body) of the documented examples, from Node's own encoder.
    fn payload(frame: &[u8]) -> &[u8] {
        &frame[1..]
    }

    #[test]
    fn node_examples_decode() {
        let put = [0x08, 0x01, 0x08, 0x02, 0x12, 0x01, 0x61, 0x1a, 0x00];
        assert_eq!(
            decode_request(payload(&put)).unwrap(),
            Request::Put(m::Put {
                id: 2,
                key: b"a".to_vec(),
                value: Some(vec![])
            })
        );
        let clear = [0x09, 0x05, 0x08, 0x03, 0x12, 0x04, 0x38, 0x01, 0x40, 0x00];
        let Request::Clear(c) = decode_request(payload(&clear)).unwrap() else {
            panic!()
        };
        let o = c.options.unwrap();
        assert_eq!((o.limit, o.reverse), (Some(-1), Some(false)));
        let resume = [
            0x18, 0x04, 0x08, 0x07, 0x10, 0x02, 0x1a, 0x0b, 0x08, 0x01, 0x10, 0x00, 0x22, 0x01,
            0x6b, 0x38, 0x01, 0x40, 0x01, 0x20, 0x05, 0x2a, 0x02, 0x6b, 0x35,
        ];
        let Request::Iterator(it) = decode_request(payload(&resume)).unwrap() else {
            panic!()
        };
        assert_eq!((it.id, it.seq, it.consumed), (7, 2, 5));
        assert_eq!(it.bookmark.as_deref(), Some(&b"k5"[..]));
        assert_eq!(it.options.gte.as_deref(), Some(&b"k"[..]));
        assert_eq!(it.options.keys, Some(true));
        assert_eq!(it.options.values, Some(false));
    }

    #[test]
    fn replies_encode_like_node() {
        let cases: Vec<(Outgoing, Vec<u8>)> = vec![
            (
                Outgoing::new(
                    reply::CALLBACK,
                    &m::Callback {
                        id: 1,
                        error: None,
                        value: Some(vec![]),
                    },
                ),
                vec![0x00, 0x08, 0x01, 0x1a, 0x00],
            ),
            (
                Outgoing::new(
                    reply::GET_MANY_CALLBACK,
                    &m::GetManyCallback {
                        id: 4,
                        error: None,
                        values: vec![
                            m::Value {
                                value: Some(b"x".to_vec()),
                            },
                            m::Value { value: None },
                        ],
                    },
                ),
                vec![0x02, 0x08, 0x04, 0x1a, 0x03, 0x0a, 0x01, 0x78, 0x1a, 0x00],
            ),
            (
                Outgoing::new(reply::ITERATOR_END, &m::IteratorEnd { id: 7, seq: 2 }),
                vec![0x04, 0x08, 0x07, 0x10, 0x02],
            ),
            (
                Outgoing::new(reply::ITERATOR_END, &m::IteratorEnd { id: 7, seq: 0 }),
                vec![0x04, 0x08, 0x07, 0x10, 0x00],
            ),
        ];
        for (out, want) in cases {
            let mut got = vec![out.tag];
            got.extend_from_slice(&out.body);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_missing_required_field_is_undecodable_but_names_its_id() {
        // Get id=5 without its key.
        let err = decode_request(&[0x00, 0x08, 0x05]).unwrap_err();
        assert_eq!((err.tag, err.id), (Some(0), Some(5)));
        // An iterator ack without consumed: id and seq readable.
        let err = decode_request(&[0x08, 0x08, 0x03, 0x10, 0x09]).unwrap_err();
        assert_eq!((err.id, err.seq), (Some(3), Some(9)));
        // Truncated bytes field: still undecodable, id salvaged.
        let err = decode_request(&[0x00, 0x08, 0x05, 0x12, 0x05, 0x61]).unwrap_err();
        assert_eq!(err.id, Some(5));
        assert!(decode_request(&[0x0a, 0x08, 0x01]).is_err(), "unknown tag");
    }

    #[test]
    fn limits_beyond_i32_and_unknown_fields() {
        let o = m::RangeOptions {
            limit: Some(1 << 40),
            ..Default::default()
        };
        let mut body = o.encode_to_vec();
        // An unknown fixed64 field (99) is skipped.
        body.extend_from_slice(&[0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]);
        let back = m::RangeOptions::decode(&body[..]).unwrap();
        assert_eq!(back.limit, Some(1 << 40));
        // -1 is the single byte 01, as Node writes "no limit".
        let o = m::RangeOptions {
            limit: Some(-1),
            ..Default::default()
        };
        assert_eq!(o.encode_to_vec(), vec![0x38, 0x01]);
    }
}
