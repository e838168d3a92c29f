//! How a watcher writes what it received into its history, and reads it back.
//!
//! Lines (after the time, see [`crate::history`]):
//! - `W FROM RANGE`: a watch was opened on `RANGE` after position `FROM` (`-`: from now);
//! - `P SEQ`: a progress mark;
//! - `C SEQ CHANGES`: a commit, its changes separated by `,`: `+KEY=VALUE` (put), `-KEY`
//!   (delete), `~LOW~HIGH` (clear of a range);
//! - `X KIND POS`: the stream failed with error `KIND` (`POS`: its `resume_from` or `oldest`,
//!   `-` when it has none).
//!
//! Keys and raw values are percent-encoded (bytes outside `!`..`~` and `% , = ~ *`). A put's
//! value is recorded as its id `*UID:SEQ:PAD` when it is a torture put value (a 64 KiB value
//! costs a few bytes), else as its encoded bytes; the checker compares these value ids. A
//! range bound is `.` (none), `i` + key (included) or `x` + key (excluded).

use std::ops::Bound;

use rave::{Change, Range};

use crate::schema::parse_put_value;

fn escaped(b: u8) -> bool {
    !(0x21..=0x7e).contains(&b) || matches!(b, b'%' | b',' | b'=' | b'~' | b'*')
}

/// Percent-encodes `bytes`.
pub fn enc_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if escaped(b) {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// Decodes [`enc_bytes`].
pub fn dec_bytes(text: &str) -> Option<Vec<u8>> {
    let raw = text.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The id a value is recorded by: `*UID:SEQ:PAD` for a put value, else its encoded bytes.
pub fn value_id(value: &[u8]) -> String {
    match parse_put_value(value) {
        Some((uid, seq, pad)) => put_id(&uid, seq, pad),
        None => enc_bytes(value),
    }
}

/// The value id of the put of writer `uid`'s number `seq` padded by `pad`.
pub fn put_id(uid: &str, seq: u64, pad: usize) -> String {
    format!("*{uid}:{seq}:{pad}")
}

fn enc_bound(bound: Bound<&[u8]>) -> String {
    match bound {
        Bound::Unbounded => ".".to_string(),
        Bound::Included(k) => format!("i{}", enc_bytes(k)),
        Bound::Excluded(k) => format!("x{}", enc_bytes(k)),
    }
}

fn dec_bound(text: &str) -> Option<Bound<Vec<u8>>> {
    if text == "." {
        return Some(Bound::Unbounded);
    }
    let key = dec_bytes(text.get(1..)?)?;
    match text.as_bytes().first()? {
        b'i' => Some(Bound::Included(key)),
        b'x' => Some(Bound::Excluded(key)),
        _ => None,
    }
}

/// `LOW~HIGH`: the bounds of `range`.
pub fn enc_range(range: &Range) -> String {
    format!("{}~{}", enc_bound(range.lower()), enc_bound(range.upper()))
}

/// Decodes [`enc_range`].
pub fn dec_range(text: &str) -> Option<Range> {
    let (low, high) = text.split_once('~')?;
    let mut range = Range::all();
    match dec_bound(low)? {
        Bound::Included(k) => range.gte = Some(k),
        Bound::Excluded(k) => range.gt = Some(k),
        Bound::Unbounded => {}
    }
    match dec_bound(high)? {
        Bound::Included(k) => range.lte = Some(k),
        Bound::Excluded(k) => range.lt = Some(k),
        Bound::Unbounded => {}
    }
    Some(range)
}

/// One change as recorded (a put's value by its id).
pub fn enc_change(change: &Change) -> String {
    match change {
        Change::Put { key, value } => format!("+{}={}", enc_bytes(key), value_id(value)),
        Change::Del { key } => format!("-{}", enc_bytes(key)),
        Change::Clear { range } => format!("~{}", enc_range(range)),
    }
}

/// Decodes [`enc_change`]; a put's value is its id's bytes.
pub fn dec_change(text: &str) -> Option<Change> {
    let rest = text.get(1..)?;
    Some(match text.as_bytes().first()? {
        b'+' => {
            let (key, id) = rest.split_once('=')?;
            Change::Put {
                key: dec_bytes(key)?,
                value: id.as_bytes().to_vec(),
            }
        }
        b'-' => Change::Del {
            key: dec_bytes(rest)?,
        },
        b'~' => Change::Clear {
            range: dec_range(rest)?,
        },
        _ => return None,
    })
}

/// Every change of a commit, `,`-separated.
pub fn enc_changes(changes: &[Change]) -> String {
    let parts: Vec<String> = changes.iter().map(enc_change).collect();
    parts.join(",")
}

/// Decodes [`enc_changes`].
pub fn dec_changes(text: &str) -> Option<Vec<Change>> {
    text.split(',').map(dec_change).collect()
}

/// The range watcher slot `slot` watches: two of three watch everything, the third the keys
/// from `g/` up (group slots, hot keys, linearizability registers and unique puts; no drain,
/// so no clear), so that commits reduced to a range are checked too.
pub fn watcher_range(slot: usize) -> Range {
    if slot % 3 == 2 {
        Range::all().gte("g/")
    } else {
        Range::all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::put_value;

    #[test]
    fn changes_round_trip() {
        let changes = vec![
            Change::Put {
                key: b"u/w0i0/0000000001".to_vec(),
                value: put_value("w0i0", 1, 70_000),
            },
            Change::Put {
                key: b"odd key,=~*%\n".to_vec(),
                value: b"*raw value, with %".to_vec(),
            },
            Change::Del {
                key: b"b/x".to_vec(),
            },
            Change::Clear {
                range: Range::all().gte("d/w0i0/0001").lte("d/w0i0/0003"),
            },
            Change::Clear {
                range: Range::all().gt("a").lt("b"),
            },
            Change::Clear {
                range: Range::all(),
            },
        ];
        let text = enc_changes(&changes);
        assert!(!text.contains(' ') && text.len() < 300, "{text}");
        let back = dec_changes(&text).unwrap();
        assert_eq!(back.len(), changes.len());
        assert_eq!(
            back[0],
            Change::Put {
                key: b"u/w0i0/0000000001".to_vec(),
                value: b"*w0i0:1:70000".to_vec()
            }
        );
        assert_eq!(
            back[1],
            Change::Put {
                key: b"odd key,=~*%\n".to_vec(),
                value: enc_bytes(b"*raw value, with %").into_bytes()
            }
        );
        assert_eq!(back[2..], changes[2..]);
        assert!(dec_changes("?x").is_none());
        assert_eq!(
            dec_range(&enc_range(&watcher_range(2))),
            Some(watcher_range(2))
        );
    }
}
