//! Point operations: put, get, del, get_many, odd keys and values.

use rave_api::Range;

use crate::support::{
    Ctx, Db, Scratch, collect, ensure, expect_entries, expect_value, show, show_opt,
};
use crate::{Harness, Model, Outcome, TestResult};

pub(crate) async fn put_get_del(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let got = db.get(b"a").await.ctx("get \"a\" before any write")?;
    expect_value("get \"a\" before any write", got.as_deref(), None)?;
    db.put(b"a", b"1").await.ctx("put a=1")?;
    db.put(b"b", b"2").await.ctx("put b=2")?;
    let got = db.get(b"a").await.ctx("get a")?;
    expect_value("get a after put a=1", got.as_deref(), Some(b"1"))?;
    let got = db.get(b"b").await.ctx("get b")?;
    expect_value("get b after put b=2", got.as_deref(), Some(b"2"))?;
    db.del(b"a").await.ctx("del a")?;
    let got = db.get(b"a").await.ctx("get a after del")?;
    expect_value("get a after del a", got.as_deref(), None)?;
    let got = db.get(b"b").await.ctx("get b after del a")?;
    expect_value("get b after del a", got.as_deref(), Some(b"2"))?;
    db.del(b"a").await.ctx("del a a second time")?;
    db.del(b"never-written").await.ctx("del of an absent key")?;
    let mut model = Model::new();
    model.put(b"b", b"2");
    db.check_state(&model).await?;
    db.close().await?;
    Ok(Outcome::Passed)
}

/// Keys and values with 0x00 and 0xff bytes, ordered as unsigned bytes.
pub(crate) async fn binary_keys(h: &dyn Harness) -> TestResult {
    let keys: Vec<Vec<u8>> = vec![
        vec![0xff, 0xff, 0xff],
        vec![0x00],
        b"a\xff".to_vec(),
        vec![0x7f],
        vec![0x00, 0x00],
        vec![0x80],
        b"a\x00b".to_vec(),
        vec![0x00, 0x01],
        vec![0xff],
        b"a".to_vec(),
        vec![0x01],
        vec![0xfe],
        b"a\x00".to_vec(),
        vec![0xff, 0x00],
        vec![0xff, 0xff],
    ];
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let mut model = Model::new();
    for (i, key) in keys.iter().enumerate() {
        let mut value = key.clone();
        value.reverse();
        value.extend_from_slice(&[0x00, 0xff, i as u8, 0x00]);
        db.put(key, &value)
            .await
            .ctx(format!("put {}", show(key)))?;
        model.put(key, &value);
    }
    for key in &keys {
        let got = db.get(key).await.ctx(format!("get {}", show(key)))?;
        expect_value(format!("get {}", show(key)), got.as_deref(), model.get(key))?;
    }
    db.check_state(&model).await?;
    let first = collect(&*db, Range::all().limit(1), 1).await?;
    expect_entries(
        "the first key (0x00 sorts before everything but the empty key)",
        &first,
        &model.query(&Range::all().limit(1)),
    )?;
    for range in [
        Range::all().reverse(),
        // 0x80 and up are greater than 0x7f: unsigned, not signed, byte order.
        Range::all().gte(vec![0x80]),
        Range::all().lt(vec![0x80]).reverse(),
        Range::all().gt(vec![0x00]).lt(vec![0x01]),
        Range::prefix(vec![0xff]),
        Range::prefix(vec![0xff]).reverse(),
        Range::prefix(vec![0x00]),
        Range::prefix(b"a\x00".to_vec()),
        Range::all().gt(b"a".to_vec()).lte(b"a\xff".to_vec()),
    ] {
        db.check_range(&model, &range, 3).await?;
    }
    db.close().await?;
    Ok(Outcome::Passed)
}

pub(crate) async fn empty_key_and_value(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let mut model = Model::new();
    db.put(b"", b"value of the empty key")
        .await
        .ctx("put of the empty key")?;
    model.put(b"", b"value of the empty key");
    let got = db.get(b"").await.ctx("get of the empty key")?;
    expect_value(
        "get of the empty key",
        got.as_deref(),
        Some(b"value of the empty key"),
    )?;
    db.put(b"k", b"").await.ctx("put of an empty value")?;
    model.put(b"k", b"");
    let got = db.get(b"k").await.ctx("get of an empty value")?;
    ensure!(
        got.as_deref() == Some(&b""[..]),
        "get of a key whose value is empty: expected Some(\"\") (present), got {}",
        show_opt(got.as_deref())
    );
    db.put(b"a", b"1").await.ctx("put a")?;
    model.put(b"a", b"1");
    db.check_state(&model).await?;
    for range in [
        Range::all().reverse(),
        Range::all().gte(Vec::new()),
        Range::all().gt(Vec::new()),
        Range::all().lte(Vec::new()),
        Range::all().lte(Vec::new()).reverse(),
        Range::all().lt(b"a".to_vec()),
        Range::prefix(Vec::new()),
        Range::all().keys_only(),
    ] {
        db.check_range(&model, &range, 2).await?;
    }
    let got = db
        .get_many(&[b"".to_vec(), b"k".to_vec(), b"x".to_vec()])
        .await
        .ctx("get_many of the empty key, an empty value and an absent key")?;
    ensure!(
        got == vec![
            Some(b"value of the empty key".to_vec()),
            Some(Vec::new()),
            None
        ],
        "get_many [\"\", \"k\", \"x\"]: expected [Some(\"value of the empty key\"), Some(\"\"), None], got {got:?}"
    );
    db.batch(vec![rave_api::BatchOp::put(Vec::new(), Vec::new())])
        .await
        .ctx("batch putting empty key = empty value")?;
    model.put(b"", b"");
    let got = db.get(b"").await.ctx("get of the empty key")?;
    expect_value(
        "get of the empty key set to empty",
        got.as_deref(),
        Some(b""),
    )?;
    db.del(b"").await.ctx("del of the empty key")?;
    model.del(b"");
    let got = db.get(b"").await.ctx("get of the deleted empty key")?;
    expect_value("get of the deleted empty key", got.as_deref(), None)?;
    db.check_state(&model).await?;
    db.close().await?;
    Ok(Outcome::Passed)
}

/// A 10 MiB value goes in and comes out whole, through get and through an iterator.
pub(crate) async fn large_value(h: &dyn Harness) -> TestResult {
    const SIZE: usize = 10 << 20;
    let big: Vec<u8> = (0..SIZE)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    db.put(b"big", &big).await.ctx("put of a 10 MiB value")?;
    db.put(b"small", b"s").await.ctx("put small")?;
    let got = db.get(b"big").await.ctx("get of a 10 MiB value")?;
    expect_value("get of the 10 MiB value", got.as_deref(), Some(&big))?;
    let mut model = Model::new();
    model.put(b"big", &big);
    model.put(b"small", b"s");
    db.check_range(&model, &Range::all(), 1).await?;
    db.check_range(&model, &Range::all().values_only().reverse(), 5)
        .await?;
    db.put(b"big", b"now small")
        .await
        .ctx("overwrite of the 10 MiB value")?;
    model.put(b"big", b"now small");
    db.check_state(&model).await?;
    db.close().await?;
    Ok(Outcome::Passed)
}

pub(crate) async fn overwrite(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let long = vec![b'L'; 5000];
    let values: [&[u8]; 5] = [b"first", b"second", &long, b"s", b""];
    for v in values {
        db.put(b"k", v).await.ctx(format!("put k={}", show(v)))?;
        let got = db.get(b"k").await.ctx("get k")?;
        expect_value(
            format!("get k after put k={}", show(v)),
            got.as_deref(),
            Some(v),
        )?;
    }
    db.batch(vec![rave_api::BatchOp::put("k", "from a batch")])
        .await
        .ctx("batch overwriting k")?;
    let mut model = Model::new();
    model.put(b"k", b"from a batch");
    db.check_state(&model).await?;
    db.close().await?;
    Ok(Outcome::Passed)
}

pub(crate) async fn get_many(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    db.put(b"a", b"1").await.ctx("put a")?;
    db.put(b"c", b"3").await.ctx("put c")?;
    let got = db.get_many(&[]).await.ctx("get_many of no keys")?;
    ensure!(
        got.is_empty(),
        "get_many of no keys: expected [], got {got:?}"
    );
    let keys: Vec<Vec<u8>> = ["a", "b", "c", "a", "", "zz"]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
    let got = db.get_many(&keys).await.ctx("get_many")?;
    let expected = vec![
        Some(b"1".to_vec()),
        None,
        Some(b"3".to_vec()),
        Some(b"1".to_vec()),
        None,
        None,
    ];
    ensure!(
        got == expected,
        "get_many [a, b, c, a, \"\", zz]: expected {expected:?} (missing keys as None in place), got {got:?}"
    );
    let got = db
        .get_many(&[b"x".to_vec(), b"y".to_vec()])
        .await
        .ctx("get_many of absent keys")?;
    ensure!(
        got == vec![None, None],
        "get_many [x, y] of absent keys: expected [None, None], got {got:?}"
    );
    db.close().await?;
    Ok(Outcome::Passed)
}
