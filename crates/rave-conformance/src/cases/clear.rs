//! `clear` with ranges, limits and direction.

use rave_api::Range;

use crate::support::{Ctx, Db, Scratch, collect, entry, expect_entries};
use crate::{Harness, Model, Outcome, TestResult};

const KEYS: [&str; 6] = ["a", "ab", "abc", "b", "ba", "c"];

fn full() -> Model {
    let mut model = Model::new();
    for k in KEYS {
        model.put(k.as_bytes(), format!("v-{k}").as_bytes());
    }
    model
}

async fn keys_left(db: &Db) -> Result<Vec<rave_api::Entry>, crate::Failure> {
    collect(&**db, Range::all().keys_only(), 10).await
}

fn keys(list: &[&str]) -> Vec<rave_api::Entry> {
    list.iter().map(|k| entry(k.as_bytes(), b"")).collect()
}

pub(crate) async fn clear_ranges(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;

    // Spelled out: the two highest, then the lowest, then a prefix.
    let mut model = full();
    db.load(&model).await?;
    db.clear(Range::all().reverse().limit(2))
        .await
        .ctx("clear limit 2 reverse")?;
    expect_entries(
        "after clear {reverse, limit 2} (removes the 2 highest keys)",
        &keys_left(&db).await?,
        &keys(&["a", "ab", "abc", "b"]),
    )?;
    db.clear(Range::all().limit(1)).await.ctx("clear limit 1")?;
    expect_entries(
        "after clear {limit 1} (removes the lowest key)",
        &keys_left(&db).await?,
        &keys(&["ab", "abc", "b"]),
    )?;
    db.clear(Range::prefix("ab")).await.ctx("clear prefix ab")?;
    expect_entries(
        "after clear of prefix \"ab\"",
        &keys_left(&db).await?,
        &keys(&["b"]),
    )?;
    db.clear(Range::all()).await.ctx("clear all")?;
    model = Model::new();
    db.check_state(&model).await?;
    db.clear(Range::all())
        .await
        .ctx("clear of an empty store")?;
    db.check_state(&model).await?;

    // Each range on a full store, compared with the model.
    let ranges = [
        Range::all(),
        Range::all().gte("ab").lt("b"),
        Range::all().gt("ab").lte("ba"),
        Range::all().gt("a"),
        Range::all().lt("b"),
        Range::all().gte("b"),
        Range::all().lte("abc"),
        Range::all().gt("a").lt("c").limit(2),
        Range::all().gt("a").lt("c").limit(2).reverse(),
        Range::all().gte("ab").limit(1).reverse(),
        Range::all().limit(100).reverse(),
        Range::all().limit(6),
        Range::prefix("a").reverse().limit(2),
        Range::prefix("b"),
        // Projection does not matter to clear.
        Range::all().values_only().limit(3),
        Range::all().keys_only().reverse().limit(3),
        // Nothing to remove.
        Range::all().limit(0),
        Range::all().limit(0).reverse(),
        Range::all().gt("b").lt("a"),
        Range::all().gt("a").lt("a"),
        Range::all().gt("c"),
        Range::prefix("d"),
    ];
    for range in ranges {
        db.clear(Range::all()).await.ctx("clear all")?;
        model = full();
        db.load(&model).await?;
        db.check_clear(&mut model, &range).await?;
    }

    // Clearing twice in a row with a limit removes the next ones.
    db.clear(Range::all()).await.ctx("clear all")?;
    model = full();
    db.load(&model).await?;
    for _ in 0..2 {
        let range = Range::all().gt("a").limit(2);
        db.clear(range.clone()).await.ctx("clear gt a limit 2")?;
        model.clear(&range);
    }
    expect_entries(
        "after clear {gt a, limit 2} twice",
        &keys_left(&db).await?,
        &keys(&["a", "c"]),
    )?;
    db.check_state(&model).await?;
    db.close().await?;
    Ok(Outcome::Passed)
}
