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

/// The last persisted commit number of `engine` (0 for a database that never committed).
pub(crate) fn load<E: Engine>(engine: &E) -> Result<u64> {
    match engine.get(&key())? {
        None => Ok(0),
        Some(value) => {
            let bytes: [u8; 8] = value.as_slice().try_into().map_err(|_| {
                Error::corruption(format!(
                    "a damaged commit-sequence record ({} bytes, 8 expected)",
                    value.len()
                ))
            })?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

/// The engine operation that records `seq` as the last commit's number.
pub(crate) fn record(seq: u64) -> BatchOp {
    BatchOp::put(key(), seq.to_be_bytes().to_vec())
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
        assert_eq!(load(&engine).unwrap(), 3);
        store.close().await.unwrap();
    }

    #[test]
    fn a_recorded_number_loads_back() {
        let engine = MemoryEngine::default();
        assert_eq!(load(&engine).unwrap(), 0);
        engine.write(&[record(41)]).unwrap();
        assert_eq!(load(&engine).unwrap(), 41);
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
