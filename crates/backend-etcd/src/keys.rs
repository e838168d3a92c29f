//! Where a database's keys live on the cluster: one namespace, every user key non-empty.
//!
//! A database is the namespace `N` (bytes without `0x00`, possibly empty). Its wire keys all
//! begin `N 0x00`, so no namespace's keys are a prefix range of another's (`a 0x00 ...` and
//! `ab 0x00 ...` never overlap). After that, one tag byte:
//!
//! - `k` + user key: the user's keys, byte for byte (so the empty user key is `N 0x00 k`,
//!   never empty on the wire, and the order of user keys is the order of wire keys);
//! - `f` + client (16 bytes): the highest exactly-once floor of that handle;
//! - `o` + client (16) + seq (8, big-endian): the record of one applied stamped write;
//! - `s`: the namespace's commit marker, rewritten by every write, whose `mod_revision` is
//!   the namespace's commit sequence.
//!
//! A user range is one wire range `[start, end)`: etcd's ranges are half-open, so `gt k`
//! starts at `k 0x00` (the next key) and `lte k` ends before `k 0x00`.

use std::ops::Bound;

use rave_api::{ClientId, Error, Range, Result};

const USER: u8 = b'k';
const FLOOR: u8 = b'f';
const RECORD: u8 = b'o';
const MARKER: u8 = b's';

/// The wire layout of one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// `N 0x00`.
    base: Vec<u8>,
}

impl Namespace {
    /// The namespace `name` (no `0x00` byte in it: that byte ends a namespace on the wire).
    pub fn new(name: &[u8]) -> Result<Self> {
        if name.contains(&0) {
            return Err(Error::invalid(
                "an etcd namespace cannot contain the byte 0x00",
            ));
        }
        let mut base = name.to_vec();
        base.push(0);
        Ok(Namespace { base })
    }

    /// The namespace's name (without its terminator).
    pub fn name(&self) -> &[u8] {
        &self.base[..self.base.len() - 1]
    }

    fn tagged(&self, tag: u8, rest: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.base.len() + 1 + rest.len());
        key.extend_from_slice(&self.base);
        key.push(tag);
        key.extend_from_slice(rest);
        key
    }

    /// The wire key of user key `key`.
    pub fn user(&self, key: &[u8]) -> Vec<u8> {
        self.tagged(USER, key)
    }

    /// The user key of wire key `wire`, or `None` when it is not a user key of this namespace.
    pub fn user_of(&self, wire: &[u8]) -> Option<Vec<u8>> {
        let rest = wire.strip_prefix(self.base.as_slice())?;
        rest.strip_prefix(&[USER]).map(<[u8]>::to_vec)
    }

    /// The number of bytes a wire key adds to its user key.
    pub fn overhead(&self) -> usize {
        self.base.len() + 1
    }

    /// A key of the namespace that is never written (an empty range's watch watches it).
    pub fn unused(&self) -> Vec<u8> {
        self.tagged(b'n', &[])
    }

    /// The commit marker's key.
    pub fn marker(&self) -> Vec<u8> {
        self.tagged(MARKER, &[])
    }

    /// The floor key of `client`.
    pub fn floor(&self, client: ClientId) -> Vec<u8> {
        self.tagged(FLOOR, &client.0.to_be_bytes())
    }

    /// The record key of `client`'s write `seq`.
    pub fn record(&self, client: ClientId, seq: u64) -> Vec<u8> {
        let mut rest = client.0.to_be_bytes().to_vec();
        rest.extend_from_slice(&seq.to_be_bytes());
        self.tagged(RECORD, &rest)
    }

    /// The wire range `[start, end)` of `client`'s records numbered from `from` to below `to`.
    pub fn records_between(&self, client: ClientId, from: u64, to: u64) -> (Vec<u8>, Vec<u8>) {
        (self.record(client, from), self.record(client, to))
    }

    /// The wire range `[start, end)` of the user keys in `range`'s bounds, or `None` when the
    /// bounds hold no key.
    pub fn wire_range(&self, range: &Range) -> Option<(Vec<u8>, Vec<u8>)> {
        if range.is_empty() {
            return None;
        }
        let start = match range.lower() {
            Bound::Unbounded => self.user(&[]),
            Bound::Included(k) => self.user(k),
            Bound::Excluded(k) => successor(self.user(k)),
        };
        let end = match range.upper() {
            Bound::Unbounded => self.tagged(USER + 1, &[]),
            Bound::Included(k) => successor(self.user(k)),
            Bound::Excluded(k) => self.user(k),
        };
        (start < end).then_some((start, end))
    }
}

/// The smallest key greater than `key`: `key 0x00`.
pub fn successor(mut key: Vec<u8>) -> Vec<u8> {
    key.push(0);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_key_is_non_empty_and_ordered() {
        let ns = Namespace::new(b"").unwrap();
        assert_eq!(ns.user(b""), b"\0k".to_vec());
        let keys: [&[u8]; 5] = [b"", b"\0", b"a", b"a\0", b"\xff"];
        for pair in keys.windows(2) {
            assert!(ns.user(pair[0]) < ns.user(pair[1]));
        }
        assert_eq!(ns.user_of(&ns.user(b"x")), Some(b"x".to_vec()));
        assert_eq!(ns.user_of(&ns.marker()), None);
    }

    #[test]
    fn namespaces_do_not_overlap() {
        let a = Namespace::new(b"a").unwrap();
        let ab = Namespace::new(b"ab").unwrap();
        let (start, end) = a.wire_range(&Range::all()).unwrap();
        let other = ab.user(b"");
        assert!(!(start <= other && other < end));
        assert!(Namespace::new(b"a\0b").is_err());
    }

    #[test]
    fn bounds_map_to_half_open_ranges() {
        let ns = Namespace::new(b"n").unwrap();
        let inside = |r: &Range, k: &[u8]| {
            let (s, e) = ns.wire_range(r).unwrap();
            let w = ns.user(k);
            s <= w && w < e
        };
        let r = Range::all().gt("a").lte("c");
        assert!(!inside(&r, b"a") && inside(&r, b"a\0") && inside(&r, b"c"));
        assert!(!inside(&r, b"c\0"));
        let r = Range::all().gte("").lt("b");
        assert!(inside(&r, b"") && inside(&r, b"a\xff") && !inside(&r, b"b"));
        assert!(inside(&Range::all(), b"\xff\xff"));
        assert!(ns.wire_range(&Range::all().gt("b").lt("a")).is_none());
    }
}
