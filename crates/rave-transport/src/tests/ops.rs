//! Every operation through client and server, pipelining, iterators and flow control.

use std::time::Instant;

use rave_api::ErrorKind;

use super::*;
use crate::wire::{Op, Reply};

#[tokio::test]
async fn every_operation_round_trips() {
    let store = TestStore::new();
    let (client, _server) = pair_with(store.clone(), &Limits::default()).await;

    assert_eq!(client.get(b"a").await.unwrap(), None);
    client.put(b"a", b"1").await.unwrap();
    client.put(b"", b"").await.unwrap();
    assert_eq!(client.get(b"a").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(
        client.get(b"").await.unwrap(),
        Some(Vec::new()),
        "empty key and value"
    );
    assert_eq!(
        store.get(b"a").await.unwrap(),
        Some(b"1".to_vec()),
        "written through"
    );

    client
        .batch(vec![
            BatchOp::put("b", "2"),
            BatchOp::put("c", vec![0u8, 255, 0]),
            BatchOp::del("a"),
        ])
        .await
        .unwrap();
    client.batch(Vec::new()).await.unwrap();
    let keys = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"zz".to_vec()];
    assert_eq!(
        client.get_many(&keys).await.unwrap(),
        vec![None, Some(b"2".to_vec()), Some(vec![0, 255, 0]), None]
    );
    assert_eq!(
        client.get_many(&[]).await.unwrap(),
        Vec::<Option<Vec<u8>>>::new()
    );

    client.del(b"b").await.unwrap();
    client.del(b"never-there").await.unwrap();
    assert_eq!(client.get(b"b").await.unwrap(), None);

    fill(&client, 20).await;
    client
        .clear(Range::all().gte(key(5)).lt(key(15)))
        .await
        .unwrap();
    let left = client
        .iterator(Range::prefix("k"))
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let want: Vec<Vec<u8>> = (0..5).chain(15..20).map(key).collect();
    assert_eq!(left.into_iter().map(|e| e.key).collect::<Vec<_>>(), want);
    // A limited, reversed clear removes the highest keys.
    client
        .clear(Range::prefix("k").reverse().limit(2))
        .await
        .unwrap();
    assert_eq!(client.get(&key(19)).await.unwrap(), None);
    assert_eq!(client.get(&key(18)).await.unwrap(), None);
    assert!(client.get(&key(17)).await.unwrap().is_some());

    client.ping().await.unwrap();
    assert!(client.is_connected());
}

#[tokio::test]
async fn remote_errors_keep_their_kind_and_the_connection() {
    let store = TestStore::new();
    let (client, _server) = pair_with(store, &Limits::default()).await;
    let err = client.get(b"!fail").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption);
    assert!(
        matches!(&err, Error::Remote { message, .. } if message.contains("bad block")),
        "{err}"
    );
    let err = client.get(b"!panic").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other);
    client.put(b"still", b"fine").await.unwrap();
    assert_eq!(client.get(b"still").await.unwrap(), Some(b"fine".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_pipelined_requests_on_one_client() {
    let store = TestStore::new();
    let (client, _server) = pair_with(store, &Limits::default()).await;
    let puts = (0..100).map(|i| {
        let client = client.clone();
        async move { client.put(&key(i), &key(i)).await }
    });
    for result in bounded(futures::future::join_all(puts)).await {
        result.unwrap();
    }
    let gets = (0..100).map(|i| {
        let client = client.clone();
        async move { (i, client.get(&key(i)).await) }
    });
    for (i, result) in bounded(futures::future::join_all(gets)).await {
        assert_eq!(result.unwrap(), Some(key(i)));
    }
}

#[tokio::test]
async fn replies_come_out_of_order_without_head_of_line_blocking() {
    let store = TestStore::new();
    let (client, _server) = pair_with(store, &Limits::default()).await;
    client.put(b"fast", b"f").await.unwrap();
    // Sent first, never answered: later requests must not queue behind it.
    let stuck_client = client.clone();
    let stuck = tokio::spawn(async move { stuck_client.get(b"!hang").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..10 {
        assert_eq!(
            bounded(client.get(b"fast")).await.unwrap(),
            Some(b"f".to_vec())
        );
    }
    assert!(!stuck.is_finished());
    stuck.abort();
}

#[tokio::test]
async fn the_server_runs_many_requests_at_once() {
    // 50 requests that each answer only once all 50 are being answered: they finish (within
    // `bounded`) only if the server runs them together, not one after another.
    let store = TestStore::new();
    let (client, _server) = pair_with(store, &Limits::default()).await;
    let gathering = (0..GATHER).map(|_| {
        let client = client.clone();
        async move { client.get(b"!gather").await }
    });
    for result in bounded(futures::future::join_all(gathering)).await {
        assert_eq!(result.unwrap(), Some(b"gathered".to_vec()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_the_store_answers_at_once_run_on_the_connection_task() {
    let (client, _server) = pair_with(TestStore::new(), &Limits::default()).await;
    let first = bounded(client.get(b"!task")).await.unwrap().unwrap();
    // Same task every time: no task was spawned per request (a spawned one has a new id).
    for _ in 0..20 {
        assert_eq!(bounded(client.get(b"!task")).await.unwrap().unwrap(), first);
    }
    // A request that must wait still runs beside them.
    let slow = client.get(b"!slow");
    let quick = client.get(b"!task");
    let (slow, quick) = bounded(futures::future::join(slow, quick)).await;
    assert_eq!(slow.unwrap(), Some(b"slow".to_vec()));
    assert_eq!(quick.unwrap().unwrap(), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_larger_than_the_socket_buffer_stay_whole_and_in_order() {
    // Each put is bigger than a unix socket's buffer, so callers' direct writes stop part-way and
    // the flusher finishes them while other callers queue behind: nothing may interleave.
    let store = TestStore::new();
    let (client, _server) = pair_with(store.clone(), &Limits::default()).await;
    let puts = (0..24u8).map(|i| {
        let client = client.clone();
        async move {
            let value = vec![i; 700_000 + usize::from(i)];
            client.put(&[b'k', i], &value).await
        }
    });
    for result in bounded(futures::future::join_all(puts)).await {
        result.unwrap();
    }
    for i in 0..24u8 {
        let value = bounded(client.get(&[b'k', i])).await.unwrap().unwrap();
        assert_eq!(value.len(), 700_000 + usize::from(i));
        assert!(value.iter().all(|&b| b == i));
    }
}

#[tokio::test]
async fn in_flight_limit_applies_backpressure_without_deadlock() {
    let store = TestStore::new();
    let limits = Limits {
        max_in_flight: 2,
        ..Limits::default()
    };
    let (client, _server) = pair_with(store, &limits).await;
    // Two slow requests occupy both slots; the rest wait for a slot, then complete.
    let started = Instant::now();
    let calls = (0..6).map(|_| {
        let client = client.clone();
        async move { client.get(b"!slow").await }
    });
    for result in bounded(futures::future::join_all(calls)).await {
        assert_eq!(result.unwrap(), Some(b"slow".to_vec()));
    }
    // 6 requests, 2 at a time, 300 ms each: at least three rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(850),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_entries_stream_in_order_through_a_small_window() {
    let store = TestStore::filled(10_000).await;
    let limits = Limits {
        chunk_entries: 3,
        ..window(8)
    };
    let (client, _server) = pair_with(store.clone(), &limits).await;
    let mut iter = client.open_iterator(Range::all()).await.unwrap();
    let all = bounded(collect(&mut iter, 5)).await.unwrap();
    assert_eq!(all.len(), 10_000);
    for (i, entry) in all.iter().enumerate() {
        assert_eq!(entry.key, key(i));
        assert_eq!(entry.value, format!("v{i}").into_bytes());
    }
    // Exhausted: stays empty.
    assert!(iter.next_chunk(10).await.unwrap().is_empty());
    drop(iter);
    // The server's iterator is gone too.
    until(|| store.live_iters() == 0).await;
}

#[tokio::test]
async fn the_server_never_sends_beyond_the_credit() {
    let store = TestStore::filled(100).await;
    let limits = Limits {
        chunk_entries: 4,
        ..Limits::default()
    };
    let server = Server::start(store.clone(), &limits);
    let mut raw = server.raw(&limits).await;
    raw.hello().await;
    // Exactly what the first five entries cost.
    raw.send(&ClientMessage::IterOpen {
        iter: 1,
        range: Range::all(),
        credit: cost(0, 5),
    })
    .await;

    let quiet = Duration::from_millis(300);
    let mut received = Vec::new();
    let drain = async |raw: &mut Raw, received: &mut Vec<Entry>| {
        while let Some(message) = raw.recv_within(quiet).await {
            match message {
                ServerMessage::IterChunk {
                    iter: 1,
                    entries,
                    end,
                    ..
                } => {
                    assert!(!end);
                    received.extend(entries);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    drain(&mut raw, &mut received).await;
    assert_eq!(received.len(), 5, "exactly the initial credit");
    for extra in [1, 10, 3] {
        let before = received.len();
        raw.send(&ClientMessage::IterCredit {
            iter: 1,
            credit: cost(before, before + extra),
        })
        .await;
        drain(&mut raw, &mut received).await;
        assert_eq!(received.len() - before, extra, "exactly the granted credit");
    }
    // One byte of credit lets one whole entry through (an entry larger than the window must
    // not block the stream), and no more.
    raw.send(&ClientMessage::IterCredit { iter: 1, credit: 1 })
        .await;
    drain(&mut raw, &mut received).await;
    assert_eq!(received.len(), 20, "one entry on one byte of credit");
    // That entry overdrew the credit: paying the debt alone sends nothing.
    raw.send(&ClientMessage::IterCredit {
        iter: 1,
        credit: cost(19, 20) - 1,
    })
    .await;
    drain(&mut raw, &mut received).await;
    assert_eq!(
        received.len(),
        20,
        "credit that only pays the debt sends nothing"
    );
    let keys: Vec<Vec<u8>> = received.into_iter().map(|e| e.key).collect();
    assert_eq!(keys, (0..20).map(key).collect::<Vec<_>>());

    // Closing releases the snapshot; the connection stays usable.
    assert_eq!(store.live_iters(), 1);
    raw.send(&ClientMessage::IterClose { iter: 1 }).await;
    raw.send(&ClientMessage::Request {
        id: 9,
        op: Op::Ping,
    })
    .await;
    match raw.recv().await {
        Some(ServerMessage::Response {
            id: 9,
            result: Ok(Reply::Done),
        }) => {}
        other => panic!("expected the ping's reply, got {other:?}"),
    }
    until(|| store.live_iters() == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn large_values_stream_within_a_window_of_bytes() {
    // Twenty values of 200 KiB; one MiB of credit lets five through, and a sixth on the
    // overdraft, not twenty: the follower's buffer is bounded in bytes, not in entries.
    let store = TestStore::new();
    let value = vec![7u8; 200 << 10];
    let ops = (0..20)
        .map(|i| BatchOp::put(key(i), value.clone()))
        .collect();
    store.batch(ops).await.unwrap();
    let limits = Limits::default();
    let server = Server::start(store.clone(), &limits);
    let mut raw = server.raw(&limits).await;
    raw.hello().await;
    raw.send(&ClientMessage::IterOpen {
        iter: 1,
        range: Range::all(),
        credit: 1 << 20,
    })
    .await;
    let mut received = 0;
    while let Some(message) = raw.recv_within(Duration::from_millis(300)).await {
        match message {
            ServerMessage::IterChunk { entries, end, .. } => {
                assert!(!end);
                received += entries.len();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received, 6);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterator_ranges_directions_limits_and_projections_match_the_store() {
    let store = TestStore::filled(300).await;
    let limits = Limits {
        chunk_entries: 7,
        ..window(16)
    };
    let (client, _server) = pair_with(store.clone(), &limits).await;
    let ranges = [
        Range::all(),
        Range::all().reverse(),
        Range::all().limit(10),
        Range::all().reverse().limit(33),
        Range::all().gt(key(10)).lte(key(50)),
        Range::all().gte(key(10)).lt(key(50)).reverse().limit(7),
        Range::all().limit(16),
        Range::all().limit(0),
        Range::all().gt("z"),
        Range::all().gt(key(5)).lt(key(3)),
        Range::all().keys_only().limit(20),
        Range::all().values_only().reverse().limit(20),
    ];
    for range in ranges {
        let want = store
            .iterator(range.clone())
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        let mut iter = client.iterator(range.clone()).await.unwrap();
        let got = bounded(collect(&mut *iter, 4)).await.unwrap();
        assert_eq!(got, want, "{range:?}");
    }
    // Many iterators interleaved on one connection.
    let mut a = client.iterator(Range::all()).await.unwrap();
    let mut b = client.iterator(Range::all().reverse()).await.unwrap();
    for i in 0..300 {
        assert_eq!(a.next().await.unwrap().unwrap().key, key(i));
        assert_eq!(b.next().await.unwrap().unwrap().key, key(299 - i));
    }
    assert!(a.next().await.unwrap().is_none());
    assert!(b.next().await.unwrap().is_none());
}

#[tokio::test]
async fn an_iterator_dropped_early_is_closed_on_the_server() {
    let store = TestStore::filled(1000).await;
    let limits = window(10);
    let (client, _server) = pair_with(store.clone(), &limits).await;
    let mut iter = client.iterator(Range::all()).await.unwrap();
    assert_eq!(iter.next_chunk(3).await.unwrap().len(), 3);
    assert_eq!(store.live_iters(), 1);
    drop(iter);
    until(|| store.live_iters() == 0).await;
    client.ping().await.unwrap();
}

#[tokio::test]
async fn large_entries_are_split_into_frames_under_the_budget() {
    let store = TestStore::new();
    let value = vec![7u8; 40_000];
    for i in 0..50 {
        store.put(&key(i), &value).await.unwrap();
    }
    let limits = Limits {
        chunk_bytes: 100_000,
        max_frame: 200_000,
        ..Limits::default()
    };
    let (client, _server) = pair_with(store.clone(), &limits).await;
    let all = client
        .iterator(Range::all())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all.len(), 50);
    assert!(all.iter().all(|e| e.value == value));
}

#[tokio::test]
async fn oversized_values_are_refused_before_sending() {
    let store = TestStore::new();
    let limits = Limits {
        max_frame: 4096,
        ..Limits::default()
    };
    let (client, _server) = pair_with(store.clone(), &limits).await;
    let big = vec![1u8; 5000];
    let err = client.put(b"big", &big).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        !matches!(err, Error::Remote { .. }),
        "refused locally: {err}"
    );
    let err = client
        .batch(vec![
            BatchOp::put("a", vec![0; 3000]),
            BatchOp::put("b", vec![0; 3000]),
        ])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let err = client
        .open_iterator(Range::all().gte(big.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(store.get(b"big").await.unwrap(), None);
    client.put(b"small", b"ok").await.unwrap();

    // Values the leader holds that exceed a frame: an error for that call or iterator only.
    store.put(b"huge", &big).await.unwrap();
    let err = client.get(b"huge").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(matches!(err, Error::Remote { .. }), "{err}");
    let mut iter = client.iterator(Range::all().gte("huge")).await;
    let err = match &mut iter {
        Err(e) => e.clone(),
        Ok(iter) => iter.next_chunk(10).await.unwrap_err(),
    };
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(client.get(b"small").await.unwrap(), Some(b"ok".to_vec()));
}

#[tokio::test]
async fn too_many_iterators_on_one_connection_are_refused() {
    let store = TestStore::filled(100).await;
    // A window smaller than the data keeps each iterator open on the server, waiting for credit.
    let limits = Limits {
        max_in_flight: 3,
        ..window(4)
    };
    let (client, _server) = pair_with(store, &limits).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut iter = client.iterator(Range::all()).await.unwrap();
        iter.next().await.unwrap();
        open.push(iter);
    }
    let err = client.open_iterator(Range::all()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    drop(open);
    // Closing frees the slots (the server forgets closed iterators).
    bounded(async {
        loop {
            match client.iterator(Range::all()).await {
                Ok(mut iter) => break assert_eq!(iter.collect_all().await.unwrap().len(), 100),
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
}
