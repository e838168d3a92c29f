//! Iterator ranges: every bound alone and in pairs, empty and inverted ranges, prefixes,
//! reverse, limits and projections. Expectations come from the model.

use rave_api::{BatchOp, Entry, Range};

use crate::support::{
    Ctx, Db, Failure, Scratch, collect, drain, ensure, entry, expect_entries, show_range,
};
use crate::{Harness, Model, Outcome, TestResult};

const KEYS: [&str; 6] = ["a", "ab", "abc", "b", "ba", "c"];

/// Bounds to try: present keys, absent keys between them, and keys beyond both ends.
const PROBES: [&[u8]; 12] = [
    b"", b"0", b"a", b"aa", b"ab", b"abc", b"abd", b"b", b"bb", b"c", b"d", b"\xff",
];

#[derive(Clone, Copy, Debug)]
enum Bound {
    Gt,
    Gte,
    Lt,
    Lte,
}

const BOUNDS: [Bound; 4] = [Bound::Gt, Bound::Gte, Bound::Lt, Bound::Lte];

fn with_bound(range: Range, bound: Bound, key: &[u8]) -> Range {
    match bound {
        Bound::Gt => range.gt(key),
        Bound::Gte => range.gte(key),
        Bound::Lt => range.lt(key),
        Bound::Lte => range.lte(key),
    }
}

fn directions(range: Range) -> [Range; 2] {
    [range.clone(), range.reverse()]
}

/// A store holding a, ab, abc, b, ba, c (values `v-<key>`), and its model.
async fn fixture(h: &dyn Harness, keys: &[&str]) -> Result<(Scratch, Db, Model), Failure> {
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let mut model = Model::new();
    for k in keys {
        model.put(k.as_bytes(), format!("v-{k}").as_bytes());
    }
    db.load(&model).await?;
    Ok((scratch, db, model))
}

fn entries_of(keys: &[&str]) -> Vec<Entry> {
    keys.iter()
        .map(|k| entry(k.as_bytes(), format!("v-{k}").as_bytes()))
        .collect()
}

pub(crate) async fn range_single_bounds(h: &dyn Harness) -> TestResult {
    let (_scratch, db, model) = fixture(h, &KEYS).await?;
    let mut n = 0;
    for bound in BOUNDS {
        for probe in PROBES {
            for range in directions(with_bound(Range::all(), bound, probe)) {
                n += 1;
                db.check_range(&model, &range, 1 + n % 4).await?;
            }
        }
    }
    // A few by hand, so that the model itself is checked too.
    for (range, keys) in [
        (Range::all().gt("ab"), &["abc", "b", "ba", "c"][..]),
        (Range::all().gte("ab"), &["ab", "abc", "b", "ba", "c"][..]),
        (Range::all().lt("b"), &["a", "ab", "abc"][..]),
        (Range::all().lte("b"), &["a", "ab", "abc", "b"][..]),
        (Range::all().gt("bb"), &["c"][..]),
        (Range::all().lte("aa").reverse(), &["a"][..]),
    ] {
        db.expect_range(&range, 10, &entries_of(keys)).await?;
    }
    db.close().await?;
    Ok(Outcome::Passed)
}

pub(crate) async fn range_paired_bounds(h: &dyn Harness) -> TestResult {
    let (_scratch, db, model) = fixture(h, &KEYS).await?;
    let pairs = [
        (Bound::Gt, Bound::Lt),
        (Bound::Gt, Bound::Lte),
        (Bound::Gte, Bound::Lt),
        (Bound::Gte, Bound::Lte),
        // Both bounds on one side: the stricter one applies.
        (Bound::Gt, Bound::Gte),
        (Bound::Lt, Bound::Lte),
    ];
    let mut n = 0;
    for (first, second) in pairs {
        for p in PROBES {
            for q in PROBES {
                let range = with_bound(with_bound(Range::all(), first, p), second, q);
                for range in directions(range) {
                    n += 1;
                    db.check_range(&model, &range, 2 + n % 3).await?;
                }
            }
        }
    }
    for (range, keys) in [
        (Range::all().gt("a").lt("b"), &["ab", "abc"][..]),
        (Range::all().gte("a").lte("b"), &["a", "ab", "abc", "b"][..]),
        (
            Range::all().gt("aa").lte("ba").reverse(),
            &["ba", "b", "abc", "ab"][..],
        ),
        (Range::all().gt("ab").gte("a"), &["abc", "b", "ba", "c"][..]),
        (Range::all().gt("a").gte("b"), &["b", "ba", "c"][..]),
        (Range::all().lt("c").lte("b"), &["a", "ab", "abc", "b"][..]),
        (Range::all().lt("b").lte("c"), &["a", "ab", "abc"][..]),
    ] {
        db.expect_range(&range, 10, &entries_of(keys)).await?;
    }
    db.close().await?;
    Ok(Outcome::Passed)
}

pub(crate) async fn range_empty_and_inverted(h: &dyn Harness) -> TestResult {
    let (_scratch, db, model) = fixture(h, &KEYS).await?;
    let empty = [
        Range::all().gt("b").lt("a"),
        Range::all().gte("b").lte("a"),
        Range::all().gt("c").lt("a"),
        Range::all().gt("a").lt("a"),
        Range::all().gte("a").lt("a"),
        Range::all().gt("a").lte("a"),
        Range::all().gt("a").lt(b"a\x00".to_vec()),
        Range::all().gt("abc").lt("abd"),
        Range::all().lt(""),
        Range::all().lt("a"),
        Range::all().gt("c"),
        Range::all().gte("d"),
        Range::all().limit(0),
        Range::all().gte("a").lte("c").limit(0),
        Range::prefix("d"),
        Range::prefix("abcd"),
    ];
    for range in empty.into_iter().flat_map(directions) {
        ensure!(
            model.query(&range).is_empty(),
            "the suite's own model is wrong: {} should be empty",
            show_range(&range)
        );
        let what = format!("iterator over the empty range {}", show_range(&range));
        let mut iter = db
            .iterator(range.clone())
            .await
            .ctx(format!("open {what}"))?;
        for attempt in 1..=2 {
            let got = iter
                .next_chunk(10)
                .await
                .ctx(format!("next_chunk of {what}"))?;
            expect_entries(format!("{what}, read {attempt}"), &got, &[])?;
        }
    }
    // Narrow ranges holding exactly one key.
    for (range, key) in [
        (Range::all().gte("a").lte("a"), "a"),
        (Range::all().gte("ab").lt("abc"), "ab"),
        (Range::all().gt("ab").lt("abd"), "abc"),
        (Range::all().gt("b").lte("ba"), "ba"),
    ] {
        for range in directions(range) {
            db.expect_range(&range, 10, &entries_of(&[key])).await?;
        }
    }
    db.close().await?;
    Ok(Outcome::Passed)
}

pub(crate) async fn range_prefixes(h: &dyn Harness) -> TestResult {
    let (_scratch, db, model) = fixture(h, &KEYS).await?;
    for (prefix, keys) in [
        ("a", &["a", "ab", "abc"][..]),
        ("ab", &["ab", "abc"][..]),
        ("abc", &["abc"][..]),
        ("b", &["b", "ba"][..]),
        ("ba", &["ba"][..]),
        ("c", &["c"][..]),
        ("d", &[][..]),
        ("", &KEYS[..]),
    ] {
        let range = Range::prefix(prefix);
        let got = collect(&*db, range.clone(), 2).await?;
        expect_entries(format!("prefix {prefix:?}"), &got, &entries_of(keys))?;
        let mut reversed = entries_of(keys);
        reversed.reverse();
        let got = collect(&*db, range.clone().reverse(), 2).await?;
        expect_entries(format!("prefix {prefix:?} reversed"), &got, &reversed)?;
        db.check_range(&model, &range.clone().limit(1), 1).await?;
        db.check_range(&model, &range.reverse().limit(1), 1).await?;
    }
    db.close().await?;
    Ok(Outcome::Passed)
}

/// With keys a, ab, b, c, reverse iteration gives c, b, ab, a.
pub(crate) async fn reverse_order(h: &dyn Harness) -> TestResult {
    let (_scratch, db, model) = fixture(h, &["c", "a", "b", "ab"]).await?;
    for (range, keys) in [
        (Range::all().reverse(), &["c", "b", "ab", "a"][..]),
        (Range::all(), &["a", "ab", "b", "c"][..]),
        (Range::all().lt("b").reverse(), &["ab", "a"][..]),
        (Range::all().gt("a").reverse(), &["c", "b", "ab"][..]),
        (Range::all().gte("ab").lte("b").reverse(), &["b", "ab"][..]),
        (Range::all().lte("bzz").reverse(), &["b", "ab", "a"][..]),
    ] {
        for chunk in [1, 3, 100] {
            let got = collect(&*db, range.clone(), chunk).await?;
            expect_entries(
                format!("iterator over {} (chunks of {chunk})", show_range(&range)),
                &got,
                &entries_of(keys),
            )?;
        }
        db.check_range(&model, &range, 2).await?;
    }
    db.close().await?;
    Ok(Outcome::Passed)
}

pub(crate) async fn range_limits(h: &dyn Harness) -> TestResult {
    let (_scratch, db, model) = fixture(h, &KEYS).await?;
    let ranges = [
        Range::all(),
        Range::all().gte("ab"),
        Range::all().lt("ba"),
        Range::prefix("a"),
        Range::all().gt("a").lt("c"),
    ];
    let limits = [
        Some(0),
        Some(1),
        Some(2),
        Some(3),
        Some(6),
        Some(7),
        Some(100),
        Some(u64::MAX),
        None,
    ];
    let mut n = 0;
    for base in &ranges {
        for limit in limits {
            let mut range = base.clone();
            range.limit = limit;
            for range in directions(range) {
                n += 1;
                // Chunks smaller than, equal to and larger than the limit.
                db.check_range(&model, &range, 1 + n % 4).await?;
            }
        }
    }
    for (range, keys) in [
        (Range::all().limit(1), &["a"][..]),
        (Range::all().reverse().limit(1), &["c"][..]),
        (Range::all().reverse().limit(2), &["c", "ba"][..]),
        (Range::all().gt("a").limit(2), &["ab", "abc"][..]),
        (Range::all().lt("b").reverse().limit(2), &["abc", "ab"][..]),
        (Range::all().limit(0), &[][..]),
        (Range::all().limit(6), &KEYS[..]),
    ] {
        db.expect_range(&range, 4, &entries_of(keys)).await?;
    }
    db.close().await?;
    Ok(Outcome::Passed)
}

pub(crate) async fn keys_only_values_only(h: &dyn Harness) -> TestResult {
    let (_scratch, db, model) = fixture(h, &KEYS).await?;
    for base in [
        Range::all(),
        Range::all().gt("a").lte("ba"),
        Range::all().limit(2),
        Range::prefix("ab"),
    ] {
        for range in directions(base) {
            for projected in [range.clone().keys_only(), range.clone().values_only()] {
                db.check_range(&model, &projected, 2).await?;
            }
        }
    }
    let got = collect(&*db, Range::all().keys_only().reverse().limit(2), 5).await?;
    expect_entries(
        "keys only, reverse, limit 2 (values must be empty)",
        &got,
        &[entry(b"c", b""), entry(b"ba", b"")],
    )?;
    let got = collect(&*db, Range::all().values_only().gte("b"), 5).await?;
    expect_entries(
        "values only, gte b (keys must be empty)",
        &got,
        &[entry(b"", b"v-b"), entry(b"", b"v-ba"), entry(b"", b"v-c")],
    )?;
    // Draining by hand too, to be sure a one-entry chunk is projected the same.
    let mut iter = db
        .iterator(Range::all().values_only().limit(1))
        .await
        .ctx("open a values-only iterator")?;
    let got = drain(&mut *iter, 1, "a values-only iterator").await?;
    expect_entries("values only, limit 1", &got, &[entry(b"", b"v-a")])?;
    drop(iter);
    db.close().await?;
    Ok(Outcome::Passed)
}

/// Keys at every edge a bound can hit: the empty key, 0x00 and 0xff bytes, a key followed by
/// its immediate successor (`a`, `a\x00`), runs of 0xff.
const EDGE_KEYS: [&[u8]; 14] = [
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x01",
    b"a",
    b"a\x00",
    b"a\x00\x01",
    b"ab",
    b"a\xff",
    b"b",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
    b"\xff\xff\xff",
];

/// Bounds around [`EDGE_KEYS`]: stored keys and absent ones between and beyond them.
const EDGE_PROBES: [&[u8]; 13] = [
    b"",
    b"\x00",
    b"\x00\x01",
    b"a",
    b"a\x00",
    b"a\x00\x00",
    b"aa",
    b"ab",
    b"c",
    b"\xff",
    b"\xff\x01",
    b"\xff\xff",
    b"\xff\xff\xff\xff",
];

fn edge_model() -> Model {
    let mut model = Model::new();
    for key in EDGE_KEYS {
        model.put(key, &[b"v:", key].concat());
    }
    model
}

/// Every bound kind, alone and in pairs, in both directions, over keys at the byte edges (the
/// empty key, 0x00, 0xff, a key and its immediate successor), where engines translate bounds
/// into their own seek and stop keys; then limits, projections and clear over the same keys.
pub(crate) async fn binary_edge_bounds(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let mut model = edge_model();
    let ops: Vec<BatchOp> = model
        .entries()
        .into_iter()
        .map(|e| BatchOp::put(e.key, e.value))
        .collect();
    db.batch(ops).await.ctx("batch of the edge keys")?;

    // A few spelled out, so that the model is checked too.
    for (range, keys) in [
        (
            Range::all().gt("a").lt("b"),
            &[&b"a\x00"[..], b"a\x00\x01", b"ab", b"a\xff"][..],
        ),
        (
            Range::all().gt("a").lte("ab").reverse(),
            &[&b"ab"[..], b"a\x00\x01", b"a\x00"][..],
        ),
        (
            Range::all().gte("a").lt("ab").reverse(),
            &[&b"a\x00\x01"[..], b"a\x00", b"a"][..],
        ),
        (Range::all().lte("").reverse(), &[&b""[..]][..]),
        (Range::all().lt(b"\x00".to_vec()), &[&b""[..]][..]),
        (
            Range::all().gt(b"\xff\xff".to_vec()),
            &[&b"\xff\xff\xff"[..]][..],
        ),
        (
            Range::all().gte(b"\xff".to_vec()).reverse().limit(2),
            &[&b"\xff\xff\xff"[..], b"\xff\xff"][..],
        ),
        (Range::all().gt("a").lt(b"a\x00".to_vec()), &[][..]),
        (
            Range::all()
                .gt("a")
                .gte(b"a\x00\x01".to_vec())
                .lt("b")
                .lte("ab")
                .reverse(),
            &[&b"ab"[..], b"a\x00\x01"][..],
        ),
    ] {
        let expected: Vec<Entry> = keys
            .iter()
            .map(|k| entry(k, &[b"v:", *k].concat()))
            .collect();
        db.expect_range(&range, 3, &expected).await?;
    }

    let mut n = 0;
    for lo in EDGE_PROBES {
        for hi in EDGE_PROBES {
            for (lower, upper) in [
                (Bound::Gt, Bound::Lt),
                (Bound::Gt, Bound::Lte),
                (Bound::Gte, Bound::Lt),
                (Bound::Gte, Bound::Lte),
            ] {
                let range = with_bound(with_bound(Range::all(), lower, lo), upper, hi);
                for range in directions(range) {
                    n += 1;
                    db.check_range(&model, &range, 1 + n % 5).await?;
                }
            }
        }
        for bound in BOUNDS {
            let range = with_bound(Range::all(), bound, lo);
            for range in [range.clone(), range.clone().limit(1), range.limit(3)] {
                for range in directions(range) {
                    n += 1;
                    db.check_range(&model, &range, 1 + n % 3).await?;
                }
            }
        }
    }
    for range in [
        Range::prefix("a").values_only(),
        Range::prefix(b"\xff".to_vec()).keys_only().reverse(),
        Range::prefix(b"\x00".to_vec()).reverse().limit(1),
        Range::prefix(b"a\x00".to_vec()),
    ] {
        db.check_range(&model, &range, 2).await?;
    }

    // Clear with the same edges: the two highest keys below "b", then everything up to and
    // including the empty key, then an exclusive range around a key and its successor.
    for range in [
        Range::all().lt("b").reverse().limit(2),
        Range::all().lte(""),
        Range::all().gt("a").lt(b"a\x00\x01".to_vec()),
        Range::all()
            .gte(b"\xff".to_vec())
            .lt(b"\xff\xff\xff".to_vec()),
    ] {
        db.check_clear(&mut model, &range).await?;
    }
    db.close().await?;
    Ok(Outcome::Passed)
}
