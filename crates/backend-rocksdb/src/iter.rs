//! Range iteration over a RocksDB snapshot.
//!
//! RocksDB takes bounds as an inclusive lower bound and an exclusive upper bound
//! (`iterate_lower_bound` / `iterate_upper_bound`). rave's bounds may be either, and byte-string
//! order makes the conversion exact: the immediate successor of `k` is `k ++ [0x00]`, so
//! `key > k` is `key >= k ++ [0x00]` and `key <= k` is `key < k ++ [0x00]`.

use std::ops::Bound;

use rave_api::engine_thread::EngineIter;
use rave_api::{Range, Result};
use rocksdb::{DB, DBIteratorWithThreadMode, Direction, IteratorMode, ReadOptions, Snapshot};

use crate::error::{self, Op};

/// An iterator over a snapshot of one [`Range`].
// `pub` (in a private module) because it is the public `RocksEngine`'s `Engine::Iter`.
pub struct RocksIter<'a> {
    /// Declared before `_snapshot`, so dropped first: the snapshot outlives its reader.
    inner: DBIteratorWithThreadMode<'a, DB>,
    /// Held so that the view the iterator reads stays pinned (and visible to compaction as a
    /// live snapshot) for as long as the iterator lives.
    _snapshot: Snapshot<'a>,
    range: Range,
    db: &'a DB,
    done: bool,
}

/// `key ++ [0x00]`: the smallest key greater than `key`.
pub(crate) fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

impl<'a> RocksIter<'a> {
    pub(crate) fn new(db: &'a DB, range: &Range) -> Self {
        let snapshot = db.snapshot();
        let mut read_options = ReadOptions::default();
        let lower = match range.lower() {
            Bound::Included(k) => Some(k.to_vec()),
            Bound::Excluded(k) => Some(successor(k)),
            Bound::Unbounded => None,
        };
        let upper = match range.upper() {
            Bound::Excluded(k) => Some(k.to_vec()),
            Bound::Included(k) => Some(successor(k)),
            Bound::Unbounded => None,
        };
        if let Some(lower) = &lower {
            read_options.set_iterate_lower_bound(lower.clone());
        }
        if let Some(upper) = upper {
            read_options.set_iterate_upper_bound(upper);
        }
        // Forward: seek to the lower bound itself. Reverse: RocksDB's SeekToLast honours
        // `iterate_upper_bound`, landing on the last key below it.
        let mode = match (range.reverse, lower.as_deref()) {
            (false, Some(lower)) => IteratorMode::From(lower, Direction::Forward),
            (false, None) => IteratorMode::Start,
            (true, _) => IteratorMode::End,
        };
        let inner = snapshot.iterator_opt(mode, read_options);
        RocksIter {
            inner,
            _snapshot: snapshot,
            range: range.clone(),
            db,
            done: false,
        }
    }

    /// Whether `key` lies beyond the end of the range in the iteration direction, so that no
    /// later key can be in it.
    fn past_end(&self, key: &[u8]) -> bool {
        if self.range.reverse {
            match self.range.lower() {
                Bound::Included(b) => key < b,
                Bound::Excluded(b) => key <= b,
                Bound::Unbounded => false,
            }
        } else {
            match self.range.upper() {
                Bound::Included(b) => key > b,
                Bound::Excluded(b) => key >= b,
                Bound::Unbounded => false,
            }
        }
    }
}

impl EngineIter for RocksIter<'_> {
    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        while !self.done {
            match self.inner.next() {
                Some(Ok((key, value))) => {
                    // RocksDB's bounds already confine the iterator; checking again is cheap and
                    // keeps the contract independent of how RocksDB treats edge cases.
                    if self.range.contains(&key) {
                        return Ok(Some((key.into_vec(), value.into_vec())));
                    }
                    if self.past_end(&key) {
                        self.done = true;
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Err(error::map(&e, Op::Iterate, self.db.path()));
                }
                None => self.done = true,
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::successor;

    #[test]
    fn successor_is_the_next_byte_string() {
        assert_eq!(successor(b""), vec![0]);
        assert_eq!(successor(b"a\xff"), b"a\xff\x00".to_vec());
        assert!(successor(b"a").as_slice() > &b"a"[..]);
        assert!(successor(b"a").as_slice() < &b"a\x00\x00"[..]);
    }
}
