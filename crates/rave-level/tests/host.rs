//! The host at the byte level, as a Node guest (or a hostile peer) meets it: raw frames in,
//! raw frames out, over an in-process stream, with an in-memory engine behind.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use prost::Message;
use rave_api::{Backend, BatchOp, KvStore, MemoryBackend, OpenOptions};
use rave_level::codec::{Reply, decode_reply};
use rave_level::frame::{Frame, FrameCodec, Outgoing};
use rave_level::messages::{self as m, request};
use rave_level::{HostOptions, serve_stream};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

struct Peer {
    framed: Framed<DuplexStream, FrameCodec>,
}

impl Peer {
    async fn new(keys: usize, max_frame: usize) -> Peer {
        let store = MemoryBackend
            .open("/unused".as_ref(), &OpenOptions::default())
            .unwrap();
        let ops = (0..keys)
            .map(|i| BatchOp::put(format!("k{i:04}"), vec![b'v'; 100]))
            .collect();
        store.batch(ops).await.unwrap();
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let options = HostOptions {
            max_frame,
            ..HostOptions::default()
        };
        let store: Arc<dyn KvStore> = Arc::new(store);
        tokio::spawn(serve_stream(
            theirs,
            store,
            options,
            CancellationToken::new(),
        ));
        Peer {
            framed: Framed::new(ours, FrameCodec::default()),
        }
    }

    async fn send(&mut self, tag: u8, message: &impl Message) {
        self.framed.send(Outgoing::new(tag, message)).await.unwrap();
    }

    async fn raw(&mut self, bytes: &[u8]) {
        self.framed.get_mut().write_all(bytes).await.unwrap();
    }

    /// The next reply, or `None` when none comes within a short while (or the host hung up).
    async fn reply(&mut self) -> Option<Reply> {
        match tokio::time::timeout(Duration::from_millis(300), self.framed.next()).await {
            Ok(Some(Ok(Frame::Payload(p)))) => Some(decode_reply(&p).unwrap()),
            Ok(None) => None,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => None,
        }
    }
}

fn get(id: u32, key: &str) -> m::Get {
    m::Get {
        id,
        key: key.into(),
    }
}

#[tokio::test]
async fn every_request_naming_an_id_is_answered() {
    let mut peer = Peer::new(0, 64).await;
    // A Get without its (required) key: Node's host would drop it and its sender would hang.
    peer.raw(&[0x03, request::GET, 0x08, 0x05]).await;
    match peer.reply().await {
        Some(Reply::Callback(c)) => {
            assert_eq!((c.id, c.error.as_deref()), (5, Some("LEVEL_REMOTE_ERROR")))
        }
        other => panic!("{other:?}"),
    }
    // An oversized Put (over the 64-byte limit here) is answered, and skipped.
    let put = m::Put {
        id: 6,
        key: b"k".to_vec(),
        value: Some(vec![0; 200]),
    };
    peer.send(request::PUT, &put).await;
    match peer.reply().await {
        Some(Reply::Callback(c)) => assert_eq!((c.id, c.error.is_some()), (6, true)),
        other => panic!("{other:?}"),
    }
    // An unknown tag names no request to answer: dropped; the connection goes on.
    peer.raw(&[0x03, 0x0a, 0x08, 0x07]).await;
    peer.send(request::GET, &get(8, "absent")).await;
    match peer.reply().await {
        Some(Reply::Callback(c)) => {
            assert_eq!((c.id, c.error.as_deref()), (8, Some("LEVEL_NOT_FOUND")))
        }
        other => panic!("{other:?}"),
    }
    // A put without a value is refused with a code, not applied.
    let put = m::Put {
        id: 9,
        key: b"k".to_vec(),
        value: None,
    };
    peer.send(request::PUT, &put).await;
    match peer.reply().await {
        Some(Reply::Callback(c)) => assert_eq!(c.error.as_deref(), Some("LEVEL_INVALID_VALUE")),
        other => panic!("{other:?}"),
    }
}

fn open(id: u32, reverse: bool, bookmark: Option<&str>) -> m::Iterator {
    m::Iterator {
        id,
        seq: 0,
        options: m::RangeOptions {
            keys: Some(true),
            values: Some(false),
            limit: Some(-1),
            reverse: Some(reverse),
            ..Default::default()
        },
        consumed: 0,
        bookmark: bookmark.map(Into::into),
        seek: None,
    }
}

#[tokio::test]
async fn iterators_wait_for_acks_and_never_send_empty_data() {
    let mut peer = Peer::new(1000, 1 << 20).await;
    peer.send(request::ITERATOR, &open(1, false, None)).await;
    // The first read is one entry; then nothing until an ack.
    match peer.reply().await {
        Some(Reply::IteratorData(d)) => assert_eq!(d.data, vec![b"k0000".to_vec()]),
        other => panic!("{other:?}"),
    }
    assert_eq!(peer.reply().await, None, "data before an ack");
    let mut consumed = 1;
    let mut keys = 1;
    loop {
        let ack = m::IteratorAck {
            id: 1,
            seq: 0,
            consumed,
        };
        peer.send(request::ITERATOR_ACK, &ack).await;
        // At most two data messages wait for an ack.
        let mut unacked = 0;
        let mut ended = false;
        while let Some(reply) = peer.reply().await {
            match reply {
                Reply::IteratorData(d) => {
                    assert!(!d.data.is_empty(), "an empty data message");
                    unacked += 1;
                    keys += d.data.len();
                    consumed += d.data.len() as u64;
                }
                Reply::IteratorEnd(_) => ended = true,
                other => panic!("{other:?}"),
            }
        }
        assert!(unacked <= 2, "{unacked} data messages without an ack");
        if ended {
            break;
        }
    }
    assert_eq!(keys, 1000);
}

#[tokio::test]
async fn a_resume_starts_strictly_after_the_bookmark_in_both_directions() {
    let mut peer = Peer::new(10, 1 << 20).await;
    for (id, reverse, want) in [(1, false, "k0006"), (2, true, "k0004")] {
        peer.send(request::ITERATOR, &open(id, reverse, Some("k0005")))
            .await;
        match peer.reply().await {
            Some(Reply::IteratorData(d)) => assert_eq!(d.data, vec![want.as_bytes().to_vec()]),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_seek_outside_the_range_ends_the_iterator() {
    let mut peer = Peer::new(10, 1 << 20).await;
    let mut it = open(1, false, None);
    it.options.gt = Some(b"k0005".to_vec());
    peer.send(request::ITERATOR, &it).await;
    assert!(matches!(peer.reply().await, Some(Reply::IteratorData(_))));
    let seek = m::IteratorSeek {
        id: 1,
        seq: 1,
        target: b"k0004".to_vec(),
    };
    peer.send(request::ITERATOR_SEEK, &seek).await;
    match peer.reply().await {
        Some(Reply::IteratorEnd(e)) => assert_eq!(e.seq, 1),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn requests_sent_before_a_half_close_are_answered() {
    let mut peer = Peer::new(10, 1 << 20).await;
    for id in 1..=50 {
        peer.send(request::GET, &get(id, "k0003")).await;
    }
    // The guest is done sending (EOF on the host's side); the answers still come.
    peer.framed.get_mut().shutdown().await.unwrap();
    let mut answered = 0;
    while let Some(reply) = peer.reply().await {
        assert!(matches!(
            reply,
            Reply::Callback(m::Callback { error: None, .. })
        ));
        answered += 1;
    }
    assert_eq!(answered, 50);
}

#[tokio::test]
async fn a_bookmark_outside_the_range_does_not_widen_it() {
    let mut peer = Peer::new(10, 1 << 20).await;
    let mut it = open(1, false, Some("k0001"));
    it.options.gt = Some(b"k0007".to_vec());
    peer.send(request::ITERATOR, &it).await;
    match peer.reply().await {
        Some(Reply::IteratorData(d)) => assert_eq!(d.data, vec![b"k0008".to_vec()]),
        other => panic!("{other:?}"),
    }
}
