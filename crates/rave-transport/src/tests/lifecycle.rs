//! How connections end: leader shutdown, a closing store, `close()`, dropped handles.

use rave_api::ErrorKind;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_the_server_down_fails_pending_calls_with_leader_lost() {
    let store = TestStore::filled(100).await;
    let limits = window(10);
    let server = Server::start(store.clone(), &limits);
    let client = server.client(&limits).await;
    let other = server.client(&limits).await;
    let mut iter = client.iterator(Range::all()).await.unwrap();
    assert_eq!(iter.next_chunk(2).await.unwrap().len(), 2);
    let hanging = {
        let client = client.clone();
        tokio::spawn(async move { client.get(b"!hang").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!hanging.is_finished());

    server.stop().await;

    let err = bounded(hanging).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaderLost);
    bounded(client.disconnected()).await;
    bounded(other.disconnected()).await;
    assert!(!client.is_connected() && !other.is_connected());
    assert_eq!(
        client.put(b"a", b"b").await.unwrap_err().kind(),
        ErrorKind::LeaderLost
    );
    assert_eq!(
        client.open_iterator(Range::all()).await.unwrap_err().kind(),
        ErrorKind::LeaderLost
    );
    // The iterator hands out what it had received (at most the window), then fails.
    let mut handed = 2;
    let err = loop {
        match iter.next_chunk(3).await {
            Ok(chunk) => {
                assert!(!chunk.is_empty(), "the iterator must not end early");
                handed += chunk.len();
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::LeaderLost);
    assert!(handed <= 10, "{handed}");
    assert_eq!(
        iter.next_chunk(3).await.unwrap_err().kind(),
        ErrorKind::LeaderLost
    );
    // Every server-side iterator was released.
    until(|| store.live_iters() == 0).await;
}

#[tokio::test]
async fn a_closing_store_closes_the_connection_instead_of_replying() {
    let store = TestStore::new();
    let (client, server) = pair_with(store.clone(), &Limits::default()).await;
    // The store says Closed: the follower sees a lost leader (retryable), not a remote error.
    let err = client.get(b"!closed").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaderLost, "{err}");
    assert!(matches!(err, Error::LeaderLost));
    bounded(client.disconnected()).await;
    let ended = bounded(server).await.unwrap();
    assert_eq!(ended.unwrap_err().kind(), ErrorKind::Closed);

    // The same through a really closed engine.
    let store = TestStore::new();
    let (client, server) = pair_with(store.clone(), &Limits::default()).await;
    client.put(b"a", b"1").await.unwrap();
    store.close().await.unwrap();
    let err = client.put(b"b", b"2").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaderLost);
    assert_eq!(
        bounded(server).await.unwrap().unwrap_err().kind(),
        ErrorKind::Closed
    );
}

#[tokio::test]
async fn close_fails_everything_with_closed_and_ends_the_connection() {
    let store = TestStore::filled(100).await;
    let limits = window(4);
    let (client, server) = pair_with(store.clone(), &limits).await;
    let mut iter = client.iterator(Range::all()).await.unwrap();
    let hanging = {
        let client = client.clone();
        tokio::spawn(async move { client.get(b"!hang").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.close().await.unwrap();
    client.close().await.unwrap();
    assert_eq!(
        bounded(hanging).await.unwrap().unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(
        client.get(b"a").await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(
        iter.next_chunk(1).await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert!(!client.is_connected());
    bounded(client.disconnected()).await;
    // The server sees the follower leave and releases everything.
    bounded(server).await.unwrap().unwrap();
    until(|| store.live_iters() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_ends_the_connection() {
    let store = TestStore::filled(100).await;
    let limits = window(4);
    let (client, server) = pair_with(store.clone(), &limits).await;
    let clone = client.clone();
    let iter = client.iterator(Range::all()).await.unwrap();
    drop(client);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!server.is_finished(), "a clone is still alive");
    drop(clone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!server.is_finished(), "an iterator is still alive");
    assert_eq!(store.live_iters(), 1);
    drop(iter);
    // The client's tasks end and close the socket: the server sees EOF and ends its tasks.
    bounded(server).await.unwrap().unwrap();
    assert_eq!(store.live_iters(), 0);
}

#[tokio::test]
async fn a_vanished_follower_releases_its_requests_and_iterators() {
    let store = TestStore::filled(100).await;
    let limits = window(4);
    let (a, server) = serve_pair(store.clone(), &limits);
    let mut raw = Raw::new(a, &limits);
    raw.hello().await;
    for iter in 0..5 {
        raw.send(&ClientMessage::IterOpen {
            iter,
            range: Range::all(),
            credit: 2,
        })
        .await;
    }
    raw.send(&ClientMessage::Request {
        id: 1,
        op: crate::wire::Op::Get {
            key: b"!hang".to_vec(),
        },
    })
    .await;
    until(|| store.live_iters() == 5).await;
    drop(raw);
    bounded(server).await.unwrap().unwrap();
    assert_eq!(store.live_iters(), 0);
}

#[tokio::test]
async fn a_connection_future_dropped_mid_flight_leaves_nothing_behind() {
    let store = TestStore::filled(100).await;
    let limits = window(4);
    let (a, server) = serve_pair(store.clone(), &limits);
    let (client, _) = bounded(Client::connect(a, limits.clone())).await.unwrap();
    let _iter = client.iterator(Range::all()).await.unwrap();
    assert_eq!(store.live_iters(), 1);
    server.abort();
    bounded(client.disconnected()).await;
    until(|| store.live_iters() == 0).await;
}

#[tokio::test]
async fn a_probe_that_connects_and_leaves_is_not_an_error() {
    let (a, server) = serve_pair(TestStore::new(), &Limits::default());
    drop(a);
    bounded(server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_whose_runtime_is_gone_fails_instead_of_hanging() {
    let (a, server) = serve_pair(TestStore::new(), &Limits::default());
    let a = a.into_std().unwrap();
    // Connect on a runtime of its own, which then shuts down with the client's tasks on it.
    let client = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let stream = UnixStream::from_std(a).unwrap();
            let (client, _) = Client::connect(stream, Limits::default()).await.unwrap();
            client.ping().await.unwrap();
            client
        })
    })
    .await
    .unwrap();
    assert!(!client.is_connected());
    let err = bounded(client.get(b"a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaderLost);
    bounded(client.disconnected()).await;
    drop(client);
    bounded(server).await.unwrap().unwrap();
}
