//! Proptest strategies for ranges and operations, shared by the codec's property tests
//! (`props`) and the dispatch proptest (`fuzz_regressions`), which differ only in the keys,
//! values, limits and list lengths they draw.

use proptest::prelude::*;
use rave_api::{BatchOp, Projection, Range};

use crate::wire::Op;

/// A range with each bound drawn from `key`, a limit from `limit`, any direction and projection.
pub(super) fn range_of<K>(
    key: impl Fn() -> K,
    limit: impl Strategy<Value = u64>,
) -> impl Strategy<Value = Range>
where
    K: Strategy<Value = Vec<u8>>,
{
    (
        prop::option::of(key()),
        prop::option::of(key()),
        prop::option::of(key()),
        prop::option::of(key()),
        any::<bool>(),
        prop::option::of(limit),
        prop_oneof![
            Just(Projection::KeysAndValues),
            Just(Projection::KeysOnly),
            Just(Projection::ValuesOnly)
        ],
    )
        .prop_map(|(gt, gte, lt, lte, reverse, limit, projection)| Range {
            gt,
            gte,
            lt,
            lte,
            reverse,
            limit,
            projection,
        })
}

/// Any operation over keys from `key` and values from `value`; a clear takes its range from
/// `range`, and key lists and batches hold fewer than `most` items.
pub(super) fn op_of<K, V>(
    key: impl Fn() -> K,
    value: impl Fn() -> V,
    range: impl Strategy<Value = Range>,
    most: usize,
) -> impl Strategy<Value = Op>
where
    K: Strategy<Value = Vec<u8>>,
    V: Strategy<Value = Vec<u8>>,
{
    let batch_op = prop_oneof![
        (key(), value()).prop_map(|(k, v)| BatchOp::put(k, v)),
        key().prop_map(BatchOp::del),
    ];
    prop_oneof![
        key().prop_map(|key| Op::Get { key }),
        prop::collection::vec(key(), 0..most).prop_map(|keys| Op::GetMany { keys }),
        (key(), value()).prop_map(|(key, value)| Op::put(key, value)),
        key().prop_map(Op::del),
        prop::collection::vec(batch_op, 0..most).prop_map(Op::batch),
        range.prop_map(Op::clear),
        Just(Op::Ping),
        Just(Op::Sequence),
        Just(Op::Stats),
    ]
}
