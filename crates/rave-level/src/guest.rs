//! The guest: a many-level client that follows a leader (a Node rave-level leader, or any
//! many-level host) as a [`KvStore`].
//!
//! One connection, one task that reads replies and routes them by id (point requests and
//! iterators have separate id spaces, as in many-level). When the connection ends, every
//! request in flight fails with [`Error::LeaderLost`] and [`Guest::disconnected`] resolves:
//! rave re-elects and retries. Unlike Node's guest, this one never re-sends anything itself,
//! and never resumes an iterator with a bookmark (Node's host skips keys when it resumes a
//! reverse iterator): rave's own resume opens the remaining range with an exclusive bound.
//!
//! A many-level leader keeps no exactly-once records and has no change feed or commit
//! sequence: see [`Guest::write_stamped`], [`Guest::sequence`] and [`Guest::watch`].

mod iter;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use rave_api::{
    BatchOp, Error, KvIterator, KvStore, Range, Result, WatchStream, Write, WriteStamp,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::codec::{Reply, decode_reply};
use crate::codes;
use crate::frame::{Frame, FrameCodec, Outgoing};
use crate::messages::{self as m, request};
use crate::range::to_options;

/// How a guest waits.
#[derive(Clone, Debug, Default)]
pub struct GuestOptions {
    /// How long one request waits for its answer (`None`: forever, as Node's guest). A leader
    /// that is stopped but keeps its socket open is only noticed this way.
    pub call_timeout: Option<Duration>,
}

/// What the connection task routes an iterator's replies to.
pub(crate) enum IterReply {
    Data(Vec<Vec<u8>>),
    End,
    Error(String),
}

#[derive(Default)]
struct Routes {
    next_call: u32,
    next_iter: u32,
    calls: HashMap<u32, oneshot::Sender<Reply>>,
    iterators: HashMap<u32, mpsc::UnboundedSender<IterReply>>,
}

/// Ids start at 1 and skip 0 when they wrap, as many-level's.
fn next_id(counter: &mut u32) -> u32 {
    *counter = counter.wrapping_add(1).max(1);
    *counter
}

pub(crate) struct Shared {
    routes: Mutex<Routes>,
    /// Frames for the connection task, each with the flag it sets once the frame is written.
    out: mpsc::UnboundedSender<(Outgoing, Option<Arc<AtomicBool>>)>,
    lost: CancellationToken,
    closed: AtomicBool,
    options: GuestOptions,
}

impl Shared {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        // Every critical section is a map insert or remove: a poisoned lock is still whole.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        if self.lost.is_cancelled() {
            return Err(Error::LeaderLost);
        }
        Ok(())
    }

    pub(crate) fn send(&self, message: Outgoing) -> Result<()> {
        self.out
            .send((message, None))
            .map_err(|_| Error::LeaderLost)
    }

    /// [`Shared::send`], setting `written` once the frame is in the socket.
    fn send_tracked(&self, message: Outgoing, written: Arc<AtomicBool>) -> Result<()> {
        self.out
            .send((message, Some(written)))
            .map_err(|_| Error::LeaderLost)
    }

    /// Registers an iterator: its id and the channel of its replies.
    pub(crate) fn register_iterator(&self) -> Result<(u32, mpsc::UnboundedReceiver<IterReply>)> {
        self.check_open()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut routes = self.routes();
        let id = next_id(&mut routes.next_iter);
        routes.iterators.insert(id, tx);
        Ok((id, rx))
    }

    pub(crate) fn unregister_iterator(&self, id: u32) {
        if self.routes().iterators.remove(&id).is_some() {
            let _ = self.send(Outgoing::new(
                request::ITERATOR_CLOSE,
                &m::IteratorClose { id },
            ));
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn call_timeout(&self) -> Option<Duration> {
        self.options.call_timeout
    }

    pub(crate) fn lost(&self) -> &CancellationToken {
        &self.lost
    }
}

/// A many-level client over one connection. Clones share the connection.
#[derive(Clone)]
pub struct Guest {
    shared: Arc<Shared>,
}

impl Guest {
    /// A guest on `stream` (already connected); spawns its connection task.
    pub fn new<S>(stream: S, options: GuestOptions) -> Guest
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (out, mut out_rx) = mpsc::unbounded_channel::<(Outgoing, Option<Arc<AtomicBool>>)>();
        let shared = Arc::new(Shared {
            routes: Mutex::new(Routes::default()),
            out,
            lost: CancellationToken::new(),
            closed: AtomicBool::new(false),
            options,
        });
        let (read, write) = tokio::io::split(stream);
        let task = shared.clone();
        tokio::spawn(async move {
            let mut frames = FramedRead::new(read, FrameCodec::default());
            let mut sink = FramedWrite::new(write, FrameCodec::default());
            loop {
                tokio::select! {
                    _ = task.lost.cancelled() => break,
                    message = out_rx.recv() => {
                        let Some((message, written)) = message else { break };
                        if sink.send(message).await.is_err() {
                            break;
                        }
                        if let Some(written) = written {
                            written.store(true, Ordering::SeqCst);
                        }
                    }
                    frame = frames.next() => match frame {
                        Some(Ok(Frame::Payload(payload))) => route(&task, &payload),
                        Some(Ok(Frame::Oversized(_))) => {
                            tracing::warn!("the Level leader sent an oversized frame; dropped");
                        }
                        Some(Err(_)) | None => break,
                    },
                }
            }
            // Every waiter fails with LeaderLost (its sender is dropped).
            task.lost.cancel();
            let mut routes = task.routes();
            routes.calls.clear();
            routes.iterators.clear();
        });
        Guest { shared }
    }

    /// Resolves when the connection has ended (the leader is gone, or the guest closed).
    pub async fn disconnected(&self) {
        self.shared.lost.cancelled().await;
    }

    /// Sends a point request built for `id` and waits for its reply.
    async fn call(&self, build: impl FnOnce(u32) -> Outgoing) -> Result<Reply> {
        self.call_tracked(build, None).await
    }

    /// [`Guest::call`], setting `written` once the request is in the socket (so a lost
    /// connection can tell a request the leader may have received from one it cannot have).
    async fn call_tracked(
        &self,
        build: impl FnOnce(u32) -> Outgoing,
        written: Option<Arc<AtomicBool>>,
    ) -> Result<Reply> {
        self.shared.check_open()?;
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut routes = self.shared.routes();
            let id = next_id(&mut routes.next_call);
            routes.calls.insert(id, tx);
            id
        };
        let sent = match written {
            Some(written) => self.shared.send_tracked(build(id), written),
            None => self.shared.send(build(id)),
        };
        if let Err(e) = sent {
            self.shared.routes().calls.remove(&id);
            return Err(e);
        }
        let answer = async { rx.await.map_err(|_| Error::LeaderLost) };
        match self.shared.options.call_timeout {
            Some(limit) => match tokio::time::timeout(limit, answer).await {
                Ok(reply) => reply,
                Err(_) => {
                    self.shared.routes().calls.remove(&id);
                    Err(Error::Timeout { waited: limit })
                }
            },
            None => answer.await,
        }
    }

    /// A write that expects an empty callback. It is never re-sent: lost after it reached the
    /// socket, it may or may not have been applied, and it fails with an error of kind
    /// `LeaderLost` that rave does not retry; lost before (the leader was already gone), it
    /// cannot have been, and it fails with [`Error::LeaderLost`], which rave retries on the
    /// next leader.
    async fn write(&self, build: impl FnOnce(u32) -> Outgoing) -> Result<()> {
        let written = Arc::new(AtomicBool::new(false));
        let reply = match self.call_tracked(build, Some(written.clone())).await {
            Err(Error::LeaderLost) if written.load(Ordering::SeqCst) => {
                return Err(Error::Remote {
                    kind: rave_api::ErrorKind::LeaderLost,
                    message: "the Level leader was lost with a write in flight: it may or may \
                              not have been applied, and it is not re-sent"
                        .into(),
                });
            }
            other => other?,
        };
        match reply {
            Reply::Callback(m::Callback { error: None, .. }) => Ok(()),
            Reply::Callback(m::Callback {
                error: Some(code), ..
            }) => Err(codes::error_of(&code)),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(reply: &Reply) -> Error {
    Error::protocol(format!("the Level leader answered with {reply:?}"))
}

/// Hands a reply to whoever waits for it; replies nobody waits for are dropped.
fn route(shared: &Shared, payload: &[u8]) {
    let reply = match decode_reply(payload) {
        Ok(reply) => reply,
        Err(bad) => {
            tracing::warn!(why = %bad.why, "an undecodable reply from the Level leader; dropped");
            return;
        }
    };
    let mut routes = shared.routes();
    let (id, message) = match reply {
        Reply::Callback(m::Callback { id, .. })
        | Reply::GetManyCallback(m::GetManyCallback { id, .. }) => {
            if let Some(waiter) = routes.calls.remove(&id) {
                let _ = waiter.send(reply);
            }
            return;
        }
        // This guest never seeks, so every message of an iterator is of its seq 0.
        Reply::IteratorData(d) if d.seq == 0 => (d.id, IterReply::Data(d.data)),
        Reply::IteratorEnd(e) if e.seq == 0 => (e.id, IterReply::End),
        Reply::IteratorError(e) if e.seq == 0 => (e.id, IterReply::Error(e.error)),
        _ => return,
    };
    if let Some(it) = routes.iterators.get(&id) {
        let _ = it.send(message);
    }
}

fn put_op(op: BatchOp) -> m::Operation {
    match op {
        BatchOp::Put { key, value } => m::Operation {
            r#type: "put".into(),
            key,
            value: Some(value),
        },
        BatchOp::Del { key } => m::Operation {
            r#type: "del".into(),
            key,
            value: None,
        },
    }
}

#[async_trait]
impl KvStore for Guest {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let reply = self
            .call(|id| {
                Outgoing::new(
                    request::GET,
                    &m::Get {
                        id,
                        key: key.to_vec(),
                    },
                )
            })
            .await?;
        match reply {
            Reply::Callback(m::Callback {
                error: Some(code), ..
            }) if code == codes::NOT_FOUND => Ok(None),
            Reply::Callback(m::Callback {
                error: Some(code), ..
            }) => Err(codes::error_of(&code)),
            Reply::Callback(m::Callback { value, .. }) => Ok(value),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let reply = self
            .call(|id| {
                Outgoing::new(
                    request::GET_MANY,
                    &m::GetMany {
                        id,
                        keys: keys.to_vec(),
                    },
                )
            })
            .await?;
        match reply {
            Reply::GetManyCallback(m::GetManyCallback {
                error: Some(code), ..
            }) => Err(codes::error_of(&code)),
            Reply::GetManyCallback(m::GetManyCallback { values, .. })
                if values.len() == keys.len() =>
            {
                Ok(values.into_iter().map(|v| v.value).collect())
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(|id| {
            let put = m::Put {
                id,
                key: key.to_vec(),
                value: Some(value.to_vec()),
            };
            Outgoing::new(request::PUT, &put)
        })
        .await
    }

    async fn del(&self, key: &[u8]) -> Result<()> {
        self.write(|id| {
            Outgoing::new(
                request::DELETE,
                &m::Delete {
                    id,
                    key: key.to_vec(),
                },
            )
        })
        .await
    }

    async fn batch(&self, ops: Vec<BatchOp>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        self.write(|id| {
            let ops = ops.into_iter().map(put_op).collect();
            Outgoing::new(request::BATCH, &m::Batch { id, ops })
        })
        .await
    }

    async fn iterator(&self, range: Range) -> Result<Box<dyn KvIterator>> {
        Ok(Box::new(iter::GuestIter::open(self.shared.clone(), range)?))
    }

    async fn clear(&self, range: Range) -> Result<()> {
        if range.limit == Some(0) {
            return Ok(());
        }
        self.write(|id| {
            let options = to_options(&range);
            Outgoing::new(
                request::CLEAR,
                &m::Clear {
                    id,
                    options: Some(options),
                },
            )
        })
        .await
    }

    /// A many-level leader keeps no exactly-once records, so the stamp cannot travel: the
    /// write is sent once and never re-sent (rave's rule is exactly once, and a re-send could
    /// apply it twice or overwrite what another process wrote meanwhile). When the connection
    /// is lost after the write reached the socket and before its answer, it may or may not have
    /// been applied: it fails with an error of kind `LeaderLost` that rave does not retry, and
    /// the caller decides (lost before, it goes to the next leader: see `Guest::write`). Conditional
    /// writes are `Unsupported` (many-level has none).
    async fn write_stamped(&self, _stamp: WriteStamp, write: Write) -> Result<()> {
        KvStore::write(self, write).await
    }

    async fn write(&self, write: Write) -> Result<()> {
        match write {
            Write::Batch(ops) => self.batch(ops).await,
            Write::Clear(range) => self.clear(range).await,
            Write::Conditional { .. } => Err(Error::Unsupported {
                message: "conditional writes through a Node (many-level) leader".into(),
            }),
        }
    }

    /// A many-level leader has no commit sequence: [`Error::Unsupported`].
    async fn sequence(&self) -> Result<u64> {
        Err(Error::Unsupported {
            message: "a Node (many-level) leader keeps no commit sequence".into(),
        })
    }

    /// A many-level leader has no change feed: [`Error::Unsupported`].
    async fn watch(&self, _range: Range, _from: Option<u64>) -> Result<WatchStream> {
        Err(Error::Unsupported {
            message: "a Node (many-level) leader has no change feed to watch".into(),
        })
    }

    async fn close(&self) -> Result<()> {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.lost.cancel();
        Ok(())
    }
}
