use std::ops::Bound;

use serde::{Deserialize, Serialize};

/// Which parts of each entry an iterator returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Projection {
    /// Keys and values.
    #[default]
    KeysAndValues,
    /// Keys only; every [`crate::Entry::value`] is empty.
    KeysOnly,
    /// Values only; every [`crate::Entry::key`] is empty.
    ValuesOnly,
}

impl Projection {
    /// Whether keys are returned.
    pub fn keys(self) -> bool {
        self != Projection::ValuesOnly
    }

    /// Whether values are returned.
    pub fn values(self) -> bool {
        self != Projection::KeysOnly
    }
}

/// A key range with a direction, a limit and a projection, for iterators and `clear`.
///
/// Every bound that is set applies: a key is in the range when it satisfies all of them, so
/// `gt` and `gte` together mean the stricter of the two. A range whose bounds exclude every key
/// (for instance `gt = "b"`, `lt = "a"`) is empty, not an error. Build one with the chained
/// methods: `Range::all().gte("a").lt("b").reverse().limit(10)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// Keys strictly greater than this.
    #[serde(with = "serde_bytes")]
    pub gt: Option<Vec<u8>>,
    /// Keys greater than or equal to this.
    #[serde(with = "serde_bytes")]
    pub gte: Option<Vec<u8>>,
    /// Keys strictly less than this.
    #[serde(with = "serde_bytes")]
    pub lt: Option<Vec<u8>>,
    /// Keys less than or equal to this.
    #[serde(with = "serde_bytes")]
    pub lte: Option<Vec<u8>>,
    /// Iterate from the highest key down.
    pub reverse: bool,
    /// At most this many entries; `None` is unlimited.
    pub limit: Option<u64>,
    /// Which parts of each entry to return.
    pub projection: Projection,
}

impl Range {
    /// Every key, ascending, unlimited.
    pub fn all() -> Self {
        Self::default()
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let prefix = prefix.into();
        let range = Range::all();
        match prefix_successor(&prefix) {
            Some(end) => range.gte(prefix).lt(end),
            None => range.gte(prefix),
        }
    }

    /// Adds the bound `key > k`.
    pub fn gt(mut self, k: impl Into<Vec<u8>>) -> Self {
        self.gt = Some(k.into());
        self
    }

    /// Adds the bound `key >= k`.
    pub fn gte(mut self, k: impl Into<Vec<u8>>) -> Self {
        self.gte = Some(k.into());
        self
    }

    /// Adds the bound `key < k`.
    pub fn lt(mut self, k: impl Into<Vec<u8>>) -> Self {
        self.lt = Some(k.into());
        self
    }

    /// Adds the bound `key <= k`.
    pub fn lte(mut self, k: impl Into<Vec<u8>>) -> Self {
        self.lte = Some(k.into());
        self
    }

    /// Iterates from the highest key down.
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// Returns at most `n` entries.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Returns keys only.
    pub fn keys_only(mut self) -> Self {
        self.projection = Projection::KeysOnly;
        self
    }

    /// Returns values only.
    pub fn values_only(mut self) -> Self {
        self.projection = Projection::ValuesOnly;
        self
    }

    /// The effective lower bound: the stricter of `gt` and `gte`.
    pub fn lower(&self) -> Bound<&[u8]> {
        match (self.gt.as_deref(), self.gte.as_deref()) {
            (Some(gt), Some(gte)) if gt >= gte => Bound::Excluded(gt),
            (_, Some(gte)) => Bound::Included(gte),
            (Some(gt), None) => Bound::Excluded(gt),
            (None, None) => Bound::Unbounded,
        }
    }

    /// The effective upper bound: the stricter of `lt` and `lte`.
    pub fn upper(&self) -> Bound<&[u8]> {
        match (self.lt.as_deref(), self.lte.as_deref()) {
            (Some(lt), Some(lte)) if lt <= lte => Bound::Excluded(lt),
            (_, Some(lte)) => Bound::Included(lte),
            (Some(lt), None) => Bound::Excluded(lt),
            (None, None) => Bound::Unbounded,
        }
    }

    /// Whether `key` satisfies every bound (direction, limit and projection aside).
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match self.lower() {
            Bound::Included(b) => key >= b,
            Bound::Excluded(b) => key > b,
            Bound::Unbounded => true,
        };
        let below = match self.upper() {
            Bound::Included(b) => key <= b,
            Bound::Excluded(b) => key < b,
            Bound::Unbounded => true,
        };
        above && below
    }

    /// Whether the bounds exclude every possible key (or the limit is zero).
    pub fn is_empty(&self) -> bool {
        if self.limit == Some(0) {
            return true;
        }
        match (self.lower(), self.upper()) {
            (Bound::Included(lo), Bound::Included(hi)) => lo > hi,
            (Bound::Included(lo), Bound::Excluded(hi))
            | (Bound::Excluded(lo), Bound::Included(hi)) => lo >= hi,
            // `gt lo, lt hi` is empty when hi is lo's immediate successor (`lo ++ [0]`).
            (Bound::Excluded(lo), Bound::Excluded(hi)) => {
                lo >= hi || (hi.len() == lo.len() + 1 && hi.starts_with(lo) && hi[lo.len()] == 0)
            }
            (Bound::Unbounded, Bound::Excluded(hi)) => hi.is_empty(),
            _ => false,
        }
    }

    /// The range that remains after `delivered` entries ending at `last` were handed out.
    ///
    /// Used to resume an iterator on a new leader: the bound next to `last` becomes exclusive
    /// (`gt = last` forward, `lt = last` reverse) and the limit shrinks by `delivered`, so the
    /// remainder holds no entry twice and skips none.
    pub fn remaining_after(&self, last: &[u8], delivered: u64) -> Range {
        let mut rest = self.clone();
        if self.reverse {
            rest.lt = Some(last.to_vec());
            rest.lte = None;
        } else {
            rest.gt = Some(last.to_vec());
            rest.gte = None;
        }
        rest.limit = self.limit.map(|n| n.saturating_sub(delivered));
        rest
    }
}

/// The smallest key greater than every key with this prefix, or `None` when there is none
/// (the prefix is empty or all `0xff`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stricter_bound_wins() {
        let r = Range::all().gt("b").gte("a");
        assert_eq!(r.lower(), Bound::Excluded(&b"b"[..]));
        let r = Range::all().gt("a").gte("b");
        assert_eq!(r.lower(), Bound::Included(&b"b"[..]));
        let r = Range::all().lt("b").lte("c");
        assert_eq!(r.upper(), Bound::Excluded(&b"b"[..]));
        let r = Range::all().lt("c").lte("b");
        assert_eq!(r.upper(), Bound::Included(&b"b"[..]));
        let r = Range::all().gt("a").gte("a");
        assert_eq!(r.lower(), Bound::Excluded(&b"a"[..]));
    }

    #[test]
    fn emptiness() {
        assert!(Range::all().gt("b").lt("a").is_empty());
        assert!(Range::all().gt("a").lt("a").is_empty());
        assert!(Range::all().gt("a").lt(&b"a\0"[..]).is_empty());
        assert!(!Range::all().gt("a").lt(&b"a\0\0"[..]).is_empty());
        assert!(Range::all().lt("").is_empty());
        assert!(!Range::all().gte("a").lte("a").is_empty());
        assert!(Range::all().limit(0).is_empty());
        assert!(!Range::all().is_empty());
    }

    #[test]
    fn prefixes() {
        let r = Range::prefix("ab");
        assert!(r.contains(b"ab") && r.contains(b"ab\xff") && !r.contains(b"ac"));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert!(Range::prefix("").contains(b""));
    }

    #[test]
    fn remaining_is_exclusive_in_both_directions() {
        let r = Range::all().gte("a").limit(5);
        let rest = r.remaining_after(b"ab", 2);
        assert!(!rest.contains(b"ab") && rest.contains(b"b") && !rest.contains(b"a"));
        assert_eq!(rest.limit, Some(3));
        let r = Range::all().lte("c").reverse();
        let rest = r.remaining_after(b"b", 2);
        assert!(!rest.contains(b"b") && rest.contains(b"ab") && !rest.contains(b"c"));
        assert_eq!(rest.limit, None);
    }
}
