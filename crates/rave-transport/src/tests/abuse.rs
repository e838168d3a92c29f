//! Peers that break the protocol, stay silent or lie: each is dropped alone, never a panic,
//! never a hang, and everyone else keeps working.

use std::time::Instant;

use rave_api::ErrorKind;
use serde::Serialize;

use super::*;
use crate::wire::{Op, Reply};

fn short_handshake() -> Limits {
    Limits {
        handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a failure is reproducible.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn refused(messages: &[ServerMessage]) -> Option<&str> {
    messages.iter().find_map(|m| match m {
        ServerMessage::Refused { message } => Some(message.as_str()),
        _ => None,
    })
}

/// A message of a protocol version this one does not know.
#[derive(Serialize)]
enum Newer {
    Frobnicate { level: u32 },
}

#[tokio::test]
async fn garbage_peers_are_dropped_while_a_client_keeps_working() {
    let store = TestStore::new();
    let limits = short_handshake();
    let server = Server::start(store.clone(), &limits);
    let good = server.client(&limits).await;
    good.put(b"k", b"v").await.unwrap();
    // A request in flight on the good client throughout.
    let slow_client = good.clone();
    let slow = tokio::spawn(async move { slow_client.get(b"!slow").await });

    let still_good = async |round: usize| {
        let k = format!("round{round}");
        good.put(k.as_bytes(), b"ok").await.unwrap();
        assert_eq!(good.get(k.as_bytes()).await.unwrap(), Some(b"ok".to_vec()));
    };

    // Random bytes.
    for seed in 1..=5u64 {
        let mut raw = server.raw(&limits).await;
        raw.send_raw(&noise(4096, seed)).await;
        raw.until_eof().await;
        still_good(seed as usize).await;
    }

    // A length prefix far over the limit: refused at once, before any body.
    let mut raw = server.raw(&limits).await;
    raw.send_raw(&[0x7f, 0xff, 0xff, 0xff]).await;
    let seen = raw.until_eof().await;
    assert!(refused(&seen).is_some(), "{seen:?}");
    still_good(10).await;

    // A well-formed frame whose body is not MessagePack (0xc1 is never used).
    let mut raw = server.raw(&limits).await;
    raw.send_frame(Bytes::from_static(&[0xc1, 0xc1, 0xc1]))
        .await;
    assert!(refused(&raw.until_eof().await).is_some());
    still_good(11).await;

    // Wrong magic, wrong version (each refused saying which), no Hello first.
    for (magic, version, named) in [
        (0xdead_beef, PROTOCOL_VERSION, "magic"),
        (MAGIC, PROTOCOL_VERSION + 1, "version"),
    ] {
        let mut raw = server.raw(&limits).await;
        raw.send(&ClientMessage::Hello { magic, version }).await;
        let seen = raw.until_eof().await;
        assert!(
            refused(&seen).is_some_and(|m| m.contains(named)),
            "{seen:?}"
        );
    }
    let mut raw = server.raw(&limits).await;
    raw.send(&ClientMessage::Request {
        id: 1,
        op: Op::Ping,
    })
    .await;
    assert!(refused(&raw.until_eof().await).is_some());
    still_good(12).await;

    // After a good handshake: an undecodable body, an unknown variant, an oversized frame, a
    // second Hello, a duplicate iterator id.
    let abuses: Vec<Box<dyn Fn() -> Bytes>> = vec![
        Box::new(|| Bytes::from_static(&[0x92, 0xc1])),
        Box::new(|| wire::encode(&Newer::Frobnicate { level: 9 }).unwrap()),
        Box::new(|| {
            wire::encode(&ClientMessage::Hello {
                magic: MAGIC,
                version: PROTOCOL_VERSION,
            })
            .unwrap()
        }),
    ];
    for (i, abuse) in abuses.iter().enumerate() {
        let mut raw = server.raw(&limits).await;
        raw.hello().await;
        raw.send(&ClientMessage::Request {
            id: 1,
            op: Op::Ping,
        })
        .await;
        assert!(matches!(
            raw.recv().await,
            Some(ServerMessage::Response {
                id: 1,
                result: Ok(Reply::Done)
            })
        ));
        raw.send_frame(abuse()).await;
        let seen = raw.until_eof().await;
        assert!(refused(&seen).is_some(), "abuse {i}: {seen:?}");
        still_good(20 + i).await;
    }
    let mut raw = server.raw(&limits).await;
    raw.hello().await;
    raw.send_raw(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await;
    assert!(refused(&raw.until_eof().await).is_some());
    let mut raw = server.raw(&limits).await;
    raw.hello().await;
    fill(&*store, 2000).await;
    for _ in 0..2 {
        raw.send(&ClientMessage::IterOpen {
            iter: 5,
            range: Range::all(),
            credit: 1,
        })
        .await;
    }
    let seen = raw.until_eof().await;
    assert!(
        refused(&seen).is_some_and(|m| m.contains("already open")),
        "{seen:?}"
    );
    still_good(30).await;

    assert_eq!(
        bounded(slow).await.unwrap().unwrap(),
        Some(b"slow".to_vec())
    );
    assert!(good.is_connected());
    server.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    // Long enough that a loaded machine serves the good client below well within it.
    const TIMEOUT: Duration = Duration::from_secs(3);
    let limits = Limits {
        handshake_timeout: TIMEOUT,
        ..Limits::default()
    };
    let server = Server::start(TestStore::new(), &limits);
    let started = Instant::now();
    let silent = server.raw(&limits).await;
    // A trickler: a valid Hello, one byte every 300 ms, would take longer than the timeout.
    let mut trickler = server.raw(&limits).await;
    let hello = wire::encode(&ClientMessage::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
    })
    .unwrap();
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&hello);
    let frame_len = frame.len();
    let trickle = tokio::spawn(async move {
        for byte in frame {
            use tokio::io::AsyncWriteExt;
            if trickler.framed.get_mut().write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        trickler.until_eof().await
    });
    assert!(frame_len * 300 > TIMEOUT.as_millis() as usize);

    // Neither blocks another client: it is served while the silent one is still connected
    // (were it waiting behind them, it would be served only after the server dropped them).
    let patient = Limits {
        handshake_timeout: STEP,
        ..limits.clone()
    };
    let good = server.client(&patient).await;
    good.ping().await.unwrap();
    let (open, mut silent) = silent.still_open();
    assert!(
        open,
        "the good client was served only after the silent one was dropped, {:?} after it \
         connected",
        started.elapsed()
    );

    // Dropped at the timeout, not before (`until_eof` fails if it never is).
    assert!(silent.until_eof().await.is_empty());
    let waited = started.elapsed();
    assert!(waited >= TIMEOUT - Duration::from_millis(50), "{waited:?}");
    // The trickler too, before its Hello was complete.
    let seen = bounded(trickle).await.unwrap();
    assert!(
        !seen
            .iter()
            .any(|m| matches!(m, ServerMessage::Welcome { .. }))
    );
    good.ping().await.unwrap();
    server.stop().await;
}

/// A fake leader on one end of a socket pair, and the client's `connect` on the other.
async fn connect_to_fake<F, Fut>(
    limits: &Limits,
    fake: F,
) -> (Result<(Client, crate::Welcome)>, JoinHandle<()>)
where
    F: FnOnce(Raw) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (a, b) = UnixStream::pair().unwrap();
    let raw = Raw::new(b, limits);
    let fake = tokio::spawn(async move { fake(raw).await });
    (bounded(Client::connect(a, limits.clone())).await, fake)
}

#[tokio::test]
async fn connecting_to_something_that_is_not_a_leader_fails_fast() {
    let limits = short_handshake();

    let (result, _) = connect_to_fake(&limits, |mut raw: Raw| async move {
        raw.send_raw(&noise(64, 3)).await;
        raw.drain().await;
    })
    .await;
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Protocol);

    let started = Instant::now();
    let (result, _) = connect_to_fake(&limits, |mut raw: Raw| async move {
        raw.drain().await;
    })
    .await;
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Protocol);
    assert!(started.elapsed() < Duration::from_secs(2));

    let (result, _) = connect_to_fake(&limits, |mut raw: Raw| async move {
        raw.send_frame(
            wire::encode(&ServerMessage::Refused {
                message: "go away".into(),
            })
            .unwrap(),
        )
        .await;
    })
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(err.to_string().contains("go away"), "{err}");

    let (result, _) = connect_to_fake(&limits, |mut raw: Raw| async move {
        raw.send_frame(
            wire::encode(&ServerMessage::Welcome {
                version: PROTOCOL_VERSION + 1,
                epoch: 1,
                pid: 1,
            })
            .unwrap(),
        )
        .await;
        raw.drain().await;
    })
    .await;
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Protocol);

    // A leader that goes away mid-handshake: elect again, not a protocol error.
    let (result, _) = connect_to_fake(&limits, |raw: Raw| async move { drop(raw) }).await;
    assert_eq!(result.unwrap_err().kind(), ErrorKind::LeaderLost);
}

type Wire = Framed<UnixStream, LengthDelimitedCodec>;

/// Plays a leader's side of the handshake: expects Hello, answers Welcome.
async fn welcome(framed: &mut Wire, epoch: u64, pid: u32) {
    assert!(matches!(
        next_request(framed).await,
        Some(ClientMessage::Hello { .. })
    ));
    reply(
        framed,
        ServerMessage::Welcome {
            version: PROTOCOL_VERSION,
            epoch,
            pid,
        },
    )
    .await;
}

async fn next_request(framed: &mut Wire) -> Option<ClientMessage> {
    match framed.next().await {
        Some(Ok(frame)) => Some(wire::decode(&frame).unwrap()),
        _ => None,
    }
}

async fn reply(framed: &mut Wire, message: ServerMessage) {
    framed.send(wire::encode(&message).unwrap()).await.unwrap();
}

/// A leader that stops reading: the follower's callers wait for room in its send buffer
/// (backpressure) instead of growing it with every call.
#[tokio::test]
async fn a_leader_that_stops_reading_bounds_the_send_buffer() {
    let limits = Limits {
        send_buffer_bytes: 256 << 10,
        ..Limits::default()
    };
    let (a, b) = UnixStream::pair().unwrap();
    let codec = limits.codec();
    let leader = tokio::spawn(async move {
        let mut framed = Framed::new(b, codec);
        welcome(&mut framed, 1, 1).await;
        // Kept open, never read again.
        framed
    });
    let (client, _) = bounded(Client::connect(a, limits.clone())).await.unwrap();
    let _silent = leader.await.unwrap();
    let value = vec![7u8; 64 << 10];
    let callers = 400;
    let attempted = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..callers)
        .map(|i| {
            let client = client.clone();
            let value = value.clone();
            let attempted = attempted.clone();
            tokio::spawn(async move {
                attempted.fetch_add(1, Ordering::SeqCst);
                // The first poll stages the request or waits for room.
                client.put(format!("k{i}").as_bytes(), &value).await
            })
        })
        .collect();
    while attempted.load(Ordering::SeqCst) < callers {
        tokio::task::yield_now().await;
    }
    let buffered = client.send_buffered();
    // The bound plus one request (its value and a little framing).
    let most = limits.send_buffer_bytes + value.len() + 1024;
    assert!(
        buffered <= most,
        "{buffered} bytes buffered for a leader that reads nothing (bound {most})"
    );
    client.close().await.unwrap();
    for call in calls {
        assert!(call.await.unwrap().is_err());
    }
}

#[tokio::test]
async fn a_lying_leader_costs_the_connection_not_a_panic() {
    let limits = window(4);
    let (a, b) = UnixStream::pair().unwrap();
    let codec = limits.codec();
    let fake = tokio::spawn(async move {
        let mut framed = Framed::new(b, codec);
        welcome(&mut framed, 3, 9).await;
        // Events of a watch nobody opened and a reply nobody asked for are ignored.
        reply(
            &mut framed,
            ServerMessage::WatchEvents {
                watch: 77,
                events: vec![rave_api::WatchEvent::Progress { sequence: 1 }],
            },
        )
        .await;
        reply(
            &mut framed,
            ServerMessage::Response {
                id: 999,
                result: Ok(Reply::Done),
            },
        )
        .await;
        // Answer one ping properly.
        let Some(ClientMessage::Request { id, op: Op::Ping }) = next_request(&mut framed).await
        else {
            panic!("expected a ping")
        };
        reply(
            &mut framed,
            ServerMessage::Response {
                id,
                result: Ok(Reply::Done),
            },
        )
        .await;
        // Then an iterator: more entries than the window grants.
        let Some(ClientMessage::IterOpen { iter, credit, .. }) = next_request(&mut framed).await
        else {
            panic!("expected IterOpen")
        };
        assert_eq!(credit, cost(0, 4), "the window as credit");
        // Twice what the credit allows (one entry of overdraft is within the rules).
        let entries = (0..8).map(|i| Entry::new(key(i), b"v".to_vec())).collect();
        reply(
            &mut framed,
            ServerMessage::IterChunk {
                iter,
                snapshot: None,
                entries,
                end: false,
            },
        )
        .await;
        // Keep the socket open: the client must drop it on its own.
        while framed.next().await.is_some() {}
    });
    let (client, hello) = bounded(Client::connect(a, limits.clone())).await.unwrap();
    assert_eq!((hello.epoch, hello.pid), (3, 9));
    client.ping().await.unwrap();
    let err = client.open_iterator(Range::all()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaderLost);
    bounded(client.disconnected()).await;
    assert!(!client.is_connected());
    assert_eq!(
        client.ping().await.unwrap_err().kind(),
        ErrorKind::LeaderLost
    );
    bounded(fake).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_leader_times_calls_and_iterators_out_and_the_connection_survives() {
    // Long enough for the final ping to be answered on a loaded 2-core machine (the fake
    // leader reads through every queued request first).
    let limits = Limits {
        call_timeout: Some(Duration::from_millis(1500)),
        ..Limits::default()
    };
    let (a, b) = UnixStream::pair().unwrap();
    let codec = limits.codec();
    // A leader that shakes hands, then reads everything and answers nothing until told to.
    let (answer_tx, mut answer_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let fake = tokio::spawn(async move {
        let mut framed = Framed::new(b, codec);
        welcome(&mut framed, 1, 1).await;
        loop {
            // Biased: the order to answer comes before the ping it announces, which the other
            // branch must not swallow.
            tokio::select! {
                biased;
                Some(()) = answer_rx.recv() => {
                    // Answer the next ping, to show the connection still works.
                    while let Some(request) = next_request(&mut framed).await {
                        if let ClientMessage::Request { id, op: Op::Ping } = request {
                            reply(&mut framed, ServerMessage::Response { id, result: Ok(Reply::Done) }).await;
                            break;
                        }
                    }
                }
                request = next_request(&mut framed) => if request.is_none() { break },
            }
        }
    });
    let (client, _) = bounded(Client::connect(a, limits)).await.unwrap();
    let started = Instant::now();
    let err = bounded(client.get(b"k")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    let err = bounded(client.open_iterator(Range::all()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    // Many calls at once all time out; none hangs.
    let calls = (0..20).map(|_| client.put(b"k", b"v"));
    for result in bounded(futures::future::join_all(calls)).await {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Timeout);
    }
    assert!(client.is_connected());
    answer_tx.send(()).unwrap();
    bounded(client.ping()).await.unwrap();
    drop(client);
    bounded(fake).await.unwrap();
}
