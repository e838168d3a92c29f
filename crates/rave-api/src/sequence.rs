//! The commit sequence: a number the engine thread stamps on every engine commit that applies
//! user writes, kept in rave's reserved block ([`crate::keyspace`]) and written in the same
//! engine commit as the writes it numbers.
//!
//! - **One number per commit.** A group commit (many writers' writes merged into one engine
//!   write) takes one number: the commit is what the engine makes atomic and durable, so it is
//!   what a change subscriber will see as one step, and the number a handle reads after its
//!   acknowledged write is that write's commit or a later one.
//! - **Strictly increasing, not contiguous.** A commit attempt takes the next number whether or
//!   not the engine reports success (an engine that failed may still have written it), so the
//!   numbers never repeat; after a failed commit one may be missing.
//! - **Across leaders and restarts.** The number is loaded at every open (and every reopen of
//!   a healed engine), so a new leader continues from the last persisted number.
//! - A re-sent write already applied takes no number (nothing is written), and neither does a
//!   commit of exactly-once bookkeeping only.

use crate::engine_thread::Engine;
use crate::keyspace::meta_key;
use crate::{BatchOp, Error, Result};

/// The name of the record holding the last commit's number (under rave's reserved prefix).
const NAME: &[u8] = b"seq";

/// The engine key of the sequence record.
fn key() -> Vec<u8> {
    meta_key(NAME)
}

/// What the sequence record holds: the last commit's number and the change log's state
/// ([`crate::changelog`]), written together in every commit that applies writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mark {
    /// The last commit's number.
    pub seq: u64,
    /// The change log's floor: the highest number whose entry may be gone.
    pub floor: u64,
    /// Entries in the change log.
    pub entries: u64,
    /// Bytes of entries in the change log.
    pub bytes: u64,
}

/// The last persisted mark of `engine` (all zero for a database that never committed). A
/// record of an earlier release (the number alone) has no change log: its floor is its number.
pub(crate) fn load<E: Engine>(engine: &E) -> Result<Mark> {
    let Some(value) = engine.get(&key())? else {
        return Ok(Mark::default());
    };
    let word = |i: usize| {
        value
            .get(i * 8..i * 8 + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
    };
    match (value.len(), word(0), word(1), word(2), word(3)) {
        (8, Some(seq), ..) => Ok(Mark {
            seq,
            floor: seq,
            entries: 0,
            bytes: 0,
        }),
        (32, Some(seq), Some(floor), Some(entries), Some(bytes)) => Ok(Mark {
            seq,
            floor,
            entries,
            bytes,
        }),
        _ => Err(Error::corruption(format!(
            "a damaged commit-sequence record ({} bytes, 32 expected)",
            value.len()
        ))),
    }
}

/// The engine operation that records `mark`.
pub(crate) fn record(mark: Mark) -> BatchOp {
    let mut value = Vec::with_capacity(32);
    for word in [mark.seq, mark.floor, mark.entries, mark.bytes] {
        value.extend_from_slice(&word.to_be_bytes());
    }
    BatchOp::put(key(), value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine_thread::EngineStore;
    use crate::{KvStore, MemoryEngine, Range};

    /// A memory engine whose write of the key `!panic` panics before writing anything.
    #[derive(Clone, Default)]
    struct Panicky(MemoryEngine);

    impl Engine for Panicky {
        type Iter<'a> = <MemoryEngine as Engine>::Iter<'a>;

        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.0.get(key)
        }
        fn write(&self, ops: &[BatchOp]) -> Result<()> {
            if ops.iter().any(|op| op.key() == b"!panic") {
                panic!("a write that panics on purpose");
            }
            self.0.write(ops)
        }
        fn iter<'a>(&'a self, range: &Range) -> Result<Self::Iter<'a>> {
            self.0.iter(range)
        }
    }

    /// The engine thread reopens a panicked engine and loads the sequence again: it goes on
    /// from the last persisted number, and the commit that panicked took none that lasts.
    #[tokio::test]
    async fn the_sequence_continues_after_the_engine_heals() {
        let engine = Panicky::default();
        let opener = engine.clone();
        let store = EngineStore::spawn("panicky", move || Ok(opener.clone())).unwrap();
        store.put(b"a", b"1").await.unwrap();
        store.put(b"b", b"2").await.unwrap();
        assert_eq!(store.sequence().await.unwrap(), 2);
        store.put(b"!panic", b"x").await.unwrap_err();
        assert_eq!(store.sequence().await.unwrap(), 2);
        store.del(b"a").await.unwrap();
        assert_eq!(store.sequence().await.unwrap(), 3);
        assert_eq!(load(&engine).unwrap().seq, 3);
        store.close().await.unwrap();
    }

    #[test]
    fn a_recorded_mark_loads_back() {
        let engine = MemoryEngine::default();
        assert_eq!(load(&engine).unwrap(), Mark::default());
        let mark = Mark {
            seq: 41,
            floor: 30,
            entries: 11,
            bytes: 999,
        };
        engine.write(&[record(mark)]).unwrap();
        assert_eq!(load(&engine).unwrap(), mark);
    }

    /// A record of an earlier release holds the number alone: it has no history.
    #[test]
    fn an_earlier_record_has_no_history() {
        let engine = MemoryEngine::default();
        engine
            .write(&[BatchOp::put(key(), 41u64.to_be_bytes().to_vec())])
            .unwrap();
        let mark = load(&engine).unwrap();
        assert_eq!((mark.seq, mark.floor, mark.entries), (41, 41, 0));
    }

    #[test]
    fn a_damaged_record_is_corruption() {
        let engine = MemoryEngine::default();
        engine
            .write(&[BatchOp::put(key(), b"xyz".to_vec())])
            .unwrap();
        let err = load(&engine).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corruption);
    }
}
