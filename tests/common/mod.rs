//! Helpers shared by the multi-process tests: child processes that are always killed and
//! reaped, the `rave` binary per engine, bounded waits and role watching.
//!
//! Every test file includes this module with `#[macro_use] mod common;`; not every file uses
//! every helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rave::{Backend, Entry, Projection, Range, Rave, RaveOptions, Role};
use tokio::sync::{mpsc, oneshot};

/// An engine compiled into this build, with the name the CLI's `--backend` flag gives it.
pub trait Engine: Backend + Default {
    /// The `--backend` value (also the name of the test module of this engine).
    const CLI: &'static str;
}

#[cfg(feature = "redb")]
impl Engine for rave::backends::RedbBackend {
    const CLI: &'static str = "redb";
}

#[cfg(feature = "leveldb")]
impl Engine for rave::backends::LevelDbBackend {
    const CLI: &'static str = "leveldb";
}

#[cfg(feature = "rocksdb")]
impl Engine for rave::backends::RocksDbBackend {
    const CLI: &'static str = "rocksdb";
}

/// Instantiates each generic `async fn name<B: Engine>()` of the file once per compiled-in
/// engine, as `redb::name`, `leveldb::name`, `rocksdb::name`.
macro_rules! per_engine {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "redb")]
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test::<rave::backends::RedbBackend>().await;
                }
            )*
        }
        #[cfg(feature = "leveldb")]
        mod leveldb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test::<rave::backends::LevelDbBackend>().await;
                }
            )*
        }
        #[cfg(feature = "rocksdb")]
        mod rocksdb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test::<rave::backends::RocksDbBackend>().await;
                }
            )*
        }
    };
}

/// The longest any single child is allowed to run in a test that expects it to exit.
pub const EXIT_LIMIT: Duration = Duration::from_secs(30);

/// Waits for `fut`, panicking with `what` when it takes longer than `limit`: no test hangs.
pub async fn within<F: Future>(what: &str, limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

/// Sends `sig` to `pid`.
fn send_signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions. Callers only signal children they
    // have not reaped yet, so the pid cannot have been reused by another process.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// The path of the `rave` binary of this build.
///
/// # Panics
///
/// When the binary is not built: it needs the `cli` feature (a default one), so a test that
/// runs it fails, saying so, in a build without it (`--no-default-features`).
pub fn rave_bin() -> &'static str {
    const WHY: &str = "this test runs the `rave` binary, which needs the `cli` feature: \
                       cargo test --features cli (it is a default feature)";
    // Cargo names the binary even when its required feature is off (and a stale one may be
    // there from an earlier build): the feature decides.
    if !cfg!(feature = "cli") {
        panic!("{WHY}");
    }
    match option_env!("CARGO_BIN_EXE_rave") {
        Some(path) => path,
        None => panic!("{WHY}"),
    }
}

/// The `rave` binary of this build, on `dir`, with the engine `B`: `rave --backend B <flags>
/// <dir> <args>`.
pub fn rave_cmd<B: Engine>(flags: &[&str], dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(rave_bin());
    command
        .arg("--backend")
        .arg(B::CLI)
        .args(flags)
        .arg(dir)
        .args(args)
        .env("RAVE_LOG", "warn");
    command
}

/// What a finished child printed.
#[derive(Debug)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Its whole stdout.
    pub stdout: Vec<u8>,
    /// Its whole stderr.
    pub stderr: String,
}

impl Output {
    /// Stdout as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics with everything the child said unless it exited with `code`.
    pub fn assert_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{what}: exit status {}; stdout {:?}; stderr {:?}",
            self.status,
            self.text(),
            self.stderr
        );
        self
    }
}

/// A child process that is SIGKILLed and reaped when dropped, whatever happened to the test.
///
/// Its stdout is read by a thread into lines (for protocols like `hold`'s `leader`) and kept
/// raw (for exact output checks); stderr is kept for failure messages.
pub struct Proc {
    label: String,
    child: Child,
    pid: u32,
    status: Option<ExitStatus>,
    lines: mpsc::UnboundedReceiver<String>,
    stdout_open: bool,
    seen: Vec<String>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: Option<oneshot::Receiver<()>>,
}

impl Proc {
    /// Starts `command` with piped stdout and stderr, and `stdin` (if any) written to its
    /// standard input and then closed.
    pub fn spawn(label: impl Into<String>, command: Command, stdin: Option<Vec<u8>>) -> Proc {
        let piped = stdin.is_some();
        let (proc, input) = Proc::start(label.into(), command, piped);
        if let (Some(mut pipe), Some(bytes)) = (input, stdin) {
            // A child that dies early makes this fail with EPIPE, which is fine.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        proc
    }

    /// Starts `command` like [`Proc::spawn`], with its standard input a pipe the caller
    /// writes (and closes by dropping it).
    pub fn spawn_with_stdin(
        label: impl Into<String>,
        command: Command,
    ) -> (Proc, std::process::ChildStdin) {
        let (proc, input) = Proc::start(label.into(), command, true);
        (proc, input.expect("piped stdin"))
    }

    fn start(
        label: String,
        mut command: Command,
        piped: bool,
    ) -> (Proc, Option<std::process::ChildStdin>) {
        command
            .stdin(if piped { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {label}: {e}"));
        let pid = child.id();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let input = child.stdin.take();
        // Build the guard before anything else can panic, so the child is always reaped.
        let (line_tx, lines) = mpsc::unbounded_channel();
        let (err_tx, stderr_done) = oneshot::channel();
        let proc = Proc {
            label,
            child,
            pid,
            status: None,
            lines,
            stdout_open: true,
            seen: Vec::new(),
            stdout: Arc::new(Mutex::new(Vec::new())),
            stderr: Arc::new(Mutex::new(Vec::new())),
            stderr_done: Some(stderr_done),
        };
        let raw = proc.stdout.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        raw.lock().unwrap().extend_from_slice(&line);
                        let text = String::from_utf8_lossy(&line)
                            .trim_end_matches(['\n', '\r'])
                            .to_string();
                        let _ = line_tx.send(text);
                    }
                }
            }
        });
        let raw = proc.stderr.clone();
        std::thread::spawn(move || {
            let mut reader = err;
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => raw.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
            let _ = err_tx.send(());
        });
        (proc, input)
    }

    /// Starts the `rave` binary (see [`rave_cmd`]).
    pub fn rave<B: Engine>(flags: &[&str], dir: &Path, args: &[&str]) -> Proc {
        let label = format!("rave {} {}", flags.join(" "), args.join(" "));
        Proc::spawn(label, rave_cmd::<B>(flags, dir, args), None)
    }

    /// This child's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Every stdout line received so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    fn describe(&self) -> String {
        format!(
            "{} (pid {}): stdout lines {:?}; stderr {:?}",
            self.label,
            self.pid,
            self.seen,
            self.stderr()
        )
    }

    /// The exit status, if it has exited (reaping it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("wait for {}: {e}", self.label));
        }
        self.status
    }

    /// The next stdout line; `Ok(None)` at end of stream, `Err(())` when none came in `limit`.
    pub async fn next_line(&mut self, limit: Duration) -> Result<Option<String>, ()> {
        if !self.stdout_open {
            return Ok(None);
        }
        match tokio::time::timeout(limit, self.lines.recv()).await {
            Ok(Some(line)) => {
                self.seen.push(line.clone());
                Ok(Some(line))
            }
            Ok(None) => {
                self.stdout_open = false;
                Ok(None)
            }
            Err(_) => Err(()),
        }
    }

    /// Every line already received, without waiting.
    pub fn drain_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line.clone());
            lines.push(line);
        }
        lines
    }

    /// Reads lines until one equals `want`; panics on end of stream or after `limit`.
    pub async fn expect_line(&mut self, want: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left).await {
                Ok(Some(line)) if line == want => return,
                Ok(Some(_)) => {}
                Ok(None) => panic!(
                    "expected the line {want:?}, stdout ended: {}",
                    self.describe()
                ),
                Err(()) => panic!(
                    "expected the line {want:?} within {limit:?}: {}",
                    self.describe()
                ),
            }
        }
    }

    /// Sends `sig` (unless it has already exited and been reaped).
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.try_status().is_none() {
            send_signal(self.pid, sig);
            if sig == libc::SIGSTOP {
                self.wait_stopped();
            }
        }
    }

    /// kill(2) returns before every thread has stopped: wait until /proc says they all have,
    /// so that a test's next request surely meets a stopped leader.
    fn wait_stopped(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let tasks = format!("/proc/{}/task", self.pid);
        loop {
            let all_stopped = std::fs::read_dir(&tasks)
                .map(|entries| {
                    entries.flatten().all(|task| {
                        std::fs::read_to_string(task.path().join("stat"))
                            .ok()
                            .and_then(|stat| {
                                // The state follows the parenthesised command name.
                                stat.rsplit_once(')')
                                    .map(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
                            })
                            .unwrap_or(true)
                    })
                })
                .unwrap_or(true);
            if all_stopped || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGKILLs it (if still running) and reaps it.
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = Some(
                self.child
                    .wait()
                    .unwrap_or_else(|e| panic!("reap {}: {e}", self.label)),
            );
        }
    }

    /// Waits (bounded) for it to exit by itself.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "did not exit by itself within {limit:?}: {}",
                    self.describe()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (bounded) for it to exit and for its output to be complete.
    pub async fn finish(&mut self, limit: Duration) -> Output {
        let status = self.wait_exit(limit).await;
        // The pipes close when the child exits: the reader threads end right after.
        while let Ok(Some(_)) = self.next_line(Duration::from_secs(5)).await {}
        if let Some(done) = self.stderr_done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
        }
        Output {
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

/// Runs `rave` to completion (bounded), feeding it `stdin`.
pub async fn run_rave<B: Engine>(
    flags: &[&str],
    dir: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    let label = format!("rave {} {}", flags.join(" "), args.join(" "));
    let mut proc = Proc::spawn(
        label,
        rave_cmd::<B>(flags, dir, args),
        stdin.map(<[u8]>::to_vec),
    );
    proc.finish(EXIT_LIMIT).await
}

/// Starts `rave <dir> hold` and waits until it says `leader`.
pub async fn start_leader<B: Engine>(dir: &Path) -> Proc {
    let mut leader = Proc::rave::<B>(&[], dir, &["hold"]);
    leader.expect_line("leader", Duration::from_secs(20)).await;
    leader
}

/// Opens a handle and waits (bounded) for its role.
pub async fn open_handle<B: Engine>(dir: &Path, options: RaveOptions) -> (Rave<B>, Role) {
    let db = Rave::<B>::open_engine(dir, options).expect("open a handle");
    let role = within("the first election", Duration::from_secs(20), db.ready())
        .await
        .expect("a role");
    (db, role)
}

/// Waits (bounded) until `db`'s role is `want`.
pub async fn wait_role<B: Backend>(db: &Rave<B>, want: Role, limit: Duration) {
    let mut roles = db.watch_role();
    let reached = async {
        loop {
            if *roles.borrow_and_update() == want {
                return;
            }
            if roles.changed().await.is_err() {
                panic!("the role watch ended before the role became {want}");
            }
        }
    };
    within(&format!("the role {want}"), limit, reached).await;
}

/// What an iterator over `range` must yield from the entries of `model`, computed from the
/// model only.
pub fn expected(model: &BTreeMap<Vec<u8>, Vec<u8>>, range: &Range) -> Vec<Entry> {
    let mut entries: Vec<Entry> = model
        .iter()
        .filter(|(k, _)| range.contains(k))
        .map(|(k, v)| Entry::new(k.clone(), v.clone()))
        .collect();
    if range.reverse {
        entries.reverse();
    }
    if let Some(limit) = range.limit {
        entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    for entry in &mut entries {
        match range.projection {
            Projection::KeysAndValues => {}
            Projection::KeysOnly => entry.value.clear(),
            Projection::ValuesOnly => entry.key.clear(),
        }
    }
    entries
}

/// A fresh temporary directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rave-test-")
        .tempdir()
        .expect("a temporary directory")
}

/// Whether this run is CI's: `CI` is set (to anything but empty, `0` or `false`). CI runs as
/// root, where every test can run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// The skip policy of the security and hostile-environment tests, which need root (another
/// user, a tmpfs): a test that cannot run here calls this and returns. Outside CI it prints
/// why and the test passes; in CI a skip would hide the test, so it fails.
pub fn skip_or_fail(test: &str, why: &str) {
    assert!(
        !in_ci(),
        "{test} cannot run: {why} (CI is set, where this test must run, as root)"
    );
    println!("skipped: {test}: {why}");
}

/// The user the other-user tests (tests/security.rs, tests/hostile.rs) become when run as root.
pub const OTHER_USER: &str = "rave-test-other";

/// Whether this test process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `(uid, gid)` of `rave-test-other`, created if needed; `Err` says why it cannot be had.
pub fn other_user() -> Result<(u32, u32), String> {
    static USER: std::sync::OnceLock<Result<(u32, u32), String>> = std::sync::OnceLock::new();
    USER.get_or_init(|| {
        if !is_root() {
            return Err("not running as root: cannot create or become another user".into());
        }
        match std::process::Command::new("useradd")
            .args(["--system", "--no-create-home", OTHER_USER])
            .output()
        {
            // 9: the user already exists.
            Ok(out) if out.status.success() || out.status.code() == Some(9) => {}
            Ok(out) => {
                return Err(format!(
                    "useradd failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Err(e) => return Err(format!("cannot run useradd: {e}")),
        }
        let id = |flag: &str| -> Result<u32, String> {
            let out = std::process::Command::new("id")
                .args([flag, OTHER_USER])
                .output()
                .map_err(|e| format!("cannot run id: {e}"))?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|e| format!("id {flag} {OTHER_USER}: {e}"))
        };
        Ok((id("-u")?, id("-g")?))
    })
    .clone()
}

/// Builds the example `name` with this test's engine features and returns its path.
pub fn example(name: &str) -> std::path::PathBuf {
    let mut features = Vec::new();
    if cfg!(feature = "redb") {
        features.push("redb");
    }
    if cfg!(feature = "leveldb") {
        features.push("leveldb");
    }
    if cfg!(feature = "rocksdb") {
        features.push("rocksdb");
    }
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "--example",
            name,
            "--features",
            &features.join(","),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build --example");
    assert!(status.success(), "cargo build --example {name} failed");
    // The test runs from target/<profile>/deps; examples are in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    profile_dir.join("examples").join(name)
}

/// `node interop/node/<script> <args>` with rave-level (in `modules`) on its module path and
/// `env` set.
pub fn node(modules: &Path, script: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut command = Command::new("node");
    command
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("interop/node")
                .join(script),
        )
        .args(args)
        .env("NODE_PATH", modules);
    for (k, v) in env {
        command.env(k, v);
    }
    Proc::spawn(format!("node {script} {}", args.join(" ")), command, None)
}

/// The `node_modules` of the pinned npm packages (`scripts/level-suite --install`: rave-level,
/// many-level) when they and `node` are there: `$RAVE_LEVEL_NPM`, else
/// `${XDG_CACHE_HOME:-~/.cache}/rave/level-suite`.
pub fn level_node_modules() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let cache = std::env::var_os("RAVE_LEVEL_NPM")
        .map(PathBuf::from)
        .or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("rave").join("level-suite"))
        })?;
    let modules = cache.join("node_modules");
    let node = Command::new("node").arg("--version").output().is_ok();
    (node && modules.join("rave-level").is_dir()).then_some(modules)
}
