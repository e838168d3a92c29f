//! Iterators that survive a change of leader.

use std::sync::Arc;

use async_trait::async_trait;
use rave_api::{Entry, Error, KvIterator, Projection, Range, Result};

use crate::leadership::Leadership;

/// An iterator of a [`crate::Rave`] handle.
///
/// When the leader is lost mid-iteration (and `retry` is on) it reopens on the next leader with
/// the range that remains after the last entry it handed out: `gt = last` forward, `lt = last`
/// reverse, the limit reduced by what was delivered. Entries the old connection had buffered but
/// not handed out are dropped with it, so nothing is returned twice and nothing is skipped.
/// Across a resume the snapshot is the new leader's, taken at the moment of resuming.
///
/// A resume that fails (no leader in time, the deadline passed) returns its own error, and the
/// next call tries to resume again: the iterator is never left looking closed, nor ended.
pub(crate) struct ResumingIter {
    core: Arc<Leadership>,
    /// The user's range, with keys always requested (resuming needs them).
    range: Range,
    /// What the user asked to see.
    projection: Projection,
    /// The iterator on the current leader; `None` after a lost leader until a resume succeeds.
    inner: Option<Box<dyn KvIterator>>,
    /// The sequence of the first snapshot (a resumed iterator reports the first one).
    snapshot: Option<u64>,
    last_key: Option<Vec<u8>>,
    delivered: u64,
}

impl ResumingIter {
    pub async fn open(core: Arc<Leadership>, range: Range) -> Result<Self> {
        let projection = range.projection;
        let mut wire_range = range;
        if projection == Projection::ValuesOnly {
            wire_range.projection = Projection::KeysAndValues;
        }
        let mut iter = ResumingIter {
            core,
            range: wire_range,
            projection,
            inner: None,
            snapshot: None,
            last_key: None,
            delivered: 0,
        };
        let inner = open_on_leader(&iter.core, iter.range.clone()).await?;
        iter.snapshot = inner.snapshot_sequence();
        iter.inner = Some(inner);
        Ok(iter)
    }

    fn remaining(&self) -> Range {
        match &self.last_key {
            Some(last) => self.range.remaining_after(last, self.delivered),
            None => self.range.clone(),
        }
    }
}

/// Opens `range` on whoever leads now (waiting for an election if needed).
async fn open_on_leader(core: &Leadership, range: Range) -> Result<Box<dyn KvIterator>> {
    core.run(|store| {
        let range = range.clone();
        async move { (*store).iterator(range).await }
    })
    .await
}

#[async_trait]
impl KvIterator for ResumingIter {
    fn snapshot_sequence(&self) -> Option<u64> {
        self.snapshot
    }

    async fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        loop {
            // A lost connection still hands out what it had buffered; after close it must not.
            if self.core.is_closed() {
                return Err(Error::Closed);
            }
            let inner = match self.inner.as_mut() {
                Some(inner) => inner,
                // An earlier resume failed (and said why): try again now.
                None => self
                    .inner
                    .insert(open_on_leader(&self.core, self.remaining()).await?),
            };
            // On a follower, a wait for the leader longer than `op_timeout` fails with
            // `Timeout` (the client's watchdog); the iterator stays usable.
            let next = inner.next_chunk(max).await;
            match next {
                Ok(mut chunk) => {
                    if let Some(last) = chunk.last() {
                        self.last_key = Some(last.key.clone());
                        self.delivered += chunk.len() as u64;
                    }
                    if self.projection == Projection::ValuesOnly {
                        for entry in &mut chunk {
                            entry.key = Vec::new();
                        }
                    }
                    return Ok(chunk);
                }
                Err(Error::LeaderLost) if self.core.options.retry && !self.core.is_closed() => {
                    // Drop the old iterator (and whatever it had buffered) before resuming.
                    self.inner = None;
                    tracing::debug!(
                        delivered = self.delivered,
                        "resuming iterator on the next leader"
                    );
                    // On failure `inner` stays `None`: the next call resumes again.
                    self.inner = Some(open_on_leader(&self.core, self.remaining()).await?);
                }
                Err(Error::LeaderLost) if self.core.is_closed() => return Err(Error::Closed),
                Err(err) => return Err(err),
            }
        }
    }
}
