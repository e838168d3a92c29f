//! Iterators: pages of one etcd revision.
//!
//! The first page pins the revision its answer was read at; later pages read that revision
//! (`revision = R`), so the whole iteration is one snapshot, and each page resumes after the
//! last key handed out (`key 0x00` forward, `range_end = key` in reverse). If etcd compacts
//! `R` while the iterator is open, the next page cannot read it: the iterator then goes on
//! at the current revision from the same exclusive bound, exactly as a rave iterator resumes
//! after a failover: no key twice, none skipped, later entries may show newer writes.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use etcd_client::{GetOptions, SortOrder, SortTarget};
use rave_api::{Entry, Error, KvIterator, Projection, Range, Result};

use crate::keys::successor;
use crate::store::Inner;

/// Entries asked for per page at least (fewer round trips for small chunks); a reverse page
/// makes etcd sort the rest of the range, so larger pages cost less there.
const MIN_PAGE: usize = 64;
const MAX_PAGE: usize = 1024;

pub(crate) struct EtcdIter {
    inner: Arc<Inner>,
    /// The wire range still to read, `[start, end)`; `None` when exhausted.
    window: Option<(Vec<u8>, Vec<u8>)>,
    reverse: bool,
    projection: Projection,
    /// Entries still allowed by the range's limit.
    remaining: Option<u64>,
    /// The pinned revision (after the first page).
    revision: Option<i64>,
    /// The revision of the first page: the snapshot's sequence.
    first_revision: Option<i64>,
    buffer: VecDeque<Entry>,
}

impl EtcdIter {
    pub fn new(inner: Arc<Inner>, range: Range) -> Self {
        let window = inner.ns.wire_range(&range);
        EtcdIter {
            inner,
            window,
            reverse: range.reverse,
            projection: range.projection,
            remaining: range.limit,
            revision: None,
            first_revision: None,
            buffer: VecDeque::new(),
        }
    }

    /// Reads the first page, which pins the snapshot: an iterator sees the store as it was
    /// when it was created.
    pub async fn prime(&mut self) -> Result<()> {
        if self.window.is_some() {
            self.fetch(MIN_PAGE).await
        } else {
            let revision = self.inner.header_revision().await?;
            self.first_revision = Some(revision);
            Ok(())
        }
    }

    async fn fetch(&mut self, want: usize) -> Result<()> {
        let Some((start, end)) = self.window.clone() else {
            return Ok(());
        };
        let mut page = want.clamp(MIN_PAGE, MAX_PAGE);
        if let Some(left) = self.remaining {
            page = page.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        if page == 0 {
            self.window = None;
            return Ok(());
        }
        let order = if self.reverse {
            SortOrder::Descend
        } else {
            SortOrder::Ascend
        };
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(i64::try_from(page).unwrap_or(i64::MAX))
            .with_sort(SortTarget::Key, order);
        if self.projection == Projection::KeysOnly {
            options = options.with_keys_only();
        }
        let pinned = self.revision;
        let reply = self
            .inner
            .retry(|mut c| {
                let mut options = options.clone();
                if let Some(revision) = pinned {
                    options = options.with_revision(revision);
                }
                let start = start.clone();
                async move { c.get(start, Some(options)).await }
            })
            .await;
        let mut reply = match reply {
            Err(Error::Compacted { .. }) if pinned.is_some() => {
                // The snapshot is gone: go on at the current revision (see the module docs).
                tracing::debug!("an iterator's revision was compacted; resuming unpinned");
                self.revision = None;
                return Box::pin(self.fetch(want)).await;
            }
            other => other?,
        };
        let revision = reply.header().map_or(0, |h| h.revision());
        if self.revision.is_none() {
            self.revision = Some(revision);
        }
        self.first_revision.get_or_insert(revision);
        let more = reply.more();
        let kvs = reply.take_kvs();
        if let Some(last) = kvs.last() {
            let last = last.key().to_vec();
            self.window = Some(if self.reverse {
                (start, last)
            } else {
                (successor(last), end)
            });
        }
        if !more || kvs.len() < page {
            self.window = None;
        }
        for kv in kvs {
            let (wire, value) = kv.into_key_value();
            let Some(key) = self.inner.ns.user_of(&wire) else {
                return Err(Error::protocol("etcd returned a key outside the namespace"));
            };
            let entry = match self.projection {
                Projection::KeysAndValues => Entry::new(key, value),
                Projection::KeysOnly => Entry::new(key, Vec::new()),
                Projection::ValuesOnly => Entry::new(Vec::new(), value),
            };
            self.buffer.push_back(entry);
            if let Some(left) = self.remaining.as_mut() {
                *left = left.saturating_sub(1);
            }
        }
        if self.remaining == Some(0) {
            self.window = None;
        }
        Ok(())
    }
}

#[async_trait]
impl KvIterator for EtcdIter {
    async fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        self.inner.check_open()?;
        let max = max.max(1);
        if self.buffer.is_empty() {
            self.fetch(max).await?;
        }
        let n = max.min(self.buffer.len());
        Ok(self.buffer.drain(..n).collect())
    }

    fn snapshot_sequence(&self) -> Option<u64> {
        self.first_revision.and_then(|r| u64::try_from(r).ok())
    }
}
