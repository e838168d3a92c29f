//! Conditional writes on etcd's compare-and-swap transactions.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use rave_api::Result;

use crate::EtcdStore;

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
