//! The keys and values workers write, so that the checker can decide everything from histories.
//!
//! - `u/UID/SEQ`: unique keys, written once (retries write the same value again);
//! - `h/K`: a few hot keys every writer overwrites; values carry `UID:SEQ` so the checker knows
//!   exactly which write a read returned;
//! - `b/UID/N/I`: the unique keys of batch `UID:N` (value `UID:N`);
//! - `g/SLOT/I`: group slots, every batch also overwrites one slot's [`GROUP_KEYS`] keys with its
//!   id, so any single snapshot must show one id in all of them;
//! - `f/IIIIII`: the frozen prefix, written once before the workers start and never again;
//! - `l/WINDOW/K`: registers for the linearizability cross-check: every process puts to and gets
//!   the [`LIN_KEYS`] keys of the current [`LIN_WINDOW_MS`] window of the shared monotonic clock,
//!   so each key's history is short (the exhaustive checker is exponential in its length);
//! - `d/UID/IIII`: writer `UID`'s drain, [`DRAIN_KEYS`] keys filled by one batch when it starts
//!   and emptied by `clear` with a limit, so the keys removed can be counted against the clears.
//!
//! Put values are `UID:SEQ:` followed by `PAD` bytes `x`. Ids never contain `/`, `:` or spaces.

use std::ops::Bound;

use rave::{Projection, Range};

/// Hot keys.
pub const HOT_KEYS: u32 = 4;
/// Group slots.
pub const SLOTS: u32 = 4;
/// Keys per group slot.
pub const GROUP_KEYS: u32 = 4;

/// Registers per window of the linearizability cross-check.
pub const LIN_KEYS: u32 = 2;
/// Length of one window of linearizability registers.
pub const LIN_WINDOW_MS: u64 = 500;
/// Keys in each writer's drain.
pub const DRAIN_KEYS: u32 = 200;

/// Register `k` of the window holding monotonic time `now_ns`.
pub fn lin_key(now_ns: u64, k: u32) -> String {
    format!("l/{:010}/{k}", now_ns / (LIN_WINDOW_MS * 1_000_000))
}

/// The prefix of writer `uid`'s drain.
pub fn drain_prefix(uid: &str) -> String {
    format!("d/{uid}/")
}

/// Key `i` of writer `uid`'s drain.
pub fn drain_key(uid: &str, i: u32) -> String {
    format!("d/{uid}/{i:04}")
}

/// The value of every drain key.
pub const DRAIN_VALUE: &[u8] = b"d";

/// The writer whose drain holds `key`, when it is a drain key.
pub fn drain_owner(key: &[u8]) -> Option<&str> {
    let rest = std::str::from_utf8(key.strip_prefix(b"d/")?).ok()?;
    let (uid, index) = rest.split_once('/')?;
    (index.len() == 4 && index.parse::<u32>().is_ok_and(|i| i < DRAIN_KEYS)).then_some(uid)
}

/// A unique key.
pub fn unique_key(uid: &str, seq: u64) -> String {
    format!("u/{uid}/{seq:010}")
}

/// A hot key.
pub fn hot_key(k: u32) -> String {
    format!("h/{k}")
}

/// Unique key `i` of batch `uid:n`.
pub fn batch_key(uid: &str, n: u64, i: u32) -> String {
    format!("b/{uid}/{n:08}/{i:02}")
}

/// The id (and value) of batch `uid:n`.
pub fn batch_id(uid: &str, n: u64) -> String {
    format!("{uid}:{n}")
}

/// Key `i` of group slot `slot`.
pub fn group_key(slot: u32, i: u32) -> String {
    format!("g/{slot}/{i}")
}

/// Frozen key `i`.
pub fn frozen_key(i: u32) -> String {
    format!("f/{i:06}")
}

/// Frozen value `i`.
pub fn frozen_value(i: u32) -> String {
    format!("fv{i:06}")
}

/// The index of a frozen key.
pub fn frozen_index(key: &[u8]) -> Option<u32> {
    let rest = key.strip_prefix(b"f/")?;
    if rest.len() != 6 {
        return None;
    }
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// The index of a frozen value.
pub fn frozen_value_index(value: &[u8]) -> Option<u32> {
    let rest = value.strip_prefix(b"fv")?;
    if rest.len() != 6 {
        return None;
    }
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// The value of a put.
pub fn put_value(uid: &str, seq: u64, pad: usize) -> Vec<u8> {
    let mut v = format!("{uid}:{seq}:").into_bytes();
    v.resize(v.len() + pad, b'x');
    v
}

/// `(uid, seq, pad)` of a put value, `None` when it is not one.
pub fn parse_put_value(value: &[u8]) -> Option<(String, u64, usize)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.splitn(3, ':');
    let uid = parts.next()?;
    let seq = parts.next()?.parse().ok()?;
    let pad = parts.next()?;
    if uid.is_empty() || uid.contains('/') || !pad.bytes().all(|b| b == b'x') {
        return None;
    }
    Some((uid.to_string(), seq, pad.len()))
}

/// An iterator over the frozen prefix: bounds by index, direction, limit and projection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrozenSpec {
    /// Lower bound.
    pub lo: Bound<u32>,
    /// Upper bound.
    pub hi: Bound<u32>,
    /// Descending.
    pub reverse: bool,
    /// Most entries.
    pub limit: Option<u64>,
    /// What is returned.
    pub projection: Projection,
}

fn bound_str(b: &Bound<u32>, inc: &str, exc: &str) -> String {
    match b {
        Bound::Included(i) => format!("{inc}:{i}"),
        Bound::Excluded(i) => format!("{exc}:{i}"),
        Bound::Unbounded => "-".to_string(),
    }
}

fn parse_bound(s: &str, inc: &str, exc: &str) -> Option<Bound<u32>> {
    if s == "-" {
        return Some(Bound::Unbounded);
    }
    let (kind, i) = s.split_once(':')?;
    let i = i.parse().ok()?;
    match kind {
        k if k == inc => Some(Bound::Included(i)),
        k if k == exc => Some(Bound::Excluded(i)),
        _ => None,
    }
}

impl FrozenSpec {
    /// The `S` line arguments.
    pub fn to_words(&self) -> String {
        let proj = match self.projection {
            Projection::KeysAndValues => "kv",
            Projection::KeysOnly => "k",
            Projection::ValuesOnly => "v",
        };
        let limit = self
            .limit
            .map_or_else(|| "-".to_string(), |l| l.to_string());
        format!(
            "{} {} {} {limit} {proj}",
            bound_str(&self.lo, "gte", "gt"),
            bound_str(&self.hi, "lte", "lt"),
            u8::from(self.reverse)
        )
    }

    /// Parses what [`FrozenSpec::to_words`] wrote.
    pub fn parse(words: &[&str]) -> Option<Self> {
        let projection = match *words.get(4)? {
            "kv" => Projection::KeysAndValues,
            "k" => Projection::KeysOnly,
            "v" => Projection::ValuesOnly,
            _ => return None,
        };
        Some(FrozenSpec {
            lo: parse_bound(words.first()?, "gte", "gt")?,
            hi: parse_bound(words.get(1)?, "lte", "lt")?,
            reverse: *words.get(2)? == "1",
            limit: match *words.get(3)? {
                "-" => None,
                l => Some(l.parse().ok()?),
            },
            projection,
        })
    }

    /// The range to ask rave for.
    pub fn range(&self) -> Range {
        let mut r = Range::prefix("f/");
        match self.lo {
            Bound::Included(i) => r = r.gte(frozen_key(i)),
            Bound::Excluded(i) => r = r.gt(frozen_key(i)),
            Bound::Unbounded => {}
        }
        match self.hi {
            Bound::Included(i) => r = r.lte(frozen_key(i)),
            Bound::Excluded(i) => r = r.lt(frozen_key(i)),
            Bound::Unbounded => {}
        }
        if self.reverse {
            r = r.reverse();
        }
        if let Some(l) = self.limit {
            r = r.limit(l);
        }
        r.projection = self.projection;
        r
    }

    /// The indices a correct iterator yields, in order, over a frozen prefix of `total` keys.
    pub fn expected(&self, total: u32) -> Vec<u32> {
        let lo = match self.lo {
            Bound::Included(i) => u64::from(i),
            Bound::Excluded(i) => u64::from(i) + 1,
            Bound::Unbounded => 0,
        };
        // Exclusive end.
        let hi = match self.hi {
            Bound::Included(i) => u64::from(i) + 1,
            Bound::Excluded(i) => u64::from(i),
            Bound::Unbounded => u64::from(total),
        }
        .min(u64::from(total));
        let mut all: Vec<u32> = (lo..hi.max(lo))
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        if self.reverse {
            all.reverse();
        }
        if let Some(l) = self.limit {
            all.truncate(usize::try_from(l).unwrap_or(usize::MAX));
        }
        all
    }
}

/// Encodes a sequence of indices as runs: `3-7,9,12-10` (a run may descend); `.` when empty.
pub fn encode_runs(indices: &[u32]) -> String {
    if indices.is_empty() {
        return ".".to_string();
    }
    let mut out: Vec<String> = Vec::new();
    let mut start = indices[0];
    let mut prev = indices[0];
    let mut step: i64 = 0;
    let flush = |out: &mut Vec<String>, start: u32, prev: u32| {
        if start == prev {
            out.push(start.to_string());
        } else {
            out.push(format!("{start}-{prev}"));
        }
    };
    for &i in &indices[1..] {
        let d = i64::from(i) - i64::from(prev);
        if (d == 1 || d == -1) && (step == 0 || step == d) {
            step = d;
            prev = i;
            continue;
        }
        flush(&mut out, start, prev);
        start = i;
        prev = i;
        step = 0;
    }
    flush(&mut out, start, prev);
    out.join(",")
}

/// Decodes [`encode_runs`]; `None` on malformed text.
pub fn decode_runs(text: &str) -> Option<Vec<u32>> {
    if text == "." {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    for run in text.split(',') {
        match run.split_once('-') {
            None => out.push(run.parse().ok()?),
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a <= b {
                    out.extend(a..=b);
                } else {
                    out.extend((b..=a).rev());
                }
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip() {
        for seq in [
            vec![],
            vec![5],
            vec![1, 2, 3, 4],
            vec![9, 8, 7],
            vec![1, 2, 3, 3, 4, 5],
            vec![1, 2, 4, 5, 6, 5, 4],
            vec![0, 2, 4],
        ] {
            let text = encode_runs(&seq);
            assert_eq!(decode_runs(&text).unwrap(), seq, "{text}");
        }
        assert_eq!(encode_runs(&[1, 2, 3, 3, 4]), "1-3,3-4");
        assert!(decode_runs("1-x").is_none());
    }

    #[test]
    fn frozen_expectations() {
        let spec = FrozenSpec {
            lo: Bound::Excluded(2),
            hi: Bound::Included(6),
            reverse: true,
            limit: Some(3),
            projection: Projection::KeysOnly,
        };
        assert_eq!(spec.expected(100), vec![6, 5, 4]);
        let words = spec.to_words();
        let parsed = FrozenSpec::parse(&words.split(' ').collect::<Vec<_>>()).unwrap();
        assert_eq!(parsed, spec);
        let r = spec.range();
        assert!(r.contains(frozen_key(3).as_bytes()) && !r.contains(frozen_key(2).as_bytes()));
        let all = FrozenSpec {
            lo: Bound::Unbounded,
            hi: Bound::Excluded(200),
            reverse: false,
            limit: None,
            projection: Projection::KeysAndValues,
        };
        assert_eq!(all.expected(10), (0..10).collect::<Vec<_>>());
        let empty = FrozenSpec {
            lo: Bound::Included(7),
            hi: Bound::Excluded(7),
            ..all
        };
        assert!(empty.expected(10).is_empty());
    }

    #[test]
    fn values_parse() {
        let v = put_value("w1i2", 17, 5);
        assert_eq!(parse_put_value(&v), Some(("w1i2".into(), 17, 5)));
        assert_eq!(parse_put_value(b"junk"), None);
        assert_eq!(frozen_index(frozen_key(42).as_bytes()), Some(42));
        assert_eq!(frozen_value_index(frozen_value(42).as_bytes()), Some(42));
        assert_eq!(drain_owner(drain_key("w1i2", 7).as_bytes()), Some("w1i2"));
        assert_eq!(drain_owner(b"d/w1i2/9999"), None);
        assert!(drain_key("w1i2", 7).starts_with(&drain_prefix("w1i2")));
        assert_eq!(lin_key(1_500_000_000, 1), "l/0000000003/1");
    }
}
