//! Iterators: snapshot isolation, many at once, chunking, abandonment.

use std::sync::Arc;

use rave_api::{BatchOp, Entry, KvIterator, Range};

use crate::support::{
    Ctx, Db, Failure, Scratch, collect, crowd_iterator, drain, ensure, expect_cursors_released,
    expect_entries, expect_snapshot, show_range, skip,
};
use crate::{Harness, Model, Outcome, TestResult};

fn numbered(n: usize) -> Model {
    let mut model = Model::new();
    for i in 0..n {
        model.put(
            format!("k{i:03}").as_bytes(),
            format!("value {i}").as_bytes(),
        );
    }
    model
}

/// An iterator sees the store as it was when the iterator was created, whatever is written
/// after, whether or not it has been read from yet. Under a harness that changes leaders, an
/// iterator whose life spans the change is held to what a resumed iterator promises instead
/// (see [`expect_snapshot`]), and says so on stderr.
pub(crate) async fn snapshot_isolation(h: &dyn Harness) -> TestResult {
    if !h.capabilities().snapshots {
        return skip(h, "snapshot_isolation", "the store has no snapshots");
    }
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let mut model = Model::new();
    for k in ["a", "ab", "abc", "b", "ba", "c", "d"] {
        model.put(k.as_bytes(), format!("v-{k}").as_bytes());
    }
    db.load(&model).await?;
    let before = model.clone();
    let changes = h.leader_changes();
    let changes_before = changes.count();

    // Created, not yet read.
    let mut fresh = db.iterator(Range::all()).await.ctx("open an iterator")?;
    // Partly read, forward and reverse.
    let mut forward = db.iterator(Range::all()).await.ctx("open an iterator")?;
    let head = forward.next_chunk(2).await.ctx("read 2 entries")?;
    let mut backward = db
        .iterator(Range::all().reverse())
        .await
        .ctx("open a reverse iterator")?;
    let tail = backward.next_chunk(1).await.ctx("read 1 entry")?;
    let mut limited = db
        .iterator(Range::all().gt("a").limit(4))
        .await
        .ctx("open a limited iterator")?;
    let limited_head = limited.next_chunk(1).await.ctx("read 1 entry")?;

    // Every kind of write, before and after each iterator's position.
    let ops = vec![
        BatchOp::put("aa", "new"),
        BatchOp::put("bb", "new"),
        BatchOp::del("ba"),
        BatchOp::put("b", "changed"),
        BatchOp::put("0", "new first"),
        BatchOp::put("z", "new last"),
    ];
    db.batch(ops.clone())
        .await
        .ctx("batch after the iterators opened")?;
    model.apply(&ops);
    db.put(b"abd", b"put").await.ctx("put abd")?;
    model.put(b"abd", b"put");
    db.del(b"c").await.ctx("del c")?;
    model.del(b"c");
    db.clear(Range::prefix("ab")).await.ctx("clear prefix ab")?;
    model.clear(&Range::prefix("ab"));
    db.put(b"a", b"changed").await.ctx("put a")?;
    model.put(b"a", b"changed");

    let rest = drain(&mut *fresh, 3, "an iterator created before the writes").await?;
    let mut forward_got = head;
    forward_got.extend(drain(&mut *forward, 2, "a partly read iterator").await?);
    let mut backward_got = tail;
    backward_got.extend(drain(&mut *backward, 1, "a partly read reverse iterator").await?);
    let mut limited_got = limited_head;
    limited_got.extend(drain(&mut *limited, 5, "a partly read limited iterator").await?);
    let spanned = changes.count() != changes_before;
    if spanned {
        eprintln!(
            "rave-conformance: snapshot_isolation on {}: the leader changed while the iterators were open; checked as resumed iterators",
            h.name()
        );
    }
    for (what, got, range) in [
        (
            "an iterator created (not read) before later writes",
            rest,
            Range::all(),
        ),
        (
            "an iterator read in part before later writes",
            forward_got,
            Range::all(),
        ),
        (
            "a reverse iterator read in part before later writes",
            backward_got,
            Range::all().reverse(),
        ),
        (
            "a limited iterator read in part before later writes",
            limited_got,
            Range::all().gt("a").limit(4),
        ),
    ] {
        // Every read after the first writes came after the last write: a resumed iterator sees
        // the final state.
        expect_snapshot(what, &got, &range, &before, &model, spanned)?;
    }
    drop((fresh, forward, backward, limited));
    // New iterators see the new state.
    db.check_state(&model).await?;
    db.check_range(&model, &Range::all().reverse(), 4).await?;
    db.close().await?;
    Ok(Outcome::Passed)
}

/// Many iterators open at once, read in interleaved order from many tasks, each giving its
/// own full sequence.
pub(crate) async fn concurrent_iterators(h: &dyn Harness) -> TestResult {
    const N: usize = 32;
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let model = Arc::new(numbered(200));
    db.load(&model).await?;
    let range_for = |i: usize| {
        let mut range = match i % 4 {
            0 => Range::all(),
            1 => Range::all().gte(format!("k{:03}", i * 3)),
            2 => Range::all().lt(format!("k{:03}", 199 - i)),
            _ => Range::all()
                .gt(format!("k{:03}", i))
                .lte(format!("k{:03}", 150 + i)),
        };
        if i % 3 == 1 {
            range = range.reverse();
        }
        if i % 5 == 2 {
            range = range.limit(i as u64 * 2);
        }
        range
    };

    // Tasks, each with its own iterator and chunk size.
    let mut tasks = Vec::new();
    for i in 0..N {
        let store = db.shared();
        let model = Arc::clone(&model);
        let range = range_for(i);
        tasks.push(tokio::spawn(async move {
            let what = format!("iterator {i} of {N} over {}", show_range(&range));
            let mut iter = store
                .iterator(range.clone())
                .await
                .ctx(format!("open {what}"))?;
            let mut got = Vec::new();
            loop {
                let chunk = iter
                    .next_chunk(1 + i % 7)
                    .await
                    .ctx(format!("next_chunk of {what}"))?;
                if chunk.is_empty() {
                    break;
                }
                got.extend(chunk);
                tokio::task::yield_now().await;
            }
            expect_entries(&what, &got, &model.query(&range))
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| Failure::new(format!("an iterator task failed: {e}")))??;
    }

    // One task holding N iterators at once, advancing them round-robin.
    struct Open {
        range: Range,
        iter: Box<dyn KvIterator>,
        got: Vec<Entry>,
        done: bool,
    }
    let mut open = Vec::new();
    for i in 0..N {
        let range = range_for(i);
        let iter = db
            .iterator(range.clone())
            .await
            .ctx(format!("open iterator {i} of {N}"))?;
        open.push(Open {
            range,
            iter,
            got: Vec::new(),
            done: false,
        });
    }
    while open.iter().any(|o| !o.done) {
        for (i, o) in open.iter_mut().enumerate() {
            if o.done {
                continue;
            }
            let chunk = o
                .iter
                .next_chunk(1 + i % 4)
                .await
                .ctx(format!("next_chunk of round-robin iterator {i}"))?;
            o.done = chunk.is_empty();
            o.got.extend(chunk);
        }
    }
    for (i, Open { range, got, .. }) in open.iter().enumerate() {
        expect_entries(
            format!("round-robin iterator {i} of {N} over {}", show_range(range)),
            got,
            &model.query(range),
        )?;
    }
    drop(open);
    db.close().await?;
    Ok(Outcome::Passed)
}

/// `next()` one by one and `next_chunk` of any size give the same sequence; the end is
/// sticky.
pub(crate) async fn next_vs_next_chunk(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let model = numbered(100);
    db.load(&model).await?;
    for range in [
        Range::all(),
        Range::all().reverse(),
        Range::all().gte("k030").lt("k070").reverse(),
        Range::all().limit(17),
        Range::all().limit(17).reverse(),
        Range::all().gt("k090").keys_only(),
        Range::all().values_only().limit(100),
    ] {
        let what = format!("iterator over {}", show_range(&range));
        let mut iter = db
            .iterator(range.clone())
            .await
            .ctx(format!("open {what}"))?;
        let mut one_by_one = Vec::new();
        while let Some(e) = iter.next().await.ctx(format!("next() of {what}"))? {
            one_by_one.push(e);
            ensure!(
                one_by_one.len() <= 100,
                "{what}: next() went past the 100 entries the store holds"
            );
        }
        for attempt in 0..2 {
            let after = iter
                .next()
                .await
                .ctx(format!("next() after the end of {what}"))?;
            ensure!(
                after.is_none(),
                "{what}: next() after the end (attempt {attempt}) expected None, got {after:?}"
            );
            let after = iter
                .next_chunk(5)
                .await
                .ctx(format!("next_chunk after the end of {what}"))?;
            expect_entries(
                format!("next_chunk(5) after the end of {what}"),
                &after,
                &[],
            )?;
        }
        drop(iter);
        expect_entries(
            format!("{what}, read with next()"),
            &one_by_one,
            &model.query(&range),
        )?;
        for chunk in [1, 2, 3, 5, 16, 17, 64, 100, 101, 1000] {
            let got = collect(&*db, range.clone(), chunk).await?;
            expect_entries(
                format!("{what}, read with next_chunk({chunk})"),
                &got,
                &one_by_one,
            )?;
        }
        // Mixed: next, then chunks of growing size.
        let mut iter = db
            .iterator(range.clone())
            .await
            .ctx(format!("open {what}"))?;
        let mut mixed = Vec::new();
        let mut size = 1;
        loop {
            if size % 2 == 1 {
                match iter.next().await.ctx(format!("next() of {what}"))? {
                    Some(e) => mixed.push(e),
                    None => break,
                }
            } else {
                let chunk = iter
                    .next_chunk(size)
                    .await
                    .ctx(format!("next_chunk({size}) of {what}"))?;
                if chunk.is_empty() {
                    break;
                }
                mixed.extend(chunk);
            }
            size += 1;
        }
        expect_entries(
            format!("{what}, read with next() and next_chunk mixed"),
            &mixed,
            &one_by_one,
        )?;
    }
    db.close().await?;
    Ok(Outcome::Passed)
}

/// Iterators dropped before their end release what they hold: the store keeps working, and
/// (when the harness can see the engine's cursors, see [`Harness::open_cursors`]) the engine
/// holds a cursor for each iterator held part-way and none once they are dropped.
pub(crate) async fn abandoned_iterators(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let path = scratch.db();
    let db = Db::open(h, &path).await?;
    let mut model = numbered(50);
    db.load(&model).await?;
    for i in 0..300usize {
        let iter = crowd_iterator(&*db, i, 1 + i % 5).await?;
        drop(iter);
        if i % 50 == 0 {
            let key = format!("written-{i}");
            db.put(key.as_bytes(), b"x")
                .await
                .ctx(format!("put {key}"))?;
            model.put(key.as_bytes(), b"x");
        }
    }
    db.put(b"last", b"x")
        .await
        .ctx("put after 300 abandoned iterators")?;
    model.put(b"last", b"x");
    let observable = expect_cursors_released(h, &path, "300 abandoned iterators").await?;
    if observable {
        held_iterators_hold_cursors(h, &db, &path, &mut model).await?;
    } else {
        eprintln!(
            "rave-conformance: abandoned_iterators on {}: the engine's cursors are not observable; checked only that the store keeps working",
            h.name()
        );
    }
    db.check_state(&model).await?;
    db.close().await?;
    Ok(Outcome::Passed)
}

/// Iterators held part-way over more data than any read-ahead window (a follower's leader may
/// read ahead, but not 2 MiB) each hold a cursor in the engine; dropped, they release it.
/// Proves the gauge [`expect_cursors_released`] reads sees cursors at all.
async fn held_iterators_hold_cursors(
    h: &dyn Harness,
    db: &Db,
    path: &std::path::Path,
    model: &mut Model,
) -> Result<(), Failure> {
    const HELD: usize = 3;
    let ops: Vec<BatchOp> = (0..1024u32)
        .map(|i| BatchOp::put(format!("big/{i:04}"), vec![(i % 251) as u8; 2048]))
        .collect();
    db.batch(ops.clone()).await.ctx("a batch of 2 MiB")?;
    model.apply(&ops);
    let changes = h.leader_changes();
    let changes_before = changes.count();
    let mut held = Vec::new();
    for i in 0..HELD {
        let range = if i % 2 == 0 {
            Range::prefix("big/")
        } else {
            Range::prefix("big/").reverse()
        };
        let mut iter = db
            .iterator(range)
            .await
            .ctx(format!("open held iterator {i}"))?;
        let chunk = iter
            .next_chunk(1)
            .await
            .ctx(format!("read held iterator {i}"))?;
        ensure!(
            chunk.len() == 1,
            "held iterator {i}: expected one entry, got {}",
            chunk.len()
        );
        held.push(iter);
    }
    let open = h.open_cursors(path);
    // A change of leader meanwhile moves the iterators to another engine (they reopen lazily).
    if changes.count() == changes_before {
        ensure!(
            open.is_some_and(|n| n >= HELD),
            "{HELD} iterators held part-way over 2 MiB: expected the engine to hold at least {HELD} cursors, it holds {open:?}"
        );
    }
    drop(held);
    expect_cursors_released(h, path, &format!("{HELD} iterators dropped part-way")).await?;
    Ok(())
}

/// Scans much longer than any engine's read-ahead window (5000 entries, about 4 MiB) in both
/// directions, with bounds inside the data and limits: each chunk holds at most what was asked,
/// and together they give the model's sequence.
pub(crate) async fn long_scans(h: &dyn Harness) -> TestResult {
    const N: u32 = 5000;
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let key = |i: u32| i.to_be_bytes().to_vec();
    let mut model = Model::new();
    for start in (0..N).step_by(1000) {
        let ops: Vec<BatchOp> = (start..start + 1000)
            .map(|i| {
                // Values of 0 to 1500 bytes, so that windows fill by bytes as well as by count.
                let len = (i % 7) as usize * 250;
                BatchOp::put(key(i), vec![(i % 251) as u8; len])
            })
            .collect();
        db.batch(ops.clone())
            .await
            .ctx(format!("batch of keys {start}..{}", start + 1000))?;
        model.apply(&ops);
    }
    for (range, chunk) in [
        (Range::all(), 333),
        (Range::all().gte(key(100)).reverse(), 333),
        (Range::all().reverse(), 1000),
        (Range::all().gt(key(1234)).lt(key(4321)).reverse(), 1000),
        (Range::all().lte(key(4000)).reverse().limit(3000), 777),
        (Range::all().gte(key(2500)).keys_only(), 5000),
        (Range::all().values_only().reverse(), 64),
        (Range::all().gt(key(2000)).lt(key(2100)).reverse(), 1),
    ] {
        db.check_range(&model, &range, chunk)
            .await
            .map_err(|f| f.context(format!("a scan in chunks of {chunk}")))?;
    }
    db.close().await?;
    Ok(Outcome::Passed)
}
