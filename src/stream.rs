//! Iterators as a [`Stream`] of entries, fetched in chunks.
//!
//! An [`Entries`] stream asks its store for entries a chunk at a time (16, then doubling up to
//! [`MAX_CHUNK`]), so a scan on a leader crosses to the engine thread once per chunk, not once
//! per entry, and the first entries of a short scan still come quickly.
//!
//! The traits to consume a stream (`StreamExt::next`, `TryStreamExt::try_collect`, ...) are
//! re-exported here from `futures`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use futures::stream::{BoxStream, Stream, StreamExt, TryStreamExt};

use crate::{Entry, KvIterator, Result};

/// The first chunk an [`Entries`] stream asks for.
pub const FIRST_CHUNK: usize = 16;

/// The largest chunk an [`Entries`] stream asks for (the chunk doubles up to it).
pub const MAX_CHUNK: usize = 256;

/// A stream of entries of a range: `(key, value)` pairs of bytes, or `(K, V)` of a typed view.
///
/// Each item is a `Result`: an error (the store closed, a value that does not decode) is
/// delivered in place and the stream may go on. It sees the snapshot of the iterator it reads
/// ([`crate::KvStore::iterator`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use rave::stream::TryStreamExt;
/// let db = rave::Rave::open(dir.path(), Default::default())?;
/// db.put("a", "1").await?;
/// db.put("b", "2").await?;
/// let all: Vec<(Vec<u8>, Vec<u8>)> = db.range("a"..).await?.try_collect().await?;
/// assert_eq!(all, [(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
/// # db.close().await }
/// ```
pub struct Entries<T = (Vec<u8>, Vec<u8>)> {
    inner: Pin<Box<dyn Stream<Item = Result<T>> + Send>>,
    snapshot: Option<u64>,
}

impl<T: Send + 'static> Entries<T> {
    /// The stream of `iter`'s entries, each turned into an item by `item`.
    pub(crate) fn new(
        iter: Box<dyn KvIterator>,
        mut item: impl FnMut(Entry) -> Result<T> + Send + 'static,
    ) -> Self {
        let snapshot = iter.snapshot_sequence();
        let chunks = futures::stream::try_unfold(Chunks::new(iter), |mut chunks| async move {
            let chunk = chunks.next().await?;
            Ok::<_, crate::Error>((!chunk.is_empty()).then_some((chunk, chunks)))
        });
        let entries = chunks
            .map_ok(|chunk| futures::stream::iter(chunk.into_iter().map(Ok)))
            .try_flatten()
            .map(move |entry: Result<Entry>| entry.and_then(&mut item));
        Entries {
            inner: Box::pin(entries),
            snapshot,
        }
    }

    /// The commit sequence of the snapshot this stream reads, when the store knows it (see
    /// [`KvIterator::snapshot_sequence`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> rave::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = rave::Rave::open(dir.path(), Default::default())?;
    /// let entries = db.range(..).await?;
    /// let _position: Option<u64> = entries.snapshot_sequence();
    /// # db.close().await }
    /// ```
    pub fn snapshot_sequence(&self) -> Option<u64> {
        self.snapshot
    }
}

impl<T> Stream for Entries<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl<T> std::fmt::Debug for Entries<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}

/// An iterator read in growing chunks (shared by [`Entries`] and the blocking iterator).
pub(crate) struct Chunks {
    iter: Box<dyn KvIterator>,
    size: usize,
}

impl Chunks {
    pub(crate) fn new(iter: Box<dyn KvIterator>) -> Self {
        Chunks {
            iter,
            size: FIRST_CHUNK,
        }
    }

    /// The next chunk (empty at the end).
    pub(crate) async fn next(&mut self) -> Result<VecDeque<Entry>> {
        let chunk = self.iter.next_chunk(self.size).await?;
        self.size = (self.size * 2).min(MAX_CHUNK);
        Ok(chunk.into())
    }

    pub(crate) fn snapshot_sequence(&self) -> Option<u64> {
        self.iter.snapshot_sequence()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::*;

    /// An iterator of `n` entries that records the chunk sizes asked of it.
    struct Counted {
        left: usize,
        asked: Arc<Mutex<Vec<usize>>>,
    }

    #[async_trait]
    impl KvIterator for Counted {
        async fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
            self.asked.lock().unwrap().push(max);
            let n = max.min(self.left);
            self.left -= n;
            Ok((0..n).map(|i| Entry::new(vec![i as u8], vec![])).collect())
        }
    }

    /// One call to the iterator per chunk, not per entry: 1000 entries take 8 calls.
    #[tokio::test]
    async fn entries_are_fetched_in_growing_chunks() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let iter = Counted {
            left: 1000,
            asked: asked.clone(),
        };
        let entries = Entries::new(Box::new(iter), |e| Ok(e.key));
        let all: Vec<Vec<u8>> = entries.try_collect().await.unwrap();
        assert_eq!(all.len(), 1000);
        assert_eq!(
            *asked.lock().unwrap(),
            [16, 32, 64, 128, 256, 256, 256, 256]
        );
    }
}
