//! Exactly once: a write re-sent with the same stamp is applied once, its record survives a
//! reopen, and rave's records never show through the user's key space.

use rave_api::{BatchOp, ClientId, Range, Write, WriteStamp};

use crate::support::{Ctx, Db, Scratch, ensure, expect_entries, skip};
use crate::{Harness, Model, Outcome, TestResult};

fn stamp(client: ClientId, seq: u64) -> WriteStamp {
    WriteStamp {
        client,
        seq,
        floor: 1,
    }
}

/// Keys next to and inside the block rave reserves (`0xFF 0x00 ...`): users may write them all.
fn edge_keys() -> Vec<Vec<u8>> {
    vec![
        vec![0xFF],
        vec![0xFF, 0x00],
        b"\xff\x00layout".to_vec(),
        vec![0xFF, 0x00, b'o'],
        vec![0xFF, 0x01],
        vec![0xFF, 0xFF],
        vec![0xFF, 0xFF, 0x00],
    ]
}

/// Re-sent stamped writes (put, batch, `clear` with a limit) take effect once, on the same
/// store and after a reopen; other stamps apply; rave's records stay invisible to scans, to
/// `clear` and to user keys in the reserved byte range.
pub(crate) async fn exactly_once_writes(h: &dyn Harness) -> TestResult {
    if !h.capabilities().exactly_once {
        return skip(
            h,
            "exactly_once_writes",
            "the store keeps no exactly-once records",
        );
    }
    let scratch = Scratch::new()?;
    let path = scratch.db();
    let mut model = Model::new();
    let db = Db::open(h, &path).await?;
    let client = ClientId::random();

    for i in 0..6u8 {
        let key = format!("k{i}");
        db.put(key.as_bytes(), b"v").await.ctx("put")?;
        model.put(key.as_bytes(), b"v");
    }
    for key in edge_keys() {
        db.put(&key, b"edge")
            .await
            .ctx("put of a key beginning 0xFF")?;
        model.put(&key, b"edge");
    }
    // A limited clear sent three times with one stamp removes one key, not three.
    let clear_one = Write::Clear(Range::all().gte("k").limit(1));
    for attempt in 0..3 {
        db.write_stamped(stamp(client, 1), clear_one.clone())
            .await
            .ctx(format!("stamped clear, send {attempt}"))?;
    }
    model.del(b"k0");
    db.check_state(&model)
        .await
        .map_err(|f| f.context("after one stamped clear {limit 1} sent three times"))?;

    // A put re-sent after a newer write to its key must not bring the old value back.
    let old = Write::Batch(vec![BatchOp::put("k5", "old")]);
    db.write_stamped(stamp(client, 2), old.clone())
        .await
        .ctx("stamped put")?;
    db.put(b"k5", b"new").await.ctx("newer put")?;
    db.write_stamped(stamp(client, 2), old.clone())
        .await
        .ctx("stamped put re-sent")?;
    model.put(b"k5", b"new");
    db.check_state(&model)
        .await
        .map_err(|f| f.context("a re-sent put after a newer one (reader would see 1, 2, 1)"))?;

    // Clearing everything leaves the records (and the reserved keys) in place.
    db.clear(Range::all()).await.ctx("clear all")?;
    model = Model::new();
    db.check_state(&model)
        .await
        .map_err(|f| f.context("after clear all"))?;
    db.put(b"k9", b"v").await.ctx("put k9")?;
    model.put(b"k9", b"v");
    let clear_k9 = Write::Clear(Range::all().limit(1));
    db.write_stamped(stamp(client, 1), clear_k9.clone())
        .await
        .ctx("re-send of stamp 1 after clear all")?;
    db.check_state(&model).await.map_err(|f| {
        f.context("stamp 1 re-sent after clear all (its record must survive clear)")
    })?;

    // Another handle's stamp 1 is another write.
    db.write_stamped(stamp(ClientId::random(), 1), clear_k9)
        .await
        .ctx("another handle's stamp 1")?;
    model.del(b"k9");
    db.check_state(&model)
        .await
        .map_err(|f| f.context("another handle's write"))?;
    let all = crate::support::collect(&*db, Range::all(), 16).await?;
    expect_entries(
        "a scan of an empty store (records are invisible)",
        &all,
        &[],
    )?;
    db.close().await?;

    if h.capabilities().persistent {
        let db = Db::open(h, &path).await.map_err(|f| f.context("reopen"))?;
        db.put(b"k1", b"v").await.ctx("put k1 after reopen")?;
        model.put(b"k1", b"v");
        db.write_stamped(stamp(client, 1), clear_one)
            .await
            .ctx("re-send of stamp 1 after reopen")?;
        db.write_stamped(stamp(client, 2), old)
            .await
            .ctx("re-send of stamp 2 after reopen")?;
        db.check_state(&model)
            .await
            .map_err(|f| f.context("re-sent writes after a reopen (records must be durable)"))?;
        let got = db.get(b"k5").await.ctx("get k5")?;
        ensure!(
            got.is_none(),
            "a re-sent put brought back k5 (cleared since) after a reopen: {got:?}"
        );
        db.close().await?;
    }
    Ok(Outcome::Passed)
}
