//! The helper modes of the Redis pub/sub baseline (W1, W2): a subscriber that records
//! arrivals, a publisher that publishes one message at a time, and one that publishes as fast
//! as it can. All speak RESP over the server's unix socket from a task of a multi-thread tokio
//! runtime, as the rave side does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rave::{Error, Result};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::cli::runtime;
use crate::helper::{say, wait_for_go};
use crate::tally::{Tally, index_of, mono_ns, write_rows};
use crate::watch_helper::PREFIX;

/// A subscriber of channel [`PREFIX`].
#[derive(clap::Args, Debug, Clone)]
pub struct SubscriberArgs {
    #[arg(long)]
    socket: PathBuf,
    /// Where to write each message's arrival (`index ns` lines) at every `until`.
    #[arg(long)]
    record: Option<PathBuf>,
}

/// A publisher of `count` messages, one at a time (waiting for each reply).
#[derive(clap::Args, Debug, Clone)]
pub struct PublisherArgs {
    #[arg(long)]
    socket: PathBuf,
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Where to write `index start_ns ack_ns` lines.
    #[arg(long)]
    record: PathBuf,
}

/// A publisher that keeps `in_flight` PUBLISHes pipelined for `seconds`.
#[derive(clap::Args, Debug, Clone)]
pub struct FloodArgs {
    #[arg(long)]
    socket: PathBuf,
    #[arg(long)]
    seconds: f64,
    #[arg(long)]
    in_flight: usize,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
}

async fn connect(
    args_socket: &std::path::Path,
) -> Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf)> {
    let stream = UnixStream::connect(args_socket)
        .await
        .map_err(|e| Error::io("connect to redis", &e))?;
    let (read, write) = stream.into_split();
    Ok((BufReader::new(read), write))
}

fn io(e: std::io::Error) -> Error {
    Error::io("talk to redis", &e)
}

/// `PUBLISH w <payload>` as a RESP array.
fn publish_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = format!(
        "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{PREFIX}\r\n${}\r\n",
        PREFIX.len(),
        payload.len()
    )
    .into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

/// Message `i`: its index in 12 digits, then `value_size` filler bytes (the size of W1's key
/// and value together, within two bytes).
fn payload(i: u64, value_size: usize) -> Vec<u8> {
    let mut p = format!("{i:012}").into_bytes();
    p.resize(12 + value_size, b'x');
    p
}

/// One line of RESP, without its `\r\n`.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, line: &mut Vec<u8>) -> Result<()> {
    line.clear();
    if r.read_until(b'\n', line).await.map_err(io)? == 0 {
        return Err(Error::protocol("redis closed the connection"));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    if line.first() == Some(&b'-') {
        return Err(Error::other(format!(
            "redis: {}",
            String::from_utf8_lossy(&line[1..])
        )));
    }
    Ok(())
}

fn number(line: &[u8]) -> Result<i64> {
    std::str::from_utf8(line.get(1..).unwrap_or_default())
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::protocol(format!("redis sent {:?}", String::from_utf8_lossy(line))))
}

/// A push of scalars (`*N` then N bulk strings or integers); the bulk strings' bytes.
async fn read_push<R: AsyncBufRead + Unpin>(r: &mut R, line: &mut Vec<u8>) -> Result<Vec<Vec<u8>>> {
    read_line(r, line).await?;
    if line.first() != Some(&b'*') {
        return Err(Error::protocol("redis sent a push that is not an array"));
    }
    let n = number(line)?;
    let mut items = Vec::new();
    for _ in 0..n {
        read_line(r, line).await?;
        match line.first() {
            Some(b'$') => {
                let len = usize::try_from(number(line)?)
                    .map_err(|_| Error::protocol("redis sent a null in a push"))?;
                let mut bytes = vec![0u8; len + 2];
                r.read_exact(&mut bytes).await.map_err(io)?;
                bytes.truncate(len);
                items.push(bytes);
            }
            Some(b':') => items.push(Vec::new()),
            _ => return Err(Error::protocol("redis sent an unexpected push item")),
        }
    }
    Ok(items)
}

/// Runs the subscriber mode: `ready` once subscribed, then `until <n>` commands.
pub fn subscriber(args: &SubscriberArgs) -> Result<()> {
    let rt = runtime()?;
    let tally = Arc::new(Tally::new(args.record.is_some()));
    let _connection = rt.block_on(async {
        let (mut r, mut w) = connect(&args.socket).await?;
        w.write_all(format!("SUBSCRIBE {PREFIX}\r\n").as_bytes())
            .await
            .map_err(io)?;
        let mut line = Vec::new();
        let confirmation = read_push(&mut r, &mut line).await?;
        if confirmation.first().map(Vec::as_slice) != Some(b"subscribe") {
            return Err(Error::protocol("redis did not confirm the subscription"));
        }
        let tally = tally.clone();
        tokio::spawn(async move {
            loop {
                match read_push(&mut r, &mut line).await {
                    Ok(items) if items.len() == 3 && items[0] == b"message" => {
                        tally.arrived(mono_ns(), std::iter::once(index_of(&items[2])));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tally.fail(e.to_string());
                        return;
                    }
                }
            }
        });
        // The write half stays open as long as this process subscribes.
        Ok::<_, Error>(w)
    })?;
    say("ready");
    tally.serve(&rt, args.record.as_deref())
}

/// Runs the one-at-a-time publisher: `ready`, `go`, then `done` once every message was
/// published.
pub fn publisher(args: &PublisherArgs) -> Result<()> {
    let rt = runtime()?;
    let (mut r, mut w) = rt.block_on(connect(&args.socket))?;
    say("ready");
    wait_for_go()?;
    let (count, value_size) = (args.count as u64, args.value_size);
    let rows = rt.block_on(async move {
        tokio::spawn(async move {
            let mut line = Vec::new();
            let mut rows = Vec::with_capacity(count as usize);
            for i in 0..count {
                let frame = publish_frame(&payload(i, value_size));
                let start = mono_ns();
                w.write_all(&frame).await.map_err(io)?;
                read_line(&mut r, &mut line).await?;
                let ack = mono_ns();
                if number(&line)? < 1 {
                    return Err(Error::other("a PUBLISH reached no subscriber"));
                }
                rows.push([i, start, ack]);
            }
            Ok::<_, Error>(rows)
        })
        .await
        .map_err(|e| Error::other(format!("the publish task failed: {e}")))?
    })?;
    write_rows(&args.record, &rows)?;
    say("done");
    crate::helper::wait_for_eof();
    Ok(())
}

/// Runs the flooding publisher: `ready`, `go`, then `done <ops> <nanos> 0 <start_ns>`.
pub fn flood(args: &FloodArgs) -> Result<()> {
    let rt = runtime()?;
    let (mut r, mut w) = rt.block_on(connect(&args.socket))?;
    say("ready");
    wait_for_go()?;
    let in_flight = args.in_flight.max(1);
    // `in_flight` commands in one write, then their replies: as `redis-benchmark -P` does.
    let burst: Vec<u8> = (0..in_flight)
        .flat_map(|_| publish_frame(&payload(0, args.value_size)))
        .collect();
    let seconds = Duration::from_secs_f64(args.seconds.max(0.0));
    let (ops, nanos, start) = rt.block_on(async move {
        tokio::spawn(async move {
            let mut line = Vec::new();
            let start = mono_ns();
            let started = tokio::time::Instant::now();
            let deadline = started + seconds;
            let mut ops = 0u64;
            while tokio::time::Instant::now() < deadline {
                w.write_all(&burst).await.map_err(io)?;
                for _ in 0..in_flight {
                    read_line(&mut r, &mut line).await?;
                }
                ops += in_flight as u64;
            }
            Ok::<_, Error>((ops, started.elapsed().as_nanos(), start))
        })
        .await
        .map_err(|e| Error::other(format!("the publish task failed: {e}")))?
    })?;
    say(&format!("done {ops} {nanos} 0 {start}"));
    crate::helper::wait_for_eof();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_parse() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes: &[u8] = b"*3\r\n$7\r\nmessage\r\n$1\r\nw\r\n$5\r\n00042\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nw\r\n:1\r\n-ERR x\r\n";
        let mut r = BufReader::new(bytes);
        let mut line = Vec::new();
        let items = rt.block_on(read_push(&mut r, &mut line)).unwrap();
        assert_eq!(
            items,
            vec![b"message".to_vec(), b"w".to_vec(), b"00042".to_vec()]
        );
        assert_eq!(index_of(&items[2]), Some(42));
        let items = rt.block_on(read_push(&mut r, &mut line)).unwrap();
        assert_eq!(items[0], b"subscribe");
        assert!(rt.block_on(read_push(&mut r, &mut line)).is_err());
        let frame = publish_frame(b"ab");
        assert_eq!(frame, b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nw\r\n$2\r\nab\r\n");
        assert_eq!(payload(7, 3), b"000000000007xxx");
    }
}
