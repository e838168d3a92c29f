//! Is `interprocess`'s local socket slower than tokio's own `UnixStream`? A ping-pong of rave's
//! P1 sizes (53 B out, 143 B back) between two processes, both ends on tokio, over each stream
//! type in alternating rounds of one run, so machine noise falls on both alike.
//!
//! `cargo run --release -p rave-election --example socket_ping_pong [rounds] [ops per round]`
//!
//! Prints each round's p50 and the median (and range) of the per-pair p50 ratios
//! interprocess / tokio. Unix only: the question is about the unix-socket path.

#[cfg(unix)]
mod bench {
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    use interprocess::local_socket::tokio::{Listener, Stream, prelude::*};
    use interprocess::local_socket::{GenericFilePath, ListenerOptions};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::{UnixListener, UnixStream};

    const REQUEST: usize = 53;
    const RESPONSE: usize = 143;

    type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

    /// Answers every 53-byte request with 143 bytes until the peer hangs up.
    async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
        let mut req = [0u8; REQUEST];
        let reply = [2u8; RESPONSE];
        while s.read_exact(&mut req).await.is_ok() {
            if s.write_all(&reply).await.is_err() {
                return;
            }
        }
    }

    /// The server process: one tokio listener and one interprocess listener.
    pub async fn serve(dir: &Path) -> Res<()> {
        let tokio_listener = UnixListener::bind(dir.join("tokio.sock"))?;
        let name = dir.join("ipc.sock").to_fs_name::<GenericFilePath>()?;
        let ipc_listener: Listener = ListenerOptions::new().name(name).create_tokio()?;
        println!("ready");
        tokio::spawn(async move {
            while let Ok((s, _)) = tokio_listener.accept().await {
                tokio::spawn(echo(s));
            }
        });
        while let Ok(s) = ipc_listener.accept().await {
            tokio::spawn(echo(s));
        }
        Ok(())
    }

    /// `n` round trips; latencies in µs.
    async fn rounds<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, n: usize) -> Res<Vec<f64>> {
        let req = [1u8; REQUEST];
        let mut reply = [0u8; RESPONSE];
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            s.write_all(&req).await?;
            s.read_exact(&mut reply).await?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(lat)
    }

    fn p50(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    pub async fn measure(rounds_n: usize, ops: usize) -> Res<()> {
        let dir = tempfile::tempdir()?;
        let mut server = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut ready = String::new();
        let stdout = server.stdout.take().ok_or("no server stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready)?;
        let mut tokio_s = UnixStream::connect(dir.path().join("tokio.sock")).await?;
        let name = dir
            .path()
            .join("ipc.sock")
            .to_fs_name::<GenericFilePath>()?;
        let mut ipc_s = Stream::connect(name).await?;
        // Warm both paths up before measuring.
        rounds(&mut tokio_s, ops).await?;
        rounds(&mut ipc_s, ops).await?;
        let mut ratios = Vec::new();
        let (mut all_t, mut all_i) = (Vec::new(), Vec::new());
        for round in 0..rounds_n {
            // Alternate which goes first, so neither always follows the other.
            let (t, i) = if round % 2 == 0 {
                let t = rounds(&mut tokio_s, ops).await?;
                (t, rounds(&mut ipc_s, ops).await?)
            } else {
                let i = rounds(&mut ipc_s, ops).await?;
                (rounds(&mut tokio_s, ops).await?, i)
            };
            all_t.extend_from_slice(&t);
            all_i.extend_from_slice(&i);
            let (pt, pi) = (p50(t), p50(i));
            println!("round {round:2}: tokio p50 {pt:6.2} µs   interprocess p50 {pi:6.2} µs");
            ratios.push(pi / pt);
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "all rounds: tokio p50 {:.2} µs, interprocess p50 {:.2} µs ({} round trips each)",
            p50(all_t),
            p50(all_i),
            rounds_n * ops
        );
        println!(
            "interprocess / tokio, per-round p50 ratio: median {:.3} (min {:.3}, max {:.3})",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
        server.kill()?;
        server.wait()?;
        Ok(())
    }
}

#[cfg(unix)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        let dir = args.get(2).ok_or("serve needs a directory")?;
        return bench::serve(std::path::Path::new(dir)).await;
    }
    let rounds = args.get(1).map_or(Ok(20), |s| s.parse())?;
    let ops = args.get(2).map_or(Ok(5_000), |s| s.parse())?;
    bench::measure(rounds, ops).await
}

#[cfg(not(unix))]
fn main() {
    eprintln!("socket_ping_pong measures the unix-socket path; nothing to do here");
}
