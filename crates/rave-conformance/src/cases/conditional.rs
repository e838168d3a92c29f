//! Conditional writes ([`rave_api::Write::Conditional`], capability `conditional_writes`):
//! compare-and-swap with absent and present values on either side, conditional batches that
//! apply all or nothing, and a counter incremented by concurrent compare-and-swap loops.

use std::sync::Arc;

use rave_api::{BatchOp, Check, Error, ErrorKind, KvStore, Write};

use crate::support::{Ctx, Db, Scratch, ensure, skip};
use crate::{Failure, Harness, Outcome, TestResult};

/// Applies `checks` then `ops`; `Ok(Some(current))` when the condition failed.
async fn conditional(
    db: &dyn KvStore,
    checks: Vec<Check>,
    ops: Vec<BatchOp>,
) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>, Error> {
    match db.write(Write::Conditional { checks, ops }).await {
        Ok(()) => Ok(None),
        Err(Error::ConditionFailed { key, current }) => Ok(Some((key, current))),
        Err(e) => Err(e),
    }
}

/// `key` from `expected` to `new` (`None`: absent / delete).
async fn cas(
    db: &dyn KvStore,
    key: &str,
    expected: Option<&str>,
    new: Option<&str>,
) -> Result<Option<Option<Vec<u8>>>, Error> {
    let op = match new {
        Some(v) => BatchOp::put(key, v),
        None => BatchOp::del(key),
    };
    let failed = conditional(db, vec![Check::new(key, expected)], vec![op]).await?;
    Ok(failed.map(|(_, current)| current))
}

/// Compare-and-swap and conditional batches: applied exactly when their checks hold, evaluated
/// after every write acknowledged before them; a failed one applies nothing and says what it
/// found; a counter incremented by 8 concurrent compare-and-swap loops ends at the number of
/// increments.
pub(crate) async fn conditional_writes(h: &dyn Harness) -> TestResult {
    if !h.capabilities().conditional_writes {
        return skip(
            h,
            "conditional_writes",
            "the store has no conditional writes",
        );
    }
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let store: &dyn KvStore = &*db;

    // (what, expected, new, `Some(what the key held)` when the swap must fail)
    type Step<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<Option<&'a str>>,
    );
    let steps: [Step; 6] = [
        ("absent to a value", None, Some("1"), None),
        ("absent again", None, Some("x"), Some(Some("1"))),
        ("a value to another", Some("1"), Some("2"), None),
        ("a stale expectation", Some("1"), Some("3"), Some(Some("2"))),
        ("a value to absent", Some("2"), None, None),
        ("present when absent", Some("2"), Some("4"), Some(None)),
    ];
    for (what, expected, new, fails_with) in steps {
        let got = cas(store, "k", expected, new).await.ctx(what)?;
        let want = fails_with.map(|current| current.map(|v| v.as_bytes().to_vec()));
        ensure!(
            got == want,
            "compare-and-swap {what}: expected {want:?}, got {got:?}"
        );
    }
    ensure!(
        db.get(b"k").await.ctx("get")?.is_none(),
        "the key deleted by compare-and-swap is still there"
    );

    // A batch conditional on two keys: one check failing applies nothing.
    db.put(b"stock", b"1").await.ctx("put")?;
    let checks = vec![
        Check::new("stock", Some("1")),
        Check::new("order", Some("x")),
    ];
    let ops = vec![BatchOp::put("stock", "0"), BatchOp::put("order", "ada")];
    let failed = conditional(store, checks, ops.clone())
        .await
        .ctx("conditional batch")?;
    ensure!(
        failed == Some((b"order".to_vec(), None)),
        "a batch whose second check fails must name it: {failed:?}"
    );
    ensure!(
        db.get(b"stock").await.ctx("get")?.as_deref() == Some(b"1".as_slice())
            && db.get(b"order").await.ctx("get")?.is_none(),
        "a failed conditional batch applied part of its operations"
    );
    let checks = vec![
        Check::new("stock", Some("1")),
        Check::new("order", None::<&str>),
    ];
    let failed = conditional(store, checks, ops)
        .await
        .ctx("conditional batch")?;
    ensure!(
        failed.is_none(),
        "a batch whose checks hold failed: {failed:?}"
    );
    ensure!(
        db.get(b"order").await.ctx("get")?.as_deref() == Some(b"ada".as_slice()),
        "a conditional batch whose checks held did not apply"
    );

    // Concurrent increments: every acknowledged compare-and-swap counts once.
    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let shared = db.shared();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store: Arc<dyn KvStore> = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..EACH {
                loop {
                    let current = store.get(b"counter").await?;
                    let n: u64 = current
                        .as_deref()
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                        .unwrap_or(0);
                    let expected = current.map(String::from_utf8).transpose().ok().flatten();
                    let next = (n + 1).to_string();
                    match cas(&*store, "counter", expected.as_deref(), Some(&next)).await? {
                        None => break,
                        Some(_) => conflicts += 1,
                    }
                }
            }
            Ok::<u64, Error>(conflicts)
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| Failure::new(format!("an incrementing task panicked: {e}")))?
            .ctx("increment")?;
    }
    let value = db.get(b"counter").await.ctx("get counter")?;
    let want = (TASKS * EACH).to_string();
    ensure!(
        value.as_deref() == Some(want.as_bytes()),
        "{} compare-and-swap increments left the counter at {:?}",
        TASKS * EACH,
        value.map(|v| String::from_utf8_lossy(&v).into_owned())
    );

    let err = db
        .write(Write::Conditional {
            checks: vec![],
            ops: vec![BatchOp::put("empty", "checks")],
        })
        .await;
    ensure!(
        err.is_ok(),
        "a conditional batch with no checks is a plain batch: {:?}",
        err.err().map(|e| e.kind())
    );
    ensure!(
        ErrorKind::ConditionFailed.as_str() == "ConditionFailed",
        "the kind's name is stable"
    );
    db.close().await?;
    Ok(Outcome::Passed)
}
