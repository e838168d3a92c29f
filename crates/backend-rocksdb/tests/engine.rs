//! RocksDB-specific behaviour of the engine: bounds, snapshots, damaged files, directory checks.
//! The shared behaviour suite lives in `tests/conformance.rs`.

use std::fs;
use std::path::Path;

use rave_api::engine_thread::EngineStore;
use rave_api::{
    Backend, BatchOp, Capabilities, Entry, Error, ErrorKind, KvStore, OpenOptions, Range,
};
use rave_backend_rocksdb::RocksDbBackend;

async fn try_open(path: &Path, options: OpenOptions) -> Result<EngineStore, Error> {
    let path = path.to_path_buf();
    // `Backend::open` blocks: keep it off the runtime, as real callers must.
    tokio::task::spawn_blocking(move || RocksDbBackend.open(&path, &options))
        .await
        .expect("the open task panicked")
}

async fn open(path: &Path) -> EngineStore {
    match try_open(path, OpenOptions::default()).await {
        Ok(store) => store,
        Err(e) => panic!("open {}: {e}", path.display()),
    }
}

async fn open_err(path: &Path, options: OpenOptions) -> Error {
    match try_open(path, options).await {
        Ok(_) => panic!("{} opened but should not have", path.display()),
        Err(e) => e,
    }
}

async fn keys(store: &EngineStore, range: Range) -> Vec<Vec<u8>> {
    let mut iter = store.iterator(range).await.unwrap();
    iter.collect_all()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect()
}

fn no_create() -> OpenOptions {
    OpenOptions {
        create_if_missing: false,
        ..OpenOptions::default()
    }
}

/// Files in `dir` whose names start with `prefix`.
fn files_starting_with(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn names_itself_and_offers_everything() {
    assert_eq!(RocksDbBackend.name(), "rocksdb");
    assert_eq!(RocksDbBackend::new().capabilities(), Capabilities::full());
}

#[tokio::test]
async fn round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let store = open(&dir).await;
    assert_eq!(store.get(b"missing").await.unwrap(), None);
    store.put(b"a", b"1").await.unwrap();
    store.put(b"", b"empty key").await.unwrap();
    store.put(b"empty value", b"").await.unwrap();
    store.put(b"\x00\xff", b"\xff\x00").await.unwrap();
    assert_eq!(store.get(b"a").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(
        store.get(b"").await.unwrap().as_deref(),
        Some(&b"empty key"[..])
    );
    assert_eq!(
        store.get(b"empty value").await.unwrap().as_deref(),
        Some(&b""[..])
    );
    assert_eq!(
        store.get(b"\x00\xff").await.unwrap().as_deref(),
        Some(&b"\xff\x00"[..])
    );
    store.put(b"a", b"2").await.unwrap();
    assert_eq!(store.get(b"a").await.unwrap().as_deref(), Some(&b"2"[..]));
    store.del(b"a").await.unwrap();
    store.del(b"never there").await.unwrap();
    assert_eq!(store.get(b"a").await.unwrap(), None);

    store
        .batch(vec![
            BatchOp::put("x", "1"),
            BatchOp::put("y", "2"),
            BatchOp::del("x"),
            BatchOp::put("z", "3"),
        ])
        .await
        .unwrap();
    let got = store
        .get_many(&[
            b"x".to_vec(),
            b"y".to_vec(),
            b"".to_vec(),
            b"z".to_vec(),
            b"q".to_vec(),
        ])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            None,
            Some(b"2".to_vec()),
            Some(b"empty key".to_vec()),
            Some(b"3".to_vec()),
            None
        ]
    );
    let big = vec![0xabu8; 1 << 20];
    store.put(b"big", &big).await.unwrap();
    assert_eq!(store.get(b"big").await.unwrap(), Some(big));
    store.close().await.unwrap();
    store.close().await.unwrap();
    assert_eq!(store.get(b"y").await.unwrap_err().kind(), ErrorKind::Closed);
}

/// Keys around every edge the bounds can hit: the empty key, 0x00 and 0xff bytes, a key and its
/// immediate successor.
const KEYS: &[&[u8]] = &[
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x01",
    b"a",
    b"a\x00",
    b"a\x00\x01",
    b"ab",
    b"a\xff",
    b"b",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
    b"\xff\xff\xff",
];

/// Bound candidates: stored keys and keys that are missing (between and beyond them).
const BOUNDS: &[&[u8]] = &[
    b"",
    b"\x00",
    b"\x00\x01",
    b"a",
    b"a\x00",
    b"a\x00\x00",
    b"aa",
    b"ab",
    b"c",
    b"\xff",
    b"\xff\x01",
    b"\xff\xff",
    b"\xff\xff\xff\xff",
];

async fn filled(dir: &Path) -> EngineStore {
    let store = open(dir).await;
    let ops = KEYS
        .iter()
        .map(|k| BatchOp::put(k.to_vec(), [b"v:".as_slice(), k].concat()))
        .collect();
    store.batch(ops).await.unwrap();
    store
}

fn expected(range: &Range) -> Vec<Vec<u8>> {
    let mut want: Vec<Vec<u8>> = KEYS
        .iter()
        .filter(|k| range.contains(k))
        .map(|k| k.to_vec())
        .collect();
    want.sort();
    if range.reverse {
        want.reverse();
    }
    if let Some(limit) = range.limit {
        want.truncate(limit as usize);
    }
    want
}

#[tokio::test]
async fn ranges_honour_every_bound_in_both_directions() {
    let tmp = tempfile::tempdir().unwrap();
    let store = filled(&tmp.path().join("db")).await;

    // A few spelled out, so the check does not rest on `Range::contains` alone.
    let k = |s: &[&[u8]]| s.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
    assert_eq!(
        keys(&store, Range::all().gt("a").lt("b")).await,
        k(&[b"a\x00", b"a\x00\x01", b"ab", b"a\xff"])
    );
    assert_eq!(
        keys(&store, Range::all().gte("a").lte("ab")).await,
        k(&[b"a", b"a\x00", b"a\x00\x01", b"ab"])
    );
    assert_eq!(
        keys(&store, Range::all().gt("a").lte("ab").reverse()).await,
        k(&[b"ab", b"a\x00\x01", b"a\x00"])
    );
    assert_eq!(
        keys(&store, Range::all().gte("a").lt("ab").reverse()).await,
        k(&[b"a\x00\x01", b"a\x00", b"a"])
    );
    assert_eq!(
        keys(&store, Range::all().lte("").reverse()).await,
        k(&[b""])
    );
    assert_eq!(keys(&store, Range::all().lt(b"\x00")).await, k(&[b""]));
    assert_eq!(
        keys(&store, Range::all().gt(b"\xff\xff")).await,
        k(&[b"\xff\xff\xff"])
    );
    assert_eq!(
        keys(&store, Range::all().gte(b"\xff").reverse().limit(2)).await,
        k(&[b"\xff\xff\xff", b"\xff\xff"])
    );
    assert_eq!(
        keys(&store, Range::all().gt("a").lt(b"a\x00")).await,
        Vec::<Vec<u8>>::new()
    );
    assert_eq!(keys(&store, Range::all()).await.len(), KEYS.len());

    // Then every combination of bound kinds over stored and missing keys.
    let mut checked = 0;
    for lo in BOUNDS {
        for hi in BOUNDS {
            for (lower_inclusive, upper_inclusive) in
                [(true, true), (true, false), (false, true), (false, false)]
            {
                for reverse in [false, true] {
                    let mut range = Range::all();
                    range = if lower_inclusive {
                        range.gte(*lo)
                    } else {
                        range.gt(*lo)
                    };
                    range = if upper_inclusive {
                        range.lte(*hi)
                    } else {
                        range.lt(*hi)
                    };
                    if reverse {
                        range = range.reverse();
                    }
                    assert_eq!(
                        keys(&store, range.clone()).await,
                        expected(&range),
                        "{range:?}"
                    );
                    checked += 1;
                }
            }
        }
        // One-sided ranges, with a limit.
        for reverse in [false, true] {
            for range in [
                Range::all().gte(*lo),
                Range::all().gt(*lo),
                Range::all().lte(*lo),
                Range::all().lt(*lo),
                Range::all().gt(*lo).limit(3),
                Range::all().lte(*lo).limit(1),
            ] {
                let range = if reverse { range.reverse() } else { range };
                assert_eq!(
                    keys(&store, range.clone()).await,
                    expected(&range),
                    "{range:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 1000);

    // Both bounds of one kind at once: the stricter wins.
    let range = Range::all()
        .gt("a")
        .gte(b"a\x00\x01")
        .lt("b")
        .lte("ab")
        .reverse();
    assert_eq!(keys(&store, range.clone()).await, expected(&range));
    assert_eq!(keys(&store, range).await, k(&[b"ab", b"a\x00\x01"]));
    store.close().await.unwrap();
}

#[tokio::test]
async fn projections_and_clear_follow_the_range() {
    let tmp = tempfile::tempdir().unwrap();
    let store = filled(&tmp.path().join("db")).await;
    let mut iter = store
        .iterator(Range::prefix("a").values_only())
        .await
        .unwrap();
    let values = iter.collect_all().await.unwrap();
    assert_eq!(
        values.first(),
        Some(&Entry::new(Vec::new(), b"v:a".to_vec()))
    );
    assert_eq!(values.len(), 5);
    let mut iter = store
        .iterator(Range::prefix(b"\xff").keys_only().reverse())
        .await
        .unwrap();
    assert_eq!(
        iter.next().await.unwrap(),
        Some(Entry::new(b"\xff\xff\xff".to_vec(), Vec::new()))
    );

    // The two highest keys below "b", then everything up to and including the empty key.
    store
        .clear(Range::all().lt("b").reverse().limit(2))
        .await
        .unwrap();
    assert_eq!(store.get(b"ab").await.unwrap(), None);
    assert_eq!(store.get(b"a\xff").await.unwrap(), None);
    assert!(store.get(b"a\x00\x01").await.unwrap().is_some());
    store.clear(Range::all().lte("")).await.unwrap();
    assert_eq!(store.get(b"").await.unwrap(), None);
    assert!(store.get(b"\x00").await.unwrap().is_some());
    store.close().await.unwrap();
}

#[tokio::test]
async fn iterators_read_the_snapshot_taken_at_creation() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(&tmp.path().join("db")).await;
    for i in 0..100u32 {
        store
            .put(format!("k{i:03}").as_bytes(), b"old")
            .await
            .unwrap();
    }
    let mut forward = store.iterator(Range::all()).await.unwrap();
    let mut backward = store.iterator(Range::all().reverse()).await.unwrap();
    let first = forward.next_chunk(10).await.unwrap();
    assert_eq!(first.len(), 10);

    // Change everything: new keys at both ends, deletions, overwrites.
    store.put(b"a-new", b"new").await.unwrap();
    store.put(b"z-new", b"new").await.unwrap();
    store.del(b"k050").await.unwrap();
    store.del(b"k099").await.unwrap();
    store.put(b"k020", b"new").await.unwrap();
    store
        .clear(Range::all().gte("k060").lt("k070"))
        .await
        .unwrap();

    let rest = forward.collect_all().await.unwrap();
    let all_backward = backward.collect_all().await.unwrap();
    assert_eq!(first.len() + rest.len(), 100);
    assert_eq!(all_backward.len(), 100);
    for entry in first.iter().chain(&rest).chain(&all_backward) {
        assert_eq!(
            entry.value,
            b"old",
            "{:?}",
            String::from_utf8_lossy(&entry.key)
        );
        assert!(entry.key.starts_with(b"k"));
    }
    assert_eq!(all_backward[0].key, b"k099");

    // A new iterator sees the new state.
    let now = keys(&store, Range::all()).await;
    assert_eq!(now.len(), 100 + 2 - 2 - 10);
    assert_eq!(now.first().map(Vec::as_slice), Some(&b"a-new"[..]));
    assert_eq!(now.last().map(Vec::as_slice), Some(&b"z-new"[..]));
    drop(forward);
    drop(backward);
    store.close().await.unwrap();
}

#[tokio::test]
async fn reopening_keeps_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let store = open(&dir).await;
    store.put(b"kept", b"yes").await.unwrap();
    store.put(b"gone", b"no").await.unwrap();
    store.del(b"gone").await.unwrap();
    store.close().await.unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("rave-engine")).unwrap().trim(),
        "rocksdb"
    );

    // The database files are in the directory itself.
    assert!(dir.join("CURRENT").is_file());
    assert!(!files_starting_with(&dir, "OPTIONS-").is_empty());

    let store = match try_open(&dir, no_create()).await {
        Ok(store) => store,
        Err(e) => panic!("reopen: {e}"),
    };
    assert_eq!(
        store.get(b"kept").await.unwrap().as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(store.get(b"gone").await.unwrap(), None);
    store.put(b"second", b"session").await.unwrap();
    store.close().await.unwrap();

    let sync = OpenOptions {
        sync: true,
        ..OpenOptions::default()
    };
    let store = match try_open(&dir, sync).await {
        Ok(store) => store,
        Err(e) => panic!("reopen with sync: {e}"),
    };
    assert_eq!(
        keys(&store, Range::all()).await,
        vec![b"kept".to_vec(), b"second".to_vec()]
    );
    store.put(b"synced", b"1").await.unwrap();
    store.close().await.unwrap();
    let store = open(&dir).await;
    assert_eq!(
        store.get(b"synced").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn dropping_the_store_releases_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let store = open(&dir).await;
    store.put(b"k", b"v").await.unwrap();
    drop(store);
    // The engine thread closes the database once every handle is gone; reopening may race it
    // for RocksDB's LOCK briefly.
    let mut attempts = 0;
    let store = loop {
        match try_open(&dir, OpenOptions::default()).await {
            Ok(store) => break store,
            Err(e) if attempts < 100 => {
                assert_eq!(e.kind(), ErrorKind::Io, "{e}");
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the directory was never released: {e}"),
        }
    };
    assert_eq!(store.get(b"k").await.unwrap().as_deref(), Some(&b"v"[..]));
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_second_open_of_a_busy_directory_says_it_is_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let store = open(&dir).await;
    let err = open_err(&dir, OpenOptions::default()).await;
    assert!(
        matches!(
            err,
            Error::Io {
                kind: std::io::ErrorKind::ResourceBusy,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("in use"), "{err}");
    // The failed open did not disturb the first one.
    store.put(b"still", b"works").await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn open_options_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let err = open_err(&dir, no_create()).await;
    assert_eq!(err.kind(), ErrorKind::DoesNotExist, "{err}");
    assert!(
        !dir.exists(),
        "a refused open must not create the directory"
    );

    open(&dir).await.close().await.unwrap();
    let exclusive = OpenOptions {
        error_if_exists: true,
        ..OpenOptions::default()
    };
    let err = open_err(&dir, exclusive.clone()).await;
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let fresh = tmp.path().join("fresh");
    match try_open(&fresh, exclusive).await {
        Ok(store) => store.close().await.unwrap(),
        Err(e) => panic!("error_if_exists on a new directory: {e}"),
    }

    // The engine record is there but RocksDB's files are not (say, a crash during the first
    // open): RocksDB itself reports the missing database, typed the same way.
    let recorded = tmp.path().join("recorded");
    fs::create_dir(&recorded).unwrap();
    fs::write(recorded.join("rave-engine"), "rocksdb\n").unwrap();
    let err = open_err(&recorded, no_create()).await;
    assert_eq!(err.kind(), ErrorKind::DoesNotExist, "{err}");
    let store = open(&recorded).await;
    store.put(b"k", b"v").await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_regular_file_is_not_a_database() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, b"not a directory").unwrap();
    let err = open_err(&file, OpenOptions::default()).await;
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(fs::read(&file).unwrap(), b"not a directory");
}

#[tokio::test]
async fn another_engines_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[u8], &str)] = &[
        ("recorded-redb", "rave-engine", b"redb\n", "redb"),
        ("recorded-leveldb", "rave-engine", b"leveldb\n", "leveldb"),
        ("plain-redb", "data.redb", b"", "redb"),
        // A plain LevelDB directory: CURRENT without RocksDB's OPTIONS or IDENTITY files.
        ("plain-leveldb", "CURRENT", b"MANIFEST-000001\n", "leveldb"),
    ];
    for (name, file, contents, found) in cases {
        let dir = tmp.path().join(name);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(file), contents).unwrap();
        let err = open_err(&dir, OpenOptions::default()).await;
        match &err {
            Error::WrongEngine {
                expected,
                found: actual,
                ..
            } => {
                assert_eq!(expected, "rocksdb");
                assert_eq!(actual, found);
            }
            other => panic!("{name}: expected WrongEngine, got {other:?}"),
        }
        // Nothing of RocksDB's was written there.
        assert!(files_starting_with(&dir, "OPTIONS-").is_empty(), "{name}");
        assert!(!dir.join("LOCK").exists(), "{name}");
    }
}

/// A database with some data, closed, ready to be damaged.
async fn closed_database(dir: &Path) {
    let store = open(dir).await;
    for i in 0..50u32 {
        store
            .put(format!("key{i}").as_bytes(), &[i as u8; 100])
            .await
            .unwrap();
    }
    store.close().await.unwrap();
}

fn assert_damaged(err: &Error) {
    assert!(
        matches!(err.kind(), ErrorKind::Corruption | ErrorKind::Io),
        "expected Corruption or Io, got {err:?}"
    );
    assert!(err.to_string().contains("rocksdb"), "{err}");
}

#[tokio::test]
async fn garbage_in_current_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, garbage) in [
        ("no-newline", &b"\x00\x01garbage"[..]),
        ("not-a-manifest", &b"garbage\n"[..]),
        ("missing-manifest", &b"MANIFEST-999999\n"[..]),
        ("empty", &b""[..]),
    ] {
        let dir = tmp.path().join(name);
        closed_database(&dir).await;
        fs::write(dir.join("CURRENT"), garbage).unwrap();
        let err = open_err(&dir, OpenOptions::default()).await;
        eprintln!("{name}: {err}");
        assert_damaged(&err);
        assert_eq!(err.kind(), ErrorKind::Corruption, "{name}: {err}");
    }
}

#[tokio::test]
async fn a_truncated_manifest_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    closed_database(&dir).await;
    let manifests = files_starting_with(&dir, "MANIFEST-");
    let manifest = manifests.last().expect("a MANIFEST file");
    let len = fs::metadata(manifest).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(manifest).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    let err = open_err(&dir, OpenOptions::default()).await;
    eprintln!("truncated MANIFEST: {err}");
    assert_damaged(&err);
}

#[tokio::test]
async fn a_missing_table_file_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    closed_database(&dir).await;
    // Reopening replays the WAL into a table file (.sst).
    open(&dir).await.close().await.unwrap();
    let table = files_starting_with(&dir, "0")
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .expect("a table file");
    fs::remove_file(&table).unwrap();
    let err = open_err(&dir, OpenOptions::default()).await;
    eprintln!("missing table: {err}");
    assert_damaged(&err);
}

#[tokio::test]
async fn a_damaged_table_file_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    closed_database(&dir).await;
    // Reopening replays the WAL into a table file (.sst).
    open(&dir).await.close().await.unwrap();
    let tables = files_starting_with(&dir, "0");
    let table = tables
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .expect("a table file");
    let mut bytes = fs::read(table).unwrap();
    // Flip the first half of the file, where the data blocks are, and keep its size (RocksDB
    // checks sizes at open): the first key's block is damaged for sure.
    let half = bytes.len() / 2;
    for b in &mut bytes[..half] {
        *b ^= 0x5a;
    }
    fs::write(table, &bytes).unwrap();

    match try_open(&dir, OpenOptions::default()).await {
        Err(err) => {
            eprintln!("damaged table, open: {err}");
            assert_damaged(&err);
        }
        Ok(store) => {
            let got = store.get(b"key0").await;
            let err = got.expect_err("a read of a damaged block must fail");
            eprintln!("damaged table, get: {err}");
            assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
            let mut iter = store.iterator(Range::all()).await.unwrap();
            let err = iter
                .collect_all()
                .await
                .expect_err("iterating a damaged table must fail");
            assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
            store.close().await.unwrap();
        }
    }
}
