//! The watcher worker: one `Rave` handle watching a range, recording every event it receives.
//!
//! It starts after position `--from` (the last position its previous incarnation recorded, 0
//! for the first), and records the opening (`W`), every progress mark (`P`), every commit
//! (`C`, with its changes) and every error of the stream (`X`), each line before the next event
//! is taken, so a SIGKILLed watcher's history is exact up to its last line. Between events it
//! asks the store for its sequence number now and then (`seq` operations): a write
//! acknowledged before such a probe began has a number no higher than the probe's answer, which
//! tells the checker which writes a watcher that reached that position must have delivered.
//!
//! Now and then it drops its stream and watches again from its position in the same process;
//! a failed stream is reopened from its position too (after `Compacted`: from now, a gap the
//! checker sees). On SIGTERM it probes once more and keeps watching until it has reached that
//! sequence (bounded), so the run's last acknowledged writes are covered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rave::{Backend, Error, ErrorKind, Range, Rave, WatchEvent, WatchStream};
use tokio::time::Instant;

use crate::history::{Event, Recorder};
use crate::watchlog::{enc_changes, enc_range};

/// How long a stopping watcher keeps watching to reach the last sequence.
const DRAIN_LIMIT: Duration = Duration::from_secs(4);

/// The watcher's state.
pub struct Watcher<B: Backend> {
    /// The handle.
    pub db: Rave<B>,
    /// Its history.
    pub rec: Arc<Recorder>,
    /// Its choices.
    pub rng: ChaCha8Rng,
    /// Set by SIGTERM.
    pub stop: Arc<AtomicBool>,
    /// The range watched.
    pub range: Range,
    /// The position: the sequence of the last event recorded (`None`: start from now).
    pub position: Option<u64>,
}

/// Once stopping: the sequence to reach, and until when to try.
type Target = Option<(u64, Instant)>;

enum Step {
    /// Keep reading this stream.
    Go,
    /// Drop it and watch again from the position.
    Reopen,
    /// The drain reached its target (or gave up): stop.
    Done,
}

impl<B: Backend> Watcher<B> {
    /// Watches until stopped.
    pub async fn run(&mut self) {
        // Probes run in their own task, so the stream is polled all the while: a watch that
        // resumes on a new leader holds the handle's turn until it is polled again (operations
        // queued during an election run one at a time), and a probe queued behind it would
        // wait for nothing.
        let (tx, mut target) = tokio::sync::watch::channel(None);
        tokio::spawn(probes(
            self.db.clone(),
            self.rec.clone(),
            ChaCha8Rng::seed_from_u64(self.rng.next_u64()),
            self.stop.clone(),
            tx,
        ));
        loop {
            if self.finished(*target.borrow()) {
                return;
            }
            let from = enc_from(self.position);
            self.rec
                .line(format_args!("W {from} {}", enc_range(&self.range)));
            let mut stream = match self.db.watch(self.range.clone(), self.position).await {
                Ok(stream) => stream,
                Err(e) => {
                    self.failed(&e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            loop {
                match self.step(&mut stream, &mut target).await {
                    Step::Go => {}
                    Step::Reopen => break,
                    Step::Done => return,
                }
            }
        }
    }

    async fn step(
        &mut self,
        stream: &mut WatchStream,
        target: &mut tokio::sync::watch::Receiver<Target>,
    ) -> Step {
        if self.finished(*target.borrow()) {
            return Step::Done;
        }
        let event = tokio::select! {
            event = stream.next() => event,
            _ = target.changed() => return Step::Go,
            () = tokio::time::sleep(Duration::from_millis(200)) => return Step::Go,
        };
        match event {
            Some(Ok(WatchEvent::Progress { sequence })) => {
                self.rec.line(format_args!("P {sequence}"));
                self.position = Some(sequence);
            }
            Some(Ok(WatchEvent::Commit(commit))) => {
                self.rec.line(format_args!(
                    "C {} {}",
                    commit.sequence,
                    enc_changes(&commit.changes)
                ));
                self.position = Some(commit.sequence);
                // Now and then watch again from here, as a program restarting would.
                if self.rng.random_bool(0.005) {
                    return Step::Reopen;
                }
            }
            Some(Err(e)) => {
                self.failed(&e);
                return Step::Reopen;
            }
            None => {
                self.rec.line(format_args!("X End -"));
                return Step::Reopen;
            }
        }
        Step::Go
    }

    /// Whether a stopping watcher is done: it has reached the sequence probed once it was told
    /// to stop, or gave up after [`DRAIN_LIMIT`].
    fn finished(&self, target: Target) -> bool {
        target.is_some_and(|(seq, until)| {
            self.position.is_some_and(|p| p >= seq) || Instant::now() >= until
        })
    }

    /// Records a failed stream; after `Compacted` the next watch starts from now, after
    /// `Lagged` from where the store says.
    fn failed(&mut self, e: &Error) {
        let pos = match e {
            Error::Compacted { oldest } => Some(*oldest),
            Error::Lagged { resume_from } => Some(*resume_from),
            _ => None,
        };
        self.rec
            .line(format_args!("X {} {}", e.kind().as_str(), enc_from(pos)));
        match e.kind() {
            ErrorKind::Compacted => self.position = None,
            ErrorKind::Lagged => self.position = pos.or(self.position),
            _ => {}
        }
    }
}

/// Probes the store's sequence every 20–300 ms; once stopping, probes until it answers and
/// hands the answer over as the target to reach.
async fn probes<B: Backend>(
    db: Rave<B>,
    rec: Arc<Recorder>,
    mut rng: ChaCha8Rng,
    stop: Arc<AtomicBool>,
    target: tokio::sync::watch::Sender<Target>,
) {
    loop {
        if stop.load(Ordering::Relaxed) {
            let until = Instant::now() + DRAIN_LIMIT;
            let seq = loop {
                if let Some(seq) = probe(&db, &rec).await {
                    break seq;
                }
                if Instant::now() >= until {
                    break 0;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let _ = target.send(Some((seq, Instant::now() + DRAIN_LIMIT)));
            return;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..300))).await;
        probe(&db, &rec).await;
    }
}

/// Asks the store for its sequence, recorded as a `seq` operation.
async fn probe<B: Backend>(db: &Rave<B>, rec: &Recorder) -> Option<u64> {
    let id = rec.start(format_args!("seq"));
    let r = db.sequence().await;
    let outcome = match &r {
        Ok(_) => "ok",
        Err(e) => e.kind().as_str(),
    };
    let text = r.as_ref().map(u64::to_string).unwrap_or_default();
    rec.end(id, outcome, db.epoch(), &text);
    r.ok()
}

fn enc_from(pos: Option<u64>) -> String {
    pos.map_or_else(|| "-".to_string(), |p| p.to_string())
}

/// The position a watcher's history leaves it at (what its next incarnation starts after):
/// replays its `W`, `P`, `C` and `X` lines from `start`, the position it was started with.
pub fn resume_position(history: &str, start: Option<u64>) -> Option<u64> {
    let mut position = start;
    for line in history.lines() {
        match crate::history::parse_line(line) {
            Some((_, Event::WatchOpen { from, .. })) => position = from,
            Some((_, Event::Progress { seq } | Event::Commit { seq, .. })) => {
                position = Some(seq);
            }
            Some((_, Event::WatchError { kind, pos })) => match kind.as_str() {
                "Compacted" => position = None,
                "Lagged" => position = pos.or(position),
                _ => {}
            },
            _ => {}
        }
    }
    position
}

#[cfg(test)]
mod tests {
    use super::resume_position;

    #[test]
    fn a_restart_resumes_after_the_last_position_recorded() {
        let history = "1 H watcher v0i1 7\n2 W 5 .~.\n3 P 5\n4 C 6 +k=v\n5 P 9\n6 S 1 seq\n";
        assert_eq!(resume_position(history, Some(5)), Some(9));
        // Killed before it wrote anything: where it was started.
        assert_eq!(resume_position("1 H watcher v0i1 7\n", Some(5)), Some(5));
        // Compacted: the next one starts from now; Lagged: where the store said.
        assert_eq!(
            resume_position("2 W 5 .~.\n3 X Compacted 40\n", Some(5)),
            None
        );
        assert_eq!(
            resume_position("2 W 5 .~.\n3 P 5\n4 X Lagged 5\n", Some(5)),
            Some(5)
        );
    }
}
