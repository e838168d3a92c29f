//! One iterator of a guest: a task that reads the store's iterator under many-level's flow
//! control.
//!
//! The first read after an open or a seek is one entry; after that the task reads ahead only
//! on the guest's acks, in batches sized to about 16 KiB, with at most two data messages
//! unacknowledged. Messages carry the seek generation (`seq`); acks of an older generation are
//! ignored. A data message is never empty (the guest would take it for the end).
//!
//! Snapshot: the store's iterator keeps the snapshot taken at the open. A seek ahead of what was
//! read (in iteration order) skips forward in the same snapshot; a seek back reopens the
//! iterator at the target, in a new snapshot (the store's iterators cannot move back). A resume
//! (an open carrying a bookmark) starts strictly after the bookmark in iteration order, in both
//! directions: Node's host gets the reverse case wrong and skips keys.

use std::collections::VecDeque;
use std::sync::Arc;

use rave_api::{Entry, KvIterator, KvStore, Projection, Range};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::codes;
use crate::frame::Outgoing;
use crate::messages::{self as m, reply};
use crate::range::to_range;

/// The connection's side of an iterator task: dropping it ends the task.
pub(super) struct Handle {
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl Handle {
    pub(super) fn ack(&self, seq: u32, consumed: u64) {
        let _ = self.commands.send(Command::Ack { seq, consumed });
    }

    pub(super) fn seek(&self, seq: u32, target: Vec<u8>) {
        let _ = self.commands.send(Command::Seek { seq, target });
    }

    pub(super) fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Command {
    Ack { seq: u32, consumed: u64 },
    Seek { seq: u32, target: Vec<u8> },
}

/// Starts the iterator of `open` (a new one, or one resumed after a reconnect). Its snapshot
/// is taken before this returns, so requests that come after the open on the connection are
/// not in it.
pub(super) async fn open(
    store: Arc<dyn KvStore>,
    open: m::Iterator,
    out: mpsc::Sender<Outgoing>,
) -> Handle {
    let (commands, mut rx) = mpsc::unbounded_channel();
    let mut it = HostIter::new(store, &open, out);
    let start = if let Some(target) = open.seek {
        it.position(&target, true).await
    } else if let Some(bookmark) = open.bookmark {
        it.position(&bookmark, false).await
    } else {
        it.reopen(it.base.clone()).await
    };
    let task = tokio::spawn(async move {
        if start.is_err() || it.pump(true).await.is_err() {
            return;
        }
        while let Some(command) = rx.recv().await {
            let sent = match command {
                Command::Ack { seq, consumed } => {
                    if seq != it.seq {
                        continue;
                    }
                    it.pending = it.pending.saturating_sub(1);
                    it.consumed = it.consumed.max(consumed);
                    it.pump(false).await
                }
                Command::Seek { seq, target } => {
                    it.seq = seq;
                    it.pending = 0;
                    it.ended = false;
                    it.consumed_at_start = it.consumed;
                    it.sent = 0;
                    match it.position(&target, true).await {
                        Ok(()) => it.pump(true).await,
                        Err(closed) => Err(closed),
                    }
                }
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Handle { commands, task }
}

/// The connection is gone: the task ends.
struct Gone;

/// About 16 KiB of entries per read-ahead, as Node's host.
const READ_AHEAD_BYTES: usize = 16 * 1024;

struct HostIter {
    store: Arc<dyn KvStore>,
    id: u32,
    seq: u32,
    keys: bool,
    values: bool,
    /// The range without its limit (the limit counts across seeks and resumes).
    base: Range,
    limit: Option<u64>,
    /// Entries the guest has consumed (from the open message and the acks).
    consumed: u64,
    consumed_at_start: u64,
    /// Entries sent since the last open or seek.
    sent: u64,
    cursor: Option<Box<dyn KvIterator>>,
    /// Entries read from the cursor but not sent yet.
    buffered: VecDeque<Entry>,
    /// The last key sent (from the cursor): where the cursor stands.
    last_sent: Option<Vec<u8>>,
    /// The cursor reached its end (it is kept: a seek ahead stays in its snapshot).
    exhausted: bool,
    /// The end (or an error) was sent for the current seek generation.
    ended: bool,
    pending: u32,
    bytes_per_entry: usize,
    out: mpsc::Sender<Outgoing>,
}

impl HostIter {
    fn new(store: Arc<dyn KvStore>, open: &m::Iterator, out: mpsc::Sender<Outgoing>) -> Self {
        let keys = open.options.keys.unwrap_or(false);
        let values = open.options.values.unwrap_or(false);
        let mut base = to_range(&open.options);
        let limit = base.limit.take();
        // Keys are read even when the guest wants values only: seeks and resumes need them.
        base.projection = if keys && !values {
            Projection::KeysOnly
        } else {
            Projection::KeysAndValues
        };
        HostIter {
            store,
            id: open.id,
            seq: open.seq,
            keys,
            values,
            base,
            limit,
            consumed: open.consumed,
            consumed_at_start: open.consumed,
            sent: 0,
            cursor: None,
            buffered: VecDeque::new(),
            last_sent: None,
            exhausted: false,
            ended: false,
            pending: 0,
            bytes_per_entry: 1,
            out,
        }
    }

    async fn send(&mut self, message: Outgoing) -> Result<(), Gone> {
        self.out.send(message).await.map_err(|_| Gone)
    }

    async fn fail(&mut self, err: rave_api::Error) -> Result<(), Gone> {
        self.ended = true;
        self.exhausted = true;
        self.cursor = None;
        let error = codes::code_of(&err).to_string();
        let (id, seq) = (self.id, self.seq);
        self.send(Outgoing::new(
            reply::ITERATOR_ERROR,
            &m::IteratorError { id, seq, error },
        ))
        .await
    }

    /// A fresh cursor on `range`.
    async fn reopen(&mut self, range: Range) -> Result<(), Gone> {
        self.buffered.clear();
        self.cursor = None;
        self.last_sent = None;
        self.exhausted = false;
        match (*self.store).iterator(range).await {
            Ok(cursor) => {
                self.cursor = Some(cursor);
                Ok(())
            }
            Err(e) => self.fail(e).await,
        }
    }

    /// Whether `key` comes after `than` in iteration order.
    fn after(&self, key: &[u8], than: &[u8]) -> bool {
        if self.base.reverse {
            key < than
        } else {
            key > than
        }
    }

    /// Moves to `target`: at it (`inclusive`, a seek) or strictly after it (a resume's bookmark).
    /// A seek outside the range ends the iterator, in both directions (abstract-level's rule).
    async fn position(&mut self, target: &[u8], inclusive: bool) -> Result<(), Gone> {
        if inclusive && !self.base.contains(target) {
            self.cursor = None;
            self.buffered.clear();
            self.exhausted = true;
            return Ok(());
        }
        let ahead = self.cursor.is_some()
            && self
                .last_sent
                .as_deref()
                .is_none_or(|last| self.after(target, last));
        if !ahead {
            let mut range = self.base.clone();
            // rave's ranges intersect every bound, so the target only adds one (the stricter
            // of it and the range's own): a bookmark outside the range cannot widen it.
            let bound = match (self.base.reverse, inclusive) {
                (false, true) => &mut range.gte,
                (true, true) => &mut range.lte,
                (false, false) => &mut range.gt,
                (true, false) => &mut range.lt,
            };
            let stricter = match bound.as_deref() {
                Some(own) if self.base.reverse => target.min(own),
                Some(own) => target.max(own),
                None => target,
            };
            *bound = Some(stricter.to_vec());
            return self.reopen(range).await;
        }
        // Skip forward in the same snapshot.
        loop {
            while let Some(front) = self.buffered.front() {
                let before = if inclusive {
                    self.after(target, &front.key)
                } else {
                    !self.after(&front.key, target)
                };
                if !before {
                    return Ok(());
                }
                self.buffered.pop_front();
            }
            let Some(cursor) = self.cursor.as_mut().filter(|_| !self.exhausted) else {
                return Ok(());
            };
            match cursor.next_chunk(256).await {
                Ok(chunk) if chunk.is_empty() => {
                    self.exhausted = true;
                    return Ok(());
                }
                Ok(chunk) => self.buffered.extend(chunk),
                Err(e) => return self.fail(e).await,
            }
        }
    }

    /// Entries the guest may still receive under the limit.
    fn remaining(&self) -> u64 {
        self.limit.map_or(u64::MAX, |limit| {
            limit.saturating_sub(self.consumed_at_start + self.sent)
        })
    }

    /// Reads and sends: one entry when `first`, else while fewer than two data messages wait
    /// for an ack.
    async fn pump(&mut self, first: bool) -> Result<(), Gone> {
        while !self.ended && self.pending < 2 {
            let room = (READ_AHEAD_BYTES / self.bytes_per_entry.max(1)).max(16);
            let want = if first { 1 } else { room as u64 }.min(self.remaining());
            let entries = if want == 0 {
                Vec::new()
            } else {
                self.read(want as usize).await?
            };
            if self.ended {
                return Ok(());
            }
            if entries.is_empty() {
                self.ended = true;
                let (id, seq) = (self.id, self.seq);
                return self
                    .send(Outgoing::new(
                        reply::ITERATOR_END,
                        &m::IteratorEnd { id, seq },
                    ))
                    .await;
            }
            self.sent += entries.len() as u64;
            self.last_sent = entries.last().map(|e| e.key.clone());
            let count = entries.len();
            let mut data = Vec::with_capacity(count * 2);
            for entry in entries {
                match (self.keys, self.values) {
                    (true, true) => {
                        data.push(entry.key);
                        data.push(entry.value);
                    }
                    (true, false) => data.push(entry.key),
                    _ => data.push(entry.value),
                }
            }
            let (id, seq) = (self.id, self.seq);
            let message = Outgoing::new(reply::ITERATOR_DATA, &m::IteratorData { id, seq, data });
            self.bytes_per_entry = self.bytes_per_entry.max(message.wire_len().div_ceil(count));
            self.send(message).await?;
            self.pending += 1;
            if first {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Up to `want` next entries (fewer only at the end); sets `ended` after an error.
    async fn read(&mut self, want: usize) -> Result<Vec<Entry>, Gone> {
        let mut entries = Vec::with_capacity(want.min(1024));
        while entries.len() < want {
            if let Some(entry) = self.buffered.pop_front() {
                entries.push(entry);
                continue;
            }
            let Some(cursor) = self.cursor.as_mut().filter(|_| !self.exhausted) else {
                break;
            };
            match cursor.next_chunk(want - entries.len()).await {
                Ok(chunk) if chunk.is_empty() => {
                    self.exhausted = true;
                    break;
                }
                Ok(chunk) => entries.extend(chunk),
                Err(e) => {
                    self.fail(e).await?;
                    return Ok(Vec::new());
                }
            }
        }
        Ok(entries)
    }
}
