//! The host: serves any [`KvStore`] to many-level guests (Node's `rave-level` followers, or
//! abstract-level's suite through `many-level`'s guest), one task per connection.
//!
//! Point requests run concurrently and are answered as they finish (many-level matches replies
//! by id; Node's own host answers out of order too), at most [`HostOptions::max_in_flight`] at a
//! time per connection: beyond it the connection stops reading. Each iterator is a task of its
//! own ([`iter`]) driven by the guest's acks. Every request that decodes far enough to name its
//! id is answered, with an error code when it is malformed: Node drops such a request silently,
//! and its sender then waits forever.

mod iter;
mod point;

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::{SinkExt, Stream, StreamExt};
use rave_api::KvStore;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::codec::{Request, Undecodable, decode_request, salvage};
use crate::codes;
use crate::frame::{DEFAULT_MAX_FRAME, Frame, FrameCodec, Outgoing};
use crate::messages::{self as m, reply, request};

/// How a host serves.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// The largest request accepted whole (an oversized one is answered with an error).
    pub max_frame: usize,
    /// Point requests of one connection running at once.
    pub max_in_flight: usize,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            max_frame: DEFAULT_MAX_FRAME,
            max_in_flight: 256,
        }
    }
}

/// Serves every connection `incoming` yields until `shutdown` is cancelled; then stops
/// accepting, ends every connection and returns once their tasks are gone.
pub async fn serve<S, I>(
    mut incoming: I,
    store: Arc<dyn KvStore>,
    options: HostOptions,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
    I: Stream<Item = std::io::Result<S>> + Unpin,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = incoming.next() => match accepted {
                Some(Ok(stream)) => {
                    connections.spawn(serve_stream(
                        stream,
                        store.clone(),
                        options.clone(),
                        shutdown.clone(),
                    ));
                }
                Some(Err(e)) => {
                    tracing::warn!(%e, "accepting a many-level connection failed");
                    // A persistent accept error (EMFILE) must not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Serves one guest on `stream` until it hangs up or `shutdown` is cancelled.
pub async fn serve_stream<S>(
    stream: S,
    store: Arc<dyn KvStore>,
    options: HostOptions,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let mut frames = FramedRead::new(read, FrameCodec::new(options.max_frame));
    // Replies go through one writer task; iterators hold senders too. Bounded: a guest that
    // does not read makes the senders wait, not the leader's memory grow.
    let (out, mut out_rx) = mpsc::channel::<Outgoing>(64);
    let writer = tokio::spawn(async move {
        let mut sink = FramedWrite::new(write, FrameCodec::default());
        while let Some(first) = out_rx.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            while let Ok(more) = out_rx.try_recv() {
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut pending = FuturesUnordered::new();
    let mut iterators: HashMap<u32, iter::Handle> = HashMap::new();
    // Set when the guest has finished sending: its iterators close, and the requests it sent
    // are still answered (over a half-closed stream) before the connection ends.
    let mut finished = false;
    loop {
        if finished && pending.is_empty() {
            break;
        }
        let reading = !finished && pending.len() < options.max_in_flight;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(reply) = pending.next(), if !pending.is_empty() => {
                if out.send(reply).await.is_err() {
                    break;
                }
            }
            frame = frames.next(), if reading => {
                let payload = match frame {
                    Some(Ok(Frame::Payload(payload))) => payload,
                    Some(Ok(Frame::Oversized(head))) => {
                        let why = format!("a request over {} bytes", options.max_frame);
                        if let Some(answer) = refusal(&salvage(&head, why)) {
                            pending.push(point::ready(answer));
                        }
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(%e, "a many-level guest sent unframable bytes");
                        break;
                    }
                    None => {
                        finished = true;
                        iterators.clear();
                        continue;
                    }
                };
                match decode_request(&payload) {
                    Ok(Request::Iterator(open)) => {
                        iterators.retain(|_, it| !it.is_finished());
                        // A second open of a live id is ignored, as Node's host does.
                        if let std::collections::hash_map::Entry::Vacant(place) =
                            iterators.entry(open.id)
                        {
                            place.insert(iter::open(store.clone(), open, out.clone()).await);
                        }
                    }
                    Ok(Request::IteratorAck(ack)) => {
                        if let Some(it) = iterators.get(&ack.id) {
                            it.ack(ack.seq, ack.consumed);
                        }
                    }
                    Ok(Request::IteratorSeek(seek)) => {
                        if let Some(it) = iterators.get(&seek.id) {
                            it.seek(seek.seq, seek.target);
                        }
                    }
                    Ok(Request::IteratorClose(close)) => {
                        iterators.remove(&close.id);
                    }
                    Ok(other) => pending.push(point::run(store.clone(), other)),
                    Err(bad) => {
                        tracing::debug!(why = %bad.why, "an undecodable many-level request");
                        if let Some(answer) = refusal(&bad) {
                            pending.push(point::ready(answer));
                        }
                    }
                }
            }
        }
    }
    // Dropping the handles ends the iterator tasks; the writer ends with the last sender.
    drop(iterators);
    drop(out);
    let _ = writer.await;
}

/// The error answer to a malformed request, when it names an id to answer.
fn refusal(bad: &Undecodable) -> Option<Outgoing> {
    let id = bad.id?;
    let error = codes::REMOTE_ERROR.to_string();
    match bad.tag? {
        request::GET | request::PUT | request::DELETE | request::BATCH | request::CLEAR => {
            Some(Outgoing::new(
                reply::CALLBACK,
                &m::Callback {
                    id,
                    error: Some(error),
                    value: None,
                },
            ))
        }
        request::GET_MANY => Some(Outgoing::new(
            reply::GET_MANY_CALLBACK,
            &m::GetManyCallback {
                id,
                error: Some(error),
                values: Vec::new(),
            },
        )),
        request::ITERATOR => Some(Outgoing::new(
            reply::ITERATOR_ERROR,
            &m::IteratorError {
                id,
                seq: bad.seq.unwrap_or(0),
                error,
            },
        )),
        // Close, ack and seek have no answer.
        _ => None,
    }
}
