//! What is specific to the redb engine: its identity, its busy-directory message, its damaged
//! data file, writes reaching that file, and its shared reader after close. The behaviour every
//! engine shares is checked by rave-conformance in `tests/conformance.rs` (the behaviour suite
//! and the engine contract, whose shared-read tests run here: redb has `concurrent_reads`).

use std::collections::BTreeMap;
use std::path::Path;

use rave_api::{Backend, Error, ErrorKind, KvStore, OpenOptions};
use rave_backend_redb::{DATA_FILE, RedbBackend, RedbEngine};
use rave_conformance::{BackendHarness, Outcome, damage, shared_reads};

fn open(path: &Path) -> rave_api::Result<rave_api::engine_thread::EngineStore> {
    RedbBackend.open(path, &OpenOptions::default())
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
    assert_eq!(RedbBackend.name(), "redb");
    assert_eq!(
        RedbBackend.capabilities(),
        rave_api::Capabilities::full()
            .with_concurrent_reads(true)
            .with_exactly_once(true)
            .with_watch(true)
            .with_conditional_writes(true)
    );
}

/// The engine contract checks the kind (`ResourceBusy`); this checks redb's words for it.
#[tokio::test]
async fn a_busy_directory_says_it_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path()).unwrap();
    let err = refused(open(dir.path()));
    assert!(err.to_string().contains("in use"), "{err}");
    first.close().await.unwrap();
}

/// Writes 1000 entries; returns them.
async fn fill(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let store = open(dir).unwrap();
    let written = damage::write_distinct(&store, 20, 50).await.unwrap();
    store.close().await.unwrap();
    written
}

#[tokio::test]
async fn garbage_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path()).await;
    let file = dir.path().join(DATA_FILE);
    std::fs::write(&file, vec![0x5a; 64 << 10]).unwrap();
    let err = refused(open(dir.path()));
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    // A short file (not even a header) too.
    std::fs::write(&file, b"not redb").unwrap();
    let err = refused(open(dir.path()));
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
}

#[tokio::test]
async fn damaged_files_never_panic() {
    let harness = BackendHarness::new(RedbBackend);
    let dir = tempfile::tempdir().unwrap();
    let written = fill(dir.path()).await;
    let file = dir.path().join(DATA_FILE);
    let pristine = std::fs::read(&file).unwrap();
    // The journal goes with the file it belongs to: each case starts from both as they were
    // (a case's own writes would otherwise be replayed into the next case's file).
    let journal = dir.path().join(rave_backend_redb::JOURNAL_FILE);
    let pristine_journal = std::fs::read(&journal).unwrap();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        (
            "truncated to half".into(),
            pristine[..pristine.len() / 2].to_vec(),
        ),
        ("truncated to 1000 bytes".into(), pristine[..1000].to_vec()),
    ];
    // Overwrite one stretch of the file at a time: the header, the middle, the end.
    for at in [0, 64, 512, 4096, pristine.len() / 2, pristine.len() - 4096] {
        let mut damaged = pristine.clone();
        for b in damaged.iter_mut().skip(at).take(512) {
            *b = !*b;
        }
        cases.push((format!("512 bytes flipped at {at}"), damaged));
    }
    for (what, bytes) in cases {
        std::fs::write(&file, &bytes).unwrap();
        std::fs::write(&journal, &pristine_journal).unwrap();
        if let Err(failure) =
            damage::use_damaged_losing_nothing(&harness, dir.path(), &written).await
        {
            panic!("{what}: {failure}");
        }
    }
}

/// A file written before values had checksums (bare values in the table `rave`) opens with
/// every entry; the open moves them, with checksums, into the engine's table and removes the
/// old one in the same commit, and they read the same afterwards.
#[tokio::test]
async fn a_file_from_before_checksums_is_migrated() {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
    const LEGACY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rave");
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).unwrap().close().await.unwrap();
    let file = dir.path().join(DATA_FILE);
    // Rewritten as the engine wrote it before: only the old table, bare values.
    std::fs::remove_file(&file).unwrap();
    let written: BTreeMap<Vec<u8>, Vec<u8>> = (0..500u32)
        .map(|n| {
            (
                format!("key-{n}").into_bytes(),
                format!("{n:08}").repeat(n as usize % 7).into_bytes(),
            )
        })
        .collect();
    {
        let db = redb::Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(LEGACY).unwrap();
            for (key, value) in &written {
                table.insert(key.as_slice(), value.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    for _ in 0..2 {
        // The second open finds nothing to move.
        let store = open(dir.path()).unwrap();
        let entries = store
            .iterator(rave_api::Range::all())
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        let read: BTreeMap<_, _> = entries.into_iter().map(|e| (e.key, e.value)).collect();
        assert_eq!(read, written);
        assert_eq!(
            store.get(b"key-6").await.unwrap(),
            written.get(&b"key-6"[..]).cloned()
        );
        store.close().await.unwrap();
    }
    let db = redb::Database::open(&file).unwrap();
    let txn = db.begin_read().unwrap();
    let tables: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_string())
        .collect();
    assert_eq!(
        tables,
        ["rave.crc32c", "rave.journal"],
        "the old table is gone"
    );
    let table = txn
        .open_table(TableDefinition::<&[u8], &[u8]>::new("rave.crc32c"))
        .unwrap();
    // The 500 user entries, beside rave's own records (the key-layout record, keys beginning
    // `rave_api::keyspace::META_PREFIX`).
    let user_entries = table
        .iter()
        .unwrap()
        .filter(|entry| {
            !entry
                .as_ref()
                .unwrap()
                .0
                .value()
                .starts_with(&rave_api::keyspace::META_PREFIX)
        })
        .count();
    assert_eq!(user_entries, 500);
    let stored = table.get(&b"key-6"[..]).unwrap().unwrap();
    assert_eq!(
        stored.value().len(),
        written[&b"key-6"[..]].len() + 4,
        "a checksum follows"
    );
}

/// An acknowledged write is in the directory's files, where any other reader sees it, before
/// the store is closed: it is in the journal, synced (redb may keep a commit without a sync in
/// its own memory until the next checkpoint). The kill -9 test in `tests/crash.rs` proves the same end
/// to end.
#[tokio::test]
async fn acknowledged_writes_are_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let marker = b"a-value-nobody-else-writes-0123456789";
    store.put(b"k", marker).await.unwrap();
    let on_disk = std::fs::read(dir.path().join(rave_backend_redb::JOURNAL_FILE)).unwrap();
    assert!(
        on_disk.windows(marker.len()).any(|w| w == marker),
        "the value is not in the journal"
    );
    store.close().await.unwrap();
}

/// A copy of redb's shared reader kept after the engine closed reads nothing and holds nothing:
/// the `Database` it shares with the engine is gone, so the file (and redb's lock on it) is
/// free. Checked on `RedbEngine` itself: through the store no reader outlives the close.
#[test]
fn a_leftover_shared_reader_holds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = shared_reads::leftover_reader_holds_nothing("redb", || {
        rave_api::dir::prepare(dir.path(), &OpenOptions::default(), "redb")?;
        RedbEngine::open(dir.path(), &OpenOptions::default())
    });
    assert_eq!(outcome, Ok(Outcome::Passed));
}
