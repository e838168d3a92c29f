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
    /// per operation), overriding the value in `limits`.
    pub op_timeout: Option<Duration>,
    /// How the engine is opened when this handle becomes leader (`create_if_missing`,
    /// `error_if_exists`, `sync`). `error_if_exists` applies to the first leader only in spirit:
    /// every leader opens the same directory.
    pub open: OpenOptions,
    /// Wire-protocol limits (frame size, iterator window, handshake timeout).
    pub limits: Limits,
}

impl Default for RaveOptions {
    fn default() -> Self {
        RaveOptions {
            retry: true,
            election_timeout: Duration::from_secs(10),
            op_timeout: Some(Duration::from_secs(30)),
            open: OpenOptions::default(),
            limits: Limits::default(),
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

    /// Sets [`OpenOptions::sync`]: acknowledged writes survive power loss, not only crashes.
    pub fn sync(mut self, sync: bool) -> Self {
        self.open.sync = sync;
        self
    }
}
