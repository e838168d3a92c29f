//! many-level's framing: an unsigned LEB128 varint length, then that many payload bytes (one
//! tag byte and a protobuf body). No magic, no checksum; a zero-length frame is skipped.
//!
//! Node has no frame-size limit. This codec has one (generous, [`DEFAULT_MAX_FRAME`]) so that a
//! peer cannot make the leader buffer without end, but it does not drop an oversized frame
//! silently: it hands over the frame's first bytes ([`Frame::Oversized`]), from which the host
//! reads the tag and request id and answers with an error, and then skips the rest as it comes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The largest payload accepted whole: 256 MiB.
pub const DEFAULT_MAX_FRAME: usize = 256 << 20;

/// How many leading bytes of an oversized frame are kept: enough for the tag, the id and seq.
const HEAD: usize = 32;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole payload: tag byte and body.
    Payload(Bytes),
    /// A payload over the limit: its first bytes only (the rest is skipped).
    Oversized(Bytes),
}

/// The varint-framed codec (both directions).
#[derive(Debug)]
pub struct FrameCodec {
    max: usize,
    /// Bytes of an oversized frame still to skip.
    skipping: usize,
}

impl FrameCodec {
    /// A codec that accepts payloads up to `max` bytes whole.
    pub fn new(max: usize) -> Self {
        FrameCodec { max, skipping: 0 }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME)
    }
}

/// The error of a stream whose bytes cannot be framed (an over-long varint prefix) or an I/O
/// error underneath.
#[derive(Debug)]
pub enum FrameError {
    /// A length prefix of more than 10 bytes, or over 2^64.
    BadLength,
    /// The stream failed.
    Io(std::io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadLength => f.write_str("a frame length prefix is not a valid varint"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Reads a varint length prefix: `Ok(None)` when more bytes are needed.
fn read_len(src: &[u8]) -> Result<Option<(u64, usize)>, FrameError> {
    let mut n: u64 = 0;
    for (i, b) in src.iter().enumerate() {
        if i >= 10 {
            return Err(FrameError::BadLength);
        }
        let group = u64::from(b & 0x7f);
        if i == 9 && group > 1 {
            return Err(FrameError::BadLength);
        }
        n |= group << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((n, i + 1)));
        }
    }
    if src.len() >= 10 {
        return Err(FrameError::BadLength);
    }
    Ok(None)
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            if self.skipping > 0 {
                let n = self.skipping.min(src.len());
                src.advance(n);
                self.skipping -= n;
                if self.skipping > 0 {
                    return Ok(None);
                }
            }
            let Some((len, prefix)) = read_len(src)? else {
                return Ok(None);
            };
            if len == 0 {
                src.advance(prefix);
                continue;
            }
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > self.max {
                if src.len() < prefix + HEAD {
                    src.reserve(prefix + HEAD - src.len());
                    return Ok(None);
                }
                src.advance(prefix);
                let head = src.split_to(HEAD).freeze();
                self.skipping = len - HEAD;
                return Ok(Some(Frame::Oversized(head)));
            }
            if src.len() < prefix + len {
                src.reserve(prefix + len - src.len());
                return Ok(None);
            }
            src.advance(prefix);
            return Ok(Some(Frame::Payload(src.split_to(len).freeze())));
        }
    }
}

/// An outgoing message: its tag and its encoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The tag byte.
    pub tag: u8,
    /// The protobuf body.
    pub body: Vec<u8>,
}

impl Outgoing {
    /// `message` under `tag`.
    pub fn new(tag: u8, message: &impl prost::Message) -> Self {
        Outgoing {
            tag,
            body: message.encode_to_vec(),
        }
    }

    /// The frame's size on the wire.
    pub fn wire_len(&self) -> usize {
        let len = self.body.len() + 1;
        prost::length_delimiter_len(len) + len
    }
}

impl Encoder<Outgoing> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Outgoing, dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = item.body.len() + 1;
        dst.reserve(prost::length_delimiter_len(len) + len);
        prost::encode_length_delimiter(len, dst)
            .map_err(|e| FrameError::Io(std::io::Error::other(e)))?;
        dst.put_u8(item.tag);
        dst.put_slice(&item.body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut FrameCodec, bytes: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            out.push(frame);
        }
        out
    }

    #[test]
    fn frames_split_anywhere_and_zero_length_is_skipped() {
        let bytes = [0x00, 0x03, 0x07, 0x08, 0x07, 0x02, 0x00, 0x01];
        for cut in 0..bytes.len() {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::from(&bytes[..cut]);
            let mut frames = Vec::new();
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                frames.push(f);
            }
            buf.extend_from_slice(&bytes[cut..]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                frames.push(f);
            }
            assert_eq!(
                frames,
                vec![
                    Frame::Payload(Bytes::from_static(&[0x07, 0x08, 0x07])),
                    Frame::Payload(Bytes::from_static(&[0x00, 0x01]))
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_two_byte_prefix() {
        let mut codec = FrameCodec::default();
        let payload = vec![0u8; 206];
        let mut wire = vec![0xce, 0x01];
        wire.extend_from_slice(&payload);
        assert_eq!(
            decode_all(&mut codec, &wire),
            vec![Frame::Payload(payload.into())]
        );
    }

    #[test]
    fn oversized_frames_give_their_head_then_are_skipped() {
        let mut codec = FrameCodec::new(40);
        let mut wire = vec![50];
        wire.extend(std::iter::repeat_n(9u8, 50));
        wire.extend_from_slice(&[0x02, 0x07, 0x08]);
        let frames = decode_all(&mut codec, &wire);
        assert_eq!(frames.len(), 2);
        assert!(matches!(&frames[0], Frame::Oversized(head) if head.len() == HEAD));
        assert_eq!(frames[1], Frame::Payload(Bytes::from_static(&[0x07, 0x08])));
    }

    #[test]
    fn an_overlong_prefix_is_an_error() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0xffu8; 11][..]);
        assert!(codec.decode(&mut buf).is_err());
    }

    #[test]
    fn encode_matches_node() {
        let mut codec = FrameCodec::default();
        let mut dst = BytesMut::new();
        let get = crate::messages::Get {
            id: 1,
            key: b"a".to_vec(),
        };
        codec
            .encode(Outgoing::new(crate::messages::request::GET, &get), &mut dst)
            .unwrap();
        assert_eq!(&dst[..], &[0x06, 0x00, 0x08, 0x01, 0x12, 0x01, 0x61]);
    }
}
