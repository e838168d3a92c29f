//! Change subscriptions ([`rave_api::KvStore::watch`], capability `watch`): every commit in the
//! range, once, in order, whole; from a position in the history; progress marks; list then
//! watch without a gap.
//!
//! A watcher here keeps a replica of its range by applying what it receives; the replica must
//! equal the model (computed from the writes, never from the store) after every commit. That
//! checks the changes, `clear`s included, are in a form a user can apply.

use std::time::Duration;

use futures::StreamExt;
use rave_api::{BatchOp, Change, Commit, ErrorKind, Range, WatchEvent, WatchStream};

use crate::support::{Ctx, Db, Scratch, ensure, show_entries, skip};
use crate::{Failure, Harness, Model, Outcome, TestResult};

/// The longest wait for an event that must come (a generous bound: it only turns a hang into a
/// failure).
const EVENT_WAIT: Duration = Duration::from_secs(20);

/// The keys the watchers here watch.
fn watched() -> Range {
    Range::prefix(b"w/".to_vec())
}

/// A watch stream with the replica it builds and the position it reached.
struct Watcher {
    stream: WatchStream,
    replica: Model,
    range: Range,
    position: u64,
    /// A commit that changed nothing in the range, which the store may deliver or not (see
    /// [`Watcher::may_see`]).
    optional: Option<u64>,
}

impl Watcher {
    async fn open(db: &Db, range: Range, from: Option<u64>) -> Result<Watcher, Failure> {
        let mut stream = db
            .watch(range.clone(), from)
            .await
            .ctx(format!("watch from {from:?}"))?;
        let first = next_event(&mut stream).await?;
        let WatchEvent::Progress { sequence } = first else {
            return Err(Failure::new(format!(
                "the first event of a watch is not its starting position: {first:?}"
            )));
        };
        if let Some(from) = from {
            ensure!(
                sequence == from,
                "a watch from {from} says it starts at {sequence}"
            );
        }
        Ok(Watcher {
            stream,
            replica: Model::new(),
            range,
            position: sequence,
            optional: None,
        })
    }

    /// The next commit (progress marks are checked and passed over).
    async fn next_commit(&mut self) -> Result<Commit, Failure> {
        loop {
            match next_event(&mut self.stream).await? {
                WatchEvent::Progress { sequence } => {
                    ensure!(
                        sequence >= self.position,
                        "a progress mark went back from {} to {sequence}",
                        self.position
                    );
                    self.position = sequence;
                }
                WatchEvent::Commit(commit) => {
                    ensure!(
                        commit.sequence > self.position,
                        "commit {} arrived after position {}: out of order or twice",
                        commit.sequence,
                        self.position
                    );
                    ensure!(!commit.changes.is_empty(), "an empty commit was delivered");
                    self.position = commit.sequence;
                    apply(&mut self.replica, &commit, &self.range)?;
                    return Ok(commit);
                }
            }
        }
    }

    /// Notes that commit `seq` changed nothing inside the range: a store may deliver it (a
    /// `clear` reported as its range, which removed no key here) or not (a store that reports
    /// the keys a clear removed, like etcd); the next [`Watcher::expect`] accepts either.
    fn may_see(&mut self, seq: u64) {
        self.optional = Some(seq);
    }

    /// Takes the next commit, which must be numbered `seq` and leave the replica equal to
    /// `model` within the range.
    async fn expect(&mut self, seq: u64, model: &Model, what: &str) -> Result<Commit, Failure> {
        let mut commit = self.next_commit().await.map_err(|f| f.context(what))?;
        if let Some(optional) = self.optional.take()
            && commit.sequence == optional
            && seq != optional
        {
            // Delivered after all; applying it changed nothing (checked below with the rest).
            commit = self.next_commit().await.map_err(|f| f.context(what))?;
        }
        ensure!(
            commit.sequence == seq,
            "{what}: the next commit is number {}, the write's is {seq}",
            commit.sequence
        );
        let want = model.query(&self.range);
        let have = self.replica.query(&self.range);
        ensure!(
            want == have,
            "{what}: applying commit {seq} gives {}, the store holds {}",
            show_entries(&have),
            show_entries(&want)
        );
        Ok(commit)
    }
}

async fn next_event(stream: &mut WatchStream) -> Result<WatchEvent, Failure> {
    match tokio::time::timeout(EVENT_WAIT, stream.next()).await {
        Err(_) => Err(Failure::new(format!(
            "no watch event within {EVENT_WAIT:?}"
        ))),
        Ok(None) => Err(Failure::new("the watch stream ended")),
        Ok(Some(event)) => event.ctx("the watch stream"),
    }
}

/// Applies `commit` to `replica`, checking every change lies in `range`.
fn apply(replica: &mut Model, commit: &Commit, range: &Range) -> Result<(), Failure> {
    for change in &commit.changes {
        match change {
            Change::Put { key, value } => {
                ensure!(range.contains(key), "a put outside the watched range");
                replica.put(key, value);
            }
            Change::Del { key } => {
                ensure!(range.contains(key), "a del outside the watched range");
                replica.del(key);
            }
            Change::Clear { range: cleared } => {
                ensure!(
                    !cleared.reverse && cleared.limit.is_none(),
                    "a clear reported with a direction or limit"
                );
                replica.clear(cleared);
            }
        }
    }
    Ok(())
}

/// The store's sequence after a write.
async fn seq(db: &Db) -> Result<u64, Failure> {
    db.sequence().await.ctx("sequence")
}

fn skip_unless_watch(h: &dyn Harness, test: &str) -> Option<TestResult> {
    (!h.capabilities().watch).then(|| skip(h, test, "the store has no change feed"))
}

/// One watcher sees every kind of write inside its range, each as one commit numbered as the
/// store numbered it, in order, a batch whole; writes outside the range send nothing.
pub(crate) async fn watch_follows_every_commit(h: &dyn Harness) -> TestResult {
    if let Some(skipped) = skip_unless_watch(h, "watch_follows_every_commit") {
        return skipped;
    }
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let mut model = Model::new();
    db.put(b"w/before", b"0").await.ctx("put")?;
    model.put(b"w/before", b"0");
    let mut w = Watcher::open(&db, watched(), None).await?;
    ensure!(
        w.position == seq(&db).await?,
        "a watch from now starts at {}, not at the current sequence",
        w.position
    );
    w.replica.put(b"w/before", b"0");

    for i in 0..20u32 {
        let key = format!("w/{:02}", i % 7);
        db.put(key.as_bytes(), format!("v{i}").as_bytes())
            .await
            .ctx("put")?;
        model.put(key.as_bytes(), format!("v{i}").as_bytes());
        w.expect(seq(&db).await?, &model, "a put").await?;
        if i % 5 == 4 {
            // Outside the range: no event; the next one is the next write inside.
            db.put(b"x/outside", b"1").await.ctx("put outside")?;
        }
    }
    db.del(b"w/03").await.ctx("del")?;
    model.del(b"w/03");
    w.expect(seq(&db).await?, &model, "a del").await?;

    let ops = vec![
        BatchOp::put("w/b1", "1"),
        BatchOp::put("a/outside", "x"),
        BatchOp::del("w/01"),
        BatchOp::put("w/b2", "2"),
        BatchOp::put("w/b1", "3"),
    ];
    db.batch(ops.clone()).await.ctx("batch")?;
    model.apply(&ops);
    // One commit, numbered as the batch: `expect` checks it left the replica equal to the
    // model (a store may merge the two puts of one key).
    w.expect(seq(&db).await?, &model, "a batch").await?;

    for (what, range) in [
        (
            "a clear with a limit",
            Range::prefix(b"w/0".to_vec()).limit(2),
        ),
        (
            "a reverse clear with a limit",
            Range::all().gte("w/").lt("w/1").reverse().limit(1),
        ),
        (
            "a clear across the range's edge",
            Range::all().gte("v").lt("w/05"),
        ),
        ("a clear", Range::prefix(b"w/b".to_vec())),
    ] {
        let before = model.query(&watched());
        db.clear(range.clone()).await.ctx(what)?;
        model.clear(&range);
        if model.query(&watched()) == before {
            w.may_see(seq(&db).await?);
        } else {
            w.expect(seq(&db).await?, &model, what).await?;
        }
    }
    db.put(b"w/last", b"end").await.ctx("put")?;
    model.put(b"w/last", b"end");
    w.expect(seq(&db).await?, &model, "a put after the clears")
        .await?;

    for bad in [watched().reverse(), watched().limit(3)] {
        match db.watch(bad, None).await {
            Err(err) if err.kind() == ErrorKind::InvalidArgument => {}
            Err(err) => {
                return Err(Failure::new(format!(
                    "a watch with a direction or limit failed with {} instead of \
                     InvalidArgument: {err}",
                    err.kind()
                )));
            }
            Ok(_) => return Err("a watch with a direction or limit was accepted".into()),
        }
    }
    drop(w);
    db.close().await?;
    Ok(Outcome::Passed)
}

/// A watch from a past position delivers exactly the commits after it, then goes on live; a
/// listing's snapshot sequence is where to watch from to miss nothing; after a reopen
/// (persistent stores) the history is still there.
pub(crate) async fn watch_from_a_position(h: &dyn Harness) -> TestResult {
    if let Some(skipped) = skip_unless_watch(h, "watch_from_a_position") {
        return skipped;
    }
    let scratch = Scratch::new()?;
    let path = scratch.db();
    let db = Db::open(h, &path).await?;
    let mut model = Model::new();
    // (sequence after the write, model after the write)
    let mut states = Vec::new();
    for i in 0..12u32 {
        let key = format!("w/{}", i % 5);
        db.put(key.as_bytes(), format!("{i}").as_bytes())
            .await
            .ctx("put")?;
        model.put(key.as_bytes(), format!("{i}").as_bytes());
        states.push((seq(&db).await?, model.clone()));
        if i == 6 {
            db.clear(Range::prefix(b"w/1".to_vec()))
                .await
                .ctx("clear")?;
            model.clear(&Range::prefix(b"w/1".to_vec()));
            states.push((seq(&db).await?, model.clone()));
        }
    }

    // From the 4th write on: exactly the commits after it, the clear among them, in order.
    let (from, before) = states[3].clone();
    let mut w = Watcher::open(&db, watched(), Some(from)).await?;
    w.replica = before;
    for (i, (seq, state)) in states.iter().enumerate().skip(4) {
        w.expect(*seq, state, &format!("write {i} from the history"))
            .await?;
    }
    // Then live.
    db.put(b"w/live", b"1").await.ctx("put")?;
    model.put(b"w/live", b"1");
    w.expect(seq(&db).await?, &model, "a write after the history")
        .await?;
    drop(w);

    // List, then watch from the listing's snapshot: the listing plus what follows is the data.
    let mut iter = db.iterator(watched()).await.ctx("iterator")?;
    let snapshot = iter.snapshot_sequence();
    let listed = iter.collect_all().await.ctx("listing")?;
    let Some(snapshot) = snapshot else {
        return Err("an iterator of a store with a change feed has no snapshot sequence".into());
    };
    ensure!(
        snapshot == seq(&db).await?,
        "a listing made after the last write reports snapshot {snapshot}"
    );
    let ops = vec![BatchOp::put("w/after", "1"), BatchOp::del("w/0")];
    db.batch(ops.clone()).await.ctx("batch")?;
    model.apply(&ops);
    let mut w = Watcher::open(&db, watched(), Some(snapshot)).await?;
    for entry in listed {
        w.replica.put(&entry.key, &entry.value);
    }
    w.expect(seq(&db).await?, &model, "list then watch").await?;
    drop(w);
    db.close().await?;

    if h.capabilities().persistent {
        let db = Db::open(h, &path).await.map_err(|f| f.context("reopen"))?;
        let (from, before) = states[9].clone();
        let mut w = Watcher::open(&db, watched(), Some(from)).await?;
        w.replica = before;
        for (i, (seq, state)) in states.iter().enumerate().skip(10) {
            w.expect(*seq, state, &format!("write {i} after a reopen"))
                .await?;
        }
        drop(w);
        db.close().await?;
    }
    Ok(Outcome::Passed)
}

/// A watcher that receives nothing is sent progress marks that reach the store's sequence,
/// also when the commits are outside its range.
pub(crate) async fn watch_progress_marks(h: &dyn Harness) -> TestResult {
    if let Some(skipped) = skip_unless_watch(h, "watch_progress_marks") {
        return skipped;
    }
    let scratch = Scratch::new()?;
    let db = Db::open(h, &scratch.db()).await?;
    let mut stream = db.watch(watched(), None).await.ctx("watch")?;
    for i in 0..5u32 {
        db.put(format!("x/{i}").as_bytes(), b"1")
            .await
            .ctx("put outside")?;
    }
    let target = seq(&db).await?;
    let mut last = 0;
    while last < target {
        match next_event(&mut stream).await? {
            WatchEvent::Progress { sequence } => {
                ensure!(
                    sequence >= last,
                    "a progress mark went back from {last} to {sequence}"
                );
                last = sequence;
            }
            WatchEvent::Commit(commit) => {
                return Err(Failure::new(format!(
                    "a watcher of {} received commit {commit:?} of writes outside it",
                    crate::support::show_range(&watched())
                )));
            }
        }
    }
    drop(stream);
    db.close().await?;
    Ok(Outcome::Passed)
}
