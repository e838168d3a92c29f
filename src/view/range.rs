//! Ranges from Rust range syntax: `"a".."c"`, `b"k"..=b"m"`, `..`, or a [`Range`] as is.

use std::ops::{Bound, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};

use crate::Range;

/// Anything that names a key range: Rust range syntax over keys that are `AsRef<[u8]>`
/// (`"a".."c"`, `"a"..="c"`, `"a"..`, `.."c"`, `..`), a pair of [`Bound`]s, or a [`Range`]
/// (which adds direction, limit and projection).
///
/// ```
/// use rave::{IntoRange, Range};
/// assert_eq!(("a".."c").into_range(), Range::all().gte("a").lt("c"));
/// assert_eq!((b"k"..=b"m").into_range(), Range::all().gte("k").lte("m"));
/// assert_eq!((..).into_range(), Range::all());
/// assert_eq!(Range::prefix("x").reverse().into_range(), Range::prefix("x").reverse());
/// ```
pub trait IntoRange {
    /// The range, as bytes.
    fn into_range(self) -> Range;
}

impl IntoRange for Range {
    fn into_range(self) -> Range {
        self
    }
}

impl IntoRange for RangeFull {
    fn into_range(self) -> Range {
        Range::all()
    }
}

impl<K: AsRef<[u8]>> IntoRange for std::ops::Range<K> {
    fn into_range(self) -> Range {
        Range::all().gte(self.start.as_ref()).lt(self.end.as_ref())
    }
}

impl<K: AsRef<[u8]>> IntoRange for RangeInclusive<K> {
    fn into_range(self) -> Range {
        let (start, end) = self.into_inner();
        Range::all().gte(start.as_ref()).lte(end.as_ref())
    }
}

impl<K: AsRef<[u8]>> IntoRange for RangeFrom<K> {
    fn into_range(self) -> Range {
        Range::all().gte(self.start.as_ref())
    }
}

impl<K: AsRef<[u8]>> IntoRange for RangeTo<K> {
    fn into_range(self) -> Range {
        Range::all().lt(self.end.as_ref())
    }
}

impl<K: AsRef<[u8]>> IntoRange for RangeToInclusive<K> {
    fn into_range(self) -> Range {
        Range::all().lte(self.end.as_ref())
    }
}

impl<K: AsRef<[u8]>> IntoRange for (Bound<K>, Bound<K>) {
    fn into_range(self) -> Range {
        bounds_range(self.0, self.1, |k| k.as_ref().to_vec())
    }
}

/// The [`Range`] of a lower and an upper bound, each key turned into bytes by `bytes`.
pub(crate) fn bounds_range<K>(
    lower: Bound<K>,
    upper: Bound<K>,
    mut bytes: impl FnMut(K) -> Vec<u8>,
) -> Range {
    let mut range = Range::all();
    match lower {
        Bound::Included(k) => range.gte = Some(bytes(k)),
        Bound::Excluded(k) => range.gt = Some(bytes(k)),
        Bound::Unbounded => {}
    }
    match upper {
        Bound::Included(k) => range.lte = Some(bytes(k)),
        Bound::Excluded(k) => range.lt = Some(bytes(k)),
        Bound::Unbounded => {}
    }
    range
}
