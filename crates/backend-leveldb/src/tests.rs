//! Engine-level tests with rusty-leveldb tuned to tiny buffers, so that a few thousand writes go
//! through memtable switches, table files and compactions while iterators are open.

use std::collections::BTreeMap;

use rave_api::engine_thread::{Engine, EngineIter};

use super::*;

type Kv = (Vec<u8>, Vec<u8>);

/// A small deterministic generator, so the tests need no dependency (the iterator module's
/// tests use it too).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Keys from a small alphabet with the extreme bytes, so that prefixes, empty keys and
    /// trailing zeros are common.
    fn key(&mut self) -> Vec<u8> {
        self.key_from(&[0, 1, b'a', b'b', 0x80, 0xff])
    }

    /// A key of 0 to 4 bytes, each drawn from `alphabet`.
    pub(crate) fn key_from(&mut self, alphabet: &[u8]) -> Vec<u8> {
        let len = self.below(5) as usize;
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize])
            .collect()
    }

    fn value(&mut self) -> Vec<u8> {
        let len = self.below(120) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn range(&mut self) -> Range {
        let mut range = Range::all();
        if self.below(3) == 0 {
            range = range.gt(self.key());
        }
        if self.below(3) == 0 {
            range = range.gte(self.key());
        }
        if self.below(3) == 0 {
            range = range.lt(self.key());
        }
        if self.below(3) == 0 {
            range = range.lte(self.key());
        }
        if self.below(2) == 0 {
            range = range.reverse();
        }
        range
    }
}

fn tiny(opt: &mut rusty_leveldb::Options) {
    opt.write_buffer_size = 4 << 10;
    opt.max_file_size = 8 << 10;
    opt.block_size = 256;
}

fn expected(model: &BTreeMap<Vec<u8>, Vec<u8>>, range: &Range) -> Vec<Kv> {
    let mut entries: Vec<Kv> = model
        .iter()
        .filter(|(k, _)| range.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if range.reverse {
        entries.reverse();
    }
    entries
}

fn drain(it: &mut impl EngineIter) -> Vec<Kv> {
    let mut out = Vec::new();
    while let Some(entry) = it.next_entry().unwrap() {
        out.push(entry);
    }
    // Exhausted stays exhausted.
    assert_eq!(it.next_entry().unwrap(), None);
    out
}

fn read_all(engine: &LevelDbEngine, range: &Range) -> Vec<Kv> {
    if range.is_empty() {
        return Vec::new();
    }
    drain(&mut engine.iter(range).unwrap())
}

#[test]
fn iterators_match_a_model_through_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LevelDbEngine::open_tuned(dir.path(), &OpenOptions::default(), tiny).unwrap();
    let mut model = BTreeMap::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut max_tables = 0;
    for round in 0..8 {
        // Iterators opened now must see the model as it is now, whatever happens next.
        let mut open = Vec::new();
        for _ in 0..6 {
            let range = rng.range();
            if range.is_empty() {
                continue;
            }
            let want = expected(&model, &range);
            let mut it = engine.iter(&range).unwrap();
            // Read a little before the writes, the rest after.
            let mut got = Vec::new();
            for _ in 0..rng.below(3) {
                if let Some(entry) = it.next_entry().unwrap() {
                    got.push(entry);
                }
            }
            open.push((range, want, got, it));
        }
        for _ in 0..300 {
            let mut ops = Vec::new();
            for _ in 0..1 + rng.below(4) {
                let key = rng.key();
                if rng.below(4) == 0 {
                    ops.push(BatchOp::del(key));
                } else {
                    ops.push(BatchOp::put(key, rng.value()));
                }
            }
            engine.write(&ops).unwrap();
            for op in ops {
                match op {
                    BatchOp::Put { key, value } => {
                        model.insert(key, value);
                    }
                    BatchOp::Del { key } => {
                        model.remove(&key);
                    }
                }
            }
            let probe = rng.key();
            assert_eq!(
                engine.get(&probe).unwrap(),
                model.get(&probe).cloned(),
                "round {round}, get {probe:?}"
            );
        }
        let tables = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".ldb")
            })
            .count();
        max_tables = max_tables.max(tables);
        for (range, want, mut got, mut it) in open {
            got.extend(drain(&mut it));
            assert_eq!(got, want, "round {round}, snapshot of {range:?}");
        }
        for _ in 0..20 {
            let range = rng.range();
            assert_eq!(
                read_all(&engine, &range),
                expected(&model, &range),
                "round {round}, {range:?}"
            );
        }
    }
    assert!(max_tables > 0, "the test must exercise table files");
    engine.close().unwrap();
    let engine = LevelDbEngine::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(
        read_all(&engine, &Range::all()),
        expected(&model, &Range::all())
    );
    assert_eq!(
        read_all(&engine, &Range::all().reverse()),
        expected(&model, &Range::all().reverse())
    );
}

#[test]
fn reverse_walks_large_ranges_in_windows() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LevelDbEngine::open_tuned(dir.path(), &OpenOptions::default(), tiny).unwrap();
    let mut model = BTreeMap::new();
    let mut ops = Vec::new();
    for i in 0..5000u32 {
        let key = format!("user:{:08}", i * 7).into_bytes();
        ops.push(BatchOp::put(key.clone(), i.to_be_bytes().to_vec()));
        model.insert(key, i.to_be_bytes().to_vec());
        if ops.len() == 200 {
            engine.write(&ops).unwrap();
            ops.clear();
        }
    }
    // Keys equal as fractions (trailing zeros) and 0xff runs: bisection's corner cases.
    for zeros in 0..300 {
        let mut key = b"x".to_vec();
        key.resize(1 + zeros, 0);
        ops.push(BatchOp::put(key.clone(), b"z".to_vec()));
        model.insert(key, b"z".to_vec());
        let ff = vec![0xff; zeros + 1];
        ops.push(BatchOp::put(ff.clone(), b"f".to_vec()));
        model.insert(ff, b"f".to_vec());
    }
    engine.write(&ops).unwrap();
    for range in [
        Range::all().reverse(),
        Range::all().lt("x").reverse(),
        Range::all()
            .gte("user:00010000")
            .lte("user:00020001")
            .reverse(),
        Range::all().gt("x").lt(vec![0xffu8; 50]).reverse(),
        Range::all().gt(b"x\0\0\0".to_vec()).reverse(),
        Range::all(),
    ] {
        assert_eq!(
            read_all(&engine, &range),
            expected(&model, &range),
            "{range:?}"
        );
    }
    // The last key of the whole database, as a reverse iterator with a limit would ask.
    let mut it = engine.iter(&Range::all().reverse()).unwrap();
    assert_eq!(
        it.next_entry().unwrap().map(|(k, _)| k),
        Some(vec![0xff; 300])
    );
}

#[test]
fn find_last_on_tricky_key_sets() {
    for keys in [
        vec![b"".to_vec()],
        vec![b"".to_vec(), b"\0".to_vec()],
        vec![b"a".to_vec(), b"a\0".to_vec(), b"a\0\0".to_vec()],
        (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect(),
        (0..200u32)
            .map(|i| [b"p".as_slice(), &i.to_be_bytes(), &[0xff; 3]].concat())
            .collect(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let engine = LevelDbEngine::open(dir.path(), &OpenOptions::default()).unwrap();
        let ops: Vec<_> = keys.iter().map(|k| BatchOp::put(k.clone(), b"v")).collect();
        engine.write(&ops).unwrap();
        let last = keys.iter().max().cloned();
        assert_eq!(find_last(&engine), last, "{keys:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = LevelDbEngine::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(find_last(&engine), None);
}

/// `iter::find_last` on a fresh snapshot of `engine`, under its lock.
fn find_last(engine: &LevelDbEngine) -> Option<Vec<u8>> {
    let mut state = engine.shared.lock();
    let db = state.as_mut().unwrap();
    let mut it = db.db.new_iter().unwrap();
    iter::find_last(&mut it)
}

#[test]
fn a_snapshot_survives_compactions_that_replace_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LevelDbEngine::open_tuned(dir.path(), &OpenOptions::default(), tiny).unwrap();
    let value = vec![7u8; 100];
    let batch = |round: u8| -> Vec<BatchOp> {
        (0..100u8)
            .map(|i| BatchOp::put(vec![i], [&[round][..], &value].concat()))
            .collect()
    };
    for round in 0..5 {
        engine.write(&batch(round)).unwrap();
    }
    let want: Vec<Kv> = (0..100u8)
        .map(|i| (vec![i], [&[4u8][..], &value].concat()))
        .collect();
    let mut forward = engine.iter(&Range::all()).unwrap();
    let mut backward = engine.iter(&Range::all().reverse()).unwrap();
    let first = forward.next_entry().unwrap();
    // Rewrite everything many times over: memtable switches and compactions replace (and, but
    // for the pin, would delete) the table files the iterators read.
    for round in 5..60 {
        engine.write(&batch(round)).unwrap();
    }
    let mut got: Vec<Kv> = first.into_iter().collect();
    got.extend(drain(&mut forward));
    assert_eq!(got, want);
    let mut reversed = want.clone();
    reversed.reverse();
    assert_eq!(drain(&mut backward), reversed);
}

#[test]
fn separators_lie_between_their_keys() {
    use rusty_leveldb::Cmp;
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..50_000 {
        let (x, y) = (rng.key(), rng.key());
        if x == y {
            continue;
        }
        let (from, to) = if x < y { (x, y) } else { (y, x) };
        let sep = Bytewise.find_shortest_sep(&from, &to);
        assert!(from <= sep && sep < to, "{from:?} <= {sep:?} < {to:?}");
        let mut next = from.clone();
        next.push(0);
        if to != next {
            assert!(from < sep, "{from:?} < {sep:?} < {to:?}");
        }
        assert!(Bytewise.find_short_succ(&from) > from);
    }
    assert_eq!(Bytewise.find_shortest_sep(b"", b"a"), b"\0".to_vec());
    assert_eq!(Bytewise.find_shortest_sep(b"", b"\0"), Vec::<u8>::new());
    assert_eq!(Bytewise.find_shortest_sep(b"abc", b"abz"), b"abd".to_vec());
}

#[test]
fn a_failed_write_disables_writes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LevelDbEngine::open(dir.path(), &OpenOptions::default()).unwrap();
    engine.write(&[BatchOp::put("a", "1")]).unwrap();
    *engine.failed.borrow_mut() = Some(Error::Io {
        kind: std::io::ErrorKind::StorageFull,
        message: "disk full".into(),
    });
    let err = engine.write(&[BatchOp::put("b", "2")]).unwrap_err();
    assert!(err.to_string().contains("reopen"), "{err}");
    // The first failure's kind, not a generic one.
    assert!(
        matches!(
            err,
            Error::Io {
                kind: std::io::ErrorKind::StorageFull,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(engine.get(b"a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn reverse_windows_hold_a_bounded_number_of_value_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LevelDbEngine::open(dir.path(), &OpenOptions::default()).unwrap();
    // 24 MiB of values: a window cannot keep them all, so some are read again on the way out.
    let ops: Vec<_> = (0..24u8)
        .map(|i| BatchOp::put(vec![i], vec![i; 1 << 20]))
        .collect();
    engine.write(&ops).unwrap();
    let got = read_all(&engine, &Range::all().reverse());
    assert_eq!(got.len(), 24);
    for (n, (key, value)) in got.iter().enumerate() {
        let i = 23 - n as u8;
        assert_eq!(key, &vec![i]);
        assert!(value.len() == 1 << 20 && value.iter().all(|&b| b == i));
    }
}

#[test]
fn writes_after_a_torn_log_tail_survive_the_next_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LevelDbEngine::open(dir.path(), &OpenOptions::default()).unwrap();
    engine.write(&[BatchOp::put("before", "1")]).unwrap();
    // A crash in the middle of appending a record leaves a torn record at the log's end.
    drop(engine);
    let logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    for log in &logs {
        let mut bytes = std::fs::read(log).unwrap();
        bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 100, 0, 1, 9, 9, 9]);
        std::fs::write(log, bytes).unwrap();
    }
    // The next handle recovers, writes more and is closed, then the database is opened again:
    // what it wrote must not hide behind the torn record.
    let engine = LevelDbEngine::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(engine.get(b"before").unwrap(), Some(b"1".to_vec()));
    engine.write(&[BatchOp::put("after", "2")]).unwrap();
    drop(engine);
    let engine = LevelDbEngine::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(engine.get(b"before").unwrap(), Some(b"1".to_vec()));
    assert_eq!(engine.get(b"after").unwrap(), Some(b"2".to_vec()));
}

#[test]
fn reverse_matches_forward_on_a_large_database() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LevelDbEngine::open(dir.path(), &OpenOptions::default()).unwrap();
    for chunk in 0..20u32 {
        let ops: Vec<_> = (0..1000u32)
            .map(|i| {
                BatchOp::put(
                    format!("key:{:09}", (chunk * 1000 + i) * 7919 % 1_000_003),
                    b"v",
                )
            })
            .collect();
        engine.write(&ops).unwrap();
    }
    let forward = read_all(&engine, &Range::all());
    assert_eq!(forward.len(), 20_000);
    let mut backward = read_all(&engine, &Range::all().reverse());
    backward.reverse();
    assert_eq!(forward, backward);
}

/// A range of several chunks is deleted whole, with `ops` applied after, and nothing outside
/// it is touched.
#[test]
fn range_deletes_go_in_bounded_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LevelDbEngine::open(dir.path(), &OpenOptions::default()).unwrap();
    let n = 2 * CLEAR_CHUNK_KEYS + 100;
    let key = |i: usize| format!("k{i:06}").into_bytes();
    for start in (0..n).step_by(5000) {
        let ops: Vec<BatchOp> = (start..(start + 5000).min(n))
            .map(|i| BatchOp::put(key(i), b"v".to_vec()))
            .collect();
        engine.write(&ops).unwrap();
    }
    engine
        .write(&[BatchOp::put("a", "x"), BatchOp::put("z", "y")])
        .unwrap();
    let range = Range::all().gte("k").lt("l");
    engine
        .delete_ranges_and_write(std::slice::from_ref(&range), &[BatchOp::put("m", "after")])
        .unwrap();
    assert_eq!(read_all(&engine, &range), Vec::<Kv>::new());
    let left: Vec<Vec<u8>> = read_all(&engine, &Range::all())
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left, vec![b"a".to_vec(), b"m".to_vec(), b"z".to_vec()]);
    engine.close().unwrap();
}

/// Keys the concurrent-read test writes together, always with one value.
fn group_key(i: usize) -> Vec<u8> {
    format!("g{i:02}").into_bytes()
}

/// A round's value: the round number, then padding so that rounds fill table files.
fn round_value(round: u64) -> Vec<u8> {
    let mut value = round.to_be_bytes().to_vec();
    value.resize(64, b'.');
    value
}

fn round_of(value: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&value[..8]);
    u64::from_be_bytes(bytes)
}

/// The shared reader answers from several threads at once while the engine thread writes
/// (through memtable switches and compactions, with tiny buffers) and iterates both ways:
/// every read sees one committed state (a group written in one batch reads as one round),
/// never older than the last write acknowledged before the read began; after close a leftover
/// reader fails with `Closed`. `RAVE_LDB_STRESS_ROUNDS` runs it longer.
#[test]
fn shared_reads_from_many_threads_see_committed_states() {
    let rounds = std::env::var("RAVE_LDB_STRESS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(300);
    concurrent_reads(tiny, rounds, None);
}

/// As [`shared_reads_from_many_threads_see_committed_states`], with clears of a range larger
/// than a clear chunk (two writes) under the readers: they see it all there or all gone.
/// rusty-leveldb's default buffers, which hold the range without a flood of compactions.
#[test]
fn shared_reads_never_see_a_partly_cleared_range() {
    concurrent_reads(|_| {}, 60, Some(20));
}

/// Readers on several threads against `rounds` writes on this one (see the tests above);
/// every `clear_every` rounds a range of more than [`CLEAR_CHUNK_KEYS`] keys is written and
/// cleared.
fn concurrent_reads(
    tune: impl FnOnce(&mut rusty_leveldb::Options),
    rounds: u64,
    clear_every: Option<u64>,
) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const GROUP: usize = 16;
    const READERS: usize = 4;
    /// More keys than one clear chunk, so that a clear takes two writes.
    const CLEARED: usize = CLEAR_CHUNK_KEYS + 100;
    let dir = tempfile::tempdir().unwrap();
    let engine = LevelDbEngine::open_tuned(dir.path(), &OpenOptions::default(), tune).unwrap();
    let reader = engine
        .shared_reader()
        .expect("LevelDB offers a shared reader");
    let group: Vec<Vec<u8>> = (0..GROUP).map(group_key).collect();
    let cleared = |i: usize| format!("c{i:06}").into_bytes();
    let clear_ends = vec![cleared(0), cleared(CLEARED - 1)];
    let acked = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    engine
        .write(
            &group
                .iter()
                .map(|k| BatchOp::put(k.clone(), round_value(0)))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    std::thread::scope(|scope| {
        let mut readers = Vec::new();
        for t in 0..READERS {
            let (reader, group, clear_ends) = (&reader, &group, &clear_ends);
            let (acked, done) = (&acked, &done);
            readers.push(scope.spawn(move || {
                let mut reads = 0u64;
                let mut last = 0;
                while !done.load(Ordering::SeqCst) {
                    let floor = acked.load(Ordering::SeqCst);
                    let values = reader.get_many(group).unwrap();
                    let seen: Vec<u64> = values
                        .iter()
                        .map(|v| round_of(v.as_deref().expect("a group key is missing")))
                        .collect();
                    assert!(
                        seen.iter().all(|&r| r == seen[0]),
                        "reader {t}: a torn group {seen:?}"
                    );
                    assert!(
                        seen[0] >= floor && seen[0] >= last,
                        "reader {t}: round {} after round {last}, acknowledged {floor}",
                        seen[0]
                    );
                    last = seen[0];
                    let one = reader.get(&group[t % GROUP]).unwrap().unwrap();
                    assert!(round_of(&one) >= last, "reader {t}: get went back");
                    let ends = reader.get_many(clear_ends).unwrap();
                    assert_eq!(
                        ends[0].is_some(),
                        ends[1].is_some(),
                        "reader {t}: a partly cleared range"
                    );
                    reads += 1;
                }
                reads
            }));
        }
        for round in 1..=rounds {
            let mut ops: Vec<BatchOp> = group
                .iter()
                .map(|k| BatchOp::put(k.clone(), round_value(round)))
                .collect();
            // Filler, so that memtables switch and compactions run under the readers.
            ops.push(BatchOp::put(
                format!("f{:04}", round % 500),
                round_value(round),
            ));
            engine.write(&ops).unwrap();
            acked.store(round, Ordering::SeqCst);
            if round % 7 == 0 {
                for reverse in [false, true] {
                    let range = Range {
                        reverse,
                        ..Range::prefix(b"g".to_vec())
                    };
                    let mut it = engine.iter(&range).unwrap();
                    let mut n = 0;
                    while let Some((_, value)) = it.next_entry().unwrap() {
                        assert_eq!(round_of(&value), round, "an iterator saw another round");
                        n += 1;
                    }
                    assert_eq!(n, GROUP);
                }
            }
            if clear_every.is_some_and(|every| round % every == 0) {
                let fill: Vec<BatchOp> = (0..CLEARED)
                    .map(|i| BatchOp::put(cleared(i), b"x"))
                    .collect();
                engine.write(&fill).unwrap();
                engine
                    .delete_ranges_and_write(&[Range::prefix(b"c".to_vec())], &[])
                    .unwrap();
                assert_eq!(engine.get(&clear_ends[1]).unwrap(), None);
            }
        }
        done.store(true, Ordering::SeqCst);
        for handle in readers {
            let reads = handle.join().unwrap();
            assert!(reads > 0, "a reader never ran");
        }
    });
    engine.close().unwrap();
    assert!(matches!(reader.get(b"g00"), Err(Error::Closed)));
    assert!(matches!(reader.get_many(&group), Err(Error::Closed)));
}
