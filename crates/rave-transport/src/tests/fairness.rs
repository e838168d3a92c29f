//! A connection answering a flood of requests inline must let the leader process's other tasks
//! run: requests already read are answered without any I/O, which spends none of tokio's
//! cooperative budget, so the connection task yields on purpose every few requests.

use std::sync::atomic::AtomicBool;

use super::*;
use crate::wire::Op;

/// Pings answered inline, all queued before the server starts; other tasks must get turns.
#[test]
fn a_flood_of_inline_answers_lets_other_tasks_run() {
    const REQUESTS: u64 = 50_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let limits = Limits::default();
        // Room for every request and every reply: nothing waits for the other side.
        let (client_end, server_end) = tokio::io::duplex(64 << 20);
        let mut client = Framed::new(client_end, limits.codec());
        client
            .feed(
                wire::encode(&ClientMessage::Hello {
                    magic: MAGIC,
                    version: PROTOCOL_VERSION,
                })
                .unwrap(),
            )
            .await
            .unwrap();
        for id in 0..REQUESTS {
            let request = ClientMessage::Request { id, op: Op::Ping };
            client.feed(wire::encode(&request).unwrap()).await.unwrap();
        }
        SinkExt::<Bytes>::flush(&mut client).await.unwrap();

        let turns = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let other = tokio::spawn({
            let (turns, stop) = (turns.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::SeqCst) {
                    turns.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            }
        });
        let server = tokio::spawn(serve_connection(
            server_end,
            TestStore::new(),
            INFO,
            limits.clone(),
        ));
        let mut answered = 0;
        while answered <= REQUESTS {
            let frame = client.next().await.unwrap().unwrap();
            match wire::decode::<ServerMessage>(&frame).unwrap() {
                ServerMessage::Welcome { .. } | ServerMessage::Response { .. } => answered += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        stop.store(true, Ordering::SeqCst);
        other.await.unwrap();
        let turns = turns.load(Ordering::SeqCst) as u64;
        // With a yield every 128 answers the other task gets about REQUESTS / 128 turns; a
        // connection that never yields between socket reads gives it a handful.
        assert!(
            turns * 1000 >= REQUESTS,
            "the other task ran {turns} times while {REQUESTS} requests were answered"
        );
        drop(client);
        let _ = server.await;
    });
}
