use std::collections::BTreeMap;

use rave_api::{BatchOp, Entry, Range};

/// The reference model: what a store holds, as a `BTreeMap` ordered by unsigned bytes.
///
/// Expected results are computed here with [`Range::contains`], never asked of the engine
/// under test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Model {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.map.insert(key.to_vec(), value.to_vec());
    }

    /// Removes `key`.
    pub fn del(&mut self, key: &[u8]) {
        self.map.remove(key);
    }

    /// Applies `ops` in order (a later op on the same key wins).
    pub fn apply(&mut self, ops: &[BatchOp]) {
        for op in ops {
            match op {
                BatchOp::Put { key, value } => self.put(key, value),
                BatchOp::Del { key } => self.del(key),
            }
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// How many keys the model holds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the model holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry in key order.
    pub fn entries(&self) -> Vec<Entry> {
        self.query(&Range::all())
    }

    /// What an iterator over `range` must yield: the keys `range` contains, in its direction,
    /// at most `limit` of them, projected.
    pub fn query(&self, range: &Range) -> Vec<Entry> {
        // Filtering (rather than `BTreeMap::range`) keeps inverted ranges from panicking and
        // keeps the model independent of `Range::lower`/`upper` subtleties beyond `contains`.
        let matching = self.map.iter().filter(|(k, _)| range.contains(k));
        let ordered: Box<dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>> = if range.reverse {
            Box::new(matching.rev())
        } else {
            Box::new(matching)
        };
        let limit = range
            .limit
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let projection = range.projection;
        ordered
            .take(limit)
            .map(|(k, v)| Entry {
                key: if projection.keys() {
                    k.clone()
                } else {
                    Vec::new()
                },
                value: if projection.values() {
                    v.clone()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    /// Removes what `clear(range)` removes: the keys an iterator over `range` would yield
    /// (direction and limit included; the projection does not matter).
    pub fn clear(&mut self, range: &Range) {
        let mut keys = range.clone();
        keys.projection = rave_api::Projection::KeysOnly;
        for entry in self.query(&keys) {
            self.map.remove(&entry.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_follow_contains_direction_and_limit() {
        let mut m = Model::new();
        for k in ["a", "ab", "abc", "b", "ba", "c"] {
            m.put(k.as_bytes(), b"v");
        }
        let keys = |r: Range| -> Vec<String> {
            m.query(&r)
                .into_iter()
                .map(|e| String::from_utf8(e.key).unwrap())
                .collect()
        };
        assert_eq!(keys(Range::prefix("ab")), ["ab", "abc"]);
        assert_eq!(keys(Range::all().reverse().limit(2)), ["c", "ba"]);
        assert_eq!(keys(Range::all().gt("b").lt("a")), Vec::<String>::new());
        let mut cleared = m.clone();
        cleared.clear(&Range::all().reverse().limit(2).values_only());
        assert_eq!(cleared.len(), 4);
        assert_eq!(cleared.get(b"c"), None);
        assert_eq!(cleared.get(b"b"), Some(&b"v"[..]));
    }
}
