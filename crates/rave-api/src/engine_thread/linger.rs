//! Group formation: waiting briefly for the writers of the last commits before committing.
//!
//! With a few processes each keeping one write in flight, the writers of one commit all get
//! their answers when it ends and send their next write one round trip later (tens of µs for a
//! follower, less for the leader's own). Committing as soon as the first of them arrives splits
//! them over two commits, each paying a full sync: measured with 4 processes × 1 put in flight,
//! commits carried 1–3 puts, never 4. So when the writes queued so far come from fewer writers
//! (handles: a write's stamp names its [`ClientId`]) than the last two commits had, the engine
//! thread waits for the others, polling the queue, for at most the last commit's duration and
//! never more than [`MAX_LINGER`]: a commit that syncs (hundreds of µs) waits long enough for
//! a round trip, one that does not (a few µs) practically never waits. One writer, or many
//! writers behind one handle (tasks of one process share its stamp's client), never waits.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::once::ClientId;

/// The longest wait for more writers before a commit.
pub(super) const MAX_LINGER: Duration = Duration::from_micros(400);

/// How long the engine thread sleeps between two looks at its queue while it waits.
const POLL: Duration = Duration::from_micros(10);

/// What the last commits looked like.
#[derive(Default)]
pub(super) struct Linger {
    /// The writers of the last commit and of the one before.
    last: HashSet<ClientId>,
    before: HashSet<ClientId>,
    /// How many writers those two commits had together, counted once per commit rather than at
    /// every poll.
    expected: usize,
    /// How long the last commit took.
    last_commit: Duration,
}

impl Linger {
    /// Whether to wait for more writes, for a group gathered since `started` from `writers`.
    pub(super) fn should_wait(&self, started: Instant, writers: &HashSet<ClientId>) -> bool {
        let budget = self.last_commit.min(MAX_LINGER);
        if budget < POLL * 2 {
            return false;
        }
        writers.len() < self.expected && started.elapsed() < budget
    }

    /// Sleeps one polling step.
    pub(super) fn pause(&self) {
        std::thread::sleep(POLL);
    }

    /// Records a commit of `writers` that took `took`.
    pub(super) fn committed(&mut self, writers: HashSet<ClientId>, took: Duration) {
        self.before = std::mem::replace(&mut self.last, writers);
        self.expected = self.last.union(&self.before).count();
        self.last_commit = took;
    }
}

/// Lets the engine thread's short sleeps ([`Linger::pause`]) end on time: Linux rounds a
/// sleeping thread's wake-up up by its timer slack (50 µs by default), which would turn a 10 µs
/// poll into 60.
pub(super) fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and changes only this thread's slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writers(ids: &[u128]) -> HashSet<ClientId> {
        ids.iter().map(|&id| ClientId(id)).collect()
    }

    #[test]
    fn waits_only_for_writers_of_the_last_two_commits_and_only_after_a_slow_commit() {
        let mut linger = Linger::default();
        let now = Instant::now();
        // Nothing known yet: no wait.
        assert!(!linger.should_wait(now, &writers(&[1])));
        linger.committed(writers(&[1]), Duration::from_micros(400));
        linger.committed(writers(&[2, 3, 4]), Duration::from_micros(400));
        assert!(linger.should_wait(now, &writers(&[1])));
        assert!(linger.should_wait(now, &writers(&[1, 2, 3])));
        assert!(!linger.should_wait(now, &writers(&[1, 2, 3, 4])));
        // Past the budget (the last commit's duration, at most MAX_LINGER): no wait.
        let long_ago = now - MAX_LINGER;
        assert!(!linger.should_wait(long_ago, &writers(&[1])));
        // A fast commit (no sync): never wait.
        linger.committed(writers(&[1, 2, 3, 4]), Duration::from_micros(15));
        assert!(!linger.should_wait(now, &writers(&[1])));
    }
}
