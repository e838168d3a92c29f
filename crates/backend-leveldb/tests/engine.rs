//! The LevelDB engine through its store: round trips, ranges, snapshots, errors, durability.

use std::path::Path;

use rave_api::{Backend, BatchOp, Entry, Error, ErrorKind, KvStore, OpenOptions, Range};
use rave_backend_leveldb::LevelDbBackend;
use rave_backend_redb::RedbBackend;

fn open(path: &Path) -> rave_api::Result<rave_api::engine_thread::EngineStore> {
    LevelDbBackend.open(path, &OpenOptions::default())
}

/// The error of an open that must fail.
fn refused<T>(result: rave_api::Result<T>) -> Error {
    match result {
        Ok(_) => panic!("the open succeeded"),
        Err(e) => e,
    }
}

async fn all(store: &impl KvStore, range: Range) -> Vec<Entry> {
    store
        .iterator(range)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
}

fn keys(entries: &[Entry]) -> Vec<&[u8]> {
    entries.iter().map(|e| e.key.as_slice()).collect()
}

#[test]
fn backend_identity() {
    assert_eq!(LevelDbBackend.name(), "leveldb");
    assert_eq!(
        LevelDbBackend.capabilities(),
        rave_api::Capabilities::full()
    );
}

#[tokio::test]
async fn round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    assert_eq!(store.get(b"missing").await.unwrap(), None);
    store.put(b"k", b"v").await.unwrap();
    assert_eq!(store.get(b"k").await.unwrap(), Some(b"v".to_vec()));
    store.put(b"k", b"w").await.unwrap();
    assert_eq!(store.get(b"k").await.unwrap(), Some(b"w".to_vec()));
    // The empty key and the empty value are valid.
    store.put(b"", b"").await.unwrap();
    assert_eq!(store.get(b"").await.unwrap(), Some(Vec::new()));
    let big = vec![0xabu8; 3 << 20];
    store.put(b"big", &big).await.unwrap();
    assert_eq!(store.get(b"big").await.unwrap(), Some(big));
    store.del(b"k").await.unwrap();
    store.del(b"never-there").await.unwrap();
    assert_eq!(store.get(b"k").await.unwrap(), None);
    store
        .batch(vec![
            BatchOp::put("a", "1"),
            BatchOp::put("b", "2"),
            BatchOp::del("a"),
            BatchOp::put("c", "3"),
        ])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_many(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"".to_vec()])
            .await
            .unwrap(),
        vec![
            None,
            Some(b"2".to_vec()),
            Some(b"3".to_vec()),
            Some(Vec::new())
        ]
    );
    store.close().await.unwrap();
    store.close().await.unwrap();
    assert_eq!(store.get(b"b").await.unwrap_err().kind(), ErrorKind::Closed);
}

#[tokio::test]
async fn ranges_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let present: [&[u8]; 6] = [b"", b"a", b"b", b"b\0", b"c", b"\xff\xff"];
    store
        .batch(
            present
                .iter()
                .map(|k| BatchOp::put(*k, [b"v", *k].concat()))
                .collect(),
        )
        .await
        .unwrap();
    // Bounds on existing keys, on keys between them, below and above all of them.
    let bounds: [&[u8]; 8] = [b"", b"a", b"aa", b"b", b"b\0", b"bb", b"c", b"\xff\xff\xff"];
    let mut checked = 0;
    for reverse in [false, true] {
        for lower in 0..3 {
            for upper in 0..3 {
                for lo in bounds {
                    for hi in bounds {
                        let mut range = Range::all();
                        match lower {
                            1 => range = range.gt(lo),
                            2 => range = range.gte(lo),
                            _ => {}
                        }
                        match upper {
                            1 => range = range.lt(hi),
                            2 => range = range.lte(hi),
                            _ => {}
                        }
                        if reverse {
                            range = range.reverse();
                        }
                        let mut want: Vec<&[u8]> = present
                            .iter()
                            .copied()
                            .filter(|k| range.contains(k))
                            .collect();
                        if reverse {
                            want.reverse();
                        }
                        let got = all(&store, range.clone()).await;
                        assert_eq!(keys(&got), want, "{range:?}");
                        for entry in &got {
                            assert_eq!(entry.value, [b"v", entry.key.as_slice()].concat());
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 1000);
    // Limits and projections (applied by the engine thread, on top of the engine's order).
    let got = all(&store, Range::all().reverse().limit(2).keys_only()).await;
    assert_eq!(
        got,
        vec![
            Entry::new(b"\xff\xff".to_vec(), vec![]),
            Entry::new("c", vec![])
        ]
    );
    let got = all(&store, Range::all().gt("a").limit(1).values_only()).await;
    assert_eq!(got, vec![Entry::new(vec![], "vb")]);
}

#[tokio::test]
async fn iterators_read_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    for i in 0..100u8 {
        store.put(&[i], b"old").await.unwrap();
    }
    let mut forward = store.iterator(Range::all()).await.unwrap();
    let mut backward = store.iterator(Range::all().reverse()).await.unwrap();
    let head = forward.next_chunk(10).await.unwrap();
    assert_eq!(head.len(), 10);
    // Writes after the iterators were created: an insert at both ends, deletes, overwrites.
    store.put(b"\xff", b"new").await.unwrap();
    store.put(b"", b"new").await.unwrap();
    for i in 0..100u8 {
        if i % 2 == 0 {
            store.del(&[i]).await.unwrap();
        } else {
            store.put(&[i], b"new").await.unwrap();
        }
    }
    let mut seen = head;
    seen.extend(forward.collect_all().await.unwrap());
    assert_eq!(seen.len(), 100);
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, e)| e.key == [i as u8] && e.value == b"old")
    );
    let seen = backward.collect_all().await.unwrap();
    assert_eq!(seen.len(), 100);
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, e)| e.key == [99 - i as u8] && e.value == b"old")
    );
    // A new iterator sees the new state.
    assert_eq!(all(&store, Range::all()).await.len(), 52);
}

#[tokio::test]
async fn clear_removes_a_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    for k in ["a", "b", "c", "d"] {
        store.put(k.as_bytes(), b"v").await.unwrap();
    }
    store.clear(Range::all().gt("a").lte("c")).await.unwrap();
    assert_eq!(keys(&all(&store, Range::all()).await), vec![b"a", b"d"]);
    store.clear(Range::all().reverse().limit(1)).await.unwrap();
    assert_eq!(keys(&all(&store, Range::all()).await), vec![b"a"]);
}

#[tokio::test]
async fn reopening_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    for i in 0..1000u32 {
        store.put(&i.to_be_bytes(), &i.to_le_bytes()).await.unwrap();
    }
    store.del(&7u32.to_be_bytes()).await.unwrap();
    store.close().await.unwrap();
    let store = open(dir.path()).unwrap();
    assert_eq!(
        store.get(&8u32.to_be_bytes()).await.unwrap(),
        Some(8u32.to_le_bytes().to_vec())
    );
    assert_eq!(store.get(&7u32.to_be_bytes()).await.unwrap(), None);
    assert_eq!(all(&store, Range::all()).await.len(), 999);
    store.close().await.unwrap();
    // Without create_if_missing an existing database opens; error_if_exists refuses it.
    let existing = OpenOptions {
        create_if_missing: false,
        ..OpenOptions::default()
    };
    let store = LevelDbBackend.open(dir.path(), &existing).unwrap();
    store.close().await.unwrap();
    let exclusive = OpenOptions {
        error_if_exists: true,
        ..OpenOptions::default()
    };
    let err = refused(LevelDbBackend.open(dir.path(), &exclusive));
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
}

#[test]
fn missing_database_without_create_if_missing() {
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions {
        create_if_missing: false,
        ..OpenOptions::default()
    };
    let err = refused(LevelDbBackend.open(&dir.path().join("nothing"), &options));
    assert_eq!(err.kind(), ErrorKind::DoesNotExist);
    // A directory recorded as leveldb that holds no database (yet).
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    std::fs::write(db.join(rave_api::dir::ENGINE_FILE), "leveldb\n").unwrap();
    let err = refused(LevelDbBackend.open(&db, &options));
    assert_eq!(err.kind(), ErrorKind::DoesNotExist, "{err}");
}

#[test]
fn a_regular_file_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"hello").unwrap();
    let err = refused(open(&file));
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

#[tokio::test]
async fn other_engines_directories_are_refused_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let redb = dir.path().join("redb");
    let store = RedbBackend.open(&redb, &OpenOptions::default()).unwrap();
    store.put(b"k", b"v").await.unwrap();
    store.close().await.unwrap();
    match refused(open(&redb)) {
        Error::WrongEngine {
            found, expected, ..
        } => {
            assert_eq!(found, "redb");
            assert_eq!(expected, "leveldb");
        }
        other => panic!("expected WrongEngine, got {other:?}"),
    }
    let leveldb = dir.path().join("leveldb");
    open(&leveldb).unwrap().close().await.unwrap();
    let err = refused(RedbBackend.open(&leveldb, &OpenOptions::default()));
    assert_eq!(err.kind(), ErrorKind::WrongEngine);
    assert!(err.to_string().contains("leveldb"), "{err}");
}

#[tokio::test]
async fn a_second_handle_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path()).unwrap();
    let err = refused(open(dir.path()));
    match &err {
        Error::Io { kind, message } => {
            assert_eq!(*kind, std::io::ErrorKind::ResourceBusy);
            assert!(message.contains("in use"), "{message}");
        }
        other => panic!("expected an in-use error, got {other:?}"),
    }
    first.close().await.unwrap();
    open(dir.path()).unwrap().close().await.unwrap();
}

/// Opens a database whose files were damaged; it must fail with `Corruption` or, when
/// rusty-leveldb can still make sense of them, work: never panic, never another kind of error.
async fn open_damaged(dir: &Path) -> Option<Error> {
    let store = match open(dir) {
        Ok(store) => store,
        Err(e) => return Some(e),
    };
    let result = async {
        store.get(b"key-0").await?;
        store.iterator(Range::all()).await?.collect_all().await?;
        store
            .iterator(Range::all().reverse())
            .await?
            .collect_all()
            .await?;
        store.put(b"after", b"damage").await?;
        rave_api::Result::Ok(())
    }
    .await;
    let _ = store.close().await;
    result.err()
}

/// More than rusty-leveldb's 4 MiB write buffer, so that table files exist.
async fn fill(dir: &Path) {
    let store = open(dir).unwrap();
    for chunk in 0..30u32 {
        let ops = (0..1000u32)
            .map(|i| BatchOp::put(format!("key-{}", chunk * 1000 + i), vec![chunk as u8; 200]))
            .collect();
        store.batch(ops).await.unwrap();
    }
    store.close().await.unwrap();
}

fn files_named(dir: &Path, matches: impl Fn(&str) -> bool) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches(&p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    files_named(dir, |name| name.ends_with(suffix))
}

/// Copies `from` into a fresh directory `to` (a pristine database for each damage case).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

type Damage = fn(&Path);

#[tokio::test]
async fn a_garbage_current_or_manifest_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    fill(&pristine).await;
    let cases: [(&str, Damage); 4] = [
        ("CURRENT without a newline", |db| {
            std::fs::write(db.join("CURRENT"), b"garbage").unwrap()
        }),
        ("CURRENT naming a missing MANIFEST", |db| {
            std::fs::write(db.join("CURRENT"), b"MANIFEST-999999\n").unwrap()
        }),
        ("garbage MANIFEST", |db| {
            for manifest in files_named(db, |name| name.starts_with("MANIFEST-")) {
                std::fs::write(&manifest, vec![0x5au8; 10_000]).unwrap();
            }
        }),
        ("a table file deleted", |db| {
            std::fs::remove_file(&files_ending(db, ".ldb")[0]).unwrap();
        }),
    ];
    for (i, (what, damage)) in cases.iter().enumerate() {
        let db = dir.path().join(format!("case-{i}"));
        copy_dir(&pristine, &db);
        damage(&db);
        let err = refused(open(&db));
        assert_eq!(err.kind(), ErrorKind::Corruption, "{what}: {err}");
    }
}

#[tokio::test]
async fn damaged_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    fill(&pristine).await;
    let tables = files_ending(&pristine, ".ldb");
    assert!(!tables.is_empty(), "the fill must write table files");
    let mut cases = Vec::new();
    for table in &tables {
        let bytes = std::fs::read(table).unwrap();
        cases.push((table.clone(), bytes[..bytes.len() / 2].to_vec()));
        cases.push((table.clone(), Vec::new()));
        for at in [0, 100, bytes.len() / 2, bytes.len().saturating_sub(60)] {
            let mut damaged = bytes.clone();
            for b in damaged.iter_mut().skip(at).take(64) {
                *b = !*b;
            }
            cases.push((table.clone(), damaged));
        }
    }
    // A torn or damaged write-ahead log: recovery keeps what precedes the damage.
    for log in files_ending(&pristine, ".log") {
        let bytes = std::fs::read(&log).unwrap();
        cases.push((log.clone(), bytes[..bytes.len() / 3].to_vec()));
        let mut damaged = bytes.clone();
        let mid = damaged.len() / 2;
        for b in damaged.iter_mut().skip(mid).take(100) {
            *b = !*b;
        }
        cases.push((log.clone(), damaged));
    }
    for (i, (file, damaged)) in cases.into_iter().enumerate() {
        let db = dir.path().join(format!("case-{i}"));
        copy_dir(&pristine, &db);
        let name = file.file_name().unwrap();
        std::fs::write(db.join(name), damaged).unwrap();
        if let Some(err) = open_damaged(&db).await {
            assert_eq!(
                err.kind(),
                ErrorKind::Corruption,
                "case {i}, {name:?}: {err}"
            );
        }
        std::fs::remove_dir_all(&db).unwrap();
    }
}

/// An acknowledged write is in the write-ahead log file, where any other reader sees it, before
/// the store is closed: `write` flushed rusty-leveldb's userspace buffer into the OS (see
/// `LevelDbEngine::write`). The kill -9 test in `tests/crash.rs` proves the same end to end.
#[tokio::test]
async fn acknowledged_writes_are_in_the_log() {
    for sync in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let options = OpenOptions {
            sync,
            ..OpenOptions::default()
        };
        let store = LevelDbBackend.open(dir.path(), &options).unwrap();
        for i in 0..10u32 {
            let marker = format!("a-value-nobody-else-writes-{i}-{sync}");
            store.put(b"k", marker.as_bytes()).await.unwrap();
            let in_logs = files_ending(dir.path(), ".log").iter().any(|log| {
                let bytes = std::fs::read(log).unwrap();
                bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
            });
            assert!(in_logs, "write {i} (sync {sync}) is not in the log yet");
        }
        store.close().await.unwrap();
        let store = LevelDbBackend.open(dir.path(), &options).unwrap();
        assert_eq!(
            store.get(b"k").await.unwrap(),
            Some(format!("a-value-nobody-else-writes-9-{sync}").into_bytes())
        );
        store.close().await.unwrap();
    }
}

#[tokio::test]
async fn many_concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for w in 0..8u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u8 {
                store.put(&[w, i], &[i]).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(all(&*store, Range::all()).await.len(), 200);
    store.close().await.unwrap();
}

#[tokio::test]
async fn long_reverse_scans_come_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let ops = (0..5000u32)
        .map(|i| BatchOp::put(i.to_be_bytes().to_vec(), b"v".to_vec()))
        .collect();
    store.batch(ops).await.unwrap();
    let mut it = store
        .iterator(Range::all().gte(100u32.to_be_bytes().to_vec()).reverse())
        .await
        .unwrap();
    let mut expected = 4999u32;
    loop {
        let chunk = it.next_chunk(333).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 333);
        for entry in chunk {
            assert_eq!(entry.key, expected.to_be_bytes());
            expected -= 1;
        }
    }
    assert_eq!(expected, 99);
}
