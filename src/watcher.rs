//! Watches that survive a change of leader.
//!
//! A [`rave_api::WatchStream`] of a [`crate::Rave`] handle remembers the position of the last
//! event it handed out. When the leader is lost (and `retry` is on) it watches again on the
//! next leader from that position: the new leader serves the commits after it from its change
//! log, so the user sees no gap, no duplicate and no reordering, and writes no code for it.
//! A position the new leader's history no longer holds ends the stream with
//! [`Error::Compacted`], never with a silent gap. A resume that fails for another reason (no
//! leader in time) returns its error, and the next poll tries again.

use std::sync::Arc;

use futures::StreamExt;
use rave_api::{Error, Range, Result, WatchEvent, WatchStream};

use crate::leadership::Leadership;

/// Opens a resuming watch of `range` after `from` (`None`: from now).
pub(crate) async fn open(
    core: Arc<Leadership>,
    range: Range,
    from: Option<u64>,
) -> Result<WatchStream> {
    let mut inner = open_on_leader(&core, &range, from).await?;
    // The first event names the starting position: known from the start, a resume before the
    // user read anything continues from there, not from a later "now".
    let first = match inner.next().await {
        Some(Ok(event @ WatchEvent::Progress { .. })) => event,
        Some(Ok(other)) => {
            return Err(Error::protocol(format!(
                "a watch began with {other:?} instead of its starting position"
            )));
        }
        Some(Err(e)) => return Err(e),
        None => return Err(Error::protocol("a watch ended before it began")),
    };
    let watch = ResumingWatch {
        core,
        range,
        position: first.sequence(),
        ready: Some(first),
        inner: Some(inner),
        resuming: None,
        restarted: false,
        ended: false,
    };
    Ok(Box::pin(futures::stream::unfold(
        watch,
        |mut watch| async move {
            let item = watch.next().await?;
            Some((item, watch))
        },
    )))
}

/// A task aborted when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<Result<WatchStream>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct ResumingWatch {
    core: Arc<Leadership>,
    range: Range,
    /// The position of the last event handed out (or the start).
    position: u64,
    /// An event taken from the stream but not handed out yet.
    ready: Option<WatchEvent>,
    /// The watch on the current leader; `None` after a lost leader until a resume succeeds.
    inner: Option<WatchStream>,
    /// The resume in progress. It runs as a task of its own: it holds a place in the handle's
    /// queue of operations waiting for a leader, and a stream its user does not poll must
    /// not hold up the operations queued behind it. Aborted when the stream is dropped.
    resuming: Option<AbortOnDrop>,
    /// The current inner stream is a resumed one whose first event (its starting position)
    /// repeats `position`.
    restarted: bool,
    ended: bool,
}

async fn open_on_leader(
    core: &Leadership,
    range: &Range,
    from: Option<u64>,
) -> Result<WatchStream> {
    core.run(|store| {
        let range = range.clone();
        async move { (*store).watch(range, from).await }
    })
    .await
}

impl ResumingWatch {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        if self.ended {
            return None;
        }
        if let Some(event) = self.ready.take() {
            return Some(Ok(event));
        }
        loop {
            if self.core.is_closed() {
                self.ended = true;
                return Some(Err(Error::Closed));
            }
            let inner = match self.inner.as_mut() {
                Some(inner) => inner,
                None => {
                    let (core, range, from) =
                        (self.core.clone(), self.range.clone(), Some(self.position));
                    let task = self.resuming.get_or_insert_with(|| {
                        AbortOnDrop(tokio::spawn(async move {
                            open_on_leader(&core, &range, from).await
                        }))
                    });
                    let opened = (&mut task.0).await.unwrap_or_else(|e| {
                        Err(Error::other(format!("a watch resume failed: {e}")))
                    });
                    self.resuming = None;
                    match opened {
                        Ok(stream) => {
                            self.restarted = true;
                            self.inner.insert(stream)
                        }
                        Err(e) => {
                            if matches!(e.kind(), rave_api::ErrorKind::Compacted) {
                                self.ended = true;
                            }
                            return Some(Err(e));
                        }
                    }
                }
            };
            match inner.next().await {
                Some(Ok(event)) => {
                    if std::mem::take(&mut self.restarted)
                        && event
                            == (WatchEvent::Progress {
                                sequence: self.position,
                            })
                    {
                        continue;
                    }
                    self.position = self.position.max(event.sequence());
                    return Some(Ok(event));
                }
                Some(Err(Error::LeaderLost))
                    if self.core.options.retry && !self.core.is_closed() =>
                {
                    tracing::debug!(
                        position = self.position,
                        "resuming a watch on the next leader"
                    );
                    self.inner = None;
                }
                Some(Err(Error::LeaderLost)) if self.core.is_closed() => {
                    self.ended = true;
                    return Some(Err(Error::Closed));
                }
                Some(Err(e)) => {
                    self.ended = true;
                    return Some(Err(e));
                }
                None => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }
}
