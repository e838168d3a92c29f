//! Close, use after close, and reopening.

use std::time::Duration;

use rave_api::{BatchOp, KvIterator, Range};

use crate::support::{
    Ctx, Db, Failure, Scratch, crowd_iterator, ensure, expect_closed, expect_value, show, skip,
};
use crate::{Harness, Model, Outcome, TestResult};

/// Every operation after close fails with `Closed`, including reading an iterator opened
/// before the close.
pub(crate) async fn closed_operations(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    for k in ["a", "b", "c", "d"] {
        db.put(k.as_bytes(), b"v").await.ctx(format!("put {k}"))?;
    }
    let mut early = db.iterator(Range::all()).await.ctx("open an iterator")?;
    let first = early.next_chunk(1).await.ctx("read one entry")?;
    ensure!(
        first.len() == 1,
        "reading 1 entry of 4: expected 1 entry, got {}",
        first.len()
    );
    let store = db.shared();
    db.close().await?;
    expect_closed("get", store.get(b"a").await)?;
    expect_closed("get_many", store.get_many(&[b"a".to_vec()]).await)?;
    expect_closed("put", store.put(b"e", b"v").await)?;
    expect_closed("del", store.del(b"a").await)?;
    expect_closed("batch", store.batch(vec![BatchOp::put("e", "v")]).await)?;
    expect_closed("iterator", store.iterator(Range::all()).await)?;
    expect_closed("clear", store.clear(Range::all()).await)?;
    expect_closed(
        "next_chunk of an iterator opened before close",
        early.next_chunk(10).await,
    )?;
    drop(early);
    store
        .close()
        .await
        .ctx("a second close, after use after close")?;
    Ok(Outcome::Passed)
}

/// Closing twice, or from two tasks at once, is not an error.
pub(crate) async fn close_twice(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    db.put(b"a", b"1").await.ctx("put a")?;
    let store = db.shared();
    db.close().await?;
    store.close().await.ctx("a second close")?;
    store.close().await.ctx("a third close")?;

    let other = Scratch::new()?;
    let db = Db::open(h, &other.db()).await?;
    db.put(b"a", b"1").await.ctx("put a")?;
    let (s1, s2) = (db.shared(), db.shared());
    let t1 = tokio::spawn(async move { s1.close().await });
    let t2 = tokio::spawn(async move { s2.close().await });
    for (i, t) in [t1, t2].into_iter().enumerate() {
        t.await
            .map_err(|e| Failure::new(format!("close task {i} failed: {e}")))?
            .ctx(format!("close {i} of two concurrent closes"))?;
    }
    db.close()
        .await
        .map_err(|f| f.context("close after two concurrent closes"))?;
    Ok(Outcome::Passed)
}

/// Closing does not wait for open iterators to be read or dropped.
pub(crate) async fn close_with_open_iterators(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    for i in 0..100 {
        let key = format!("k{i:03}");
        db.put(key.as_bytes(), b"v")
            .await
            .ctx(format!("put {key}"))?;
    }
    let mut open: Vec<Box<dyn KvIterator>> = Vec::new();
    for i in 0..20usize {
        let iter = crowd_iterator(&*db, i, 1 + i).await?;
        open.push(iter);
    }
    let store = db.shared();
    match tokio::time::timeout(Duration::from_secs(10), db.close()).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(Failure::new(
                "close with 20 open iterators: expected it to finish, still waiting after 10 s",
            ));
        }
    }
    for (i, iter) in open.iter_mut().enumerate() {
        expect_closed(
            &format!("next_chunk of open iterator {i}"),
            iter.next_chunk(5).await,
        )?;
    }
    drop(open);
    store.close().await.ctx("close again")?;
    Ok(Outcome::Passed)
}

/// Everything written survives close and reopen, twice, and a reopened store takes writes.
pub(crate) async fn reopen_persistence(h: &dyn Harness) -> TestResult {
    if !h.capabilities().persistent {
        return skip(h, "reopen_persistence", "the store is not persistent");
    }
    let scratch = Scratch::new()?;
    let path = scratch.db();
    let mut model = Model::new();

    let db = Db::open(h, &path).await?;
    db.check_state(&model).await?;
    for i in 0..200 {
        let (k, v) = (format!("k{i:03}"), format!("value {i}"));
        db.put(k.as_bytes(), v.as_bytes())
            .await
            .ctx(format!("put {k}"))?;
        model.put(k.as_bytes(), v.as_bytes());
    }
    let ops = vec![
        BatchOp::put(Vec::new(), b"empty key".to_vec()),
        BatchOp::put(vec![0x00, 0xff], Vec::new()),
        BatchOp::put(vec![0xff; 3], vec![0x00; 3]),
        BatchOp::del("k007"),
        BatchOp::put("k008", "overwritten"),
    ];
    db.batch(ops.clone()).await.ctx("batch")?;
    model.apply(&ops);
    let big = vec![0xabu8; 1 << 20];
    db.put(b"big", &big).await.ctx("put of a 1 MiB value")?;
    model.put(b"big", &big);
    db.del(b"k010").await.ctx("del k010")?;
    model.del(b"k010");
    let range = Range::all().gte("k100").lt("k150");
    db.clear(range.clone()).await.ctx("clear k100..k150")?;
    model.clear(&range);
    db.close().await?;

    let db = Db::open(h, &path).await.map_err(|f| f.context("reopen"))?;
    db.check_state(&model)
        .await
        .map_err(|f| f.context("after close and reopen"))?;
    for key in [&b""[..], b"k007", b"k008", b"big", b"k120", &[0x00, 0xff]] {
        let got = db
            .get(key)
            .await
            .ctx(format!("get {} after reopen", show(key)))?;
        expect_value(
            format!("get {} after reopen", show(key)),
            got.as_deref(),
            model.get(key),
        )?;
    }
    db.put(b"after reopen", b"1")
        .await
        .ctx("put after reopen")?;
    model.put(b"after reopen", b"1");
    db.del(b"k000").await.ctx("del after reopen")?;
    model.del(b"k000");
    db.close().await?;

    let db = Db::open(h, &path)
        .await
        .map_err(|f| f.context("second reopen"))?;
    db.check_state(&model)
        .await
        .map_err(|f| f.context("after a second close and reopen"))?;
    db.close().await?;
    Ok(Outcome::Passed)
}
