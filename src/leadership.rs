//! The state machine of one handle: elect, lead or follow, hand operations a store, re-elect.
//!
//! Operations never talk to the election directly. They ask [`Leadership::acquire`] for a
//! ticket (the store to use now: the local engine when leading, the client when following) and
//! report a lost leader with [`Leadership::lost`]. One background task, [`drive`], runs the
//! election and changes the state.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rave_api::failover_trace::phase;
use rave_api::{Error, KvStore, OpenOptions, Result, Write};
use rave_election::{Backoff, DirLock, Role};
use rave_transport::{Client, ServerInfo};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::RaveOptions;
use crate::level_compat::{self, Followed};
use crate::stamp::Stamper;

/// Opens the engine when this handle becomes leader (blocking).
pub(crate) type Opener = Arc<dyn Fn(&Path, &OpenOptions) -> Result<Arc<dyn KvStore>> + Send + Sync>;

/// The right to run one operation against `store`.
pub(crate) struct Ticket {
    pub store: Arc<dyn KvStore>,
    pub generation: u64,
    pub role: Role,
    /// Held while the operation runs when it was queued before this handle became leader, so
    /// queued work runs in order and before any newer operation.
    _turn: Option<oneshot::Sender<()>>,
}

enum Conn {
    /// No store yet: operations queue.
    Electing,
    /// Leading, but the operations queued before are still running one by one.
    Draining,
    /// Operations take the store directly.
    Ready {
        store: Arc<dyn KvStore>,
        generation: u64,
        role: Role,
    },
    Closed,
}

struct State {
    conn: Conn,
    generation: u64,
    queue: VecDeque<oneshot::Sender<Result<Ticket>>>,
    epoch: Option<u64>,
    /// While leading: the server's open connections (its followers).
    connections: Option<rave_transport::ConnectionCount>,
}

pub(crate) struct Leadership {
    pub dir: PathBuf,
    pub options: RaveOptions,
    opener: Opener,
    state: Mutex<State>,
    role: watch::Sender<Role>,
    /// Cancelled when the handle closes or its last clone is dropped: ends the driver.
    pub cancel: CancellationToken,
    /// Numbers this handle's writes, so a re-sent write is applied once.
    stamper: Arc<Stamper>,
    /// Places in `State::queue` (`max_waiting` of them): callers beyond wait for one.
    waiting: Semaphore,
}

impl Leadership {
    pub fn new(dir: PathBuf, options: RaveOptions, opener: Opener) -> Self {
        Leadership {
            dir,
            waiting: Semaphore::new(options.max_waiting.max(1)),
            options,
            opener,
            state: Mutex::new(State {
                conn: Conn::Electing,
                generation: 0,
                queue: VecDeque::new(),
                epoch: None,
                connections: None,
            }),
            role: watch::Sender::new(Role::Electing),
            cancel: CancellationToken::new(),
            stamper: Arc::new(Stamper::new()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-changed (every critical
        // section is a few assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    pub fn watch_role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    pub fn epoch(&self) -> Option<u64> {
        self.state().epoch
    }

    /// While this handle leads: how many connections its server has open.
    pub fn served_connections(&self) -> Option<u64> {
        self.state().connections.as_ref().map(|c| c.get())
    }

    /// A store to run one operation on, waiting for an election when there is none (within
    /// `election_timeout` and the handle's `deadline`).
    pub async fn acquire(&self) -> Result<Ticket> {
        self.acquire_by(Instant::now(), self.deadline_from(Instant::now()))
            .await
    }

    /// When an operation started at `started` must have ended (`None`: never).
    fn deadline_from(&self, started: Instant) -> Option<Instant> {
        started.checked_add(self.options.deadline)
    }

    /// The ticket of a ready store, `Closed`, or `None` when the caller must queue.
    fn ready_ticket(state: &State) -> Option<Result<Ticket>> {
        match &state.conn {
            Conn::Ready {
                store,
                generation,
                role,
            } => Some(Ok(Ticket {
                store: store.clone(),
                generation: *generation,
                role: *role,
                _turn: None,
            })),
            Conn::Closed => Some(Err(Error::Closed)),
            Conn::Electing | Conn::Draining => None,
        }
    }

    /// [`Leadership::acquire`] for an operation started at `started` that must end by
    /// `deadline`.
    async fn acquire_by(&self, started: Instant, deadline: Option<Instant>) -> Result<Ticket> {
        if let Some(ready) = Self::ready_ticket(&self.state()) {
            return ready;
        }
        // This wait ends at the election timeout or the operation's deadline, whichever
        // comes first; the error says which.
        let now = Instant::now();
        let election_ends = now.checked_add(self.options.election_timeout);
        let (limit, past_deadline) = match (election_ends, deadline) {
            (Some(e), Some(d)) if d < e => (Some(d), true),
            (Some(e), _) => (Some(e), false),
            (None, d) => (d, d.is_some()),
        };
        let timed_out = || {
            if past_deadline {
                Error::Timeout {
                    waited: started.elapsed(),
                }
            } else {
                Error::NoLeader {
                    waited: now.elapsed(),
                }
            }
        };
        let waiting = async {
            // A place in the bounded queue first: beyond `max_waiting`, callers wait here.
            let place = self.waiting.acquire().await.map_err(|_| Error::Closed)?;
            let rx = {
                let mut state = self.state();
                if let Some(ready) = Self::ready_ticket(&state) {
                    return ready;
                }
                if state.queue.len() >= self.options.max_waiting {
                    // Callers that gave up (timed out, cancelled) left their senders behind.
                    state.queue.retain(|waiter| !waiter.is_closed());
                }
                let (tx, rx) = oneshot::channel();
                state.queue.push_back(tx);
                rx
            };
            let ticket = rx.await.map_err(|_| Error::Closed)?;
            drop(place);
            ticket
        };
        match limit {
            Some(limit) => tokio::time::timeout_at(limit, waiting)
                .await
                .unwrap_or_else(|_| Err(timed_out())),
            None => waiting.await,
        }
    }

    /// How many callers wait in the queue for a leader (test support).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.state().queue.len()
    }

    /// Runs `op` on the current store, re-electing and retrying when the leader is lost (as the
    /// options say), all within the handle's `deadline`: past it the operation fails with
    /// `Timeout`, whatever it was waiting for.
    ///
    /// `op` should call the store as `(*store).get(..)`: `store.get(..)` would go through the
    /// blanket `KvStore for Arc<S>` impl, one more boxed future per operation.
    pub async fn run<T, Fut>(&self, op: impl Fn(Arc<dyn KvStore>) -> Fut) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let deadline = self.deadline_from(started);
        loop {
            let Ticket {
                store,
                generation,
                role,
                _turn: turn,
                ..
            } = self.acquire_by(started, deadline).await?;
            // The call ends by the operation's deadline; a leader's call to its own engine
            // (which may hang in a call) also within `op_timeout`. A follower's wait for its
            // leader is bounded by `op_timeout` inside the client (one watchdog per
            // connection; see `try_follow`).
            let call_ends = match (role, self.options.op_timeout) {
                (Role::Leader, Some(limit)) => {
                    let limit = Instant::now().checked_add(limit);
                    match (limit, deadline) {
                        (Some(l), Some(d)) => Some(l.min(d)),
                        (l, d) => l.or(d),
                    }
                }
                _ => deadline,
            };
            let result = match call_ends {
                Some(ends) => tokio::time::timeout_at(ends, op(store))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::Timeout {
                            waited: started.elapsed(),
                        })
                    }),
                None => op(store).await,
            };
            // The next queued operation may start only now.
            drop(turn);
            match result {
                Err(Error::LeaderLost) => {
                    self.lost(generation);
                    if self.is_closed() {
                        return Err(Error::Closed);
                    }
                    if !self.options.retry {
                        return Err(Error::LeaderLost);
                    }
                    // A leader that keeps dropping connections must not hold the operation
                    // forever: retries end with `Timeout` at the operation's deadline.
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Error::Timeout {
                            waited: started.elapsed(),
                        });
                    }
                    tracing::debug!("leader lost with an operation in flight; retrying");
                }
                other => return other,
            }
        }
    }

    /// Runs one write exactly once: numbered before its first send, re-sent with the same
    /// stamp to whichever leader comes next, so a leader that already applied it answers from
    /// its records instead of applying it again.
    pub async fn write(&self, write: Write) -> Result<()> {
        let ticket = self.stamper.begin();
        self.run(|s| {
            let write = write.clone();
            let stamp = ticket.stamp();
            async move { (*s).write_stamped(stamp?, write).await }
        })
        .await
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state().conn, Conn::Closed)
    }

    /// The store of `generation` failed: stop handing it out (the driver re-elects).
    pub fn lost(&self, generation: u64) {
        let mut state = self.state();
        if let Conn::Ready {
            generation: current,
            ..
        } = state.conn
            && current == generation
        {
            state.conn = Conn::Electing;
        }
    }

    fn set_role(&self, role: Role) {
        self.role.send_if_modified(|current| {
            let changed = *current != role;
            *current = role;
            changed
        });
    }

    /// Marks the handle closed; every waiting and later operation fails with `Closed`.
    pub fn close(&self) {
        let mut state = self.state();
        state.conn = Conn::Closed;
        for waiter in state.queue.drain(..) {
            let _ = waiter.send(Err(Error::Closed));
        }
        drop(state);
        // Callers waiting for a place in the queue fail with `Closed` too.
        self.waiting.close();
        self.set_role(Role::Closed);
        self.cancel.cancel();
    }

    fn follow(&self, store: Arc<dyn KvStore>, epoch: Option<u64>) -> u64 {
        let mut state = self.state();
        if matches!(state.conn, Conn::Closed) {
            return 0;
        }
        state.generation += 1;
        let generation = state.generation;
        state.conn = Conn::Ready {
            store: store.clone(),
            generation,
            role: Role::Follower,
        };
        state.epoch = epoch;
        state.connections = None;
        for waiter in state.queue.drain(..) {
            let _ = waiter.send(Ok(Ticket {
                store: store.clone(),
                generation,
                role: Role::Follower,
                _turn: None,
            }));
        }
        drop(state);
        self.set_role(Role::Follower);
        generation
    }

    /// Hands every operation `store` directly (a shared backend: see `direct.rs`).
    pub(crate) fn direct(&self, store: Arc<dyn KvStore>) {
        let mut state = self.state();
        if matches!(state.conn, Conn::Closed) {
            return;
        }
        state.generation += 1;
        let generation = state.generation;
        state.conn = Conn::Ready {
            store: store.clone(),
            generation,
            role: Role::Direct,
        };
        for waiter in state.queue.drain(..) {
            let _ = waiter.send(Ok(Ticket {
                store: store.clone(),
                generation,
                role: Role::Direct,
                _turn: None,
            }));
        }
        drop(state);
        self.set_role(Role::Direct);
    }

    /// Becomes leader with `store`: first runs the operations queued during the election, one at
    /// a time and in order, then lets every operation through.
    async fn promote(
        &self,
        store: Arc<dyn KvStore>,
        epoch: u64,
        connections: rave_transport::ConnectionCount,
    ) {
        let generation = {
            let mut state = self.state();
            if matches!(state.conn, Conn::Closed) {
                return;
            }
            state.generation += 1;
            state.conn = Conn::Draining;
            state.epoch = Some(epoch);
            state.connections = Some(connections);
            state.generation
        };
        // Leader from now on: the queued operations below already run on this engine.
        self.set_role(Role::Leader);
        loop {
            let waiter = {
                let mut state = self.state();
                if matches!(state.conn, Conn::Closed) {
                    return;
                }
                match state.queue.pop_front() {
                    Some(waiter) => waiter,
                    None => {
                        state.conn = Conn::Ready {
                            store: store.clone(),
                            generation,
                            role: Role::Leader,
                        };
                        break;
                    }
                }
            };
            let (turn, done) = oneshot::channel();
            let ticket = Ticket {
                store: store.clone(),
                generation,
                role: Role::Leader,
                _turn: Some(turn),
            };
            if waiter.send(Ok(ticket)).is_ok() {
                // Resolves when the operation drops its ticket.
                let _ = done.await;
            }
        }
    }

    fn electing(&self) {
        let mut state = self.state();
        if !matches!(state.conn, Conn::Closed) {
            state.conn = Conn::Electing;
        }
        drop(state);
        if !self.is_closed() {
            self.set_role(Role::Electing);
        }
    }

    /// Fails the operations waiting for this election with `err` (the engine could not open).
    pub(crate) fn fail_waiters(&self, err: &Error) {
        let mut state = self.state();
        for waiter in state.queue.drain(..) {
            let _ = waiter.send(Err(err.clone()));
        }
    }

    pub(crate) fn open_engine(&self) -> Result<Arc<dyn KvStore>> {
        (self.opener)(&self.dir, &self.options.open)
    }
}

/// The election loop of one handle; returns when the handle closes.
pub(crate) async fn drive(core: Arc<Leadership>) {
    let mut backoff = Backoff::default();
    // Paces reconnections to a leader whose connections end soon after they start (its store
    // closing, or broken), so that its followers do not reconnect in a loop.
    let mut churn = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));
    // The leader (by epoch) that dropped this handle's last connection soon after it started.
    // Only a reconnection to that same leader is paced: a leader that was killed soon after
    // this handle connected is not a churning one, and its successor (a newer epoch) must be
    // followed at once; pacing it added up to a second to failovers under frequent kills.
    let mut dropped_early: Option<Option<u64>> = None;
    // For the failover trace: lock attempts lost, and time slept, since the last role.
    let mut lost_races = 0u32;
    let mut slept = Duration::ZERO;
    while !core.cancel.is_cancelled() {
        let followed = match try_follow(&core).await {
            Some((client, epoch)) => Some(native(client, epoch)),
            None => level_compat::try_follow(&core.dir, &core.options).await,
        };
        if let Some(Followed { store, gone, epoch }) = followed {
            backoff.reset();
            if dropped_early.take() == Some(epoch) {
                sleep_or_cancel(&core, churn.next_delay()).await;
                if core.cancel.is_cancelled() {
                    let _ = store.close().await;
                    continue;
                }
            } else {
                churn.reset();
            }
            let since = Instant::now();
            let generation = core.follow(store.clone(), epoch);
            tracing::debug!(?epoch, "following");
            phase(
                "following",
                format_args!(
                    "epoch={} lost_races={lost_races} slept_us={}",
                    epoch.unwrap_or(0),
                    slept.as_micros()
                ),
            );
            (lost_races, slept) = (0, Duration::ZERO);
            tokio::select! {
                _ = gone => {
                    core.lost(generation);
                    core.electing();
                    tracing::debug!(epoch, "leader gone; electing");
                    phase("noticed", format_args!("epoch={}", epoch.unwrap_or(0)));
                    if since.elapsed() < STEADY_CONNECTION {
                        dropped_early = Some(epoch);
                    } else {
                        churn.reset();
                    }
                }
                _ = core.cancel.cancelled() => {
                    let _ = store.close().await;
                }
            }
            continue;
        }
        // The lock's open and `flock` block: never on the runtime's threads. (The leader
        // record's write, fsyncs and rename come later, beside the engine open: see `lead`.)
        let dir = core.dir.clone();
        let trying = Instant::now();
        let acquired = tokio::task::spawn_blocking(move || DirLock::try_acquire_unrecorded(&dir))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(format!("the lock task failed: {e}"))));
        match acquired {
            Ok(Some(lock)) => {
                backoff.reset();
                dropped_early = None;
                phase(
                    "locked",
                    format_args!(
                        "epoch={} lock_us={} lost_races={lost_races} slept_us={}",
                        lock.epoch(),
                        trying.elapsed().as_micros(),
                        slept.as_micros()
                    ),
                );
                (lost_races, slept) = (0, Duration::ZERO);
                if let Err(err) = lead(&core, lock).await {
                    if core.options.level_compat && level_compat::lock_busy(&err) {
                        // A Node leader holds LevelDB's LOCK: look for its socket again.
                        sleep_or_cancel(&core, backoff.next_delay()).await;
                        continue;
                    }
                    tracing::warn!(%err, "could not lead");
                    core.fail_waiters(&err);
                    sleep_or_cancel(&core, Duration::from_millis(100)).await;
                }
            }
            Ok(None) => {
                let delay = backoff.next_delay();
                lost_races += 1;
                slept += delay;
                sleep_or_cancel(&core, delay).await;
            }
            Err(e) => {
                let err = Error::io(
                    format!("lock {}", core.dir.join(rave_election::LOCK_FILE).display()),
                    &e,
                );
                tracing::warn!(%err, "election failed");
                core.fail_waiters(&err);
                sleep_or_cancel(&core, Duration::from_millis(100)).await;
            }
        }
    }
}

/// A connection to the leader that lasts this long was a working one: the next reconnection
/// need not wait.
const STEADY_CONNECTION: Duration = Duration::from_secs(1);

pub(crate) async fn sleep_or_cancel(core: &Leadership, delay: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = core.cancel.cancelled() => {}
    }
}

/// A rave leader's connection, as a [`Followed`].
fn native(client: Client, epoch: u64) -> Followed {
    let watched = client.clone();
    Followed {
        store: Arc::new(client),
        gone: Box::pin(async move { watched.disconnected().await }),
        epoch: Some(epoch),
    }
}

/// Connects and shakes hands with the leader, if one serves.
async fn try_follow(core: &Leadership) -> Option<(Client, u64)> {
    let path = rave_election::socket_path(&core.dir).ok()?;
    let stream = rave_election::connect(&path).await.ok()?;
    let limits = rave_transport::Limits {
        call_timeout: core.options.op_timeout,
        ..core.options.limits.clone()
    };
    match Client::connect(stream, limits).await {
        Ok((client, welcome)) => Some((client, welcome.epoch)),
        Err(err) => {
            tracing::debug!(%err, path = %path.display(), "something on the socket is not a rave leader");
            None
        }
    }
}

/// Leads until the handle closes: opens the engine, listens, serves, then steps down cleanly
/// (socket removed while the lock is still held, engine closed, lock released last).
async fn lead(core: &Arc<Leadership>, mut lock: DirLock) -> Result<()> {
    let epoch = lock.epoch();
    let opener = core.clone();
    let opening = Instant::now();
    // The leader record (its fsyncs) and the engine open (its recovery) are independent and both
    // block: run them side by side, so a failover waits for the longer, not the sum. Nothing is
    // served before both are done: the socket is bound below, after the record is durable.
    let open = tokio::task::spawn_blocking(move || opener.open_engine());
    let recording = Instant::now();
    let record = tokio::task::spawn_blocking(move || {
        let recorded = lock.record();
        let took = recording.elapsed();
        (lock, recorded, took)
    });
    let (opened, record) = tokio::join!(open, record);
    let opened = opened
        .map_err(|e| Error::other(format!("the engine open task failed: {e}")))
        .and_then(|opened| opened);
    // The lock is released only after the engine is closed, even on failure.
    let lock = match record {
        Ok((lock, Ok(()), took)) => {
            phase(
                "recorded",
                format_args!("epoch={epoch} us={}", took.as_micros()),
            );
            lock
        }
        Ok((lock, Err(e), _)) => {
            if let Ok(store) = opened {
                let _ = store.close().await;
            }
            drop(lock);
            return Err(Error::io("write the leader record", &e));
        }
        Err(e) => {
            // The task panicked, and dropped the lock with it: close the engine anyway.
            if let Ok(store) = opened {
                let _ = store.close().await;
            }
            return Err(Error::other(format!("the leader record task failed: {e}")));
        }
    };
    let store = opened?;
    phase(
        "opened",
        format_args!("epoch={epoch} us={}", opening.elapsed().as_micros()),
    );
    let binding = Instant::now();
    let shutdown = CancellationToken::new();
    let level = match level_compat::serve_beside(&core.options, &core.dir, &store, &shutdown) {
        Ok(level) => level,
        Err(e) => {
            let _ = store.close().await;
            return Err(e);
        }
    };
    // Removing a stale socket file, binding and chmod are file-system calls: off the runtime.
    let dir = core.dir.clone();
    let bound = tokio::task::spawn_blocking(move || {
        let bound = rave_election::socket_path(&dir)
            .and_then(|path| rave_election::bind(&path, &lock).map(|listener| (path, listener)));
        (bound, lock)
    })
    .await;
    // The lock is released only after the engine is closed, even on failure.
    let (path, listener, lock) = match bound {
        Ok((Ok((path, listener)), lock)) => (path, listener, lock),
        Ok((Err(e), lock)) => {
            shutdown.cancel();
            level_compat::stop(level).await;
            let closed = store.close().await;
            drop(lock);
            closed?;
            return Err(Error::io("listen on the rave socket", &e));
        }
        Err(e) => {
            // The task panicked, and dropped the lock with it: close the engine anyway.
            shutdown.cancel();
            level_compat::stop(level).await;
            let _ = store.close().await;
            return Err(Error::other(format!("the bind task failed: {e}")));
        }
    };
    let connections = rave_transport::ConnectionCount::default();
    let server = tokio::spawn(rave_transport::serve_counted(
        listener.incoming(),
        store.clone(),
        ServerInfo {
            epoch,
            pid: std::process::id(),
        },
        core.options.limits.clone(),
        shutdown.clone(),
        connections.clone(),
    ));
    tracing::debug!(epoch, "leading");
    phase(
        "bound",
        format_args!("epoch={epoch} us={}", binding.elapsed().as_micros()),
    );
    let draining = Instant::now();
    core.promote(store.clone(), epoch, connections).await;
    phase(
        "promoted",
        format_args!("epoch={epoch} drain_us={}", draining.elapsed().as_micros()),
    );
    core.cancel.cancelled().await;
    shutdown.cancel();
    let _ = server.await;
    level_compat::stop(level).await;
    let unbound = tokio::task::spawn_blocking(move || rave_election::unbind(&path)).await;
    if let Err(e) = unbound {
        tracing::warn!(%e, "removing the rave socket failed");
    }
    let closed = store.close().await;
    drop(lock);
    closed
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rave_api::{Backend, MemoryBackend};

    use super::*;

    /// Thousands of callers waiting for an election: the queue holds at most `max_waiting` of
    /// them, the rest wait for a place; once a leader is there, all of them run.
    #[tokio::test]
    async fn callers_waiting_for_a_leader_queue_within_the_bound() {
        let opener: Opener = Arc::new(|_, _| Err(Error::other("no election in this test")));
        let options = RaveOptions::default()
            .max_waiting(16)
            .election_timeout(Duration::from_secs(600));
        let core = Arc::new(Leadership::new(PathBuf::from("/unused"), options, opener));
        let callers = 2000;
        let attempted = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let core = core.clone();
                let attempted = attempted.clone();
                tokio::spawn(async move {
                    attempted.fetch_add(1, Ordering::SeqCst);
                    // Its first poll takes a place in the queue or waits for one.
                    core.acquire().await.map(|ticket| ticket.role)
                })
            })
            .collect();
        while attempted.load(Ordering::SeqCst) < callers {
            tokio::task::yield_now().await;
        }
        let queued = core.queued();
        assert!(queued <= 16, "{queued} callers in the queue (bound 16)");
        let store = MemoryBackend
            .open(Path::new("/unused"), &rave_api::OpenOptions::default())
            .unwrap();
        let store: Arc<dyn KvStore> = Arc::new(store);
        core.promote(store.clone(), 1, Default::default()).await;
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), Role::Leader);
        }
        store.close().await.unwrap();
    }
}
