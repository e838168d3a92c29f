//! Change subscriptions: what a watcher receives from [`crate::KvStore::watch`].
//!
//! Every commit that applies writes has a number ([`crate::KvStore::sequence`]). A watcher of a
//! [`Range`] receives, in commit order, one [`Commit`] per commit that changed a key of the
//! range, holding every change of that commit inside the range (a batch arrives whole, never
//! split), and now and then a [`WatchEvent::Progress`] mark saying how far it has seen.
//!
//! # Positions
//!
//! `watch(range, from)` delivers the commits numbered **above** `from`: pass the sequence of
//! the last commit you processed (or of the snapshot you listed, see
//! [`crate::KvIterator::snapshot_sequence`]) and you get exactly what came after it, taken from
//! the store's bounded history when it is older than now. `None` starts at the current
//! sequence. The first item of every stream is `Progress { sequence: start }`, naming the
//! position it starts from.
//!
//! A position older than the retained history fails with [`crate::Error::Compacted`] (never a
//! silent gap); a watcher that falls so far behind that its next commit has left the history
//! ends with [`crate::Error::Lagged`], carrying the position to resume from.
//!
//! # Clears
//!
//! A `clear` is reported as [`Change::Clear`] with the key range it removed, intersected with
//! the watched range and reduced to bounds (a `clear` with a limit is reported as the exact
//! bounds of the keys it removed). To apply it to a copy of the data, delete every key of the
//! copy inside that range; the store holds no key there after the commit except those the same
//! commit puts afterwards (a commit's changes apply in order).

use std::ops::Bound;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::{Error, Projection, Range, Result};

/// One change to one key (or one range, for a `clear`) within a [`Commit`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// `key` was set to `value`.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Its new value (empty when the watch asked for keys only).
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// `key` was deleted (it may have been absent).
    Del {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Every key of `range` was deleted. The range holds bounds only (no direction, limit or
    /// projection): delete every key it contains to apply it.
    Clear {
        /// The removed keys' range.
        range: Range,
    },
}

impl Change {
    /// The number of bytes of keys and values this change carries (for buffer bounds).
    pub fn payload_len(&self) -> usize {
        match self {
            Change::Put { key, value } => key.len() + value.len(),
            Change::Del { key } => key.len(),
            Change::Clear { range } => [&range.gt, &range.gte, &range.lt, &range.lte]
                .iter()
                .map(|b| b.as_ref().map_or(0, Vec::len))
                .sum(),
        }
    }
}

/// The changes one commit made inside a watched range, in the order they were applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The commit's number ([`crate::KvStore::sequence`]).
    pub sequence: u64,
    /// Its changes inside the range (never empty in a delivered commit).
    pub changes: Vec<Change>,
}

impl Commit {
    /// This commit reduced to `range` (bounds and projection), or `None` when it changed
    /// nothing there.
    pub fn within(&self, range: &Range) -> Option<Commit> {
        let mut changes = Vec::new();
        for change in &self.changes {
            match change {
                Change::Put { key, value } if range.contains(key) => {
                    let (key, value) = project(range.projection, key, value);
                    changes.push(Change::Put { key, value });
                }
                Change::Del { key } if range.contains(key) => {
                    let key = if range.projection.keys() {
                        key.clone()
                    } else {
                        Vec::new()
                    };
                    changes.push(Change::Del { key });
                }
                Change::Clear { range: cleared } => {
                    let both = intersect(cleared, range);
                    if !both.is_empty() {
                        changes.push(Change::Clear { range: both });
                    }
                }
                _ => {}
            }
        }
        (!changes.is_empty()).then_some(Commit {
            sequence: self.sequence,
            changes,
        })
    }

    /// The bytes of keys and values this commit carries.
    pub fn payload_len(&self) -> usize {
        self.changes.iter().map(Change::payload_len).sum()
    }
}

fn project(projection: Projection, key: &[u8], value: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (
        if projection.keys() {
            key.to_vec()
        } else {
            Vec::new()
        },
        if projection.values() {
            value.to_vec()
        } else {
            Vec::new()
        },
    )
}

/// The bounds of both ranges at once (direction, limit and projection dropped).
pub fn intersect(a: &Range, b: &Range) -> Range {
    let lower = stricter_lower(a.lower(), b.lower());
    let upper = stricter_upper(a.upper(), b.upper());
    let mut out = Range::all();
    match lower {
        Bound::Included(k) => out.gte = Some(k.to_vec()),
        Bound::Excluded(k) => out.gt = Some(k.to_vec()),
        Bound::Unbounded => {}
    }
    match upper {
        Bound::Included(k) => out.lte = Some(k.to_vec()),
        Bound::Excluded(k) => out.lt = Some(k.to_vec()),
        Bound::Unbounded => {}
    }
    out
}

fn stricter_lower<'a>(a: Bound<&'a [u8]>, b: Bound<&'a [u8]>) -> Bound<&'a [u8]> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.max(y)),
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.max(y)),
        (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
            if i > e {
                Bound::Included(i)
            } else {
                Bound::Excluded(e)
            }
        }
    }
}

fn stricter_upper<'a>(a: Bound<&'a [u8]>, b: Bound<&'a [u8]>) -> Bound<&'a [u8]> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.min(y)),
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.min(y)),
        (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
            if i < e {
                Bound::Included(i)
            } else {
                Bound::Excluded(e)
            }
        }
    }
}

/// What a watch stream yields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchEvent {
    /// The changes of one commit inside the watched range.
    Commit(Commit),
    /// Every commit up to `sequence` inside the range has been delivered: persist it as the
    /// position to resume from. Sent first (the starting position) and whenever the watcher
    /// has been idle for [`WatchOptions::progress_interval`].
    Progress {
        /// The position reached.
        sequence: u64,
    },
}

impl WatchEvent {
    /// The position this event brings its watcher to.
    pub fn sequence(&self) -> u64 {
        match self {
            WatchEvent::Commit(commit) => commit.sequence,
            WatchEvent::Progress { sequence } => *sequence,
        }
    }
}

/// The stream [`crate::KvStore::watch`] returns. It ends only with an error (or when the store
/// closes, with [`Error::Closed`]); drop it to stop watching.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// How much history a store keeps for watchers, and how watchers are paced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// The most commits the change log keeps (default 100 000); older ones are dropped as new
    /// ones arrive, in the same engine commit. 0 keeps none: a watcher can then only start at
    /// the current sequence.
    pub history_entries: u64,
    /// The most bytes of keys and values the change log keeps (default 64 MiB).
    pub history_bytes: u64,
    /// How long a watcher that received nothing waits before it is sent a
    /// [`WatchEvent::Progress`] mark (default 1 s).
    pub progress_interval: Duration,
    /// How many commits a store keeps in memory for its live watchers (default 1024). A
    /// watcher further behind reads from the change log instead (never blocking writers);
    /// one behind the log too ends with [`Error::Lagged`].
    pub live_commits: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            history_entries: 100_000,
            history_bytes: 64 << 20,
            progress_interval: Duration::from_secs(1),
            live_commits: 1024,
        }
    }
}

/// Checks that `range` can be watched: bounds and projection only (a direction or a limit
/// means nothing for a stream of changes).
pub fn check_range(range: &Range) -> Result<()> {
    if range.reverse {
        return Err(Error::invalid("a watched range has no direction (reverse)"));
    }
    if range.limit.is_some() {
        return Err(Error::invalid("a watched range has no limit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Change {
        Change::Put {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn a_commit_is_reduced_to_the_range() {
        let commit = Commit {
            sequence: 7,
            changes: vec![
                put("a", "1"),
                put("m", "2"),
                Change::Del { key: "n".into() },
                Change::Clear {
                    range: Range::all().gte("k"),
                },
                put("z", "3"),
            ],
        };
        let within = commit.within(&Range::all().gte("b").lt("p")).unwrap();
        assert_eq!(
            within,
            Commit {
                sequence: 7,
                changes: vec![
                    put("m", "2"),
                    Change::Del { key: "n".into() },
                    Change::Clear {
                        range: Range::all().gte("k").lt("p"),
                    },
                ],
            }
        );
        assert_eq!(commit.within(&Range::prefix("c")), None);
        let keys = commit.within(&Range::prefix("m").keys_only()).unwrap();
        assert_eq!(
            keys.changes,
            vec![
                put("m", ""),
                Change::Clear {
                    range: Range::all().gte("m").lt("n"),
                },
            ]
        );
    }

    #[test]
    fn intersections_keep_the_stricter_bound() {
        let a = Range::all().gt("b").lte("x");
        let b = Range::all().gte("b").lt("x");
        assert_eq!(intersect(&a, &b), Range::all().gt("b").lt("x"));
        let c = Range::all().gte("c");
        assert_eq!(intersect(&a, &c), Range::all().gte("c").lte("x"));
        assert!(intersect(&Range::all().lt("b"), &Range::all().gte("c")).is_empty());
    }

    #[test]
    fn only_bounds_can_be_watched() {
        assert!(check_range(&Range::prefix("a")).is_ok());
        assert!(check_range(&Range::all().reverse()).is_err());
        assert!(check_range(&Range::all().limit(3)).is_err());
    }
}
