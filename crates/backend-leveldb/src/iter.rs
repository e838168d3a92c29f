//! Iterators over a LevelDB snapshot, in both directions, built on forward moves only.
//!
//! rusty-leveldb's `DBIterator` walks forward correctly, but its backward walk is broken: when
//! the merging iterator turns around it re-seeks each source, and a source whose keys all lie
//! below the current key is advanced to its end and then *reset* (merging_iter.rs
//! `update_direction` "seek to last: while advance() {}", which leaves a skip-list or table
//! iterator invalid), so its entries vanish from a reverse scan. There is no `seek_to_last`
//! either. So reverse iteration here uses `seek` and `advance` only:
//!
//! - the remaining range is read top-down in *windows*: a forward scan from a start point up to
//!   the current upper bound keeps its last `window` entries, which are then handed out in
//!   reverse, and the upper bound drops below them;
//! - a start point close below the upper bound is found by bisecting the key space (see
//!   [`midpoint`]); start points found on the way are kept on a stack, so each is scanned from
//!   at most a few times;
//! - an unbounded upper bound is first resolved to the last key ([`find_last`]), byte by byte.
//!
//! Windows start small (a reverse iterator often wants one entry: "the latest") and double up to
//! [`MAX_WINDOW`]; memory stays bounded by a window, never the whole range.

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::ops::Bound;

use bytes::Bytes;
use rave_api::Result;
use rave_api::engine_thread::EngineIter;
use rusty_leveldb::{DBIterator, LdbIterator};

use crate::Shared;
use crate::env::Pin;
use crate::error::{self, Op};

/// Entries in the first reverse window.
const FIRST_WINDOW: usize = 16;
/// Entries in a reverse window at most.
pub(crate) const MAX_WINDOW: usize = 1024;
/// A scan for a window reads at most this many windows' worth of entries before it bisects.
const READ_FACTOR: usize = 4;
/// While looking for the last key, how far to walk forward before narrowing down by one byte.
const LAST_KEY_WALK: usize = 64;
/// Value bytes a reverse window holds at most; values past it are read again when handed out.
const WINDOW_VALUE_BYTES: usize = 4 << 20;

type Kv = (Bytes, Bytes);
/// A window entry: the value is `None` when it did not fit the window's byte budget.
type Slot = (Bytes, Option<Bytes>);

/// A cursor over a LevelDB snapshot, on the engine thread.
///
/// Its rusty-leveldb iterator and pin share `Rc`s with the database, which point reads use from
/// other threads under the engine's lock (see the `SAFETY` note on `Db` in lib.rs): so every
/// step, and the drop, holds that lock.
pub struct LevelDbIter<'a> {
    shared: &'a Shared,
    /// Only touched, and dropped, under `shared`'s lock.
    state: ManuallyDrop<State>,
}

struct State {
    it: DBIterator,
    mode: Mode,
    // Declared after `it` so that the iterator (and the table files it holds) goes first.
    pin: Pin,
}

enum Mode {
    Forward {
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        started: bool,
    },
    Reverse(Box<Reverse>),
    Done,
}

impl<'a> LevelDbIter<'a> {
    /// A cursor over `it` (a fresh snapshot iterator) for the range `lower..upper`.
    pub(crate) fn new(
        shared: &'a Shared,
        it: DBIterator,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
        pin: Pin,
    ) -> Self {
        let lower = lower.map(<[u8]>::to_vec);
        let upper = upper.map(<[u8]>::to_vec);
        let mode = if reverse {
            Mode::Reverse(Box::new(Reverse {
                lower,
                upper,
                starts: Vec::new(),
                window: FIRST_WINDOW,
                buf: Vec::new(),
                exhausted: false,
            }))
        } else {
            Mode::Forward {
                lower,
                upper,
                started: false,
            }
        };
        LevelDbIter {
            shared,
            state: ManuallyDrop::new(State { it, mode, pin }),
        }
    }
}

impl EngineIter for LevelDbIter<'_> {
    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        // Held for the whole step: the database may be closed meanwhile only by `close`, which
        // cannot run while this iterator borrows the engine, so the slot's content is not needed.
        let _lock = self.shared.lock();
        let State { it, mode, pin } = &mut *self.state;
        let result = error::guard(Op::Iterate, self.shared.dir(), || {
            Ok(match mode {
                Mode::Forward {
                    lower,
                    upper,
                    started,
                } => {
                    if *started {
                        it.advance();
                    } else {
                        position(it, lower);
                        *started = true;
                    }
                    current(it).filter(|(key, _)| below(upper, key))
                }
                Mode::Reverse(reverse) => reverse.next(it)?,
                Mode::Done => None,
            })
        });
        // rusty-leveldb skips a table block it cannot read, or ends there: entries are missing.
        let result = pin.files().checked(result);
        match result {
            Ok(Some((key, value))) => Ok(Some((Vec::from(key), Vec::from(value)))),
            // Once over, stay over: `advance` on an exhausted DBIterator starts again at the
            // first key (db_iter.rs `advance`).
            other => {
                *mode = Mode::Done;
                other.map(|_| None)
            }
        }
    }
}

impl Drop for LevelDbIter<'_> {
    fn drop(&mut self) {
        let _lock = self.shared.lock();
        // SAFETY: `state` is dropped here only, once; the lock is held while its `Rc`s go.
        unsafe { ManuallyDrop::drop(&mut self.state) };
    }
}

/// The state of a reverse walk.
struct Reverse {
    /// The user's lower bound.
    lower: Bound<Vec<u8>>,
    /// Everything above this has been handed out.
    upper: Bound<Vec<u8>>,
    /// Start points below `upper`, ascending; the next scan starts at the last one, or at
    /// `lower` when there is none.
    starts: Vec<Vec<u8>>,
    /// Entries in the next window.
    window: usize,
    /// The current window, ascending: entries are popped from the end.
    buf: Vec<Slot>,
    /// No entry is left below `buf`.
    exhausted: bool,
}

impl Reverse {
    fn next(&mut self, it: &mut DBIterator) -> Result<Option<Kv>> {
        loop {
            match self.buf.pop() {
                Some((key, Some(value))) => return Ok(Some((key, value))),
                Some((key, None)) => {
                    // The same snapshot still holds it.
                    let value = lookup(it, &key).ok_or_else(|| {
                        rave_api::Error::corruption(format!(
                            "leveldb: key {key:?} vanished from an iterator's snapshot"
                        ))
                    })?;
                    return Ok(Some((key, Bytes::from(value))));
                }
                None if self.exhausted => return Ok(None),
                None => self.fill(it),
            }
        }
    }

    /// Loads the next window into `buf`, or marks the walk exhausted.
    fn fill(&mut self, it: &mut DBIterator) {
        let keep = self.window;
        self.window = (self.window * 2).min(MAX_WINDOW);
        let mut max_read = keep * READ_FACTOR;
        loop {
            let from = match self.starts.last() {
                Some(start) => Bound::Included(start.clone()),
                None => self.lower.clone(),
            };
            match scan(it, &from, &self.upper, max_read, keep) {
                Scan::Reached { tail, total } => {
                    if let Some((first, _)) = tail.front().filter(|_| total > tail.len()) {
                        // Entries remain between the start and this window.
                        self.upper = Bound::Excluded(first.to_vec());
                    } else {
                        // All of [start, upper) is in this window (or there is nothing).
                        match self.starts.pop() {
                            Some(start) => self.upper = Bound::Excluded(start),
                            None => self.exhausted = true,
                        }
                    }
                    if !tail.is_empty() || self.exhausted {
                        self.buf = tail.into();
                        return;
                    }
                }
                Scan::TooMany { first } => {
                    let top = match &self.upper {
                        Bound::Included(key) | Bound::Excluded(key) => Some(key.clone()),
                        Bound::Unbounded => find_last(it),
                    };
                    let Some(top) = top else {
                        // Entries were just seen, so there is a last key; defensively, end.
                        self.exhausted = true;
                        return;
                    };
                    if self.upper == Bound::Unbounded {
                        self.upper = Bound::Included(top.clone());
                    }
                    match midpoint(&first, &top) {
                        Some(probe) => self.starts.push(probe),
                        // Impossible with more than two entries in [first, top]; never loop.
                        None => max_read = usize::MAX,
                    }
                }
            }
        }
    }
}

enum Scan {
    /// The scan reached the upper bound: `tail` holds the last entries read (at most `keep`),
    /// `total` counts all of them.
    Reached { tail: VecDeque<Slot>, total: usize },
    /// More than `max_read` entries lie between the start and the upper bound; `first` is the
    /// first of them.
    TooMany { first: Vec<u8> },
}

/// Reads forward from `from` to `upper`, keeping the last `keep` entries.
fn scan(
    it: &mut DBIterator,
    from: &Bound<Vec<u8>>,
    upper: &Bound<Vec<u8>>,
    max_read: usize,
    keep: usize,
) -> Scan {
    position(it, from);
    let mut tail: VecDeque<Slot> = VecDeque::with_capacity(keep.min(MAX_WINDOW));
    let mut value_bytes = 0usize;
    let mut total = 0usize;
    let mut first: Option<Vec<u8>> = None;
    while let Some((key, value)) = current(it) {
        if !below(upper, &key) {
            break;
        }
        let first = first.get_or_insert_with(|| key.to_vec());
        total += 1;
        if total > max_read {
            return Scan::TooMany {
                first: std::mem::take(first),
            };
        }
        // Full: the oldest entry goes (whether or not its value was kept).
        if tail.len() == keep
            && let Some((_, Some(dropped))) = tail.pop_front()
        {
            value_bytes -= dropped.len();
        }
        let value = (value_bytes + value.len() <= WINDOW_VALUE_BYTES).then(|| {
            value_bytes += value.len();
            value
        });
        tail.push_back((key, value));
        if !it.advance() {
            break;
        }
    }
    Scan::Reached { tail, total }
}

/// Moves `it` to the first key at or above `from`.
pub(crate) fn position(it: &mut DBIterator, from: &Bound<Vec<u8>>) {
    match from {
        Bound::Unbounded => it.seek_to_first(),
        Bound::Included(key) => it.seek(key),
        Bound::Excluded(key) => {
            it.seek(key);
            // `advance` on an invalid DBIterator would restart at the first key: check first.
            if current(it).is_some_and(|(found, _)| found.as_ref() == key.as_slice()) {
                it.advance();
            }
        }
    }
}

/// The entry under `it`, if it is positioned on one.
pub(crate) fn current(it: &DBIterator) -> Option<Kv> {
    if it.valid() { it.current() } else { None }
}

/// Whether `key` lies below `upper`.
fn below(upper: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    below_bound(upper.as_ref().map(Vec::as_slice), key)
}

/// Whether `key` lies below `upper`.
pub(crate) fn below_bound(upper: Bound<&[u8]>, key: &[u8]) -> bool {
    match upper {
        Bound::Unbounded => true,
        Bound::Included(bound) => key <= bound,
        Bound::Excluded(bound) => key < bound,
    }
}

/// The greatest key of the snapshot, found with forward moves only: a short walk forward from
/// the first key with the known prefix ends the search when few keys share it; otherwise the
/// next byte of the last key is found by binary search over seeks (`seek(x)` finds a key iff
/// `x` is at most the last key).
pub(crate) fn find_last(it: &mut DBIterator) -> Option<Vec<u8>> {
    let mut prefix: Vec<u8> = Vec::new();
    loop {
        // Invariant: the last key starts with `prefix`, so every key >= prefix does too.
        it.seek(&prefix);
        let (mut last, _) = current(it)?;
        let mut walked = 0;
        loop {
            if !it.advance() {
                return Some(last.to_vec());
            }
            let (key, _) = current(it)?;
            last = key;
            walked += 1;
            if walked >= LAST_KEY_WALK {
                break;
            }
        }
        // More keys than the walk share the prefix, so the last key is longer than it: find its
        // next byte, the greatest `b` for which some key >= prefix + [b] exists.
        let at = prefix.len();
        prefix.push(0);
        let mut lo = match seek_key(it, &prefix) {
            Some(key) => key.get(at).copied().unwrap_or(0),
            None => 0,
        };
        let mut hi = u8::MAX;
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            prefix[at] = mid;
            match seek_key(it, &prefix) {
                // Such a key starts with the old prefix and its byte `at` is at least `mid`.
                Some(key) => lo = key.get(at).copied().unwrap_or(mid).max(mid),
                None => hi = mid - 1,
            }
        }
        prefix[at] = lo;
    }
}

/// The value of `key` in the snapshot of `it`.
pub(crate) fn lookup(it: &mut DBIterator, key: &[u8]) -> Option<Vec<u8>> {
    it.seek(key);
    current(it)
        .filter(|(found, _)| found.as_ref() == key)
        .map(|(_, value)| Vec::from(value))
}

fn seek_key(it: &mut DBIterator, key: &[u8]) -> Option<Bytes> {
    it.seek(key);
    current(it).map(|(key, _)| key)
}

/// A key strictly between `a` and `b` (`a < b`) in byte order, about halfway when both are
/// read as base-256 fractions; `None` when none exists (`b` is `a` followed by one zero byte).
pub(crate) fn midpoint(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    if a >= b {
        return None;
    }
    if b.len() > a.len() && b.starts_with(a) && b[a.len()..].iter().all(|&x| x == 0) {
        // Equal as fractions: only `a` followed by fewer zeros lies between.
        let zeros = b.len() - a.len();
        if zeros < 2 {
            return None;
        }
        let mut mid = a.to_vec();
        mid.resize(a.len() + zeros / 2, 0);
        return Some(mid);
    }
    // (A + B) / 2 over n digits; a trailing zero digit on both makes the halving exact. As
    // fractions A < (A + B) / 2 < B, and a smaller fraction is a smaller key.
    let n = a.len().max(b.len()) + 1;
    let digit = |s: &[u8], i: usize| u16::from(s.get(i).copied().unwrap_or(0));
    let mut sum = vec![0u16; n];
    let mut carry = 0u16;
    for i in (0..n).rev() {
        let s = digit(a, i) + digit(b, i) + carry;
        sum[i] = s & 0xff;
        carry = s >> 8;
    }
    let mut mid = Vec::with_capacity(n);
    let mut rem = carry;
    for s in sum {
        let cur = rem * 256 + s;
        mid.push((cur / 2) as u8);
        rem = cur % 2;
    }
    // Trailing zeros change neither the fraction nor the order against `a` and `b`.
    while mid.last() == Some(&0) {
        mid.pop();
    }
    Some(mid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::Rng;

    /// Few distinct bytes, so that prefixes and trailing zeros are common.
    const ALPHABET: [u8; 6] = [0, 1, 0x7f, 0x80, 0xfe, 0xff];

    #[test]
    fn midpoints_lie_strictly_between() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..50_000 {
            let (x, y) = (rng.key_from(&ALPHABET), rng.key_from(&ALPHABET));
            let (a, b) = if x < y { (x, y) } else { (y, x) };
            match midpoint(&a, &b) {
                Some(m) => assert!(a < m && m < b, "{a:?} < {m:?} < {b:?}"),
                None => {
                    let mut next = a.clone();
                    next.push(0);
                    assert!(a == b || b == next, "no midpoint for {a:?} {b:?}");
                }
            }
        }
        assert_eq!(midpoint(b"a", b"c"), Some(b"b".to_vec()));
        assert_eq!(midpoint(b"a", b"a\0"), None);
        assert_eq!(midpoint(b"a", b"a\0\0\0"), Some(b"a\0".to_vec()));
        assert_eq!(midpoint(b"", b"\x02"), Some(b"\x01".to_vec()));
        let m = midpoint(b"user:0001", b"user:0002").unwrap();
        assert!(m.starts_with(b"user:0001"), "{m:?}");
    }
}
