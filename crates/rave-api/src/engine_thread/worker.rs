//! The engine thread: runs commands on the engine in arrival order, and heals it.
//!
//! - Every engine call runs under `catch_unwind`: a panic answers its caller with an
//!   [`ErrorKind::Other`] error ("the engine panicked"), and the engine, which may be left
//!   half-changed, is closed and reopened (its cursors first: they borrow it).
//! - A write that fails with an I/O error leaves the engine *suspect*: redb and LevelDB refuse
//!   every write after one failed write (a full disk, say) until they are reopened. The next
//!   write closes and reopens the engine first, so once the cause is gone (space freed) writes
//!   succeed again without restarting any process.
//! - Reopen attempts are paced ([`Pace`]): at most one per `delay`, doubling from 50 ms to 1 s
//!   until a write succeeds, so a broken disk never makes the thread spin (the one exception: a
//!   panic reopens at once, since no engine is left to answer; a panicking open is paced). While no engine is
//!   open, every command is answered at once with the last error (nothing waits for a reopen),
//!   and a command that arrives when an attempt is due triggers it; there is no timer.
//! - After a reopen the exactly-once records and the commit sequence are loaded again
//!   ([`prepare`]), so the sequence continues from the last persisted number, and the new
//!   engine's shared reader replaces the old one. Iterators open at the reopen fail with a typed
//!   error (their snapshot is gone), never with a silent end.
//! - Commands come from a bounded queue; iterators dropped while it was full are collected
//!   from [`Dropped`] after every command, whatever state the engine is in.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, PoisonError, RwLock, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::mpsc as commands;
use tokio::sync::mpsc::error::TryRecvError;

use super::cursor::{Cursor, clear_ranges, open_cursor};
use super::hub::Hub;
use super::linger::{self, Linger};
use super::{Command, Dropped, Engine, LogPage, OpenCursors, Reply, SharedReader};
use crate::commit::{Group, Ledger, prepare};
use crate::engine_backend::panic_detail;
use crate::{BatchOp, Error, ErrorKind, Result};

/// The most bytes of writes merged into one group commit.
const MAX_GROUP_BYTES: usize = 64 << 20;

/// The wait before a second reopen attempt; it doubles up to [`MAX_REOPEN_DELAY`].
const FIRST_REOPEN_DELAY: Duration = Duration::from_millis(50);
/// The longest wait between reopen attempts: the most a write waits for a healed disk to be
/// noticed.
const MAX_REOPEN_DELAY: Duration = Duration::from_secs(1);

/// The engine's shared reader, as the store's callers see it.
pub(super) type ReaderSlot = Arc<RwLock<Option<Arc<dyn SharedReader>>>>;

/// When the next reopen attempt may run.
struct Pace {
    next: Instant,
    delay: Duration,
}

impl Pace {
    fn new() -> Self {
        Pace {
            next: Instant::now(),
            delay: FIRST_REOPEN_DELAY,
        }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    fn attempted(&mut self) {
        self.next = Instant::now() + self.delay;
        self.delay = (self.delay * 2).min(MAX_REOPEN_DELAY);
    }

    /// The engine works again: the next trouble is met at once.
    fn reset(&mut self) {
        self.next = Instant::now();
        self.delay = FIRST_REOPEN_DELAY;
    }
}

/// Why [`Worker::serve`] stopped serving an engine.
enum Outcome {
    /// The store closed (with the caller to answer) or every handle is gone.
    Close(Option<Reply<()>>),
    /// The engine must be closed and reopened, because of this error; at once (after a panic:
    /// no engine is left to serve), or when the pace allows.
    Reopen(Error, bool),
}

/// What one command did to the engine's health.
enum Step {
    Done,
    /// A group commit ran: `Some` when the engine failed it with an I/O error.
    Wrote(Option<Error>),
    /// The engine panicked (the callers are answered with this error).
    Panicked(Error),
    Close(Reply<()>),
}

/// An engine open on this thread, with its exactly-once records and commit sequence.
type Opened<E> = (E, Ledger);

/// The engine thread's state, apart from the engine itself.
pub(super) struct Worker<F> {
    name: String,
    open: F,
    rx: commands::Receiver<Command>,
    /// A command taken from the channel but not yet handled.
    held_back: Option<Command>,
    /// Iterators dropped while the command queue was full, to collect.
    dropped: Dropped,
    /// Iterators dropped (through `dropped`) before their `OpenIter` came out of the queue.
    dropped_early: HashSet<u64>,
    gauge: OpenCursors,
    reader: ReaderSlot,
    /// Iterators whose cursor a reopen dropped, with what their next chunk answers.
    lost: HashMap<u64, Error>,
    pace: Pace,
    /// The live feed to watchers, and the change log's bounds.
    hub: Hub,
    /// Group formation: who wrote in the last commits, and how long they took.
    linger: Linger,
}

impl<E: Engine, F: FnMut() -> Result<E>> Worker<F> {
    pub(super) fn new(
        name: &str,
        open: F,
        rx: commands::Receiver<Command>,
        dropped: Dropped,
        gauge: OpenCursors,
        reader: ReaderSlot,
        hub: Hub,
    ) -> Self {
        Worker {
            name: name.to_string(),
            open,
            rx,
            held_back: None,
            dropped,
            dropped_early: HashSet::new(),
            gauge,
            reader,
            lost: HashMap::new(),
            pace: Pace::new(),
            hub,
            linger: Linger::default(),
        }
    }

    /// Opens the engine, tells `opened` how that went, then serves until the store closes;
    /// then ends every watcher.
    pub(super) fn run(mut self, opened: mpsc::SyncSender<Result<()>>) {
        linger::precise_sleeps();
        self.run_until_closed(opened);
        self.hub.closed();
    }

    fn run_until_closed(&mut self, opened: mpsc::SyncSender<Result<()>>) {
        let mut current = match self.open_engine() {
            Ok(engine) => {
                let _ = opened.send(Ok(()));
                engine
            }
            Err(e) => {
                let _ = opened.send(Err(e));
                return;
            }
        };
        loop {
            let (engine, mut ledger) = current;
            let outcome = self.serve(&engine, &mut ledger);
            // Waits for the shared reads in progress: none runs while the engine closes.
            self.set_reader(None);
            let closed = self.close_engine(engine);
            match outcome {
                Outcome::Close(reply) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(closed);
                    }
                    return;
                }
                Outcome::Reopen(cause, at_once) => {
                    if let Err(err) = closed {
                        tracing::warn!(engine = %self.name, %err, "closing the engine to reopen it failed");
                    }
                    match self.reopen(cause, at_once) {
                        Some(engine) => current = engine,
                        None => return,
                    }
                }
            }
        }
    }

    fn next_command(&mut self) -> Option<Command> {
        self.held_back.take().or_else(|| self.rx.blocking_recv())
    }

    /// Collects the iterators dropped while the command queue was full: closes their cursors
    /// (`cursors` is empty while no engine is open), forgets lost ones, and remembers those
    /// whose `OpenIter` is still queued, so that it opens nothing.
    fn collect_dropped<I>(&mut self, cursors: &mut HashMap<u64, Cursor<I>>) -> Step {
        let ids = self.dropped.take();
        if ids.is_empty() {
            return Step::Done;
        }
        let mut closing = Vec::new();
        for id in ids {
            match cursors.remove(&id) {
                Some(cursor) => closing.push(cursor),
                None => {
                    if self.lost.remove(&id).is_none() {
                        self.dropped_early.insert(id);
                    }
                }
            }
        }
        self.gauge.set(cursors.len());
        match self.guard("drop an iterator", || {
            drop(closing);
            Ok(())
        }) {
            Err(Fault::Panic(err)) => Step::Panicked(err),
            _ => Step::Done,
        }
    }

    /// Opens the engine, loads its records and publishes its shared reader.
    fn open_engine(&mut self) -> Result<Opened<E>> {
        let open = &mut self.open;
        let started = Instant::now();
        let cpu = crate::failover_trace::enabled().then(|| {
            (
                crate::failover_trace::thread_cpu_us(),
                crate::failover_trace::thread_runqueue_wait_us(),
            )
        });
        let engine = catch_unwind(AssertUnwindSafe(open))
            .unwrap_or_else(|p| Err(self::panicked(&self.name, "open", p.as_ref())))?;
        let opened = started.elapsed();
        // Work, and waiting for a core, during the engine's open (the rest is blocking I/O).
        let (cpu, runqueue) = cpu.map_or((0, 0), |(cpu, waited)| {
            (
                crate::failover_trace::thread_cpu_us().saturating_sub(cpu),
                crate::failover_trace::thread_runqueue_wait_us().saturating_sub(waited),
            )
        });
        let ready = catch_unwind(AssertUnwindSafe(|| {
            let ledger = prepare(&engine, self.hub.options())?;
            Ok((ledger, engine.shared_reader()))
        }))
        .unwrap_or_else(|p| Err(self::panicked(&self.name, "open", p.as_ref())));
        // A takeover's open splits into the engine's own recovery and loading rave's records.
        crate::failover_trace::phase(
            "engine-open",
            format_args!(
                "engine_us={} engine_cpu_us={cpu} engine_runqueue_us={runqueue} prepare_us={}",
                opened.as_micros(),
                started.elapsed().saturating_sub(opened).as_micros()
            ),
        );
        match ready {
            Ok((ledger, reader)) => {
                self.set_reader(reader);
                Ok((engine, ledger))
            }
            Err(err) => {
                let _ = self.close_engine(engine);
                Err(err)
            }
        }
    }

    fn close_engine(&self, engine: E) -> Result<()> {
        catch_unwind(AssertUnwindSafe(|| engine.close()))
            .unwrap_or_else(|p| Err(self::panicked(&self.name, "close", p.as_ref())))
    }

    fn set_reader(&self, reader: Option<Arc<dyn SharedReader>>) {
        let old = std::mem::replace(
            &mut *self.reader.write().unwrap_or_else(PoisonError::into_inner),
            reader,
        );
        // Dropped outside the lock.
        drop(old);
    }

    /// Reopens the engine, closed because of `cause`. Until an attempt succeeds, answers every
    /// command with the last error; an attempt runs when one is due and a command is waiting
    /// (or on entry, when due or `at_once`). `None` when the store closed meanwhile.
    fn reopen(&mut self, cause: Error, mut at_once: bool) -> Option<Opened<E>> {
        let mut last = cause;
        loop {
            if std::mem::take(&mut at_once) || self.pace.due() {
                self.pace.attempted();
                match self.open_engine() {
                    Ok(engine) => {
                        tracing::info!(engine = %self.name, "engine reopened");
                        return Some(engine);
                    }
                    Err(err) => {
                        tracing::warn!(engine = %self.name, %err, "could not reopen the engine");
                        last = err;
                    }
                }
            }
            let command = self.next_command()?;
            // No cursor is open: this only forgets ids.
            self.collect_dropped::<()>(&mut HashMap::new());
            match command {
                Command::OpenIter(id, _, _) if self.dropped_early.remove(&id) => {}
                Command::Wake => {}
                Command::NextChunk(id, _, reply) => {
                    let _ = reply.send(Err(self.lost_error(id)));
                }
                Command::DropIter(id) => {
                    self.lost.remove(&id);
                }
                Command::Close(reply) => {
                    let _ = reply.send(Ok(()));
                    return None;
                }
                command if self.pace.due() => self.held_back = Some(command),
                Command::Get(_, reply) => {
                    let _ = reply.send(Err(last.clone()));
                }
                Command::GetMany(_, reply) => {
                    let _ = reply.send(Err(last.clone()));
                }
                Command::Sequence(reply) | Command::OpenIter(_, _, reply) => {
                    let _ = reply.send(Err(last.clone()));
                }
                Command::ReadLog(_, _, reply) => {
                    let _ = reply.send(Err(last.clone()));
                }
                Command::Write(_, _, reply)
                | Command::Clear(_, _, reply)
                | Command::Conditional(_, _, _, reply) => {
                    let _ = reply.send(Err(last.clone()));
                }
            }
        }
    }

    fn lost_error(&self, id: u64) -> Error {
        self.lost.get(&id).cloned().unwrap_or(Error::Closed)
    }

    /// Serves commands on `engine` until the store closes or the engine must be reopened.
    fn serve(&mut self, engine: &E, ledger: &mut Ledger) -> Outcome {
        let mut cursors: HashMap<u64, Cursor<E::Iter<'_>>> = HashMap::new();
        // The I/O error of the last write, when it failed.
        let mut suspect: Option<Error> = None;
        let outcome = loop {
            let Some(command) = self.next_command() else {
                break Outcome::Close(None);
            };
            if let Step::Panicked(err) = self.collect_dropped(&mut cursors) {
                self.held_back = Some(command);
                break Outcome::Reopen(err, true);
            }
            if let Some(cause) = &suspect
                && matches!(
                    command,
                    Command::Write(..) | Command::Clear(..) | Command::Conditional(..)
                )
                && self.pace.due()
            {
                tracing::info!(engine = %self.name, %cause, "reopening the engine after a failed write");
                self.held_back = Some(command);
                break Outcome::Reopen(cause.clone(), false);
            }
            match self.handle(engine, ledger, &mut cursors, command) {
                Step::Done => {}
                Step::Wrote(None) => {
                    suspect = None;
                    self.pace.reset();
                }
                Step::Wrote(Some(err)) => suspect = Some(err),
                Step::Panicked(err) => break Outcome::Reopen(err, true),
                Step::Close(reply) => break Outcome::Close(Some(reply)),
            }
        };
        // Cursors borrow the engine: gone before it closes. Their iterators fail from now on.
        let lost = match &outcome {
            Outcome::Reopen(cause, _) => Some(Error::other(format!(
                "the iterator's snapshot is gone: the engine was reopened after: {cause}"
            ))),
            Outcome::Close(_) => None,
        };
        for (id, cursor) in cursors.drain() {
            if let Some(err) = &lost {
                self.lost.insert(id, err.clone());
            }
            self.guard("drop an iterator", || {
                drop(cursor);
                Ok(())
            })
            .ok();
        }
        self.gauge.set(0);
        outcome
    }

    /// Runs one engine call, turning its panic into an error.
    fn guard<T>(&self, op: &str, f: impl FnOnce() -> Result<T>) -> std::result::Result<T, Fault> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(Fault::Error(err)),
            Err(payload) => Err(Fault::Panic(self::panicked(
                &self.name,
                op,
                payload.as_ref(),
            ))),
        }
    }

    fn handle<'e>(
        &mut self,
        engine: &'e E,
        ledger: &mut Ledger,
        cursors: &mut HashMap<u64, Cursor<E::Iter<'e>>>,
        command: Command,
    ) -> Step {
        match command {
            Command::Get(key, reply) => answer(reply, self.guard("read", || engine.get(&key))),
            Command::GetMany(keys, reply) => {
                answer(reply, self.guard("read", || engine.get_many(&keys)))
            }
            command @ (Command::Write(..) | Command::Conditional(..)) => {
                // Group commit: merge the writes already queued behind this one. Replies stay
                // here, so that a panic in the engine still answers every caller.
                let mut replies = Vec::new();
                let mut group = Group::new();
                let mut bytes = 0;
                let started = Instant::now();
                let mut writers = HashSet::new();
                let mut next = Some(command);
                while let Some(command) = next.take() {
                    if let Command::Write(Some(stamp), ..) | Command::Conditional(Some(stamp), ..) =
                        &command
                    {
                        writers.insert(stamp.client);
                    }
                    // A conditional write reads the engine: a panic there answers everyone.
                    let added = self.guard("read", || {
                        match command {
                            Command::Write(stamp, ops, reply) => {
                                bytes += ops.iter().map(BatchOp::payload_len).sum::<usize>();
                                group.add(&ledger.records, stamp, replies.len(), || Ok(ops));
                                replies.push(reply);
                            }
                            Command::Conditional(stamp, checks, ops, reply) => {
                                bytes += ops.iter().map(BatchOp::payload_len).sum::<usize>();
                                let i = replies.len();
                                replies.push(reply);
                                let records = &ledger.records;
                                group.add_conditional(engine, records, stamp, i, checks, ops);
                            }
                            // Only writes are ever passed here.
                            _ => {}
                        }
                        Ok(())
                    });
                    if let Err(Fault::Panic(err)) = added {
                        for reply in replies {
                            let _ = reply.send(Err(err.clone()));
                        }
                        return Step::Panicked(err);
                    }
                    if bytes >= MAX_GROUP_BYTES {
                        break;
                    }
                    next = loop {
                        match self.rx.try_recv() {
                            Ok(command @ (Command::Write(..) | Command::Conditional(..))) => {
                                break Some(command);
                            }
                            Ok(other) => {
                                self.held_back = Some(other);
                                break None;
                            }
                            Err(TryRecvError::Empty)
                                if self.linger.should_wait(started, &writers) =>
                            {
                                self.linger.pause();
                            }
                            Err(_) => break None,
                        }
                    };
                }
                let committing = Instant::now();
                let step = self.commit(engine, ledger, group, replies);
                self.linger.committed(writers, committing.elapsed());
                step
            }
            Command::Clear(stamp, range, reply) => {
                let mut group = Group::new();
                // Walks at most `limit` keys, a chunk at a time, and lists none: the engine
                // deletes the ranges natively (`Engine::delete_ranges_and_write`).
                let scanned = self.guard("iterate", || {
                    group.add_clear(&ledger.records, stamp, 0, || clear_ranges(engine, range));
                    Ok(())
                });
                match scanned {
                    Ok(()) => self.commit(engine, ledger, group, vec![reply]),
                    Err(fault) => answer(reply, Err(fault)),
                }
            }
            Command::OpenIter(id, _, _) if self.dropped_early.remove(&id) => Step::Done,
            Command::OpenIter(id, range, reply) => {
                let opened = self.guard("iterate", || open_cursor(engine, range));
                let opened = opened.map(|cursor| {
                    cursors.insert(id, cursor);
                    ledger.sequence
                });
                self.gauge.set(cursors.len());
                answer(reply, opened)
            }
            Command::NextChunk(id, max, reply) => match cursors.get_mut(&id) {
                Some(cursor) => answer(reply, self.guard("iterate", || cursor.next_chunk(max))),
                None => {
                    let _ = reply.send(Err(self.lost_error(id)));
                    Step::Done
                }
            },
            Command::DropIter(id) => {
                self.lost.remove(&id);
                let cursor = cursors.remove(&id);
                self.gauge.set(cursors.len());
                let dropped = self.guard("drop an iterator", || {
                    drop(cursor);
                    Ok(())
                });
                match dropped {
                    Err(Fault::Panic(err)) => Step::Panicked(err),
                    _ => Step::Done,
                }
            }
            Command::Sequence(reply) => {
                let _ = reply.send(Ok(ledger.sequence));
                Step::Done
            }
            Command::ReadLog(after, max_bytes, reply) => {
                let read = self.guard("read the change log", || {
                    let (commits, more) = ledger.log.read_after(engine, after, max_bytes)?;
                    Ok(LogPage {
                        commits,
                        more,
                        sequence: ledger.sequence,
                    })
                });
                answer(reply, read)
            }
            Command::Wake => Step::Done,
            Command::Close(reply) => Step::Close(reply),
        }
    }

    /// Commits `group` and answers `replies` (indexed by the group's reply numbers).
    fn commit(
        &self,
        engine: &E,
        ledger: &mut Ledger,
        group: Group<usize>,
        replies: Vec<Reply<()>>,
    ) -> Step {
        let mut replies: Vec<Option<Reply<()>>> = replies.into_iter().map(Some).collect();
        let committed = catch_unwind(AssertUnwindSafe(|| group.commit(engine, ledger, &self.hub)));
        match committed {
            Ok(answers) => {
                let mut failure = None;
                for (i, result) in answers {
                    if let Err(err) = &result
                        && err.kind() == ErrorKind::Io
                    {
                        failure = Some(err.clone());
                    }
                    if let Some(reply) = replies.get_mut(i).and_then(Option::take) {
                        let _ = reply.send(result);
                    }
                }
                Step::Wrote(failure)
            }
            Err(payload) => {
                // The commit may have reached the engine: watchers check the change log.
                self.hub.uncertain(ledger.sequence);
                let err = self::panicked(&self.name, "write", payload.as_ref());
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(err.clone()));
                }
                Step::Panicked(err)
            }
        }
    }
}

/// How an engine call failed.
enum Fault {
    /// It returned this error.
    Error(Error),
    /// It panicked; the engine must be reopened.
    Panic(Error),
}

/// Answers `reply` with `result`, and says whether the engine panicked.
fn answer<T>(reply: Reply<T>, result: std::result::Result<T, Fault>) -> Step {
    match result {
        Ok(value) => {
            let _ = reply.send(Ok(value));
            Step::Done
        }
        Err(Fault::Error(err)) => {
            let _ = reply.send(Err(err));
            Step::Done
        }
        Err(Fault::Panic(err)) => {
            let _ = reply.send(Err(err.clone()));
            Step::Panicked(err)
        }
    }
}

/// The error that answers a call during which engine `name` panicked.
fn panicked(name: &str, op: &str, payload: &(dyn std::any::Any + Send)) -> Error {
    let detail = panic_detail(payload);
    tracing::error!(
        engine = name,
        op,
        detail,
        "the engine panicked; reopening it"
    );
    Error::other(format!(
        "the {name} engine panicked ({op}): {detail}; it is being reopened"
    ))
}
