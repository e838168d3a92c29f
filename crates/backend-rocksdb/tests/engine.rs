//! What is specific to the RocksDB engine: its identity, where its files live, and its
//! damaged files (CURRENT, MANIFEST, tables). The behaviour every engine shares is checked by
//! rave-conformance in `tests/conformance.rs` (the behaviour suite and the engine contract).

use std::fs;
use std::path::Path;

use rave_api::engine_thread::EngineStore;
use rave_api::{Backend, Capabilities, Error, ErrorKind, KvStore, OpenOptions, Range};
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
    assert_eq!(
        RocksDbBackend::new().capabilities(),
        Capabilities::full()
            .with_concurrent_reads(true)
            .with_exactly_once(true)
            .with_watch(true)
            .with_conditional_writes(true)
    );
}

/// RocksDB's files go in the directory itself, next to the engine record, not in a
/// sub-directory (so that `rave_api::dir::detect` recognises a plain RocksDB directory).
#[tokio::test]
async fn the_database_files_are_in_the_directory_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let store = open(&dir).await;
    store.put(b"k", b"v").await.unwrap();
    store.close().await.unwrap();
    assert!(dir.join("CURRENT").is_file());
    assert!(!files_starting_with(&dir, "OPTIONS-").is_empty());
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
