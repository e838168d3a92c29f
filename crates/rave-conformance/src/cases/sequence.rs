//! The commit sequence ([`rave_api::KvStore::sequence`]): it grows with every acknowledged write,
//! reads leave it alone, and it never goes back (across a reopen, or a leader change).

use rave_api::{BatchOp, Range};

use crate::support::{Ctx, Db, Scratch, ensure};
use crate::{Harness, Outcome, TestResult};

/// The sequence after `what`, which must be greater than `last`.
async fn grew(db: &Db, last: u64, what: &str) -> Result<u64, crate::Failure> {
    let now = db.sequence().await.ctx(format!("sequence after {what}"))?;
    ensure!(
        now > last,
        "the sequence did not grow with {what}: it was {last} and is now {now}"
    );
    Ok(now)
}

/// The sequence after `what`, which must be `last` (a read commits nothing).
async fn unchanged(db: &Db, last: u64, what: &str) -> Result<u64, crate::Failure> {
    let now = db.sequence().await.ctx(format!("sequence after {what}"))?;
    ensure!(
        now == last,
        "the sequence changed with {what}: it was {last} and is now {now}"
    );
    Ok(now)
}

/// Every kind of write, then every kind of read, checking the sequence after each; returns the
/// last sequence read.
async fn round(db: &Db, mut seq: u64, tag: &str) -> Result<u64, crate::Failure> {
    let key = format!("{tag}-k");
    db.put(key.as_bytes(), b"v").await.ctx("put")?;
    seq = grew(db, seq, "a put").await?;
    db.put(key.as_bytes(), b"v")
        .await
        .ctx("put of the same value")?;
    seq = grew(db, seq, "a put of the same value").await?;
    db.del(b"absent").await.ctx("del of an absent key")?;
    seq = grew(db, seq, "a del of an absent key").await?;
    db.del(key.as_bytes()).await.ctx("del")?;
    seq = grew(db, seq, "a del").await?;
    let ops = vec![
        BatchOp::put(format!("{tag}-a"), "1"),
        BatchOp::put(format!("{tag}-b"), "2"),
    ];
    db.batch(ops).await.ctx("batch")?;
    seq = grew(db, seq, "a batch").await?;
    let range = Range::prefix(tag.as_bytes().to_vec());
    db.clear(range.clone().limit(1))
        .await
        .ctx("clear with a limit")?;
    seq = grew(db, seq, "a clear with a limit").await?;
    db.clear(range.clone()).await.ctx("clear")?;
    seq = grew(db, seq, "a clear").await?;
    db.clear(Range::prefix(b"nothing here".to_vec()))
        .await
        .ctx("clear of an empty range")?;
    seq = grew(db, seq, "a clear of an empty range").await?;
    db.get(b"absent").await.ctx("get")?;
    seq = unchanged(db, seq, "a get").await?;
    db.get_many(&[b"absent".to_vec()]).await.ctx("get_many")?;
    seq = unchanged(db, seq, "a get_many").await?;
    let mut iter = db.iterator(Range::all()).await.ctx("iterator")?;
    iter.collect_all().await.ctx("scan")?;
    unchanged(db, seq, "a scan").await
}

/// The sequence strictly increases after each acknowledged `put`, `del`, `batch` and `clear`,
/// is unchanged by reads, and (persistent stores) survives close and reopen without going back.
pub(crate) async fn commit_sequence_grows(h: &dyn Harness) -> TestResult {
    let scratch = Scratch::new()?;
    let path = scratch.db();
    let db = Db::open(h, &path).await?;
    let first = db.sequence().await.ctx("sequence of a new store")?;
    let mut seq = round(&db, first, "one").await?;
    seq = round(&db, seq, "two").await?;
    db.close().await?;
    if !h.capabilities().persistent {
        return Ok(Outcome::Passed);
    }

    let db = Db::open(h, &path).await.map_err(|f| f.context("reopen"))?;
    let reopened = db.sequence().await.ctx("sequence after reopen")?;
    ensure!(
        reopened >= seq,
        "the sequence went back across close and reopen: it was {seq} and is now {reopened}"
    );
    round(&db, reopened, "three").await?;
    db.close().await?;
    Ok(Outcome::Passed)
}
