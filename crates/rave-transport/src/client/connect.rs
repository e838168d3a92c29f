//! Connecting: the handshake, then the reader task that feeds the connection state.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use rave_api::{Error, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::outbox::{Outbox, flush_task};
use super::state::{LostOnDrop, Shared, State, Status};
use super::watchdog::watchdog;
use super::{Client, Handle, Welcome};
use crate::wire::{self, ClientMessage, Limits, MAGIC, PROTOCOL_VERSION, ServerMessage};

impl Client {
    /// Performs the handshake on `stream` and starts the connection's background tasks.
    ///
    /// Fails with [`rave_api::ErrorKind::Protocol`] when the peer is not a rave leader of this
    /// protocol version (junk, a refusal, or no Welcome within
    /// [`Limits::handshake_timeout`]), and with [`Error::LeaderLost`] when the peer closes or
    /// resets the connection during the handshake (a leader that is going away: elect again).
    pub async fn connect<S>(stream: S, limits: Limits) -> Result<(Client, Welcome)>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (read_half, write_half) = tokio::io::split(stream);
        let mut reader = FramedRead::new(read_half, limits.codec());
        let mut writer = FramedWrite::new(write_half, limits.codec());
        let welcome = match tokio::time::timeout(
            limits.handshake_timeout,
            handshake(&mut reader, &mut writer),
        )
        .await
        {
            Ok(result) => result?,
            Err(_) => {
                return Err(Error::protocol(format!(
                    "no Welcome within {:?}: not a rave leader",
                    limits.handshake_timeout
                )));
            }
        };

        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                status: Status::Connected,
                pending: HashMap::new(),
                iters: HashMap::new(),
                watches: HashMap::new(),
            }),
            lost: CancellationToken::new(),
        });
        let stop = CancellationToken::new();
        // The handshake's frame is written (`send` flushes), so nothing is left in its buffer.
        let out = Arc::new(Outbox::new(
            Box::new(writer.into_inner()),
            limits.send_buffer_bytes,
        ));
        tokio::spawn(read_task(reader, shared.clone(), stop.clone()));
        tokio::spawn(flush_task(out.clone(), shared.clone(), stop.clone()));
        if let Some(limit) = limits.call_timeout {
            tokio::spawn(watchdog(limit, shared.clone(), stop.clone()));
        }
        let handle = Handle {
            shared,
            out,
            limits,
            next_id: AtomicU64::new(1),
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
        };
        Ok((
            Client {
                handle: Arc::new(handle),
            },
            welcome,
        ))
    }
}

async fn handshake<S>(
    reader: &mut FramedRead<ReadHalf<S>, LengthDelimitedCodec>,
    writer: &mut FramedWrite<WriteHalf<S>, LengthDelimitedCodec>,
) -> Result<Welcome>
where
    S: AsyncRead + AsyncWrite,
{
    let hello = wire::encode(&ClientMessage::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
    })?;
    writer.send(hello).await.map_err(|_| Error::LeaderLost)?;
    let frame = match reader.next().await {
        Some(Ok(frame)) => frame,
        Some(Err(e)) => return Err(read_error(&e)),
        None => return Err(Error::LeaderLost),
    };
    match wire::decode::<ServerMessage>(&frame)? {
        ServerMessage::Welcome {
            version,
            epoch,
            pid,
        } if version == PROTOCOL_VERSION => Ok(Welcome {
            version,
            epoch,
            pid,
        }),
        ServerMessage::Welcome { version, .. } => Err(Error::protocol(format!(
            "the leader speaks protocol version {version}, this client {PROTOCOL_VERSION}"
        ))),
        ServerMessage::Refused { message } => Err(Error::protocol(format!(
            "the leader refused the connection: {message}"
        ))),
        _ => Err(Error::protocol("the leader did not start with Welcome")),
    }
}

fn read_error(e: &std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Error::protocol(format!("bad frame from the leader: {e}"))
    } else {
        Error::LeaderLost
    }
}

async fn read_task<S: AsyncRead>(
    mut reader: FramedRead<ReadHalf<S>, LengthDelimitedCodec>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let _lost = LostOnDrop(shared.clone());
    let read = async {
        loop {
            let frame = match reader.next().await {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return read_error(&e),
                None => return Error::LeaderLost,
            };
            let dispatched =
                wire::decode::<ServerMessage>(&frame).and_then(|message| shared.dispatch(message));
            if let Err(e) = dispatched {
                return e;
            }
        }
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = shared.lost.cancelled() => {}
        why = read => {
            tracing::debug!(error = %why, "lost the connection to the leader");
        }
    }
}
