//! Iterators kept on the engine thread: the engine's cursors over the parts of a user range,
//! read in chunks with `limit` and projection applied.

use std::collections::VecDeque;

use super::{Engine, EngineIter};
use crate::keyspace::{Side, raw_ranges};
use crate::watch::intersect;
use crate::{Entry, Error, Range, Result};

/// Keys read at a time while a limited `clear` walks to its boundary.
const CLEAR_WALK_CHUNK: usize = 1024;

/// An open iterator on the engine thread: the engine iterators of the user range's parts (at most
/// two, one on each side of rave's reserved keys, opened together so they share one snapshot),
/// walked in order.
pub(super) struct Cursor<I> {
    /// The parts not yet exhausted, the current one first.
    parts: VecDeque<(Side, I)>,
    remaining: Option<u64>,
    range: Range,
    /// Set by the first failure of an engine cursor and repeated by every later call: a failed
    /// engine iterator may report `None` next, which must never read as the end of the range.
    failed: Option<Error>,
}

impl<I: EngineIter> Cursor<I> {
    pub(super) fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.fill_chunk(max);
        if let Err(err) = &result {
            self.parts.clear();
            self.failed = Some(err.clone());
        }
        result
    }

    fn fill_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
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
        failed: None,
    })
}

/// What `range` clears (honouring its direction and limit): its bounds in user keys (`None`
/// when it removes nothing), for watchers, and the engine ranges to delete, for
/// [`Engine::delete_ranges_and_write`].
///
/// The user range maps to at most two engine ranges, one on each side of rave's reserved
/// block, which they never touch. With a limit, the boundary is found by walking at most
/// `limit` keys in order, a chunk at a time: the memory held is one chunk, whatever the size of
/// the range or the limit.
pub(super) fn clear_ranges<E: Engine>(
    engine: &E,
    mut range: Range,
) -> Result<(Option<Range>, Vec<Range>)> {
    if let Some(limit) = range.limit.take() {
        let walk = range.clone().keys_only().limit(limit);
        let mut cursor = open_cursor(engine, walk)?;
        let mut last = None;
        loop {
            let mut chunk = cursor.next_chunk(CLEAR_WALK_CHUNK)?;
            match chunk.pop() {
                Some(entry) => last = Some(entry.key),
                None => break,
            }
        }
        drop(cursor);
        // The last key the clear reaches, in its direction, becomes its inclusive far bound
        // (it lies inside the range, so it is the stricter bound).
        match last {
            None => return Ok((None, Vec::new())),
            Some(last) if range.reverse => range.gte = Some(last),
            Some(last) => range.lte = Some(last),
        }
    }
    if range.is_empty() {
        return Ok((None, Vec::new()));
    }
    let raw = raw_ranges(&range)
        .into_iter()
        .map(|(_, mut raw)| {
            raw.reverse = false;
            raw
        })
        .collect();
    Ok((Some(intersect(&range, &Range::all())), raw))
}
