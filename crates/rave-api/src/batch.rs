use serde::{Deserialize, Serialize};

/// One operation of an atomic [`crate::KvStore::batch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchOp {
    /// Set `key` to `value`.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove `key` (a no-op when it is absent).
    Del {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

impl BatchOp {
    /// Applies `ops` in order to an ordered map (a reference model, an in-memory engine).
    pub fn apply_all(ops: &[BatchOp], map: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>) {
        for op in ops {
            match op {
                BatchOp::Put { key, value } => {
                    map.insert(key.clone(), value.clone());
                }
                BatchOp::Del { key } => {
                    map.remove(key);
                }
            }
        }
    }

    /// A put of `key` = `value`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        BatchOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A delete of `key`.
    pub fn del(key: impl Into<Vec<u8>>) -> Self {
        BatchOp::Del { key: key.into() }
    }

    /// The key this operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            BatchOp::Put { key, .. } | BatchOp::Del { key } => key,
        }
    }

    /// Bytes this operation carries (key plus value), for size accounting.
    pub fn payload_len(&self) -> usize {
        match self {
            BatchOp::Put { key, value } => key.len() + value.len(),
            BatchOp::Del { key } => key.len(),
        }
    }
}
