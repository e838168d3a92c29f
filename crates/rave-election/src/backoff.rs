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
    fn default() -> Self {
        Backoff::new(Duration::from_millis(1), Duration::from_millis(50))
    }
}

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
}
