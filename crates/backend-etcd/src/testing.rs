//! Local etcd clusters for tests, benchmarks and the torture harness: `etcd` members on free
//! localhost ports, each with its own data directory in a temporary directory, killed (and
//! the directory removed) when the [`EtcdCluster`] is dropped.
//!
//! The `etcd` binary is `$RAVE_ETCD_BIN` or `etcd` on `PATH` (Debian's `etcd-server`;
//! `scripts/deps etcd` installs it). Members run with `--unsafe-no-fsync`: a member killed
//! with SIGKILL loses nothing the kernel has (its writes are in the page cache), which is the
//! fault these tests inject; a power cut is not.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rave_api::{Error, Result};

/// Limits the members are started with (so that rave's tests can write a 10 MiB value).
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// `--max-request-bytes` (default 32 MiB).
    pub max_request_bytes: usize,
    /// `--max-txn-ops` (default 16384: the suite writes batches of thousands of keys).
    pub max_txn_ops: usize,
    /// `--unsafe-no-fsync` (default on: the tests kill processes, not machines; benchmarks
    /// turn it off to measure etcd as deployed).
    pub unsafe_no_fsync: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            max_request_bytes: 32 << 20,
            max_txn_ops: 16384,
            unsafe_no_fsync: true,
        }
    }
}

/// One member: its ports, its command line and its process (when running).
struct Member {
    name: String,
    client_port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

/// A local etcd cluster of 1 or more members.
pub struct EtcdCluster {
    members: Vec<Member>,
    options: ClusterOptions,
    _dir: tempfile::TempDir,
}

/// The `etcd` binary the tests run.
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("RAVE_ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
}

/// Whether the `etcd` binary can be run here.
pub fn etcd_available() -> bool {
    Command::new(etcd_bin())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A free localhost port (bound and released: another process may take it first, rarely).
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("bind a free port", &e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("read a free port", &e))?
        .port();
    Ok(port)
}

impl EtcdCluster {
    /// Starts `members` members with default options and waits until the cluster serves.
    pub fn start(members: usize) -> Result<Self> {
        Self::start_with(members, ClusterOptions::default())
    }

    /// Starts `members` members with `options` and waits until the cluster serves. A start
    /// that fails (a port taken between choosing it and binding it, a cluster that does not
    /// become healthy in time on a loaded machine) is tried again on new ports, three times.
    pub fn start_with(members: usize, options: ClusterOptions) -> Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(members, options.clone()) {
                Ok(cluster) => return Ok(cluster),
                Err(err) if attempt < 3 => {
                    tracing::warn!(%err, attempt, "starting a local etcd cluster failed; again");
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn try_start(members: usize, options: ClusterOptions) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create a temp dir for etcd", &e))?;
        let mut ports = Vec::new();
        for i in 0..members {
            ports.push((format!("m{i}"), free_port()?, free_port()?));
        }
        let initial: Vec<String> = ports
            .iter()
            .map(|(name, _, peer)| format!("{name}=http://127.0.0.1:{peer}"))
            .collect();
        let token = format!("rave-{}-{}", std::process::id(), ports[0].1);
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            options: options.clone(),
            _dir: dir,
        };
        for (name, client, peer) in &ports {
            let data = cluster._dir.path().join(name);
            let mut args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls=http://127.0.0.1:{client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster={}", initial.join(",")),
                "--initial-cluster-state=new".to_string(),
                format!("--initial-cluster-token={token}"),
                format!("--max-request-bytes={}", options.max_request_bytes),
                format!("--max-txn-ops={}", options.max_txn_ops),
                "--logger=zap".to_string(),
                "--log-level=error".to_string(),
            ];
            if options.unsafe_no_fsync {
                args.push("--unsafe-no-fsync".to_string());
            }
            cluster.members.push(Member {
                name: name.clone(),
                client_port: *client,
                args,
                child: None,
            });
        }
        for i in 0..members {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy(Duration::from_secs(60))?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let member = &mut self.members[i];
        let child = Command::new(etcd_bin())
            .args(&member.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::io(
                    format!("start {} ({})", etcd_bin().display(), member.name),
                    &e,
                )
            })?;
        member.child = Some(child);
        Ok(())
    }

    /// The limits the members run with.
    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's client endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Member `i`'s client endpoint.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// The `etcd://` URL of namespace `namespace` on this cluster (for the `rave` CLI).
    pub fn url(&self, namespace: &str) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        format!("etcd://{}/{namespace}", hosts.join(","))
    }

    /// The pid of member `i`, when it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// Kills member `i` with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again (after [`EtcdCluster::kill`]) on its data directory.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        self.spawn(i)
    }

    /// Whether member `i` answers `/health` with `true` (it is up and sees a leader).
    pub fn healthy(&self, i: usize) -> bool {
        health(self.members[i].client_port).unwrap_or(false)
    }

    /// Waits until every running member is healthy.
    pub fn wait_healthy(&self, within: Duration) -> Result<()> {
        let ends = Instant::now() + within;
        loop {
            let all = (0..self.members.len())
                .filter(|&i| self.members[i].child.is_some())
                .all(|i| self.healthy(i));
            if all {
                return Ok(());
            }
            if Instant::now() >= ends {
                return Err(Error::Timeout { waited: within });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `GET /health` over a plain socket: `true` when the member is up and has a leader.
fn health(port: u16) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body.contains("\"health\":\"true\""))
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
