//! What is specific to the LevelDB engine: its identity, its damaged files (CURRENT,
//! MANIFEST, tables, the log), and writes reaching the log. The behaviour every engine shares
//! is checked by rave-conformance in `tests/conformance.rs` (the behaviour suite and the engine
//! contract).

use std::collections::BTreeMap;
use std::path::Path;

use rave_api::{Backend, Error, ErrorKind, KvStore, OpenOptions};
use rave_backend_leveldb::{LevelDbBackend, LevelDbEngine};
use rave_conformance::{BackendHarness, Outcome, damage, shared_reads};

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

#[test]
fn backend_identity() {
    assert_eq!(LevelDbBackend.name(), "leveldb");
    assert_eq!(
        LevelDbBackend.capabilities(),
        rave_api::Capabilities::full()
            .with_concurrent_reads(true)
            .with_exactly_once(true)
            .with_watch(true)
            .with_conditional_writes(true)
    );
}

/// More than rusty-leveldb's 4 MiB write buffer, so that table files exist. Returns what it
/// wrote.
async fn fill(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let store = open(dir).unwrap();
    let written = damage::write_distinct(&store, 30, 1000).await.unwrap();
    store.close().await.unwrap();
    written
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

/// Whether a damage case may lose entries without an error.
enum Loss {
    Allowed,
    Refused,
}

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
    let harness = BackendHarness::new(LevelDbBackend);
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    let written = fill(&pristine).await;
    let tables = files_ending(&pristine, ".ldb");
    assert!(!tables.is_empty(), "the fill must write table files");
    // A damaged table must be refused, never read with entries missing: a table holds durable
    // data. A damaged log may lose what follows the damage (a torn tail).
    let mut cases = Vec::new();
    for table in &tables {
        let bytes = std::fs::read(table).unwrap();
        cases.push((
            table.clone(),
            bytes[..bytes.len() / 2].to_vec(),
            Loss::Refused,
        ));
        cases.push((table.clone(), Vec::new(), Loss::Refused));
        for at in [0, 100, bytes.len() / 2, bytes.len().saturating_sub(60)] {
            let mut damaged = bytes.clone();
            for b in damaged.iter_mut().skip(at).take(64) {
                *b = !*b;
            }
            cases.push((table.clone(), damaged, Loss::Refused));
        }
    }
    // A torn or damaged write-ahead log: recovery keeps what precedes the damage.
    for log in files_ending(&pristine, ".log") {
        let bytes = std::fs::read(&log).unwrap();
        cases.push((
            log.clone(),
            bytes[..bytes.len() / 3].to_vec(),
            Loss::Allowed,
        ));
        let mut damaged = bytes.clone();
        let mid = damaged.len() / 2;
        for b in damaged.iter_mut().skip(mid).take(100) {
            *b = !*b;
        }
        cases.push((log.clone(), damaged, Loss::Allowed));
    }
    for (i, (file, damaged, loss)) in cases.into_iter().enumerate() {
        let db = dir.path().join(format!("case-{i}"));
        copy_dir(&pristine, &db);
        let name = file.file_name().unwrap();
        std::fs::write(db.join(name), damaged).unwrap();
        let used = match loss {
            Loss::Refused => damage::use_damaged_losing_nothing(&harness, &db, &written).await,
            Loss::Allowed => damage::use_damaged(&harness, &db, &written).await,
        };
        if let Err(failure) = used {
            panic!("case {i}, {name:?}: {failure}");
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

/// A copy of the shared reader kept after the engine closed reads nothing and holds nothing:
/// the database it shares with the engine is closed with it, so the directory (and LevelDB's
/// LOCK) is free. Checked on `LevelDbEngine` itself: through the store no reader outlives the
/// close.
#[test]
fn a_leftover_shared_reader_holds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = shared_reads::leftover_reader_holds_nothing("leveldb", || {
        rave_api::dir::prepare(dir.path(), &OpenOptions::default(), "leveldb")?;
        LevelDbEngine::open(dir.path(), &OpenOptions::default())
    });
    assert_eq!(outcome, Ok(Outcome::Passed));
}
