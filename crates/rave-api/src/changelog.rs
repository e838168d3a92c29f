//! The change log: the bounded history of commits that watchers start from
//! ([`crate::KvStore::watch`] with a `from` older than now).
//!
//! - Every commit that applies writes appends one entry, under rave's reserved block
//!   (`0xFF 0x00 "c/"` + the commit's number, big-endian), holding the commit's changes in user
//!   keys ([`encode`]); it is written in the **same engine commit** as the writes, so the log
//!   and the data never disagree, on any engine, across any crash.
//! - The log is trimmed from its oldest end in the same commits, a few entries at a time
//!   ([`TRIM_PER_COMMIT`]), whenever it holds more than [`crate::WatchOptions::history_entries`]
//!   entries or [`crate::WatchOptions::history_bytes`] bytes. Its **floor** is the highest number
//!   no longer available: a watcher may start from any position at or above it
//!   ([`crate::Error::Compacted`] below it).
//! - The floor and the log's size travel in the sequence record ([`crate::sequence`]), written
//!   in every commit. A directory whose last commits were not logged (written by an earlier
//!   release, or with the history turned off) has its floor at its sequence: history starts
//!   there.

use std::collections::VecDeque;

use crate::engine_thread::{Engine, EngineIter};
use crate::keyspace::{meta_key, meta_range};
use crate::sequence::Mark;
use crate::watch::{Change, Commit};
use crate::{BatchOp, Error, Range, Result, WatchOptions};

/// The name prefix of log entries in the reserved block.
const ENTRY_PREFIX: &[u8] = b"c/";

/// The most entries one commit deletes from the log's old end: trimming is spread over
/// commits, so that no single commit pays for a large deletion.
pub const TRIM_PER_COMMIT: usize = 16;

/// How many entries a refill of the trim queue reads at a time.
const TRIM_REFILL: usize = 256;

/// The engine key of the log entry of commit `seq`.
pub(crate) fn entry_key(seq: u64) -> Vec<u8> {
    let mut name = ENTRY_PREFIX.to_vec();
    name.extend_from_slice(&seq.to_be_bytes());
    meta_key(&name)
}

/// The engine range of the log entries numbered above `after`.
fn entries_after(after: u64) -> Range {
    let mut range = meta_range(ENTRY_PREFIX);
    match after.checked_add(1) {
        Some(next) => range.gte = Some(entry_key(next)),
        None => range.gt = Some(entry_key(u64::MAX)),
    }
    range
}

fn seq_of(key: &[u8]) -> Result<u64> {
    let prefix = meta_key(ENTRY_PREFIX);
    key.strip_prefix(prefix.as_slice())
        .and_then(|rest| <[u8; 8]>::try_from(rest).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Error::corruption(format!("a damaged change-log key {key:02x?}")))
}

/// The change log's state, kept by the engine thread beside the exactly-once records.
#[derive(Debug, Default)]
pub(crate) struct ChangeLog {
    /// The highest commit number whose entry may be gone.
    pub floor: u64,
    /// Entries in the log.
    pub entries: u64,
    /// Bytes of entry values in the log.
    pub bytes: u64,
    max_entries: u64,
    max_bytes: u64,
    /// The oldest entries (number, size), in order: the next ones to trim. Filled from the
    /// engine when empty and a trim is due, so it never holds more than [`TRIM_REFILL`].
    oldest: VecDeque<(u64, u64)>,
}

/// What a commit changes in the log, applied to [`ChangeLog`] once the commit succeeded.
#[derive(Debug)]
pub(crate) struct Staged {
    mark: Mark,
    trimmed: usize,
    logged: bool,
}

impl Staged {
    /// The sequence record to write in the commit.
    pub fn mark(&self) -> Mark {
        self.mark
    }

    /// Whether the commit has an entry in the log.
    pub fn logged(&self) -> bool {
        self.logged
    }
}

impl ChangeLog {
    /// The log of an engine whose sequence record reads `mark`.
    pub fn load(mark: Mark, options: &WatchOptions) -> Self {
        ChangeLog {
            floor: mark.floor,
            entries: mark.entries,
            bytes: mark.bytes,
            max_entries: options.history_entries,
            max_bytes: options.history_bytes,
            oldest: VecDeque::new(),
        }
    }

    fn enabled(&self) -> bool {
        self.max_entries > 0 && self.max_bytes > 0
    }

    /// Appends `commit`'s entry and the trimming deletes to `ops`, and returns the state to
    /// record. A failed trim (the engine could not list the old end) is logged and retried by
    /// a later commit: the log then stays a little over its bounds meanwhile.
    pub fn append<E: Engine>(
        &mut self,
        engine: &E,
        commit: &Commit,
        ops: &mut Vec<BatchOp>,
    ) -> Staged {
        let mut mark = Mark {
            seq: commit.sequence,
            floor: self.floor,
            entries: self.entries,
            bytes: self.bytes,
        };
        if self.enabled() {
            let value = encode(&commit.changes);
            mark.entries += 1;
            mark.bytes += value.len() as u64;
            ops.push(BatchOp::put(entry_key(commit.sequence), value));
        } else {
            // No history (what is left of an earlier one is being trimmed): every position
            // below the current one is gone.
            mark.floor = commit.sequence;
        }
        let mut trimmed = 0;
        while trimmed < TRIM_PER_COMMIT
            && mark.entries > 0
            && (mark.entries > self.max_entries || mark.bytes > self.max_bytes)
        {
            if trimmed == self.oldest.len() && !self.refill(engine) {
                break;
            }
            let Some(&(seq, size)) = self.oldest.get(trimmed) else {
                break;
            };
            ops.push(BatchOp::del(entry_key(seq)));
            mark.entries -= 1;
            mark.bytes = mark.bytes.saturating_sub(size);
            mark.floor = mark.floor.max(seq);
            trimmed += 1;
        }
        Staged {
            mark,
            trimmed,
            logged: self.enabled(),
        }
    }

    /// Reads the next oldest entries after those queued; false when there are none or the
    /// engine failed (logged).
    fn refill<E: Engine>(&mut self, engine: &E) -> bool {
        let after = self.oldest.back().map_or(self.floor, |&(seq, _)| seq);
        let read = (|| {
            let mut iter = engine.iter(&entries_after(after))?;
            let mut added = 0;
            while added < TRIM_REFILL {
                let Some((key, value)) = iter.next_entry()? else {
                    break;
                };
                self.oldest.push_back((seq_of(&key)?, value.len() as u64));
                added += 1;
            }
            Ok::<_, Error>(added > 0)
        })();
        read.unwrap_or_else(|err| {
            tracing::warn!(%err, "could not read the change log's old end; trimming later");
            false
        })
    }

    /// The commit that `staged` was built for is in the engine.
    pub fn commit(&mut self, staged: Staged) {
        self.oldest.drain(..staged.trimmed.min(self.oldest.len()));
        self.floor = staged.mark.floor;
        self.entries = staged.mark.entries;
        self.bytes = staged.mark.bytes;
    }

    /// Up to about `max_bytes` of the commits numbered above `after`, oldest first (at least
    /// one when there is one), and whether more follow. A position below the floor is
    /// [`Error::Compacted`].
    pub fn read_after<E: Engine>(
        &self,
        engine: &E,
        after: u64,
        max_bytes: usize,
    ) -> Result<(Vec<Commit>, bool)> {
        if after < self.floor {
            return Err(Error::Compacted { oldest: self.floor });
        }
        let mut iter = engine.iter(&entries_after(after))?;
        let mut commits = Vec::new();
        let mut bytes = 0;
        while bytes < max_bytes {
            let Some((key, value)) = iter.next_entry()? else {
                return Ok((commits, false));
            };
            bytes += value.len();
            commits.push(Commit {
                sequence: seq_of(&key)?,
                changes: decode(&value)?,
            });
        }
        Ok((commits, true))
    }
}

/// The bytes of a log entry: each change as a tag byte and its length-prefixed fields
/// (lengths as big-endian `u32`; a `Clear` carries its four optional bounds).
pub(crate) fn encode(changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::with_capacity(changes.iter().map(|c| c.payload_len() + 9).sum());
    for change in changes {
        match change {
            Change::Put { key, value } => {
                out.push(b'p');
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            Change::Del { key } => {
                out.push(b'd');
                put_bytes(&mut out, key);
            }
            Change::Clear { range } => {
                out.push(b'c');
                for bound in [&range.gt, &range.gte, &range.lt, &range.lte] {
                    match bound {
                        None => out.push(0),
                        Some(key) => {
                            out.push(1);
                            put_bytes(&mut out, key);
                        }
                    }
                }
            }
        }
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // A key or value is far below 4 GiB (frames are at most 64 MiB, batches are bounded).
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The changes of a log entry written by [`encode`].
pub(crate) fn decode(mut bytes: &[u8]) -> Result<Vec<Change>> {
    let damaged = || Error::corruption("a damaged change-log entry");
    let take = |n: usize, bytes: &mut &[u8]| -> Result<Vec<u8>> {
        let (head, rest) = bytes.split_at_checked(n).ok_or_else(damaged)?;
        *bytes = rest;
        Ok(head.to_vec())
    };
    let field = |bytes: &mut &[u8]| -> Result<Vec<u8>> {
        let len = take(4, bytes)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| damaged())?) as usize;
        take(len, bytes)
    };
    let mut changes = Vec::new();
    while let Some((&tag, rest)) = bytes.split_first() {
        bytes = rest;
        changes.push(match tag {
            b'p' => Change::Put {
                key: field(&mut bytes)?,
                value: field(&mut bytes)?,
            },
            b'd' => Change::Del {
                key: field(&mut bytes)?,
            },
            b'c' => {
                let mut bounds = [None, None, None, None];
                for bound in &mut bounds {
                    let (&present, rest) = bytes.split_first().ok_or_else(damaged)?;
                    bytes = rest;
                    *bound = match present {
                        0 => None,
                        1 => Some(field(&mut bytes)?),
                        _ => return Err(damaged()),
                    };
                }
                let [gt, gte, lt, lte] = bounds;
                Change::Clear {
                    range: Range {
                        gt,
                        gte,
                        lt,
                        lte,
                        ..Range::all()
                    },
                }
            }
            _ => return Err(damaged()),
        });
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryEngine;

    fn commit(seq: u64, key: &str, value_len: usize) -> Commit {
        Commit {
            sequence: seq,
            changes: vec![Change::Put {
                key: key.into(),
                value: vec![7; value_len],
            }],
        }
    }

    #[test]
    fn entries_round_trip() {
        let changes = vec![
            Change::Put {
                key: vec![],
                value: vec![0xFF, 0],
            },
            Change::Del { key: b"k".to_vec() },
            Change::Clear {
                range: Range::all().gt("a").lte(vec![0xFF]),
            },
        ];
        assert_eq!(decode(&encode(&changes)).unwrap(), changes);
        let mut bad = encode(&changes);
        bad.truncate(bad.len() - 1);
        assert_eq!(
            decode(&bad).unwrap_err().kind(),
            crate::ErrorKind::Corruption
        );
    }

    /// Commits `n` more entries to `log`, the way `Group::commit` does.
    fn run(engine: &MemoryEngine, log: &mut ChangeLog, from: u64, n: u64, size: usize) {
        for seq in from..from + n {
            let mut ops = Vec::new();
            let staged = log.append(engine, &commit(seq, "k", size), &mut ops);
            engine.write(&ops).unwrap();
            log.commit(staged);
        }
    }

    #[test]
    fn the_log_keeps_its_bounds_and_reports_its_floor() {
        let engine = MemoryEngine::default();
        let options = WatchOptions {
            history_entries: 10,
            history_bytes: 1 << 20,
            ..WatchOptions::default()
        };
        let mut log = ChangeLog::load(Mark::default(), &options);
        run(&engine, &mut log, 1, 25, 10);
        assert_eq!(log.entries, 10);
        assert_eq!(log.floor, 15);
        let (commits, more) = log.read_after(&engine, 15, 1 << 20).unwrap();
        assert!(!more);
        let seqs: Vec<u64> = commits.iter().map(|c| c.sequence).collect();
        assert_eq!(seqs, (16..=25).collect::<Vec<_>>());
        let err = log.read_after(&engine, 14, 1 << 20).unwrap_err();
        assert!(matches!(err, Error::Compacted { oldest: 15 }), "{err}");
        // Paged by bytes, at least one entry a page.
        let (page, more) = log.read_after(&engine, 15, 1).unwrap();
        assert_eq!((page.len(), more), (1, true));
    }

    #[test]
    fn the_byte_bound_trims_too() {
        let engine = MemoryEngine::default();
        let options = WatchOptions {
            history_entries: 1000,
            history_bytes: 1000,
            ..WatchOptions::default()
        };
        let mut log = ChangeLog::load(Mark::default(), &options);
        run(&engine, &mut log, 1, 50, 100);
        assert!(log.bytes <= 1000, "{}", log.bytes);
        assert!(log.entries >= 8, "{}", log.entries);
        let (commits, _) = log.read_after(&engine, log.floor, 1 << 20).unwrap();
        assert_eq!(commits.len() as u64, log.entries);
        assert_eq!(commits.last().unwrap().sequence, 50);
    }

    #[test]
    fn without_history_the_floor_follows_the_sequence() {
        let engine = MemoryEngine::default();
        let options = WatchOptions {
            history_entries: 0,
            ..WatchOptions::default()
        };
        let mut log = ChangeLog::load(Mark::default(), &options);
        run(&engine, &mut log, 1, 3, 10);
        assert_eq!((log.entries, log.floor), (0, 3));
        assert!(log.read_after(&engine, 3, 100).unwrap().0.is_empty());
        assert!(log.read_after(&engine, 2, 100).is_err());
    }
}
