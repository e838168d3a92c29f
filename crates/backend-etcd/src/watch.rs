//! `watch` on etcd's Watch: one commit per etcd revision, the revision as its sequence.
//!
//! etcd delivers every event of a revision in one response (its "atomic" guarantee, without
//! `fragment`), so the events of one transaction, a rave batch, are grouped into one
//! [`Commit`]. A `clear` arrives as one [`Change::Del`] per key it removed (etcd reports the
//! keys, not the range): applied to a copy of the data it has the same effect. Progress marks
//! come from etcd's progress requests, sent when the watcher has been idle for
//! [`rave_api::WatchOptions::progress_interval`]. When the member serving the watch dies, the
//! stream reconnects (within the store's `op_timeout`) and resumes after the last revision it
//! delivered, so the watcher sees no gap and no repeat. A start position older than etcd's
//! compaction fails with [`Error::Compacted`], whose `oldest` is the compaction revision
//! minus one (etcd keeps the compacted revision itself).

use std::collections::VecDeque;
use std::sync::Arc;

use etcd_client::{
    EventType, GetOptions, WatchOptions as EtcdWatchOptions, WatchResponse,
    WatchStream as EtcdWatchStream,
};
use rave_api::watch::check_range;
use rave_api::{Change, Commit, Error, Projection, Range, Result, WatchEvent, WatchStream};
use tokio::time::Instant;

use crate::store::Inner;

struct Watcher {
    inner: Arc<Inner>,
    key: Vec<u8>,
    end: Vec<u8>,
    projection: Projection,
    /// The last position delivered.
    last: u64,
    stream: Option<EtcdWatchStream>,
    pending: VecDeque<WatchEvent>,
    failed: bool,
}

pub(crate) async fn watch(
    inner: Arc<Inner>,
    range: Range,
    from: Option<u64>,
) -> Result<WatchStream> {
    inner.check_open()?;
    check_range(&range)?;
    let start = match from {
        Some(from) => from,
        None => u64::try_from(inner.header_revision().await?).unwrap_or(0),
    };
    // An empty range watches one key nobody writes, for its progress marks.
    let (key, end) = inner
        .ns
        .wire_range(&range)
        .unwrap_or_else(|| (inner.ns.unused(), crate::keys::successor(inner.ns.unused())));
    let mut watcher = Watcher {
        inner,
        key,
        end,
        projection: range.projection,
        last: start,
        stream: None,
        pending: VecDeque::from([WatchEvent::Progress { sequence: start }]),
        failed: false,
    };
    // Opening now reports a compacted start at once, as `watch`'s error.
    watcher.connect().await?;
    let stream = futures::stream::unfold(watcher, |mut w| async move {
        if w.failed {
            return None;
        }
        let item = w.next().await;
        if item.is_err() {
            w.failed = true;
        }
        Some((item, w))
    });
    Ok(Box::pin(stream))
}

impl Watcher {
    /// Opens an etcd watch from the revision after the last one delivered; waits for etcd to
    /// confirm it (or to refuse a compacted start).
    async fn connect(&mut self) -> Result<()> {
        let start = i64::try_from(self.last.saturating_add(1)).unwrap_or(i64::MAX);
        let options = EtcdWatchOptions::new()
            .with_range(self.end.clone())
            .with_start_revision(start);
        // etcd confirms a watch before it finds the start compacted (the compaction response
        // follows): a read at the start revision tells now, so that `watch` itself fails.
        let marker = self.inner.ns.marker();
        let probe = self
            .inner
            .retry(|mut kv| {
                let marker = marker.clone();
                let at = GetOptions::new().with_keys_only().with_revision(start);
                async move { kv.get(marker, Some(at)).await }
            })
            .await;
        let compacted = matches!(probe, Err(Error::Compacted { .. }));
        let key = self.key.clone();
        let (mut stream, created) = self
            .inner
            .retry_on(&self.inner.client, |c| {
                let key = key.clone();
                let options = options.clone();
                async move {
                    let mut client = c.watch_client().max_decoding_message_size(1 << 30);
                    let mut stream = client.watch(key, Some(options)).await?;
                    let created = stream.message().await?;
                    Ok((stream, created))
                }
            })
            .await?;
        match created {
            Some(reply) if reply.canceled() => Err(cancelled(&reply)),
            Some(_) if compacted => {
                // The cancellation with the compaction revision comes next.
                let wait = self.inner.options.op_timeout;
                let cancellation = async {
                    loop {
                        match stream.message().await {
                            Ok(Some(reply)) if reply.canceled() => return cancelled(&reply),
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => {
                                return Error::other(
                                    "the watch's start is compacted; etcd did not say up to where",
                                );
                            }
                        }
                    }
                };
                Err(tokio::time::timeout(wait, cancellation)
                    .await
                    .unwrap_or(Error::Timeout { waited: wait }))
            }
            Some(reply) => {
                self.stream = Some(stream);
                self.absorb(reply);
                Ok(())
            }
            None => Err(Error::other("etcd ended the watch before confirming it")),
        }
    }

    async fn next(&mut self) -> Result<WatchEvent> {
        let interval = self.inner.options.watch.progress_interval;
        let mut idle_since = Instant::now();
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            self.inner.check_open()?;
            let Some(stream) = self.stream.as_mut() else {
                self.connect().await?;
                continue;
            };
            let message = tokio::select! {
                message = stream.message() => message,
                () = tokio::time::sleep_until(idle_since + interval) => {
                    idle_since = Instant::now();
                    if stream.request_progress().await.is_err() {
                        self.stream = None;
                    }
                    continue;
                }
            };
            match message {
                Ok(Some(reply)) if reply.canceled() => return Err(cancelled(&reply)),
                Ok(Some(reply)) => self.absorb(reply),
                Ok(None) | Err(_) => {
                    // The member serving the watch went away: resume after `last` elsewhere.
                    tracing::debug!(last = self.last, "etcd watch broke; reconnecting");
                    self.stream = None;
                }
            }
        }
    }

    /// Turns one etcd response into commits (one per revision) or a progress mark.
    fn absorb(&mut self, reply: WatchResponse) {
        let events = reply.events();
        if events.is_empty() {
            let revision = reply.header().map_or(0, |h| h.revision());
            let revision = u64::try_from(revision).unwrap_or(0);
            if !reply.created() && revision >= self.last {
                self.last = revision;
                self.pending
                    .push_back(WatchEvent::Progress { sequence: revision });
            }
            return;
        }
        let mut current: Option<Commit> = None;
        for event in events {
            let Some(kv) = event.kv() else { continue };
            let Ok(revision) = u64::try_from(kv.mod_revision()) else {
                continue;
            };
            if revision <= self.last {
                continue; // delivered before a reconnection
            }
            let Some(key) = self.inner.ns.user_of(kv.key()) else {
                continue;
            };
            let key = if self.projection.keys() {
                key
            } else {
                Vec::new()
            };
            let change = match event.event_type() {
                EventType::Put => Change::Put {
                    key,
                    value: if self.projection.values() {
                        kv.value().to_vec()
                    } else {
                        Vec::new()
                    },
                },
                EventType::Delete => Change::Del { key },
            };
            match current.as_mut() {
                Some(commit) if commit.sequence == revision => commit.changes.push(change),
                _ => {
                    if let Some(done) = current.take() {
                        self.pending.push_back(WatchEvent::Commit(done));
                    }
                    current = Some(Commit {
                        sequence: revision,
                        changes: vec![change],
                    });
                }
            }
        }
        if let Some(done) = current {
            self.last = done.sequence;
            self.pending.push_back(WatchEvent::Commit(done));
        }
    }
}

fn cancelled(reply: &WatchResponse) -> Error {
    let compacted = reply.compact_revision();
    if compacted > 0 {
        Error::Compacted {
            oldest: u64::try_from(compacted - 1).unwrap_or(0),
        }
    } else {
        Error::other(format!(
            "etcd cancelled the watch: {}",
            reply.cancel_reason()
        ))
    }
}
