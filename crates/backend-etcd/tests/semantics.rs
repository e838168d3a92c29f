//! How rave's semantics map onto etcd, one test per promise (crate docs, "How rave's semantics
//! map onto etcd"), on one-member clusters started by the tests.

use std::time::Duration;

use futures::StreamExt;
use rave_api::{
    BatchOp, Change, ClientId, ErrorKind, KvStore, Range, WatchEvent, Write, WriteStamp,
};
use rave_backend_etcd::testing::{ClusterOptions, EtcdCluster};
use rave_backend_etcd::{EtcdOptions, EtcdStore};

async fn store(cluster: &EtcdCluster, namespace: &str) -> EtcdStore {
    let options = EtcdOptions {
        max_request_bytes: cluster.options().max_request_bytes,
        max_txn_ops: cluster.options().max_txn_ops,
        ..EtcdOptions::default()
    };
    EtcdStore::connect(&cluster.endpoints(), namespace.as_bytes(), options)
        .await
        .unwrap()
}

/// A cluster with etcd's default limits (128 operations, 1.5 MiB per request).
fn default_limits() -> EtcdCluster {
    EtcdCluster::start_with(
        1,
        ClusterOptions {
            max_request_bytes: 1024 * 1024 * 3 / 2,
            max_txn_ops: 128,
            ..ClusterOptions::default()
        },
    )
    .unwrap()
}

/// The empty key is a key; on the wire it is the namespace's `k` tag, non-empty, and two
/// namespaces, one a prefix of the other, never see each other's keys.
#[tokio::test]
async fn empty_key_and_namespaces() {
    let cluster = EtcdCluster::start(1).unwrap();
    let a = store(&cluster, "app").await;
    let ab = store(&cluster, "app2").await;
    a.put(b"", b"empty").await.unwrap();
    ab.put(b"x", b"1").await.unwrap();
    assert_eq!(a.get(b"").await.unwrap(), Some(b"empty".to_vec()));
    assert_eq!(ab.get(b"").await.unwrap(), None);
    let all = a
        .iterator(Range::all())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    let mut client = a.client();
    let raw = client.get(b"app\0k".to_vec(), None).await.unwrap();
    assert_eq!(
        raw.kvs()[0].value(),
        b"empty",
        "the empty key is stored as `app 0x00 k`"
    );
}

/// An iterator reads the revision of its first page; after that revision is compacted it
/// resumes after its last key at the current revision: no duplicate, no skip.
#[tokio::test]
async fn iterators_pin_a_revision_and_resume_after_compaction() {
    let cluster = EtcdCluster::start(1).unwrap();
    let db = store(&cluster, "iter").await;
    let ops: Vec<BatchOp> = (0..400)
        .map(|i| BatchOp::put(format!("k{i:04}"), "old"))
        .collect();
    db.batch(ops).await.unwrap();

    // Snapshot: writes after creation are not seen while the revision lives.
    let mut iter = db.iterator(Range::all()).await.unwrap();
    let first = iter.next_chunk(100).await.unwrap();
    db.put(b"k0399", b"new").await.unwrap();
    db.put(b"k0150", b"new").await.unwrap();
    let second = iter.next_chunk(100).await.unwrap();
    assert!(
        second.iter().all(|e| e.value == b"old"),
        "the snapshot holds"
    );

    // Compact past the pinned revision: the next page cannot read it and resumes unpinned.
    let now = i64::try_from(db.sequence().await.unwrap()).unwrap();
    db.client().compact(now, None).await.unwrap();
    db.put(b"k0300", b"after compaction").await.unwrap();
    let rest = iter.collect_all().await.unwrap();
    let keys: Vec<Vec<u8>> = first
        .iter()
        .chain(&second)
        .chain(&rest)
        .map(|e| e.key.clone())
        .collect();
    let expected: Vec<Vec<u8>> = (0..400).map(|i| format!("k{i:04}").into_bytes()).collect();
    assert_eq!(
        keys, expected,
        "no key repeated or skipped across the compaction"
    );
    let after = |k: &str| {
        rest.iter()
            .find(|e| e.key == k.as_bytes())
            .unwrap()
            .value
            .clone()
    };
    assert_eq!(
        after("k0300"),
        b"after compaction",
        "resumed at the current revision"
    );
    assert_eq!(after("k0399"), b"new");
}

/// A batch is one transaction: duplicates merged (last wins); beyond 123 distinct keys
/// (128 - rave's 5, nested transactions counted) or the request size it fails with InvalidArgument naming the limit,
/// and nothing of it is applied.
#[tokio::test]
async fn batches_within_and_beyond_the_limits() {
    let cluster = default_limits();
    let limits = EtcdOptions {
        max_request_bytes: cluster.options().max_request_bytes,
        max_txn_ops: 128,
        ..EtcdOptions::default()
    };
    let db = EtcdStore::connect(&cluster.endpoints(), b"batch", limits.clone())
        .await
        .unwrap();
    db.batch(vec![
        BatchOp::put("a", "1"),
        BatchOp::del("a"),
        BatchOp::put("a", "2"),
        BatchOp::del("b"),
    ])
    .await
    .unwrap();
    assert_eq!(db.get(b"a").await.unwrap(), Some(b"2".to_vec()));

    let fits: Vec<BatchOp> = (0..123)
        .map(|i| BatchOp::put(format!("f{i}"), "v"))
        .collect();
    db.batch(fits).await.unwrap();
    let too_many: Vec<BatchOp> = (0..124)
        .map(|i| BatchOp::put(format!("t{i}"), "v"))
        .collect();
    let err = db.batch(too_many).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("128 operations"), "{err}");
    assert_eq!(db.get(b"t0").await.unwrap(), None, "nothing applied");

    let big = vec![0u8; 1 << 20];
    let too_big = vec![
        BatchOp::put("b1", big.clone()),
        BatchOp::put("b2", big.clone()),
    ];
    let err = db.batch(too_big.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("--max-request-bytes"), "{err}");
    assert_eq!(db.get(b"b1").await.unwrap(), None, "nothing applied");

    // A store that believes the server allows more is refused by the server itself: the same
    // typed error, and still nothing applied.
    let optimistic = EtcdOptions {
        max_request_bytes: 64 << 20,
        max_txn_ops: 100_000,
        ..limits
    };
    let db2 = EtcdStore::connect(&cluster.endpoints(), b"batch", optimistic)
        .await
        .unwrap();
    let err = db2.batch(too_big).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("--max-request-bytes"), "{err}");
    let many: Vec<BatchOp> = (0..200)
        .map(|i| BatchOp::put(format!("m{i}"), "v"))
        .collect();
    let err = db2.batch(many).await.unwrap_err();
    assert!(
        err.to_string().contains("operations per transaction"),
        "{err}"
    );
    assert_eq!(db2.get(b"b1").await.unwrap(), None);
    assert_eq!(db2.get(b"m0").await.unwrap(), None);
}

/// A write re-sent with its stamp is applied once; one below the handle's floor is refused;
/// the sequence is the revision of the namespace's last write and ignores other namespaces.
#[tokio::test]
async fn stamped_writes_apply_once_and_the_sequence_is_per_namespace() {
    let cluster = EtcdCluster::start(1).unwrap();
    let db = store(&cluster, "once").await;
    let other = store(&cluster, "elsewhere").await;
    let client = ClientId::random();
    let stamp = |seq, floor| WriteStamp { client, seq, floor };
    let incr = Write::Batch(vec![BatchOp::put("n", "1")]);
    db.write_stamped(stamp(1, 1), incr.clone()).await.unwrap();
    db.put(b"n", b"2").await.unwrap();
    db.write_stamped(stamp(1, 1), incr.clone()).await.unwrap();
    assert_eq!(
        db.get(b"n").await.unwrap(),
        Some(b"2".to_vec()),
        "applied once"
    );
    db.write_stamped(stamp(5, 5), Write::Batch(vec![BatchOp::put("m", "5")]))
        .await
        .unwrap();
    let err = db.write_stamped(stamp(3, 3), incr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RetryRefused, "{err}");

    let seq = db.sequence().await.unwrap();
    other.put(b"x", b"y").await.unwrap();
    assert_eq!(
        db.sequence().await.unwrap(),
        seq,
        "other namespaces do not move it"
    );
    db.del(b"absent").await.unwrap();
    assert!(
        db.sequence().await.unwrap() > seq,
        "a write that changes nothing still counts"
    );
}

/// watch: the first item names the start; a batch arrives as one commit numbered by its
/// etcd revision; a start before etcd's compaction fails with Compacted, whose `oldest` works.
#[tokio::test]
async fn watch_on_etcd_watch() {
    let cluster = EtcdCluster::start(1).unwrap();
    let db = store(&cluster, "watch").await;
    db.put(b"a", b"0").await.unwrap();
    let from = db.sequence().await.unwrap();
    let mut stream = db.watch(Range::prefix("a"), Some(from)).await.unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        WatchEvent::Progress { sequence: from }
    );
    db.batch(vec![
        BatchOp::put("a1", "x"),
        BatchOp::put("b", "no"),
        BatchOp::del("a"),
    ])
    .await
    .unwrap();
    let seq = db.sequence().await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap();
    let WatchEvent::Commit(commit) = event.unwrap().unwrap() else {
        panic!("a commit")
    };
    assert_eq!(commit.sequence, seq);
    assert_eq!(commit.changes.len(), 2, "{commit:?}");
    assert!(commit.changes.contains(&Change::Del { key: b"a".to_vec() }));
    // Idle: a progress mark at or beyond the commit.
    let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap();
    assert!(
        matches!(event.unwrap().unwrap(), WatchEvent::Progress { sequence } if sequence >= seq)
    );

    db.put(b"a2", b"y").await.unwrap();
    let now = db.sequence().await.unwrap();
    db.client()
        .compact(i64::try_from(now).unwrap(), None)
        .await
        .unwrap();
    let err = match db.watch(Range::all(), Some(from)).await {
        Err(err) => err,
        Ok(_) => panic!("a compacted start must fail"),
    };
    assert_eq!(err.kind(), ErrorKind::Compacted);
    let oldest = err.watch_position().unwrap();
    let mut again = db.watch(Range::all(), Some(oldest)).await.unwrap();
    assert_eq!(
        again.next().await.unwrap().unwrap(),
        WatchEvent::Progress { sequence: oldest }
    );
    let event = tokio::time::timeout(Duration::from_secs(10), again.next())
        .await
        .unwrap();
    assert!(matches!(event.unwrap().unwrap(), WatchEvent::Commit(c) if c.sequence == now));
}

/// compare_and_swap: swaps only on the expected value (absent included) and reports the
/// value found otherwise.
#[tokio::test]
async fn compare_and_swap() {
    let cluster = EtcdCluster::start(1).unwrap();
    let db = store(&cluster, "cas").await;
    assert_eq!(
        db.compare_and_swap(b"k", None, Some(b"1")).await.unwrap(),
        Ok(())
    );
    assert_eq!(
        db.compare_and_swap(b"k", None, Some(b"2")).await.unwrap(),
        Err(Some(b"1".to_vec()))
    );
    assert_eq!(
        db.compare_and_swap(b"k", Some(b"1"), Some(b"2"))
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        db.compare_and_swap(b"k", Some(b"1"), None).await.unwrap(),
        Err(Some(b"2".to_vec()))
    );
    assert_eq!(
        db.compare_and_swap(b"k", Some(b"2"), None).await.unwrap(),
        Ok(())
    );
    assert_eq!(db.get(b"k").await.unwrap(), None);
    assert_eq!(
        db.compare_and_swap(b"k", Some(b"2"), None).await.unwrap(),
        Err(None)
    );
}

/// A limited clear removes exactly the keys it names, atomically with respect to writers.
#[tokio::test]
async fn limited_clear_is_exact() {
    let cluster = EtcdCluster::start(1).unwrap();
    let db = store(&cluster, "clear").await;
    let ops: Vec<BatchOp> = (0..10)
        .map(|i| BatchOp::put(format!("k{i}"), "v"))
        .collect();
    db.batch(ops).await.unwrap();
    db.clear(Range::all().reverse().limit(3)).await.unwrap();
    let keys: Vec<Vec<u8>> = db
        .entries()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    let expected: Vec<Vec<u8>> = (0..7).map(|i| format!("k{i}").into_bytes()).collect();
    assert_eq!(keys, expected);
}
