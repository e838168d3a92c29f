//! Conditional writes on etcd's compare-and-swap transactions.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use rave_api::{BatchOp, Check, Error, Result};

use crate::EtcdStore;
use crate::store::Inner;

/// A conditional batch ([`rave_api::Write::Conditional`]) as one etcd transaction: every check
/// a compare, the operations (merged per key, as etcd refuses duplicates) and the commit marker
/// in its success branch, the checked keys read in its failure branch to name the first check
/// that did not hold. Not stamped, like [`EtcdStore::compare_and_swap`]: a re-send after a
/// lost answer is evaluated again.
pub(crate) async fn conditional(
    inner: &Inner,
    checks: Vec<Check>,
    ops: Vec<BatchOp>,
) -> Result<()> {
    inner.check_open()?;
    let ns = &inner.ns;
    let compares: Vec<Compare> = checks
        .iter()
        .map(|check| {
            let wire = ns.user(&check.key);
            match &check.expected {
                Some(value) => Compare::value(wire, CompareOp::Equal, value.clone()),
                None => Compare::version(wire, CompareOp::Equal, 0),
            }
        })
        .collect();
    let mut merged: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> = Default::default();
    for op in ops {
        match op {
            BatchOp::Put { key, value } => merged.insert(key, Some(value)),
            BatchOp::Del { key } => merged.insert(key, None),
        };
    }
    let mut then: Vec<TxnOp> = merged
        .into_iter()
        .map(|(key, value)| match value {
            Some(value) => TxnOp::put(ns.user(&key), value, None),
            None => TxnOp::delete(ns.user(&key), None),
        })
        .collect();
    then.push(TxnOp::put(ns.marker(), Vec::new(), None));
    let reads: Vec<TxnOp> = checks
        .iter()
        .map(|check| TxnOp::get(ns.user(&check.key), None::<GetOptions>))
        .collect();
    let txn = Txn::new().when(compares).and_then(then).or_else(reads);
    // A failed transaction whose reads all match again (the data changed in between) is tried
    // again; it never reports a failure it cannot name.
    for _ in 0..8 {
        let reply = inner
            .retry(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if reply.succeeded() {
            return Ok(());
        }
        for (check, response) in checks.iter().zip(reply.op_responses()) {
            let current = match response {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            };
            if current != check.expected {
                return Err(Error::ConditionFailed {
                    key: check.key.clone(),
                    current,
                });
            }
        }
    }
    Err(Error::other(
        "the checked keys kept changing while a conditional write was evaluated",
    ))
}

impl EtcdStore {
    /// Sets `key` to `new` (`None`: deletes it) only if its value is `expected` (`None`:
    /// absent), in one etcd transaction. Returns `Ok(Ok(()))` when it swapped, or
    /// `Ok(Err(current))` with the value found instead.
    ///
    /// Not stamped: when a transient failure hides the answer, the swap is re-sent, and a
    /// swap that had been applied then reports the value it set as a mismatch (unless
    /// `expected == new`). The caller can tell by comparing `current` with `new`.
    pub async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<std::result::Result<(), Option<Vec<u8>>>> {
        let inner = &self.inner;
        inner.check_open()?;
        let wire = inner.ns.user(key);
        let compare = match expected {
            Some(value) => Compare::value(wire.clone(), CompareOp::Equal, value.to_vec()),
            None => Compare::version(wire.clone(), CompareOp::Equal, 0),
        };
        let swap = match new {
            Some(value) => TxnOp::put(wire.clone(), value.to_vec(), None),
            None => TxnOp::delete(wire.clone(), None),
        };
        let txn = Txn::new()
            .when(vec![compare])
            .and_then(vec![swap, TxnOp::put(inner.ns.marker(), Vec::new(), None)])
            .or_else(vec![TxnOp::get(wire, None::<GetOptions>)]);
        let reply = inner
            .retry(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if reply.succeeded() {
            return Ok(Ok(()));
        }
        let current = match reply.op_responses().into_iter().next() {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        };
        Ok(Err(current))
    }
}
