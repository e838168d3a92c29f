//! Blocking iterators: entries of a range, events of a watch.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;

use super::Exec;
use crate::stream::BoxStream;
use crate::stream::Chunks;
use crate::{Entry, Result, WatchEvent};

/// A blocking iterator over the entries of a range, fetched in chunks; items are
/// `(key, value)` or, from a typed view, `(K, V)`.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
/// db.put("k", "v")?;
/// let mut iter: rave::blocking::Iter = db.range(..)?;
/// assert_eq!(iter.next().transpose()?, Some((b"k".to_vec(), b"v".to_vec())));
/// assert!(iter.next().is_none());
/// # Ok::<(), rave::Error>(())
/// ```
pub struct Iter<T = (Vec<u8>, Vec<u8>)> {
    chunks: Option<Chunks>,
    buffer: VecDeque<Entry>,
    item: Box<dyn FnMut(Entry) -> Result<T> + Send>,
    exec: Arc<Exec>,
    snapshot: Option<u64>,
    done: bool,
}

impl<T> Iter<T> {
    pub(super) fn new(
        iter: Box<dyn crate::KvIterator>,
        exec: Arc<Exec>,
        item: impl FnMut(Entry) -> Result<T> + Send + 'static,
    ) -> Self {
        let chunks = Chunks::new(iter);
        Iter {
            snapshot: chunks.snapshot_sequence(),
            chunks: Some(chunks),
            buffer: VecDeque::new(),
            item: Box::new(item),
            exec,
            done: false,
        }
    }

    /// The commit sequence of the snapshot this iterator reads, when the store knows it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
    /// let _position: Option<u64> = db.range(..)?.snapshot_sequence();
    /// # Ok::<(), rave::Error>(())
    /// ```
    pub fn snapshot_sequence(&self) -> Option<u64> {
        self.snapshot
    }
}

impl<T> Iterator for Iter<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(entry) = self.buffer.pop_front() {
                return Some((self.item)(entry));
            }
            if self.done {
                return None;
            }
            let mut chunks = self.chunks.take()?;
            let fetched = self.exec.run(async move {
                let chunk = chunks.next().await;
                Ok((chunks, chunk))
            });
            match fetched {
                Ok((chunks, chunk)) => {
                    self.chunks = Some(chunks);
                    match chunk {
                        Ok(chunk) if chunk.is_empty() => self.done = true,
                        Ok(chunk) => self.buffer = chunk,
                        // The iterator may go on after an error (a resume that failed).
                        Err(err) => return Some(Err(err)),
                    }
                }
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            }
        }
    }
}

impl<T> Drop for Iter<T> {
    fn drop(&mut self) {
        self.exec.drop_inside(self.chunks.take());
    }
}

impl<T> std::fmt::Debug for Iter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Iter")
            .field("buffered", &self.buffer.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A blocking iterator over the events of a watch (see [`crate::KvStore::watch`]); it ends
/// only with an error.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let db = rave::blocking::Rave::open(dir.path(), Default::default())?;
/// if let Ok(mut events) = db.watch(.., None) {
///     let _first: Option<rave::Result<rave::WatchEvent>> = events.next();
/// }
/// # Ok::<(), rave::Error>(())
/// ```
pub struct Watch<T = WatchEvent> {
    pub(super) stream: Option<BoxStream<'static, Result<T>>>,
    pub(super) exec: Arc<Exec>,
}

impl<T: Send + 'static> Iterator for Watch<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        let mut stream = self.stream.take()?;
        let next = self.exec.run(async move {
            let event = stream.next().await;
            Ok((stream, event))
        });
        match next {
            Ok((stream, event)) => {
                self.stream = Some(stream);
                event
            }
            Err(err) => Some(Err(err)),
        }
    }
}

impl<T> Drop for Watch<T> {
    fn drop(&mut self) {
        self.exec.drop_inside(self.stream.take());
    }
}

impl<T> std::fmt::Debug for Watch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Watch").finish_non_exhaustive()
    }
}
