//! The leader's side: serves any [`KvStore`] to followers.
//!
//! [`serve`] runs the accept loop of a unix socket; [`serve_connection`] runs one connection
//! (any byte stream, so tests can use a socket pair). Each connection:
//! - must complete the handshake within [`Limits::handshake_timeout`];
//! - answers at once, on the connection's own task, every request the store can answer without
//!   waiting (point reads of an engine with concurrent readers, pings), and runs one task per
//!   request that must wait (pipelining: replies go out as they finish, in any order); it stops
//!   reading its socket while [`Limits::max_in_flight`] request tasks are running;
//! - runs one task per open iterator, which never sends beyond the credit the follower granted
//!   (in bytes of entries, one entry of overdraft);
//! - writes every frame itself (tasks hand theirs over a bounded channel), one flush per burst,
//!   so a follower that stops reading stalls only its own connection, in bounded memory;
//! - ends every task it started when it ends, whether the follower left, broke the protocol, or
//!   the connection future was dropped (the tasks live in a [`JoinSet`], which aborts them on
//!   drop).
//!
//! When the store answers [`ErrorKind::Closed`] (the leader is closing), the connection closes
//! without replying, so the follower re-elects and retries instead of seeing an error.
//!
//! Shutdown of [`serve`] is signalled with a `tokio_util::sync::CancellationToken` (available
//! without any extra tokio-util feature).

mod accept;
mod connection;
mod iter;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rave_api::{Error, ErrorKind, KvStore, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

pub use accept::{serve, serve_counted};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::Limits;
use crate::wire::{self, ClientMessage, MAGIC, PROTOCOL_VERSION, ServerMessage};
use connection::{Connection, Ctx, Fatal};

/// What the leader tells each follower in [`ServerMessage::Welcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The leader's epoch.
    pub epoch: u64,
    /// The leader's process id.
    pub pid: u32,
}

/// The number of connections a server has open (each from its accept to its end), shared with
/// whoever wants to read it: the leader's own handle, and [`crate::wire::Op::Stats`].
#[derive(Clone, Debug, Default)]
pub struct ConnectionCount(Arc<AtomicU64>);

impl ConnectionCount {
    /// The connections open now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one connection until the guard drops.
    pub(crate) fn enter(&self) -> ConnectionGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }
}

/// One open connection of a [`ConnectionCount`].
pub(crate) struct ConnectionGuard(ConnectionCount);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Frames queued towards one connection's writer. Producers hold an in-flight permit or
/// iterator credit while they wait here, so memory stays bounded.
const OUT_QUEUE: usize = 64;

type Reader<S> = FramedRead<ReadHalf<S>, LengthDelimitedCodec>;
type Writer<S> = FramedWrite<WriteHalf<S>, LengthDelimitedCodec>;

/// Serves `store` on one connection until the follower leaves, breaks the protocol or the store
/// closes.
///
/// Returns `Ok(())` when the follower closed (or reset) the connection, `Err` of kind
/// [`ErrorKind::Protocol`] when it broke the protocol (after a best-effort
/// [`ServerMessage::Refused`]), [`ErrorKind::Closed`] when the store closed, and an I/O error
/// when the socket failed. Dropping the returned future ends every task it started.
pub async fn serve_connection<S>(
    stream: S,
    store: Arc<dyn KvStore>,
    info: ServerInfo,
    limits: Limits,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let connections = ConnectionCount::default();
    let _counted = connections.enter();
    serve_counted_connection(stream, store, info, limits, connections).await
}

/// [`serve_connection`], counted in `connections` (which its [`crate::wire::Op::Stats`] reports).
pub(crate) async fn serve_counted_connection<S>(
    stream: S,
    store: Arc<dyn KvStore>,
    info: ServerInfo,
    limits: Limits,
    connections: ConnectionCount,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = FramedRead::new(read_half, limits.codec());
    let mut writer = FramedWrite::new(write_half, limits.codec());
    match tokio::time::timeout(
        limits.handshake_timeout,
        handshake(&mut reader, &mut writer, info),
    )
    .await
    {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(Error::protocol(format!(
                "no handshake within {:?}",
                limits.handshake_timeout
            )));
        }
    }

    let (out, out_rx) = mpsc::channel(OUT_QUEUE);
    let ctx = Arc::new(Ctx {
        store,
        connections,
        limits,
        out,
        fatal: Arc::new(Fatal::default()),
    });
    let mut conn = Connection {
        ctx,
        out_rx,
        tasks: JoinSet::new(),
        iters: HashMap::new(),
        iter_tasks: HashMap::new(),
        watches: HashMap::new(),
        watch_tasks: HashMap::new(),
        running_requests: 0,
    };
    let outcome = conn.run(&mut reader, &mut writer).await;
    conn.finish(&outcome, writer).await;
    outcome
}

/// Reads the Hello, answers Welcome or Refused. `Ok(false)`: the peer left without a word.
async fn handshake<S>(
    reader: &mut Reader<S>,
    writer: &mut Writer<S>,
    info: ServerInfo,
) -> Result<bool>
where
    S: AsyncRead + AsyncWrite,
{
    let frame = match reader.next().await {
        Some(Ok(frame)) => frame,
        Some(Err(e)) => {
            let err = read_error(&e);
            if err.kind() == ErrorKind::Protocol {
                refuse(writer, &err.to_string()).await;
            }
            return Err(err);
        }
        // A peer that only probed whether someone listens: not an error.
        None => return Ok(false),
    };
    let problem = match wire::decode::<ClientMessage>(&frame) {
        Ok(ClientMessage::Hello { magic, version }) => {
            if magic != MAGIC {
                format!("bad magic {magic:#010x}: not a rave client")
            } else if version != PROTOCOL_VERSION {
                format!(
                    "protocol version {version} is not supported (this leader speaks {PROTOCOL_VERSION})"
                )
            } else {
                let welcome = wire::encode(&ServerMessage::Welcome {
                    version: PROTOCOL_VERSION,
                    epoch: info.epoch,
                    pid: info.pid,
                })?;
                writer
                    .send(welcome)
                    .await
                    .map_err(|e| Error::io("send Welcome", &e))?;
                return Ok(true);
            }
        }
        Ok(_) => "the first message must be Hello".to_string(),
        Err(e) => e.to_string(),
    };
    refuse(writer, &problem).await;
    Err(Error::protocol(problem))
}

/// Best effort: tells the peer why it is being dropped and closes our side.
async fn refuse<S: AsyncRead + AsyncWrite>(writer: &mut Writer<S>, message: &str) {
    if let Ok(frame) = wire::encode(&ServerMessage::Refused {
        message: message.to_string(),
    }) {
        let _ = writer.send(frame).await;
    }
    let _ = SinkExt::<Bytes>::close(writer).await;
}

/// The classification of a failed frame read: bad framing is the peer's fault (protocol),
/// anything else is the socket's.
fn read_error(e: &std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Error::protocol(format!("bad frame: {e}"))
    } else if is_truncated_frame(e) {
        // The follower hung up in the middle of a frame: its fault, not the socket's (found by
        // the `dispatch` fuzz target; see tests/fuzz_regressions.rs).
        Error::protocol("the follower hung up in the middle of a frame")
    } else {
        Error::io("read from a follower", e)
    }
}

/// Whether `e` is the codec's complaint about EOF inside a frame. tokio-util reports it as
/// `io::Error::other("bytes remaining on stream")` and offers nothing more specific to test.
fn is_truncated_frame(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other && e.to_string() == "bytes remaining on stream"
}
