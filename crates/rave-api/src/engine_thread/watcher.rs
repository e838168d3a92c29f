//! One watcher of an [`EngineStore`](super::EngineStore): it reads the change log until it
//! has caught up, then follows the live feed ([`super::hub`]), and goes back to the log
//! whenever the feed cannot give it the next commit (it fell out of the ring, the commit was
//! too large for the ring, or the commit's outcome is uncertain).
//!
//! Its position (`last`) only moves forward, and every commit is delivered once: commits at or
//! below it are skipped, whichever path brings them. Its memory is one log page at most
//! ([`PAGE_BYTES`] and one commit); the engine thread never waits for it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc as commands, oneshot};

use super::hub::Live;
use super::{Command, LogPage};
use crate::watch::{Commit, WatchEvent, WatchStream};
use crate::{Error, Range, Result};

/// The bytes of change-log entries read at a time.
const PAGE_BYTES: usize = 1 << 20;

pub(super) struct Watcher {
    tx: commands::Sender<Command>,
    live: broadcast::Receiver<Live>,
    range: Range,
    /// The position: every commit up to it has been delivered (or was outside the range).
    last: u64,
    /// Reading the log rather than the feed.
    catching_up: bool,
    /// Events ready to hand out.
    ready: VecDeque<WatchEvent>,
    progress_interval: Duration,
    /// When the last event was handed out: a progress mark is due an interval later.
    quiet_since: Instant,
    finished: bool,
}

impl Watcher {
    /// A watcher from position `start`; `from_history` when it must read the log first. The
    /// first page is read here, so that a position older than the log fails the call itself
    /// with [`Error::Compacted`].
    pub(super) async fn start(
        tx: commands::Sender<Command>,
        live: broadcast::Receiver<Live>,
        range: Range,
        start: u64,
        from_history: bool,
        progress_interval: Duration,
    ) -> Result<Self> {
        let mut watcher = Watcher {
            tx,
            live,
            range,
            last: start,
            catching_up: from_history,
            ready: VecDeque::from([WatchEvent::Progress { sequence: start }]),
            progress_interval,
            quiet_since: Instant::now(),
            finished: false,
        };
        if from_history {
            watcher.catch_up().await?;
        }
        Ok(watcher)
    }

    pub(super) fn into_stream(self) -> WatchStream {
        Box::pin(futures::stream::unfold(self, |mut watcher| async move {
            let item = watcher.next().await?;
            Some((item, watcher))
        }))
    }

    /// The next event; `None` after the stream ended with an error.
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.quiet_since = Instant::now();
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            let step = if self.catching_up {
                self.catch_up().await.map_err(|err| match err {
                    // The log moved past this watcher while it was reading it.
                    Error::Compacted { .. } => Error::Lagged {
                        resume_from: self.last,
                    },
                    other => other,
                })
            } else {
                self.follow().await
            };
            if let Err(err) = step {
                self.finished = true;
                return Some(Err(err));
            }
        }
    }

    /// Reads one page of the log after `last`; back to the feed once nothing more follows.
    async fn catch_up(&mut self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::ReadLog(self.last, PAGE_BYTES, reply))
            .await
            .map_err(|_| Error::Closed)?;
        let page: LogPage = rx.await.map_err(|_| Error::Closed)??;
        for commit in page.commits {
            self.deliver(&commit);
        }
        if !page.more {
            // Every commit up to the page's sequence is in the log or never happened.
            self.last = self.last.max(page.sequence);
            self.catching_up = false;
        }
        Ok(())
    }

    /// Waits for the feed's next message, or queues a progress mark when the watcher has
    /// handed out nothing for an interval (commits outside its range do not count).
    async fn follow(&mut self) -> Result<()> {
        let due = self.quiet_since + self.progress_interval;
        let message = tokio::select! {
            message = self.live.recv() => message,
            () = tokio::time::sleep_until(due) => {
                self.ready.push_back(WatchEvent::Progress { sequence: self.last });
                return Ok(());
            }
        };
        match message {
            Ok(Live::Commit(commit)) => self.deliver(&commit),
            Ok(Live::InLog(seq) | Live::Uncertain(seq)) => {
                if seq > self.last {
                    self.catching_up = true;
                }
            }
            Err(RecvError::Lagged(_)) => self.catching_up = true,
            Ok(Live::Closed) | Err(RecvError::Closed) => return Err(Error::Closed),
        }
        Ok(())
    }

    /// Moves past `commit`, queueing its changes in the range (once: a commit at or below the
    /// position was delivered already).
    fn deliver(&mut self, commit: &Commit) {
        if commit.sequence <= self.last {
            return;
        }
        self.last = commit.sequence;
        if let Some(within) = commit.within(&self.range) {
            self.ready.push_back(WatchEvent::Commit(within));
        }
    }
}
