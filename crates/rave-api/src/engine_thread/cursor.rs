//! Iterators kept on the engine thread: the engine's cursors over the parts of a user range,
//! read in chunks with `limit` and projection applied.

use std::collections::VecDeque;

use super::{Engine, EngineIter};
use crate::keyspace::{Side, raw_ranges};
use crate::{BatchOp, Entry, Range, Result};

/// An open iterator on the engine thread: the engine iterators of the user range's parts (at most
/// two, one on each side of rave's reserved keys, opened together so they share one snapshot),
/// walked in order.
pub(super) struct Cursor<I> {
    /// The parts not yet exhausted, the current one first.
    parts: VecDeque<(Side, I)>,
    remaining: Option<u64>,
    range: Range,
}

impl<I: EngineIter> Cursor<I> {
    pub(super) fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        let mut want = max;
        if let Some(remaining) = self.remaining {
            want = want.min(usize::try_from(remaining).unwrap_or(usize::MAX));
        }
        let mut chunk = Vec::with_capacity(want.min(1024));
        while chunk.len() < want {
            let Some((side, iter)) = self.parts.front_mut() else {
                break;
            };
            match iter.next_entry()? {
                Some((key, value)) => {
                    let projection = self.range.projection;
                    chunk.push(Entry {
                        key: if projection.keys() {
                            side.user_key(key)
                        } else {
                            Vec::new()
                        },
                        value: if projection.values() {
                            value
                        } else {
                            Vec::new()
                        },
                    });
                }
                None => {
                    self.parts.pop_front();
                }
            }
        }
        if let Some(remaining) = self.remaining.as_mut() {
            *remaining -= chunk.len() as u64;
            if *remaining == 0 {
                self.parts.clear();
            }
        }
        Ok(chunk)
    }
}

pub(super) fn open_cursor<E: Engine>(engine: &E, range: Range) -> Result<Cursor<E::Iter<'_>>> {
    let mut parts = VecDeque::new();
    if !range.is_empty() {
        for (side, raw) in raw_ranges(&range) {
            parts.push_back((side, engine.iter(&raw)?));
        }
    }
    Ok(Cursor {
        parts,
        remaining: range.limit,
        range,
    })
}

/// The deletes that clear `range` (honouring its direction and limit), as user keys.
pub(super) fn clear_ops<E: Engine>(engine: &E, range: Range) -> Result<Vec<BatchOp>> {
    let mut keys_only = range;
    keys_only.projection = crate::Projection::KeysOnly;
    let mut cursor = open_cursor(engine, keys_only)?;
    let mut ops = Vec::new();
    loop {
        let chunk = cursor.next_chunk(1024)?;
        if chunk.is_empty() {
            break;
        }
        ops.extend(chunk.into_iter().map(|e| BatchOp::Del { key: e.key }));
    }
    Ok(ops)
}
