use super::*;

fn temp_path(name: &str) -> (PathBuf, impl Drop) {
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = std::env::temp_dir().join(format!(
        "rave-journal-{name}-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    (dir.join("journal"), Cleanup(dir))
}

fn put(key: &str, value: &str) -> BatchOp {
    BatchOp::put(key.as_bytes().to_vec(), value.as_bytes().to_vec())
}

fn open(path: &Path, applied: u64) -> (Journal, Vec<Record>) {
    Journal::open(path, 4096, applied).unwrap()
}

/// A fresh journal after the engine's first checkpoint: records come back after `applied`,
/// in order, with their ranges and operations intact.
#[test]
fn records_after_the_engines_lsn_come_back_in_order() {
    let (path, _cleanup) = temp_path("order");
    let (mut journal, records) = open(&path, 0);
    assert!(records.is_empty());
    journal.checkpointed();
    let clear = Range::all().gte(b"a".to_vec()).lt(b"m".to_vec());
    assert_eq!(journal.append(&[], &[put("a", "1")]).unwrap(), Some(1));
    assert_eq!(
        journal
            .append(std::slice::from_ref(&clear), &[BatchOp::del(b"b".to_vec())])
            .unwrap(),
        Some(2)
    );
    assert_eq!(journal.append(&[], &[put("c", "3")]).unwrap(), Some(3));
    drop(journal);

    let (_, records) = open(&path, 1);
    let lsns: Vec<u64> = records.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, [2, 3]);
    assert_eq!(records[0].ranges.len(), 1);
    assert_eq!(records[0].ranges[0].lower(), clear.lower());
    assert_eq!(records[0].ranges[0].upper(), clear.upper());
    assert_eq!(records[0].ops, [BatchOp::del(b"b".to_vec())]);
    assert_eq!(records[1].ops, [put("c", "3")]);

    let (_, records) = open(&path, 3);
    assert!(records.is_empty());
}

/// After a checkpoint the journal is rewritten from its start; the records of the earlier pass
/// left behind the newest ones are never replayed.
#[test]
fn records_of_an_earlier_pass_are_not_replayed() {
    let (path, _cleanup) = temp_path("pass");
    let (mut journal, _) = open(&path, 0);
    journal.checkpointed();
    for i in 0..5 {
        journal
            .append(&[], &[put(&format!("old{i}"), "xxxxxxxx")])
            .unwrap();
    }
    // The engine checkpointed at 5; one short record of the next pass.
    journal.checkpointed();
    assert_eq!(journal.append(&[], &[put("new", "1")]).unwrap(), Some(6));
    drop(journal);
    let (_, records) = open(&path, 5);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].ops, [put("new", "1")]);
}

/// A record torn by a crash (its checksum fails) ends the replay; the records before it are
/// applied.
#[test]
fn a_torn_last_record_ends_the_replay() {
    let (path, _cleanup) = temp_path("torn");
    let (mut journal, _) = open(&path, 0);
    journal.checkpointed();
    journal.append(&[], &[put("a", "1")]).unwrap();
    journal.append(&[], &[put("b", "2")]).unwrap();
    let end = journal.end;
    drop(journal);
    // Damage the last byte of the second record.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    write_at(&file, &[0xAA], end - 1).unwrap();
    let (_, records) = open(&path, 0);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].ops, [put("a", "1")]);
}

/// A record the engine failed to apply is revoked, and its number is used by the next one.
#[test]
fn a_revoked_record_is_not_replayed() {
    let (path, _cleanup) = temp_path("revoke");
    let (mut journal, _) = open(&path, 0);
    journal.checkpointed();
    journal.append(&[], &[put("a", "1")]).unwrap();
    journal.append(&[], &[put("refused", "2")]).unwrap();
    journal.revoke().unwrap();
    drop(journal);
    let (mut journal, records) = open(&path, 0);
    assert_eq!(records.len(), 1);
    journal.checkpointed();
    assert_eq!(journal.append(&[], &[put("b", "3")]).unwrap(), Some(2));
}

/// A record that does not fit asks for a checkpoint; after it the journal starts over.
#[test]
fn a_full_journal_asks_for_a_checkpoint() {
    let (path, _cleanup) = temp_path("full");
    let (mut journal, _) = open(&path, 7);
    assert_eq!(journal.append(&[], &[put("a", "1")]).unwrap(), Some(8));
    let big = "x".repeat(5000);
    assert_eq!(journal.append(&[], &[put("big", &big)]).unwrap(), None);
    assert_eq!(journal.last_lsn(), 8);
    assert!(journal.pending());
    journal.checkpointed();
    assert!(!journal.pending());
    assert_eq!(journal.append(&[], &[put("b", "2")]).unwrap(), Some(9));
}

/// After an open that replayed records, the next records follow them (the engine applied the
/// replayed ones without a sync: they must stay until a checkpoint).
#[test]
fn records_after_a_replay_follow_the_replayed_ones() {
    let (path, _cleanup) = temp_path("follow");
    let (mut journal, _) = open(&path, 0);
    journal.append(&[], &[put("a", "1")]).unwrap();
    journal.append(&[], &[put("b", "2")]).unwrap();
    drop(journal);
    // The engine crashed holding nothing of the two; it applies them and writes on.
    let (mut journal, records) = open(&path, 0);
    assert_eq!(records.len(), 2);
    assert!(journal.pending());
    assert_eq!(journal.append(&[], &[put("c", "3")]).unwrap(), Some(3));
    drop(journal);
    let (_, records) = open(&path, 0);
    let lsns: Vec<u64> = records.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, [1, 2, 3]);
}

/// The file grows as records need, not all at once at open: a directory on a nearly full disk
/// still opens.
#[test]
fn the_file_grows_as_records_need() {
    let (path, _cleanup) = temp_path("grow");
    let (mut journal, _) = open(&path, 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    journal.append(&[], &[put("a", "1")]).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 0 && len <= 4096, "{len}");
}

/// A gap between the engine's LSN and the journal's next record is corruption, not a silent
/// loss.
#[test]
fn a_gap_after_the_engines_lsn_is_corruption() {
    let (path, _cleanup) = temp_path("gap");
    let (mut journal, _) = open(&path, 10);
    journal.checkpointed();
    journal.append(&[], &[put("a", "1")]).unwrap();
    journal.append(&[], &[put("b", "2")]).unwrap();
    drop(journal);
    let err = Journal::open(&path, 4096, 9).map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Corruption, "{err}");
}
