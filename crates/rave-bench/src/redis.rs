//! Redis as a baseline: a private `redis-server` on a unix socket in a temporary directory,
//! measured with `redis-benchmark`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rave::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Why the Redis rows are skipped, when they are: the binaries are not installed.
pub fn missing() -> Option<String> {
    let absent: Vec<&str> = ["redis-server", "redis-benchmark"]
        .into_iter()
        .filter(|b| which(b).is_none())
        .collect();
    if absent.is_empty() {
        None
    } else {
        Some(format!(
            "{} not installed (Debian: apt-get install redis-server redis-tools)",
            absent.join(" and ")
        ))
    }
}

fn which(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

/// A running redis-server, stopped when dropped.
pub struct Redis {
    socket: PathBuf,
    child: Child,
}

/// What one redis-benchmark run measured.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Requests per second.
    pub rps: f64,
    /// The median latency, in microseconds.
    pub p50_us: f64,
    /// The 99th percentile latency, in microseconds.
    pub p99_us: f64,
}

impl Redis {
    /// Starts redis-server on `<dir>/redis.sock`, without persistence, and waits until it
    /// answers PING.
    pub async fn start(dir: &Path) -> Result<Redis> {
        Redis::start_with(dir, &[]).await
    }

    /// [`Redis::start`] with more `--name value` settings.
    pub async fn start_with(dir: &Path, settings: &[(&str, &str)]) -> Result<Redis> {
        let socket = dir.join("redis.sock");
        let mut command = Command::new("redis-server");
        for (name, value) in settings {
            command.arg(format!("--{name}")).arg(value);
        }
        let child = command
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::io("start redis-server", &e))?;
        let redis = Redis { socket, child };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if redis.ping().await.is_ok() {
                return Ok(redis);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::other("redis-server did not answer PING within 10 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn ping(&self) -> Result<()> {
        let mut s = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| Error::io("connect to redis", &e))?;
        s.write_all(b"PING\r\n")
            .await
            .map_err(|e| Error::io("write to redis", &e))?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf)
            .await
            .map_err(|e| Error::io("read from redis", &e))?;
        if &buf == b"+PONG\r\n" {
            Ok(())
        } else {
            Err(Error::protocol("redis did not answer +PONG"))
        }
    }

    /// Writes `keys` keys of `value_size` bytes, the same keys the rave figures read
    /// (`key:` and 12 digits): SETs of random keys until each key was most likely written.
    pub async fn populate(&self, keys: usize, value_size: usize) -> Result<()> {
        // 8 × keys random SETs leave a key unwritten with probability e^-8 (0.03 %); an
        // unwritten key costs Redis less, never more, so this never flatters rave.
        self.bench("set", keys * 8, keys, value_size, 64, 1)
            .await
            .map(|_| ())
    }

    /// `redis-benchmark -c 1 -P <pipeline> -t get` over the socket.
    pub async fn get(
        &self,
        requests: usize,
        keys: usize,
        value_size: usize,
        pipeline: usize,
    ) -> Result<Measured> {
        self.bench("get", requests, keys, value_size, pipeline, 1)
            .await
    }

    /// `redis-benchmark -c <clients> -P 1 -t get`: `clients` connections, one request in
    /// flight on each.
    pub async fn get_clients(
        &self,
        requests: usize,
        keys: usize,
        value_size: usize,
        clients: usize,
    ) -> Result<Measured> {
        self.bench("get", requests, keys, value_size, 1, clients)
            .await
    }

    /// The server's process id (none once it was reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `redis-benchmark -c <clients> -t <test>`: `requests` commands over `keys` random keys
    /// with values of `value_size` bytes, `pipeline` at a time per client.
    async fn bench(
        &self,
        test: &str,
        requests: usize,
        keys: usize,
        value_size: usize,
        pipeline: usize,
        clients: usize,
    ) -> Result<Measured> {
        let (requests, keys) = (requests.to_string(), keys.to_string());
        let (value_size, pipeline) = (value_size.to_string(), pipeline.to_string());
        let clients = clients.max(1).to_string();
        let args = [
            "-t",
            test,
            "-n",
            &requests,
            "-r",
            &keys,
            "-d",
            &value_size,
            "-c",
            &clients,
            "-P",
            &pipeline,
        ];
        let out = Command::new("redis-benchmark")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .args(["--csv", "--precision", "3"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| Error::io("run redis-benchmark", &e))?;
        if !out.status.success() {
            return Err(Error::other(format!(
                "redis-benchmark failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        parse_csv(&String::from_utf8_lossy(&out.stdout))
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Parses redis-benchmark's `--csv` output: a header line, then one line per test with
/// `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...,"p99_latency_ms",...`.
fn parse_csv(text: &str) -> Result<Measured> {
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| {
            l.split(',')
                .map(|f| f.trim().trim_matches('"').to_string())
                .collect()
        })
        .collect();
    let header = rows
        .iter()
        .find(|r| r.first().is_some_and(|f| f == "test"))
        .ok_or_else(|| {
            Error::protocol(format!("no CSV header in redis-benchmark's output: {text}"))
        })?;
    let data = rows
        .iter()
        .find(|r| r.first().is_some_and(|f| f != "test" && !f.is_empty()))
        .ok_or_else(|| {
            Error::protocol(format!("no CSV row in redis-benchmark's output: {text}"))
        })?;
    let column = |name: &str| -> Result<f64> {
        let i = header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::protocol(format!("redis-benchmark's CSV has no {name}")))?;
        data.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::protocol(format!("redis-benchmark's CSV has a bad {name}")))
    };
    Ok(Measured {
        rps: column("rps")?,
        p50_us: column("p50_latency_ms")? * 1000.0,
        p99_us: column("p99_latency_ms")? * 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_of_redis_benchmark_7_parses() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"GET\",\"45045.05\",\"0.020\",\"0.008\",\"0.015\",\"0.031\",\"0.055\",\"1.223\"\n";
        let m = parse_csv(text).unwrap();
        assert_eq!(m.rps, 45045.05);
        assert!((m.p50_us - 15.0).abs() < 1e-9);
        assert!((m.p99_us - 55.0).abs() < 1e-9);
        assert!(parse_csv("garbage").is_err());
    }
}
