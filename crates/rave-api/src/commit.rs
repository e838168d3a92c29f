//! The engine thread's writes: user keys mapped into the engine's key space, exactly-once
//! records, the commit sequence ([`crate::sequence`]) and the change log
//! ([`crate::changelog`]) written in the same commit, the commit published to live watchers,
//! and the layout migration at open.
//!
//! Everything here runs on the engine thread ([`crate::engine_thread`]); engines only ever see
//! plain atomic writes of engine keys ([`Engine::write`]).

use crate::changelog::ChangeLog;
use crate::engine_thread::hub::Hub;
use crate::engine_thread::{Engine, EngineIter};
use crate::keyspace::{LAYOUT_KEY, to_raw};
use crate::once::{Check, Records, Staged, Verdict, WriteStamp, now_ms, record_ranges};
use crate::watch::{Change, Commit};
use crate::{BatchOp, Error, Range, Result, WatchOptions};

/// The value of [`LAYOUT_KEY`] in a directory that follows [`crate::keyspace`]'s layout.
const LAYOUT_V1: &[u8] = b"rave-keyspace-1";

/// `ops` with their user keys mapped to engine keys, appended to `raw`.
pub(crate) fn push_user_ops(raw: &mut Vec<BatchOp>, ops: Vec<BatchOp>) {
    raw.extend(ops.into_iter().map(|op| match op {
        BatchOp::Put { key, value } => BatchOp::Put {
            key: map_owned(key),
            value,
        },
        BatchOp::Del { key } => BatchOp::Del {
            key: map_owned(key),
        },
    }));
}

fn map_owned(key: Vec<u8>) -> Vec<u8> {
    match to_raw(&key) {
        std::borrow::Cow::Borrowed(_) => key,
        std::borrow::Cow::Owned(raw) => raw,
    }
}

/// What the engine thread keeps in memory about an open engine, loaded by [`prepare`] and
/// mirrored in the engine by every commit.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// The exactly-once records.
    pub records: Records,
    /// The number of the last commit that applied user writes ([`crate::sequence`]).
    pub sequence: u64,
    /// The change log's state.
    pub log: ChangeLog,
}

/// Readies a freshly opened engine: migrates an older directory to the key layout once, and
/// loads the exactly-once records, the commit sequence and the change log's state.
pub(crate) fn prepare<E: Engine>(engine: &E, watch: &WatchOptions) -> Result<Ledger> {
    migrate_layout(engine)?;
    let mark = crate::sequence::load(engine)?;
    let mut entries = Vec::new();
    for range in record_ranges() {
        let mut iter = engine.iter(&range)?;
        while let Some(entry) = iter.next_entry()? {
            entries.push(entry);
        }
    }
    Ok(Ledger {
        records: Records::load(entries)?,
        sequence: mark.seq,
        log: ChangeLog::load(mark, watch),
    })
}

/// A directory written before the key layout existed stores user keys beginning `0xFF`
/// unescaped: rewrite them escaped, with the layout record, in one atomic write.
fn migrate_layout<E: Engine>(engine: &E) -> Result<()> {
    match engine.get(LAYOUT_KEY)? {
        Some(value) if value == LAYOUT_V1 => return Ok(()),
        Some(_) => {
            return Err(Error::corruption(
                "the key-layout record holds an unknown value (written by a newer rave?)",
            ));
        }
        None => {}
    }
    // Every delete before every put: an escaped key may equal another legacy key
    // (`0xFF` becomes `0xFF 0xFF`, itself a legacy key to move).
    let mut deletes = Vec::new();
    let mut puts = Vec::new();
    let mut iter = engine.iter(&Range::all().gte(vec![0xFF]))?;
    while let Some((key, value)) = iter.next_entry()? {
        puts.push(BatchOp::put(to_raw(&key).into_owned(), value));
        deletes.push(BatchOp::del(key));
    }
    drop(iter);
    let moved = puts.len();
    let mut ops = deletes;
    ops.extend(puts);
    ops.push(BatchOp::put(LAYOUT_KEY.to_vec(), LAYOUT_V1.to_vec()));
    match engine.write(&ops) {
        Ok(()) => {
            if moved > 0 {
                tracing::info!(
                    keys = moved,
                    "migrated user keys beginning 0xFF to the key layout"
                );
            }
            Ok(())
        }
        // Nothing to move: the record can wait for a later open (a full disk must still let a
        // leader serve reads).
        Err(err) if moved == 0 => {
            tracing::warn!(%err, "could not record the key layout; will retry at the next open");
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// One group commit being assembled: the engine operations of every write merged into it, the
/// exactly-once records they need, and who to answer.
pub(crate) struct Group<R> {
    raw: Vec<BatchOp>,
    /// Engine ranges to delete in the same commit (a `clear`), before `raw`.
    ranges: Vec<Range>,
    /// The applied writes in user keys, in order: the commit as watchers see it.
    changes: Vec<Change>,
    staged: Staged,
    /// Callers answered with the commit's result.
    waiting: Vec<R>,
    /// Callers answered at once (re-sent writes already applied, stale ones refused).
    answered: Vec<(R, Result<()>)>,
    /// Whether a write is to be applied: the commit then takes a sequence number.
    applies: bool,
}

impl<R> Group<R> {
    pub fn new() -> Self {
        Group {
            raw: Vec::new(),
            ranges: Vec::new(),
            changes: Vec::new(),
            staged: Staged::default(),
            waiting: Vec::new(),
            answered: Vec::new(),
            applies: false,
        }
    }

    /// Adds one write; `ops` is called only when the write is to be applied.
    pub fn add(
        &mut self,
        records: &Records,
        stamp: Option<WriteStamp>,
        reply: R,
        ops: impl FnOnce() -> Result<Vec<BatchOp>>,
    ) {
        self.admit(records, stamp, reply, |group| {
            group.push_ops(ops()?);
            Ok(())
        });
    }

    /// Adds one conditional write: its checks are evaluated now, against the engine as the
    /// writes merged before it in this group leave it; `ops` are added if they all hold, and
    /// the caller is answered [`Error::ConditionFailed`] otherwise (with no record: nothing
    /// was applied, so a re-send is evaluated again).
    pub fn add_conditional<E: Engine>(
        &mut self,
        engine: &E,
        records: &Records,
        stamp: Option<WriteStamp>,
        reply: R,
        checks: Vec<Check>,
        ops: Vec<BatchOp>,
    ) {
        self.admit(records, stamp, reply, |group| {
            for check in checks {
                let current = match group.pending_value(&check.key) {
                    Some(value) => value,
                    None => engine.get(&to_raw(&check.key))?,
                };
                if current != check.expected {
                    return Err(Error::ConditionFailed {
                        key: check.key,
                        current,
                    });
                }
            }
            group.push_ops(ops);
            Ok(())
        });
    }

    /// The value `key` has after the writes merged so far (`Some(None)`: deleted), or `None`
    /// when none of them touches it.
    fn pending_value(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.changes.iter().rev().find_map(|change| match change {
            Change::Put { key: k, value } if k == key => Some(Some(value.clone())),
            Change::Del { key: k } if k == key => Some(None),
            _ => None,
        })
    }

    /// Adds applied user operations: as the watchers' changes and as engine operations.
    fn push_ops(&mut self, ops: Vec<BatchOp>) {
        self.changes.extend(ops.iter().map(|op| match op {
            BatchOp::Put { key, value } => Change::Put {
                key: key.clone(),
                value: value.clone(),
            },
            BatchOp::Del { key } => Change::Del { key: key.clone() },
        }));
        push_user_ops(&mut self.raw, ops);
    }

    /// Adds one `clear`: the user range it removes (bounds only; `None` when it removes
    /// nothing) and the engine ranges it deletes. `ranges` is called only when the clear is to
    /// be applied (so a re-sent `clear` does not even walk its range).
    pub fn add_clear(
        &mut self,
        records: &Records,
        stamp: Option<WriteStamp>,
        reply: R,
        ranges: impl FnOnce() -> Result<(Option<Range>, Vec<Range>)>,
    ) {
        self.admit(records, stamp, reply, |group| {
            let (cleared, raw) = ranges()?;
            group
                .changes
                .extend(cleared.map(|range| Change::Clear { range }));
            group.ranges.extend(raw);
            Ok(())
        });
    }

    /// Answers a write already applied or refused at once; otherwise adds it with `apply` and
    /// stages its record.
    fn admit(
        &mut self,
        records: &Records,
        stamp: Option<WriteStamp>,
        reply: R,
        apply: impl FnOnce(&mut Self) -> Result<()>,
    ) {
        if let Some(stamp) = &stamp {
            match records.verdict(&self.staged, stamp) {
                Verdict::Apply => {}
                Verdict::InThisCommit => return self.waiting.push(reply),
                Verdict::Applied => return self.answered.push((reply, Ok(()))),
                Verdict::Stale => {
                    return self.answered.push((
                        reply,
                        Err(Error::RetryRefused {
                            message: format!(
                                "write {} of this handle was re-sent after its answer was \
                                 delivered; it was not applied again",
                                stamp.seq
                            ),
                        }),
                    ));
                }
            }
        }
        match apply(self) {
            Ok(()) => {
                if let Some(stamp) = stamp {
                    records.stage(&mut self.staged, stamp);
                }
                self.applies = true;
                self.waiting.push(reply);
            }
            Err(err) => self.answered.push((reply, Err(err))),
        }
    }

    /// Commits the group in one engine write (nothing to write: no engine call) and returns who
    /// to answer with what. A commit that applies writes takes the next sequence number,
    /// recorded with its change-log entry in the same engine write (the number is taken even
    /// if the write fails: see [`crate::sequence`]), and is published to `hub` before anyone
    /// is answered.
    pub fn commit<E: Engine>(
        mut self,
        engine: &E,
        ledger: &mut Ledger,
        hub: &Hub,
    ) -> Vec<(R, Result<()>)> {
        let now = now_ms();
        let meta = ledger.records.meta_ops(&mut self.staged, now);
        let result = if !self.applies && meta.is_empty() {
            Ok(())
        } else {
            self.raw.extend(meta);
            let mut applied = None;
            if self.applies {
                ledger.sequence += 1;
                let commit = Commit {
                    sequence: ledger.sequence,
                    changes: std::mem::take(&mut self.changes),
                };
                let log = ledger.log.append(engine, &commit, &mut self.raw);
                self.raw.push(crate::sequence::record(log.mark()));
                applied = Some((commit, log));
            }
            let result = if self.ranges.is_empty() {
                engine.write(&self.raw)
            } else {
                engine.delete_ranges_and_write(&self.ranges, &self.raw)
            };
            if result.is_ok() {
                ledger.records.commit(self.staged, now);
                #[cfg(feature = "fault-injection")]
                fault::after_commit();
            }
            if let Some((commit, log)) = applied {
                match &result {
                    Ok(()) => {
                        let logged = log.logged();
                        ledger.log.commit(log);
                        if hub.watched() {
                            hub.committed(commit, logged);
                        }
                    }
                    Err(_) => hub.uncertain(commit.sequence),
                }
            }
            result
        };
        let mut answers = self.answered;
        answers.extend(self.waiting.into_iter().map(|r| (r, result.clone())));
        answers
    }
}

/// The torture harness's fault point (feature `fault-injection`, test builds only): with
/// `RAVE_FAULT_KILL_AFTER_COMMIT=P` in the environment, the process SIGKILLs itself with
/// probability `P` after a commit reached the engine and before anyone is answered, so that
/// callers must re-send writes that were in fact applied.
#[cfg(feature = "fault-injection")]
mod fault {
    use std::sync::OnceLock;

    /// The environment variable holding the probability (0 to 1).
    pub const ENV: &str = "RAVE_FAULT_KILL_AFTER_COMMIT";

    pub fn after_commit() {
        static P: OnceLock<f64> = OnceLock::new();
        let p = *P.get_or_init(|| {
            std::env::var(ENV)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|p| p.is_finite())
                .map_or(0.0, |p| p.clamp(0.0, 1.0))
        });
        if p > 0.0 && rand::random_bool(p) {
            tracing::warn!("{ENV}: killing this leader after a commit, before its replies");
            // SAFETY: kill(2) and getpid(2) have no memory-safety preconditions; the signal
            // is for this very process.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine_thread::EngineStore;
    use crate::{KvStore, MemoryEngine};

    /// A directory written before the key layout existed (user keys beginning `0xFF` stored
    /// as they are) reads back unchanged once opened, and records its layout.
    #[tokio::test]
    async fn an_older_directory_is_migrated_in_place() {
        let legacy: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (vec![0xFF], b"2".to_vec()),
            (vec![0xFF, 0x00, b'o'], b"3".to_vec()),
            (vec![0xFF, 0xFF], b"4".to_vec()),
        ];
        let engine = MemoryEngine::default();
        let ops: Vec<BatchOp> = legacy
            .iter()
            .map(|(k, v)| BatchOp::put(k.clone(), v.clone()))
            .collect();
        engine.write(&ops).unwrap();
        let store = EngineStore::spawn("legacy", move || Ok(engine.clone())).unwrap();
        let mut iter = store.iterator(Range::all()).await.unwrap();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = iter
            .collect_all()
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect();
        assert_eq!(entries, legacy);
        for (key, value) in &legacy {
            assert_eq!(store.get(key).await.unwrap().as_ref(), Some(value));
        }
        store.close().await.unwrap();
    }
}
