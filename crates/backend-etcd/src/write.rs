//! Writes as etcd transactions, applied once per stamp.
//!
//! A stamped write is one transaction:
//!
//! ```text
//! if   version(record(client, seq)) == 0            -- not applied yet
//!  and value(floor(client)) <= seq  (or: absent)    -- not below the handle's floor
//!  [and mod_revision(marker) == M]                   -- a limited clear: nothing changed since it looked
//! then the user's operations, record(client, seq),
//!      [if value(floor) < floor then floor(client) = floor, the records below it deleted]
//!      marker rewritten
//! else get record, floor, marker                     -- to tell why
//! ```
//!
//! So a write re-sent with the same stamp (after a broken connection, a member's death or
//! a timeout) finds its record and is answered without being applied again, and a stale one
//! below the floor is refused ([`Error::RetryRefused`]). Records and floors carry the store's
//! lease (TTL [`crate::EtcdOptions::record_ttl`], renewed while the store is open).
//!
//! etcd rejects a transaction that touches one key twice, so a batch is merged first (the last
//! operation on a key wins, as when applied in order). A batch beyond etcd's limits
//! (operations per transaction, request bytes) fails before anything is sent, with an
//! [`Error::InvalidArgument`] naming the limit; one that gets past the estimate but is refused
//! by the server fails the same way: a transaction is applied whole or not at all.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};
use rave_api::{BatchOp, Error, Result, Write, WriteStamp};

use crate::error::{too_many_bytes, too_many_ops};
use crate::keys::successor;
use crate::store::Inner;

/// The most operations rave adds to a user's transaction, as etcd counts them (nested ones
/// included): the record, the nested transaction that raises the floor, the floor, the sweep
/// of records below it, the marker.
pub const OWN_OPS: usize = 5;

/// Bytes a transaction carries beyond keys and values (framing per operation, compares, and
/// rave's own keys), for the size estimate.
const PER_OP_BYTES: usize = 32;
const OWN_BYTES: usize = 512;

/// How many times a write is re-planned (a limited clear that raced a write, a floor that
/// moved) before it fails.
const MAX_ROUNDS: usize = 64;

/// The user's part of a transaction.
struct Plan {
    ops: Vec<TxnOp>,
    /// For a limited clear: the marker's `mod_revision` when the keys were listed.
    guard: Option<i64>,
}

/// Applies `write` once for `stamp`.
pub(crate) async fn apply(inner: &Inner, stamp: WriteStamp, write: Write) -> Result<()> {
    inner.check_open()?;
    if let Write::Conditional { checks, ops } = write {
        // Its own compare-and-swap transaction, not stamped (see `crate::cas`).
        return crate::cas::conditional(inner, checks, ops).await;
    }
    let ns = &inner.ns;
    let record = ns.record(stamp.client, stamp.seq);
    let floor_key = ns.floor(stamp.client);
    let marker = ns.marker();
    for _ in 0..MAX_ROUNDS {
        let plan = plan(inner, &write).await?;
        // What this store last knew of the handle's stored floor (it only grows): `None` when
        // it has none yet. Raising it deletes the records between the two floors only (those
        // below the known one are gone already), and a stamp whose floor is not above it
        // leaves the floor alone: concurrent writes of one handle do not contend for it.
        let known = inner
            .floors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&stamp.client)
            .copied();
        let raise = known.is_none_or(|k| stamp.floor > k);
        let mut compares = vec![Compare::version(record.clone(), CompareOp::Equal, 0)];
        match known {
            Some(_) => {
                compares.push(Compare::value(
                    floor_key.clone(),
                    CompareOp::Less,
                    be(stamp.seq.saturating_add(1)),
                ));
            }
            None => compares.push(Compare::version(floor_key.clone(), CompareOp::Equal, 0)),
        }
        if let Some(revision) = plan.guard {
            compares.push(Compare::mod_revision(
                marker.clone(),
                CompareOp::Equal,
                revision,
            ));
        }
        let lease = inner.lease.load(Ordering::SeqCst);
        let with_lease = || Some(PutOptions::new().with_lease(lease));
        let mut ops = plan.ops;
        ops.push(TxnOp::put(record.clone(), Vec::new(), with_lease()));
        if raise {
            let mut sweep = vec![TxnOp::put(floor_key.clone(), be(stamp.floor), with_lease())];
            let from = known.unwrap_or(0);
            if stamp.floor > from {
                let (start, end) = ns.records_between(stamp.client, from, stamp.floor);
                sweep.push(TxnOp::delete(
                    start,
                    Some(DeleteOptions::new().with_range(end)),
                ));
            }
            if known.is_some() {
                // Raised only if still below: a nested transaction, so that a concurrent
                // write of the same handle that raised it further makes nobody retry.
                let higher = Compare::value(floor_key.clone(), CompareOp::Less, be(stamp.floor));
                ops.push(TxnOp::txn(Txn::new().when(vec![higher]).and_then(sweep)));
            } else {
                ops.extend(sweep);
            }
        }
        ops.push(TxnOp::put(marker.clone(), Vec::new(), None));
        let otherwise = vec![
            TxnOp::get(record.clone(), Some(GetOptions::new().with_keys_only())),
            TxnOp::get(floor_key.clone(), None),
            TxnOp::get(marker.clone(), Some(GetOptions::new().with_keys_only())),
        ];
        let txn = Txn::new().when(compares).and_then(ops).or_else(otherwise);
        let reply = match inner
            .retry(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
        {
            Err(err) if lease_error(&err) => {
                inner.grant_lease().await?;
                continue;
            }
            other => other?,
        };
        if reply.succeeded() {
            if raise {
                let mut floors = inner.floors.lock().unwrap_or_else(|e| e.into_inner());
                let floor = floors.entry(stamp.client).or_insert(0);
                *floor = (*floor).max(stamp.floor);
            }
            return Ok(());
        }
        let [applied, floor, _marker] = found(&reply)?;
        if applied.is_some() {
            // Applied before (its answer was lost): answered from the record.
            return Ok(());
        }
        let mut floors = inner.floors.lock().unwrap_or_else(|e| e.into_inner());
        match floor.as_deref().map(from_be) {
            None => {
                floors.remove(&stamp.client);
            }
            Some(stored) => {
                floors.insert(stamp.client, stored);
                if stamp.seq < stored {
                    return Err(Error::RetryRefused {
                        message: format!(
                            "write {} of this handle is below its floor {stored}: its answer was \
                             delivered before, it is not applied again",
                            stamp.seq
                        ),
                    });
                }
                // Another write raised the floor: the next round knows it.
            }
        }
        // Otherwise the marker moved under a limited clear: plan again.
    }
    Err(Error::other(
        "the write kept racing other writes to its namespace; gave up",
    ))
}

fn lease_error(err: &Error) -> bool {
    err.to_string().contains("lease not found")
}

fn be(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

fn from_be(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(u64::MAX, u64::from_be_bytes)
}

/// The values of the `else` branch's three gets (`None`: absent).
fn found(reply: &TxnResponse) -> Result<[Option<Vec<u8>>; 3]> {
    let mut out: [Option<Vec<u8>>; 3] = Default::default();
    let responses = reply.op_responses();
    if responses.len() != 3 {
        return Err(Error::protocol(
            "etcd answered the else branch with another shape",
        ));
    }
    for (slot, response) in out.iter_mut().zip(responses) {
        if let TxnOpResponse::Get(get) = response {
            *slot = get.kvs().first().map(|kv| kv.value().to_vec());
        }
    }
    Ok(out)
}

/// The user's operations of `write`, checked against the limits.
async fn plan(inner: &Inner, write: &Write) -> Result<Plan> {
    let ns = &inner.ns;
    let limits = &inner.options;
    match write {
        Write::Conditional { .. } => Err(Error::Unsupported {
            message: "a conditional write is its own transaction on etcd".into(),
        }),
        Write::Batch(ops) => {
            let merged = merge(ops);
            let count = merged.len();
            if count + OWN_OPS > limits.max_txn_ops {
                return Err(too_many_ops(Some(ops.len()), limits.max_txn_ops));
            }
            let bytes: usize = merged
                .iter()
                .map(|(k, v)| k.len() + ns.overhead() + v.map_or(0, <[u8]>::len) + PER_OP_BYTES)
                .sum::<usize>()
                + OWN_BYTES;
            if bytes > limits.max_request_bytes {
                return Err(too_many_bytes(Some(bytes), limits.max_request_bytes));
            }
            let ops = merged
                .into_iter()
                .map(|(k, v)| match v {
                    Some(value) => TxnOp::put(ns.user(k), value.to_vec(), None),
                    None => TxnOp::delete(ns.user(k), None),
                })
                .collect();
            Ok(Plan { ops, guard: None })
        }
        Write::Clear(range) => {
            let Some((start, end)) = ns.wire_range(range) else {
                return Ok(Plan {
                    ops: Vec::new(),
                    guard: None,
                });
            };
            let Some(limit) = range.limit else {
                let ops = vec![TxnOp::delete(
                    start,
                    Some(DeleteOptions::new().with_range(end)),
                )];
                return Ok(Plan { ops, guard: None });
            };
            // The keys a limited clear removes depend on the data: list them and the marker in
            // one snapshot, and delete exactly their span if the marker has not moved since.
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let order = if range.reverse {
                SortOrder::Descend
            } else {
                SortOrder::Ascend
            };
            let list = GetOptions::new()
                .with_range(end)
                .with_keys_only()
                .with_limit(limit)
                .with_sort(SortTarget::Key, order);
            let look = Txn::new().and_then(vec![
                TxnOp::get(ns.marker(), Some(GetOptions::new().with_keys_only())),
                TxnOp::get(start, Some(list)),
            ]);
            let reply = inner
                .retry(|mut c| {
                    let look = look.clone();
                    async move { c.txn(look).await }
                })
                .await?;
            let responses = reply.op_responses();
            let (Some(TxnOpResponse::Get(marker)), Some(TxnOpResponse::Get(keys))) =
                (responses.first(), responses.get(1))
            else {
                return Err(Error::protocol(
                    "etcd answered a listing with another shape",
                ));
            };
            let guard = marker.kvs().first().map_or(0, |kv| kv.mod_revision());
            let keys: Vec<&[u8]> = keys.kvs().iter().map(|kv| kv.key()).collect();
            let (Some(first), Some(last)) =
                (keys.iter().copied().min(), keys.iter().copied().max())
            else {
                return Ok(Plan {
                    ops: Vec::new(),
                    guard: Some(guard),
                });
            };
            let ops = vec![TxnOp::delete(
                first.to_vec(),
                Some(DeleteOptions::new().with_range(successor(last.to_vec()))),
            )];
            Ok(Plan {
                ops,
                guard: Some(guard),
            })
        }
    }
}

/// The batch as one operation per key, the last one on each key winning (etcd refuses a
/// transaction that names a key twice).
fn merge(ops: &[BatchOp]) -> BTreeMap<&[u8], Option<&[u8]>> {
    let mut merged = BTreeMap::new();
    for op in ops {
        match op {
            BatchOp::Put { key, value } => merged.insert(key.as_slice(), Some(value.as_slice())),
            BatchOp::Del { key } => merged.insert(key.as_slice(), None),
        };
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_operation_on_a_key_wins() {
        let ops = vec![
            BatchOp::put("a", "1"),
            BatchOp::del("a"),
            BatchOp::put("b", "1"),
            BatchOp::put("b", "2"),
            BatchOp::del("c"),
        ];
        let merged = merge(&ops);
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[&b"a"[..]], None);
        assert_eq!(merged[&b"b"[..]], Some(&b"2"[..]));
    }

    #[test]
    fn be_order_is_numeric_order() {
        assert!(be(255) < be(256));
        assert_eq!(from_be(&be(77)), 77);
    }
}
