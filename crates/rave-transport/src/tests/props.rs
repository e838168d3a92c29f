//! Property tests of the codec: arbitrary bytes never panic the decoder, and every message
//! survives encoding.

use bytes::BytesMut;
use proptest::prelude::*;
use rave_api::ErrorKind;
use tokio_util::codec::Decoder;

use super::strategies::{op_of, range_of};
use super::*;
use crate::wire::{Op, Reply, WireError};

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..24)
}

fn range() -> impl Strategy<Value = Range> {
    range_of(bytes, any::<u64>())
}

fn op() -> impl Strategy<Value = Op> {
    op_of(bytes, bytes, range(), 5)
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(magic, version)| ClientMessage::Hello { magic, version }),
        (any::<u64>(), op()).prop_map(|(id, op)| ClientMessage::Request { id, op }),
        (any::<u64>(), range(), any::<u32>()).prop_map(|(iter, range, credit)| {
            ClientMessage::IterOpen {
                iter,
                range,
                credit,
            }
        }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(iter, credit)| ClientMessage::IterCredit { iter, credit }),
        any::<u64>().prop_map(|iter| ClientMessage::IterClose { iter }),
    ]
}

fn error_kind() -> impl Strategy<Value = ErrorKind> {
    prop::sample::select(vec![
        ErrorKind::Closed,
        ErrorKind::LeaderLost,
        ErrorKind::NoLeader,
        ErrorKind::Timeout,
        ErrorKind::Io,
        ErrorKind::Corruption,
        ErrorKind::Protocol,
        ErrorKind::InvalidArgument,
        ErrorKind::WrongEngine,
        ErrorKind::DoesNotExist,
        ErrorKind::AlreadyExists,
        ErrorKind::Unsupported,
        ErrorKind::Other,
    ])
}

fn wire_error() -> impl Strategy<Value = WireError> {
    (error_kind(), ".{0,20}").prop_map(|(kind, message)| WireError {
        kind,
        message,
        position: None,
        condition: None,
    })
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        prop::option::of(bytes()).prop_map(Reply::Value),
        prop::collection::vec(prop::option::of(bytes()), 0..5).prop_map(Reply::Values),
        Just(Reply::Done),
        any::<u64>().prop_map(Reply::Sequence),
        any::<u64>().prop_map(|connections| Reply::Stats { connections }),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(version, epoch, pid)| {
            ServerMessage::Welcome {
                version,
                epoch,
                pid,
            }
        }),
        ".{0,20}".prop_map(|message| ServerMessage::Refused { message }),
        (
            any::<u64>(),
            prop_oneof![reply().prop_map(Ok), wire_error().prop_map(Err)]
        )
            .prop_map(|(id, result)| ServerMessage::Response { id, result }),
        (
            any::<u64>(),
            prop::collection::vec((bytes(), bytes()).prop_map(|(k, v)| Entry::new(k, v)), 0..6),
            any::<bool>(),
            prop::option::of(any::<u64>())
        )
            .prop_map(|(iter, entries, end, snapshot)| ServerMessage::IterChunk {
                iter,
                snapshot,
                entries,
                end
            }),
        (any::<u64>(), wire_error())
            .prop_map(|(iter, error)| ServerMessage::IterError { iter, error }),
        (any::<u64>(), prop::collection::vec(any::<u64>(), 1..4)).prop_map(|(watch, seqs)| {
            ServerMessage::WatchEvents {
                watch,
                events: seqs
                    .into_iter()
                    .map(|sequence| rave_api::WatchEvent::Progress { sequence })
                    .collect(),
            }
        }),
        (any::<u64>(), wire_error())
            .prop_map(|(watch, error)| ServerMessage::WatchError { watch, error }),
    ]
}

/// Runs bytes through the frame decoder and both message decoders, as a connection would.
fn decode_stream(input: &[u8], max_frame: usize) {
    let limits = Limits {
        max_frame,
        ..Limits::default()
    };
    let mut codec = limits.codec();
    let mut buf = BytesMut::from(input);
    // Each frame is decoded as either side's message; errors are fine, panics are not.
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        let _ = wire::decode::<ClientMessage>(&frame);
        let _ = wire::decode::<ServerMessage>(&frame);
    }
    let _ = wire::decode::<ClientMessage>(input);
    let _ = wire::decode::<ServerMessage>(input);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(
        input in prop::collection::vec(any::<u8>(), 0..512),
        max_frame in 0usize..1024,
    ) {
        decode_stream(&input, max_frame);
    }

    #[test]
    fn framed_arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut framed = (body.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&body);
        decode_stream(&framed, 1024);
    }

    #[test]
    fn mutated_messages_never_panic(
        message in server_message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut body = wire::encode(&message).unwrap().to_vec();
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] = byte;
        }
        let _ = wire::decode::<ServerMessage>(&body);
        let _ = wire::decode::<ClientMessage>(&body);
    }

    #[test]
    fn client_messages_round_trip(message in client_message()) {
        let body = wire::encode(&message).unwrap();
        prop_assert_eq!(wire::decode::<ClientMessage>(&body).unwrap(), message);
    }

    #[test]
    fn server_messages_round_trip(message in server_message()) {
        let body = wire::encode(&message).unwrap();
        prop_assert_eq!(wire::decode::<ServerMessage>(&body).unwrap(), message);
    }

    #[test]
    fn frames_round_trip_through_the_codec(
        messages in prop::collection::vec(server_message(), 1..5),
    ) {
        use tokio_util::codec::Encoder;
        let mut codec = Limits::default().codec();
        let mut buf = BytesMut::new();
        for message in &messages {
            codec.encode(wire::encode(message).unwrap(), &mut buf).unwrap();
        }
        let mut decoded = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            decoded.push(wire::decode::<ServerMessage>(&frame).unwrap());
        }
        prop_assert_eq!(decoded, messages);
    }
}

#[test]
fn byte_fields_are_msgpack_bin() {
    // bin8 marker (0xc4) for the key, not an array of integers.
    let body = wire::encode(&Op::Get { key: vec![1, 2, 3] }).unwrap();
    assert!(body.windows(5).any(|w| w == [0xc4, 3, 1, 2, 3]), "{body:?}");
    let body = wire::encode(&Reply::Values(vec![Some(vec![9]), None])).unwrap();
    assert!(body.windows(3).any(|w| w == [0xc4, 1, 9]), "{body:?}");
    assert_eq!(crate::MAGIC.to_be_bytes(), *b"RAVE");
}

#[test]
fn deep_nesting_is_rejected_not_overflowing_the_stack() {
    // {"Hello": {"x": [[[[...]]]]}}: an unknown field nested far deeper than any message.
    let mut body = vec![0x81, 0xa5];
    body.extend_from_slice(b"Hello");
    body.extend_from_slice(&[0x81, 0xa1, b'x']);
    body.extend(std::iter::repeat_n(0x91, 100_000));
    body.push(0xc0);
    assert!(wire::decode::<ClientMessage>(&body).is_err());
}
