//! One key space, one reserved block: where rave keeps its own records inside an engine.
//!
//! rave writes records of its own (which writes it already applied, for exactly-once) in the
//! **same engine commit** as the user's write, so they must live in the engine's key space; and
//! no user key may ever read, list, clear or overwrite them. Every engine gets this the same way,
//! custom ones included, with no namespace support asked of it:
//!
//! - rave's records live under keys beginning [`META_PREFIX`] (`0xFF 0x00`);
//! - a user key beginning `0xFF` is stored with one more `0xFF` in front (`0xFF k` becomes
//!   `0xFF 0xFF k`); every other user key is stored byte for byte as given.
//!
//! The mapping preserves order, so a user range is at most two engine ranges, one on each side of
//! the reserved block ([`raw_ranges`]), and a scan never walks rave's records. `0xFF` was chosen
//! because no UTF-8 text, JSON or Level sublevel (`!name!`) key begins with it: data written
//! by Level programs is stored identically. A directory written before this layout existed is
//! migrated once, when its engine opens ([`LAYOUT_KEY`]).

use std::borrow::Cow;
use std::ops::Bound;

use crate::Range;

/// The escape byte: user keys beginning with it get one more in front.
const ESCAPE: u8 = 0xFF;

/// Every key of rave's own records begins with these two bytes.
pub const META_PREFIX: [u8; 2] = [0xFF, 0x00];

/// Recorded once a directory's keys follow this layout (so an older directory, whose user keys
/// beginning `0xFF` are stored unescaped, is migrated exactly once).
pub const LAYOUT_KEY: &[u8] = b"\xff\x00layout";

/// The engine key of user key `key`.
pub fn to_raw(key: &[u8]) -> Cow<'_, [u8]> {
    if key.first() == Some(&ESCAPE) {
        let mut raw = Vec::with_capacity(key.len() + 1);
        raw.push(ESCAPE);
        raw.extend_from_slice(key);
        Cow::Owned(raw)
    } else {
        Cow::Borrowed(key)
    }
}

/// The user key of engine key `raw`, or `None` for a key of rave's own records.
pub fn from_raw(mut raw: Vec<u8>) -> Option<Vec<u8>> {
    match raw.first() {
        Some(&ESCAPE) if raw.get(1) == Some(&ESCAPE) => {
            raw.remove(0);
            Some(raw)
        }
        Some(&ESCAPE) => None,
        _ => Some(raw),
    }
}

/// The engine key of rave's record `name`.
pub fn meta_key(name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(META_PREFIX.len() + name.len());
    key.extend_from_slice(&META_PREFIX);
    key.extend_from_slice(name);
    key
}

/// The engine range of rave's records whose names begin with `prefix`.
pub fn meta_range(prefix: &[u8]) -> Range {
    Range::prefix(meta_key(prefix))
}

/// Which part of the engine's key space an engine range lies in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Below the reserved block: engine keys are user keys.
    Plain,
    /// Above it: engine keys are user keys with one more `0xFF` in front.
    Escaped,
}

impl Side {
    /// The user key of an engine key of this side.
    pub fn user_key(self, mut raw: Vec<u8>) -> Vec<u8> {
        if self == Side::Escaped && !raw.is_empty() {
            raw.remove(0);
        }
        raw
    }
}

/// The engine ranges that hold exactly the user keys of `range`, in its iteration order (forward:
/// the plain side first), each tagged with its side. Empty ones are left out. Limit and
/// projection are not copied: the caller applies them across both.
pub fn raw_ranges(range: &Range) -> Vec<(Side, Range)> {
    let lower = map_bound(range.lower());
    let upper = map_bound(range.upper());
    // Plain side: engine keys below `0xFF`.
    let plain = bounded(
        lower.clone(),
        tighter_upper(upper.clone(), Bound::Excluded(vec![ESCAPE])),
    );
    // Escaped side: engine keys from `0xFF 0xFF` on.
    let escaped = bounded(
        tighter_lower(lower, Bound::Included(vec![ESCAPE, ESCAPE])),
        upper,
    );
    let mut parts: Vec<(Side, Range)> = [(Side::Plain, plain), (Side::Escaped, escaped)]
        .into_iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(side, mut r)| {
            r.reverse = range.reverse;
            (side, r)
        })
        .collect();
    if range.reverse {
        parts.reverse();
    }
    parts
}

fn map_bound(bound: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match bound {
        Bound::Included(k) => Bound::Included(to_raw(k).into_owned()),
        Bound::Excluded(k) => Bound::Excluded(to_raw(k).into_owned()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn key_of(bound: &Bound<Vec<u8>>) -> Option<&Vec<u8>> {
    match bound {
        Bound::Included(k) | Bound::Excluded(k) => Some(k),
        Bound::Unbounded => None,
    }
}

/// The stricter of two upper bounds.
fn tighter_upper(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (key_of(&a), key_of(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) if x < y => a,
        (Some(x), Some(y)) if y < x => b,
        // Equal keys: an exclusive bound is the stricter.
        _ if matches!(a, Bound::Excluded(_)) => a,
        _ => b,
    }
}

/// The stricter of two lower bounds.
fn tighter_lower(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (key_of(&a), key_of(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) if x > y => a,
        (Some(x), Some(y)) if y > x => b,
        _ if matches!(a, Bound::Excluded(_)) => a,
        _ => b,
    }
}

fn bounded(lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> Range {
    let mut range = Range::all();
    match lower {
        Bound::Included(k) => range.gte = Some(k),
        Bound::Excluded(k) => range.gt = Some(k),
        Bound::Unbounded => {}
    }
    match upper {
        Bound::Included(k) => range.lte = Some(k),
        Bound::Excluded(k) => range.lt = Some(k),
        Bound::Unbounded => {}
    }
    range
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn mapping_round_trips_and_keeps_order() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            b"a".to_vec(),
            vec![0xFE, 0xFF],
            vec![0xFF],
            vec![0xFF, 0x00],
            vec![0xFF, 0x00, 1],
            vec![0xFF, 0xFF],
            vec![0xFF, 0xFF, 0xFF],
        ];
        let raws: Vec<Vec<u8>> = keys.iter().map(|k| to_raw(k).into_owned()).collect();
        for (key, raw) in keys.iter().zip(&raws) {
            assert!(
                !raw.starts_with(&META_PREFIX),
                "{key:?} collides with the records"
            );
            assert_eq!(from_raw(raw.clone()).as_ref(), Some(key));
        }
        let mut sorted = raws.clone();
        sorted.sort();
        assert_eq!(sorted, raws, "the mapping must keep the order of user keys");
        assert_eq!(from_raw(meta_key(b"x")), None);
        assert_eq!(from_raw(LAYOUT_KEY.to_vec()), None);
    }

    /// Every user range, mapped, selects exactly the user keys it selects unmapped, in order,
    /// and none of rave's records.
    #[test]
    fn raw_ranges_select_exactly_the_user_keys() {
        let users: Vec<Vec<u8>> = vec![
            vec![],
            b"a".to_vec(),
            vec![0xFE],
            vec![0xFF],
            vec![0xFF, 0x00],
            vec![0xFF, 0x01],
            vec![0xFF, 0xFF],
            vec![0xFF, 0xFF, 0x00],
        ];
        let mut engine = BTreeMap::new();
        for key in &users {
            engine.insert(to_raw(key).into_owned(), ());
        }
        for name in [&b""[..], b"o", b"\xff", b"layout"] {
            engine.insert(meta_key(name), ());
        }
        let bounds: Vec<Option<Vec<u8>>> = std::iter::once(None)
            .chain(users.iter().cloned().map(Some))
            .chain([Some(vec![0xFF, 0x00, 0x05]), Some(vec![0xFF, 0xFE])])
            .collect();
        for lo in &bounds {
            for hi in &bounds {
                for (inclusive_lo, inclusive_hi, reverse) in [
                    (true, true, false),
                    (false, false, true),
                    (true, false, false),
                    (false, true, true),
                ] {
                    let mut range = Range::all();
                    if let Some(lo) = lo {
                        range = if inclusive_lo {
                            range.gte(lo.clone())
                        } else {
                            range.gt(lo.clone())
                        };
                    }
                    if let Some(hi) = hi {
                        range = if inclusive_hi {
                            range.lte(hi.clone())
                        } else {
                            range.lt(hi.clone())
                        };
                    }
                    if reverse {
                        range = range.reverse();
                    }
                    let mut want: Vec<Vec<u8>> = users
                        .iter()
                        .filter(|k| range.contains(k))
                        .cloned()
                        .collect();
                    want.sort();
                    if reverse {
                        want.reverse();
                    }
                    let mut got = Vec::new();
                    for (side, raw) in raw_ranges(&range) {
                        let mut part: Vec<Vec<u8>> = engine
                            .keys()
                            .filter(|k| raw.contains(k))
                            .map(|k| side.user_key(k.clone()))
                            .collect();
                        if reverse {
                            part.reverse();
                        }
                        got.extend(part);
                    }
                    assert_eq!(got, want, "range {range:?}");
                }
            }
        }
    }
}
