//! What the fuzz targets (fuzz/ at the workspace root) found, kept as tests, and a proptest of
//! the leader's dispatch path built on the same session runner as the `dispatch` fuzz target.
//!
//! The runner, `exchange`, lives in fuzz/src/exchange.rs and is included here word for word, so
//! the fuzzer and `cargo test` check the same invariants (see the top of that file); so is the
//! `dispatch` target's `Session` (fuzz/src/session.rs), which replays that target's corpus.

use std::collections::HashSet;

use proptest::prelude::*;
use rave_api::ErrorKind;

use super::strategies::{op_of, range_of};
use super::*;
use crate::wire::Op;

/// The transport, under the name the shared runner uses for it.
use crate as rt;

#[allow(dead_code)]
mod exchange {
    include!("../../../../fuzz/src/exchange.rs");
}

/// The `dispatch` target's sessions, built from its inputs with `arbitrary` as the fuzzer does.
#[allow(dead_code)]
mod fuzzed {
    include!("../../../../fuzz/src/session.rs");
}

use exchange::{Wire, exchange, good_client, still_works};

fn hello() -> Wire {
    Wire::Message(ClientMessage::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
    })
}

fn store() -> Arc<dyn KvStore> {
    Arc::new(memory())
}

/// Runs `steps` against a fresh memory engine, with a good client connected throughout.
async fn session(limits: Limits, steps: Vec<Wire>) -> exchange::Outcome {
    let store = store();
    let good = good_client(store.clone(), &Limits::default()).await;
    let outcome = exchange(store, limits, steps).await;
    still_works(&good).await;
    outcome
}

/// Found by `dispatch` (first minutes): a follower that hangs up in the middle of a frame made
/// `serve_connection` report an I/O error ("bytes remaining on stream"), as if the socket had
/// failed. It is the follower's doing: now a protocol error, before and after the handshake.
#[tokio::test]
async fn a_follower_hanging_up_mid_frame_is_a_protocol_error() {
    for steps in [
        // Before the handshake: one byte of a length prefix.
        vec![Wire::Bytes(vec![0])],
        // A length prefix and part of the body.
        vec![Wire::Bytes(vec![0, 0, 0, 9, 0x81])],
        // After a good handshake.
        vec![hello(), Wire::Bytes(vec![0, 0])],
        vec![
            hello(),
            Wire::Message(ClientMessage::Request {
                id: 1,
                op: Op::Ping,
            }),
            Wire::Bytes(vec![0, 0, 0, 200, 1, 2, 3]),
        ],
    ] {
        let outcome = session(Limits::default(), steps.clone()).await;
        let err = outcome
            .result
            .expect_err("a torn frame is not a clean goodbye");
        assert_eq!(err.kind(), ErrorKind::Protocol, "{steps:?}: {err}");
        assert!(err.to_string().contains("middle of a frame"), "{err}");
    }
}

/// A body mangled into another valid message is served as that message: the runner's model
/// follows the server's framing, not the intent of the step (a false alarm of an early runner,
/// which counted the answer to a request it did not know it had sent).
#[tokio::test]
async fn a_mutated_body_that_still_decodes_is_just_a_message() {
    let mut body = wire::encode(&ClientMessage::Request {
        id: 0,
        op: Op::Get { key: b"k".to_vec() },
    })
    .unwrap()
    .to_vec();
    // The last byte is the key's: "k" becomes "\0", still a Get.
    *body.last_mut().unwrap() = 0;
    assert!(matches!(
        wire::decode::<ClientMessage>(&body),
        Ok(ClientMessage::Request { id: 0, .. })
    ));
    // Give the server time to answer before the follower leaves (it is not a "clean" session,
    // so the runner does not wait for answers).
    let mut steps = vec![hello(), Wire::Body(body)];
    steps.extend(std::iter::repeat_n(Wire::Yield, 64));
    let outcome = session(Limits::default(), steps).await;
    assert!(outcome.result.is_ok(), "{outcome:?}");
    assert!(outcome.welcomed && !outcome.clean, "{outcome:?}");
}

/// The 4 GiB length prefix, the over-limit frame and an unknown message, each after a good
/// handshake, end that connection with a protocol error and nothing else.
#[tokio::test]
async fn oversized_and_unknown_frames_cost_only_their_connection() {
    let limits = Limits {
        max_frame: 4096,
        ..Limits::default()
    };
    for junk in [
        Wire::Bytes(vec![0xff; 4]),
        Wire::Bytes(4097u32.to_be_bytes().to_vec()),
        Wire::Body(vec![0x81, 0xa3, b'N', b'e', b'w', 0xc0]),
        Wire::Body(Vec::new()),
    ] {
        let outcome = session(limits.clone(), vec![hello(), junk.clone()]).await;
        let err = outcome.result.expect_err("junk ends the connection");
        assert_eq!(err.kind(), ErrorKind::Protocol, "{junk:?}: {err}");
        assert!(outcome.welcomed);
    }
}

/// This test process's resident memory (VmRSS), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Found by `dispatch` (its RSS grew run after run): an iterator whose opening is cancelled
/// (the server aborts a follower's iterator task when the follower sends `IterClose` or hangs up
/// mid-open, and a follower's `op_timeout` cancels its own open) left its cursor on the engine
/// thread for good: `EngineStore::iterator` built the `EngineIterator`, whose drop sends
/// `DropIter`, only once the open's reply was in. Fixed in rave-api's engine_thread.rs. With the
/// memory engine each leaked cursor was a copy of its range: here 8 MiB a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_iterator_opens_leak_nothing() {
    let store = store();
    let ops = (0..2000)
        .map(|i| BatchOp::put(super::key(i), vec![1u8; 4096]))
        .collect();
    store.batch(ops).await.unwrap();
    let before = rss_kib();
    let mut cancelled = 0;
    for _ in 0..100 {
        // One poll sends the open; the call is then dropped mid-open (a timer of a microsecond
        // did not do it reliably: tokio's timers tick in milliseconds, and an idle engine
        // thread answers sooner).
        if futures::FutureExt::now_or_never(store.iterator(Range::all())).is_none() {
            cancelled += 1;
        }
    }
    // A round trip, so every message sent so far has been handled.
    store.get(b"x").await.unwrap();
    let after = rss_kib();
    assert!(
        cancelled > 50,
        "only {cancelled} of 100 opens were cut short"
    );
    assert!(
        after.saturating_sub(before) < 200 * 1024,
        "{cancelled} cancelled opens of an 8 MiB range: RSS {before} KiB -> {after} KiB"
    );
}

/// Every file of a committed corpus. A replay of nothing checks nothing: a missing or empty
/// corpus fails the test.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the {target} corpus at {}: {e}", dir.display()));
    let mut files: Vec<_> = entries
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    assert!(
        !files.is_empty(),
        "the {target} corpus at {} is empty",
        dir.display()
    );
    files.sort();
    files
}

/// The frame limit a decoding target runs with (fuzz/src/lib.rs `max_frame_for`).
fn max_frame_for(selector: u8) -> usize {
    match selector % 4 {
        0 => 0,
        1 => 16,
        2 => 4096,
        _ => Limits::default().max_frame,
    }
}

/// Splits a decoding target's input into frames the way the target does, checking the frame
/// limit; returns the frames.
fn frames_of(input: &[u8]) -> Vec<Bytes> {
    use tokio_util::codec::Decoder;
    let Some((&selector, stream)) = input.split_first() else {
        return Vec::new();
    };
    let max_frame = max_frame_for(selector);
    let mut codec = Limits {
        max_frame,
        ..Limits::default()
    }
    .codec();
    let mut buf = bytes::BytesMut::from(stream);
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        assert!(frame.len() <= max_frame);
        frames.push(frame.freeze());
    }
    frames
}

/// The committed corpora of `frame_client` and `server_message`, replayed through the same
/// checks: what decodes round-trips. The seeds are real messages, so some must decode.
#[test]
fn decoding_corpora_replay_cleanly() {
    fn replay<T>(target: &str) -> (usize, usize)
    where
        T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        let (mut files, mut decoded) = (0, 0);
        for (path, input) in corpus(target) {
            files += 1;
            for frame in frames_of(&input) {
                if let Ok(message) = wire::decode::<T>(&frame) {
                    decoded += 1;
                    let again = wire::encode(&message).unwrap();
                    assert_eq!(
                        wire::decode::<T>(&again).unwrap(),
                        message,
                        "{}",
                        path.display()
                    );
                }
            }
        }
        (files, decoded)
    }
    let (files, decoded) = replay::<ClientMessage>("frame_client");
    assert!(decoded > 0, "{files} files, none decodes");
    let (files, decoded) = replay::<ServerMessage>("server_message");
    assert!(decoded > 0, "{files} files, none decodes");
}

/// The committed `follower` corpus, replayed through the fuzz target's own session.
#[tokio::test]
async fn follower_corpus_replays_cleanly() {
    for (_, input) in corpus("follower") {
        exchange::follower_session(input).await;
    }
}

/// The committed `dispatch` corpus, replayed as the target runs it: each input becomes a
/// `Session` (`arbitrary_take_rest`, as libfuzzer-sys does), written into `serve_connection` by
/// `exchange` with a good client connected throughout. Every session runs on a fresh memory
/// engine (the target also serves half of them from redb: the dispatch path is the same). The
/// seeds include correct conversations, so some must be welcomed and end cleanly.
#[tokio::test]
async fn dispatch_corpus_replays_cleanly() {
    use arbitrary::{Arbitrary, Unstructured};
    let (mut welcomed, mut clean) = (0, 0);
    let files = corpus("dispatch");
    for (path, input) in &files {
        let fuzzed = fuzzed::Session::arbitrary_take_rest(Unstructured::new(input))
            .unwrap_or_else(|e| panic!("{}: not a session: {e}", path.display()));
        let outcome = session(fuzzed.limits.limits(), fuzzed.wire()).await;
        if let Err(e) = &outcome.result {
            assert_eq!(e.kind(), ErrorKind::Protocol, "{}: {e}", path.display());
        }
        welcomed += usize::from(outcome.welcomed);
        clean += usize::from(outcome.clean && outcome.result.is_ok());
    }
    println!(
        "{} sessions: {welcomed} welcomed, {clean} clean",
        files.len()
    );
    assert!(
        welcomed > 0 && clean > 0,
        "{} sessions: {welcomed} welcomed, {clean} clean",
        files.len()
    );
}

// The proptest of the dispatch path: random message sequences, junk mixed in, into
// `serve_connection` on the memory engine.

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (0u8..8).prop_map(|n| vec![b'k', n]),
        1 => Just(Vec::new()),
        1 => prop::collection::vec(any::<u8>(), 0..6),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..8),
        1 => (0usize..40, any::<u8>()).prop_map(|(n, b)| vec![b; n * 64]),
    ]
}

fn range() -> impl Strategy<Value = Range> {
    range_of(key, prop_oneof![0u64..6, Just(u64::MAX)])
}

fn op() -> impl Strategy<Value = Op> {
    op_of(key, value, range(), 4)
}

/// Messages after the handshake, over ids 0..4 so they refer to each other.
fn message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        4 => (0u64..4, op()).prop_map(|(id, op)| ClientMessage::Request { id, op }),
        2 => (0u64..4, range(), prop_oneof![0u32..4, Just(u32::MAX)])
            .prop_map(|(iter, range, credit)| ClientMessage::IterOpen { iter, range, credit }),
        2 => (0u64..4, prop_oneof![0u32..4, Just(u32::MAX)])
            .prop_map(|(iter, credit)| ClientMessage::IterCredit { iter, credit }),
        1 => (0u64..4).prop_map(|iter| ClientMessage::IterClose { iter }),
        1 => (prop_oneof![Just(MAGIC), any::<u32>()], 0u32..3)
            .prop_map(|(magic, version)| ClientMessage::Hello { magic, version }),
    ]
}

fn step() -> impl Strategy<Value = Wire> {
    prop_oneof![
        12 => message().prop_map(Wire::Message),
        2 => Just(Wire::Yield),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Wire::Body),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Wire::Bytes),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        prop_oneof![Just(256usize), Just(4096), Just(1 << 20)],
        prop_oneof![Just(1usize), Just(3), Just(256)],
        prop_oneof![Just(1usize), Just(64), Just(1 << 20)],
        prop_oneof![Just(1usize), Just(2), Just(16)],
    )
        .prop_map(
            |(max_frame, chunk_entries, chunk_bytes, max_in_flight)| Limits {
                max_frame,
                chunk_entries,
                chunk_bytes,
                max_in_flight,
                handshake_timeout: Duration::from_secs(30),
                ..Limits::default()
            },
        )
}

/// A correct conversation made of `messages`: Hello, then requests and iterators with fresh
/// ids, each fitting in a frame (a real client refuses to send a bigger one).
fn clean_steps(limits: &Limits, messages: Vec<ClientMessage>) -> Vec<Wire> {
    let mut opened = HashSet::new();
    let mut steps = vec![hello()];
    steps.extend(
        messages
            .into_iter()
            .filter(|m| wire::encode(m).unwrap().len() <= limits.max_frame)
            .filter(|m| match m {
                ClientMessage::Hello { .. } => false,
                ClientMessage::IterOpen { iter, .. } => opened.insert(*iter),
                _ => true,
            })
            .map(Wire::Message),
    );
    steps
}

fn runtime() -> tokio::runtime::Runtime {
    // Two workers: the fuzz target runs on one thread, this finds the orderings it cannot.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_sessions_keep_every_invariant(
        limits in limits(),
        hello_first in prop::bool::weighted(0.9),
        steps in prop::collection::vec(step(), 0..32),
    ) {
        let mut all = Vec::new();
        if hello_first {
            all.push(hello());
        }
        all.extend(steps);
        let outcome = runtime().block_on(bounded(session(limits, all)));
        if let Err(e) = &outcome.result {
            prop_assert_eq!(e.kind(), ErrorKind::Protocol);
        }
    }

    #[test]
    fn correct_sessions_are_answered_and_end_cleanly(
        limits in limits(),
        messages in prop::collection::vec(message(), 0..24),
    ) {
        let steps = clean_steps(&limits, messages);
        let outcome = runtime().block_on(bounded(session(limits, steps)));
        prop_assert!(outcome.clean);
        prop_assert!(outcome.welcomed);
        prop_assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    }
}
