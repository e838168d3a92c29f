//! Level's range options and rave's [`Range`], both ways.
//!
//! Level gives `gte` precedence over `gt` and `lte` over `lt` (they are not intersected);
//! rave intersects every bound. Dropping the overridden bound makes the two agree.

use rave_api::{Projection, Range};

use crate::messages::RangeOptions;

/// The rave range of Level options (an absent limit is 0, a negative one unlimited).
pub fn to_range(o: &RangeOptions) -> Range {
    let mut r = Range::all();
    match &o.gte {
        Some(gte) => r.gte = Some(gte.clone()),
        None => r.gt = o.gt.clone(),
    }
    match &o.lte {
        Some(lte) => r.lte = Some(lte.clone()),
        None => r.lt = o.lt.clone(),
    }
    r.reverse = o.reverse.unwrap_or(false);
    r.limit = match o.limit.unwrap_or(0) {
        n if n < 0 => None,
        n => Some(n.unsigned_abs()),
    };
    r.projection = projection(o.keys.unwrap_or(false), o.values.unwrap_or(false));
    r
}

/// many-level's layout for a keys/values pair of flags: neither means values.
pub fn projection(keys: bool, values: bool) -> Projection {
    match (keys, values) {
        (true, true) => Projection::KeysAndValues,
        (true, false) => Projection::KeysOnly,
        _ => Projection::ValuesOnly,
    }
}

/// The Level options of a rave range: the stricter of each pair of bounds, every field set
/// (an absent `limit` would mean 0 to the host).
pub fn to_options(r: &Range) -> RangeOptions {
    use std::ops::Bound;
    let mut o = RangeOptions {
        keys: Some(r.projection.keys()),
        values: Some(r.projection.values()),
        limit: Some(r.limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX))),
        reverse: Some(r.reverse),
        ..Default::default()
    };
    match r.lower() {
        Bound::Included(b) => o.gte = Some(b.to_vec()),
        Bound::Excluded(b) => o.gt = Some(b.to_vec()),
        Bound::Unbounded => {}
    }
    match r.upper() {
        Bound::Included(b) => o.lte = Some(b.to_vec()),
        Bound::Excluded(b) => o.lt = Some(b.to_vec()),
        Bound::Unbounded => {}
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gte_wins_over_gt_and_lte_over_lt() {
        let o = RangeOptions {
            gt: Some(b"7".to_vec()),
            gte: Some(b"5".to_vec()),
            lt: Some(b"3".to_vec()),
            lte: Some(b"8".to_vec()),
            limit: Some(-1),
            ..Default::default()
        };
        let r = to_range(&o);
        assert!(r.contains(b"5") && r.contains(b"6") && r.contains(b"8") && !r.contains(b"9"));
        assert_eq!(r.limit, None);
        assert_eq!(to_range(&RangeOptions::default()).limit, Some(0));
    }

    #[test]
    fn round_trip_keeps_the_stricter_bound() {
        let r = Range::all().gt("b").gte("a").lte("x").limit(3).reverse();
        let o = to_options(&r);
        assert_eq!(o.gt.as_deref(), Some(&b"b"[..]));
        assert_eq!(o.gte, None);
        assert_eq!((o.limit, o.reverse), (Some(3), Some(true)));
        let back = to_range(&o);
        assert_eq!(back.lower(), r.lower());
        assert_eq!(back.upper(), r.upper());
    }
}
