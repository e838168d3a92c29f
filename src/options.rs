use std::time::Duration;

use rave_api::OpenOptions;
use rave_transport::Limits;

/// How a [`crate::Rave`] handle behaves.
#[derive(Clone, Debug)]
pub struct RaveOptions {
    /// Re-send operations, and resume iterators, on the next leader when the leader is lost
    /// (default: true). With `false`, operations in flight when the leader is lost fail with
    /// [`rave_api::ErrorKind::LeaderLost`]; operations issued while no leader exists still wait
    /// for the election.
    pub retry: bool,
    /// How long an operation waits for a leader before failing with
    /// [`rave_api::ErrorKind::NoLeader`] (default: 10 s). It covers the time the new leader
    /// takes to open its engine.
    pub election_timeout: Duration,
    /// How long a follower waits for the leader's answer to one operation before failing with
    /// [`rave_api::ErrorKind::Timeout`] (default: 30 s; `None` waits forever). A leader that is
    /// stopped (SIGSTOP) but keeps its socket open is only noticed this way. It becomes the
    /// follower connection's [`Limits::call_timeout`] (one watchdog per connection, no timer
    /// per operation), overriding the value in `limits`. A leader's own operations wait this
    /// long for its engine (one hung in a call) too. Both within [`RaveOptions::deadline`].
    pub op_timeout: Option<Duration>,
    /// How the engine is opened when this handle becomes leader (`create_if_missing`,
    /// `error_if_exists`, `sync`). `error_if_exists` applies to the first leader only in spirit:
    /// every leader opens the same directory.
    pub open: OpenOptions,
    /// The most time one operation may take in all, from its call to its answer: every wait
    /// for an election and every re-send to a new leader included (default: 60 s). When it
    /// passes, the operation fails with [`rave_api::ErrorKind::Timeout`] (a write may or may
    /// not have been applied then, like any write whose answer never came). Each single wait
    /// for a leader is bounded by `election_timeout` too, and each call to a leader by
    /// `op_timeout`; this bounds their sum, so a leader that keeps dying under an operation
    /// cannot make it retry forever. An iterator's open and each of its resumes is one
    /// operation.
    pub deadline: Duration,
    /// The most operations that may wait in this handle's queue for a leader at once
    /// (default: 1024). Beyond it, callers wait for a place in the queue (within their
    /// deadline) instead of growing it.
    pub max_waiting: usize,
    /// Wire-protocol limits (frame size, iterator window, handshake timeout).
    pub limits: Limits,
    /// Share the directory with Node's rave-level (default: false; LevelDB engine only, unix
    /// only). A leader then also takes LevelDB's own lock (`LOCK`, which rave-level's leader
    /// takes) and serves rave-level's protocol on `<dir>/rave-level.sock` beside rave's own
    /// socket; a handle that finds a Node leader follows it. See `crate::level_compat`.
    pub level_compat: bool,
}

impl Default for RaveOptions {
    fn default() -> Self {
        RaveOptions {
            retry: true,
            election_timeout: Duration::from_secs(10),
            op_timeout: Some(Duration::from_secs(30)),
            deadline: Duration::from_secs(60),
            max_waiting: 1024,
            open: OpenOptions::default(),
            limits: Limits::default(),
            level_compat: false,
        }
    }
}

impl RaveOptions {
    /// Sets [`RaveOptions::retry`].
    pub fn retry(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    /// Sets [`RaveOptions::election_timeout`].
    pub fn election_timeout(mut self, timeout: Duration) -> Self {
        self.election_timeout = timeout;
        self
    }

    /// Sets [`RaveOptions::op_timeout`].
    pub fn op_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Sets [`RaveOptions::deadline`].
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets [`RaveOptions::max_waiting`] (at least 1).
    pub fn max_waiting(mut self, max_waiting: usize) -> Self {
        self.max_waiting = max_waiting.max(1);
        self
    }

    /// Sets [`RaveOptions::level_compat`].
    pub fn level_compat(mut self, on: bool) -> Self {
        self.level_compat = on;
        self
    }

    /// Sets [`OpenOptions::sync`]: acknowledged writes survive power loss, not only crashes.
    pub fn sync(mut self, sync: bool) -> Self {
        self.open.sync = sync;
        self
    }
}
