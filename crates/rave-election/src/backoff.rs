use std::time::Duration;

use rand::Rng;

/// Exponential backoff with jitter, for handles that lost the lock race.
///
/// Jitter keeps a crowd of losers from retrying in lockstep; the cap keeps failover fast.
#[derive(Clone, Debug)]
pub struct Backoff {
    current: Duration,
    min: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// 1 ms doubling to 8 ms. A handle that lost the lock race polls like this for the winner's
    /// socket while the winner opens its engine, so the cap is how late a follower may find a
    /// new leader after it began to listen: with 50 ms, followers came back 25 to 50 ms after
    /// the socket was bound in failovers under load. Polling is a failed connect and a failed
    /// `flock` (microseconds each) and happens only during elections.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(1), DEFAULT_CAP)
    }
}

/// The longest delay of [`Backoff::default`].
const DEFAULT_CAP: Duration = Duration::from_millis(8);

impl Backoff {
    /// Delays start at `min` and double up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            current: min,
            min,
            max,
        }
    }

    /// The next delay: the current step, jittered to between half and all of it.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        let nanos = u64::try_from(step.as_nanos()).unwrap_or(u64::MAX).max(2);
        Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos))
    }

    /// Starts again from the shortest delay.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(2), Duration::from_millis(16));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(2));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(16)));
        assert!(delays[7] >= Duration::from_millis(8));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(2));
    }

    #[test]
    fn the_default_polls_often_enough_for_a_fast_failover() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(
            delays.iter().all(|d| *d <= Duration::from_millis(8)),
            "{delays:?}"
        );
    }
}
