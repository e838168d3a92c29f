//! Numbers a handle's writes for exactly-once delivery (see [`rave_api::once`]).
//!
//! Each write takes a sequence number once, before its first send, and keeps it across every
//! re-send; the handle's floor (the lowest number still waiting for its answer) travels with
//! each send so the leader can drop the records of answered writes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rave_api::{ClientId, Error, Result, WriteStamp};

/// The numbering of one handle's writes.
pub(crate) struct Stamper {
    client: ClientId,
    state: Mutex<State>,
}

struct State {
    next: u64,
    /// Writes sent and not yet answered (or abandoned).
    outstanding: BTreeSet<u64>,
}

/// One write's number, held while the write may still be sent; dropping it tells the handle
/// the write will not be sent again.
pub(crate) struct Ticket {
    stamper: Arc<Stamper>,
    seq: u64,
    first_sent: Instant,
}

impl Stamper {
    pub fn new() -> Self {
        Stamper {
            client: ClientId::random(),
            state: Mutex::new(State {
                next: 1,
                outstanding: BTreeSet::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section is a few set operations that cannot panic halfway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers a new write.
    pub fn begin(self: &Arc<Self>) -> Ticket {
        let mut state = self.state();
        let seq = state.next;
        state.next += 1;
        state.outstanding.insert(seq);
        Ticket {
            stamper: self.clone(),
            seq,
            first_sent: Instant::now(),
        }
    }
}

impl Ticket {
    /// The stamp for one send of this write: its number and the handle's floor now.
    ///
    /// A re-send later than [`rave_api::once::RECORD_TTL`] after the first could find its
    /// record expired and apply the write twice, so it is refused here instead.
    pub fn stamp(&self) -> Result<WriteStamp> {
        if self.first_sent.elapsed() >= rave_api::once::RECORD_TTL {
            return Err(Error::RetryRefused {
                message: format!(
                    "write {} was first sent {:?} ago, longer than its exactly-once record lives",
                    self.seq,
                    self.first_sent.elapsed()
                ),
            });
        }
        let floor = self
            .stamper
            .state()
            .outstanding
            .first()
            .copied()
            .unwrap_or(self.seq);
        Ok(WriteStamp {
            client: self.stamper.client,
            seq: self.seq,
            floor: floor.min(self.seq),
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.stamper.state().outstanding.remove(&self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_oldest_unanswered_write() {
        let stamper = Arc::new(Stamper::new());
        let first = stamper.begin();
        let second = stamper.begin();
        let third = stamper.begin();
        assert_eq!(third.stamp().unwrap().floor, 1);
        drop(first);
        assert_eq!(third.stamp().unwrap().floor, 2);
        assert_eq!(second.stamp().unwrap().seq, 2);
        drop(second);
        let stamp = third.stamp().unwrap();
        assert_eq!((stamp.seq, stamp.floor), (3, 3));
        drop(third);
        let fourth = stamper.begin();
        assert_eq!(fourth.stamp().unwrap().floor, 4);
    }
}
