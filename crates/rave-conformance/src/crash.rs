//! Crash durability: an acknowledged write survives `kill -9` of the writing process.
//!
//! One `#[test]` function runs as the parent or as the child, depending on an environment
//! variable. The parent re-executes the current test binary running only that test, as the
//! child; the child opens the backend in the given directory and writes in a loop (single puts
//! and small batches with deletes), printing `rave-crash: acked N` after each acknowledged
//! write. The parent kills the child with SIGKILL after a few hundred acknowledgements, while it is still
//! writing, reaps it, reopens the directory with the backend directly and checks that every
//! acknowledged write is there (and every acknowledged delete took effect). Then it does it
//! again on the same directory (two rounds by default), so that writing on top of what a
//! crash left is tested too.
//!
//! ```no_run
//! // tests/crash.rs of an engine crate (the in-memory engine, not being crash durable, would
//! // skip it)
//! #[test]
//! fn kill9_durability() {
//!     // The name must be the test's full path in this test binary.
//!     rave_conformance::crash::kill9_durability(rave_api::MemoryBackend, "kill9_durability");
//! }
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rave_api::{Backend, BatchOp, KvStore, OpenOptions};

use crate::{Failure, Outcome, TestResult};

/// The environment variable that makes the test binary run as the crash child; its value is
/// the database directory.
pub const CHILD_ENV: &str = "RAVE_CONFORMANCE_CRASH_CHILD_DIR";

/// The environment variable telling the crash child the number of its first write.
pub const CHILD_START_ENV: &str = "RAVE_CONFORMANCE_CRASH_CHILD_START";

/// The longest a child writes before giving up on being killed.
const CHILD_MAX_RUN: Duration = Duration::from_secs(120);

/// How the kill -9 test runs.
#[derive(Clone, Debug)]
pub struct Kill9 {
    /// Kill the child after this many acknowledged writes (default 300).
    pub acks_before_kill: u64,
    /// The longest to wait for them (default 60 s).
    pub timeout: Duration,
    /// The options the child opens the backend with (the default ones by default).
    pub options: OpenOptions,
    /// How many times to kill a writer and check the directory (default 2): later rounds
    /// write on top of what the earlier crashes left.
    pub rounds: u32,
}

impl Default for Kill9 {
    fn default() -> Self {
        Kill9 {
            acks_before_kill: 300,
            timeout: Duration::from_secs(60),
            options: OpenOptions::default(),
            rounds: 2,
        }
    }
}

/// Runs the kill -9 durability test for `backend` with the default [`Kill9`] settings.
///
/// Call it from a `#[test]` whose full name in its test binary is `test_name`. Panics with
/// what went wrong when an acknowledged write is missing or the child misbehaves; returns
/// early (passing) when the backend is not crash durable.
pub fn kill9_durability<B: Backend>(backend: B, test_name: &str) {
    kill9_durability_with(backend, test_name, Kill9::default());
}

/// [`kill9_durability`] with explicit settings.
pub fn kill9_durability_with<B: Backend>(backend: B, test_name: &str, config: Kill9) {
    if let Err(failure) = run_kill9(&backend, test_name, &config) {
        panic!("{test_name} on {}: {failure}", backend.name());
    }
}

/// The kill -9 test as a result instead of a panic, for programs that run it themselves.
///
/// In the child (when [`CHILD_ENV`] is set) this never returns: it writes until killed.
/// Otherwise it starts the child (the current executable with the arguments
/// `<test_name> --exact --nocapture --test-threads=1`, which a program other than a test binary
/// may ignore), kills it and checks the directory. Call it before starting an async runtime.
pub fn run_kill9<B: Backend>(backend: &B, test_name: &str, config: &Kill9) -> TestResult {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        run_child(backend, Path::new(&dir), &config.options);
    }
    if !backend.capabilities().crash_durable {
        let reason = "the backend is not crash durable";
        eprintln!(
            "rave-conformance: {test_name} skipped on {}: {reason}",
            backend.name()
        );
        return Ok(Outcome::Skipped(reason.into()));
    }
    let summary = run_parent(backend, test_name, config).map_err(Failure::new)?;
    eprintln!(
        "rave-conformance: {test_name} on {}: {summary}",
        backend.name()
    );
    Ok(Outcome::Passed)
}

/// What write `n` is: a put of `k<n>`, or, every fourth write, a batch putting three keys and
/// deleting the key of the write before.
fn is_batch(n: u64) -> bool {
    n % 4 == 3
}

fn key(n: u64, suffix: &str) -> Vec<u8> {
    format!("k{n:08}{suffix}").into_bytes()
}

fn value(n: u64, suffix: &str) -> Vec<u8> {
    let mut v = format!("{n}{suffix}:").into_bytes();
    v.resize(v.len() + (n % 200) as usize, b'x');
    v
}

fn write_ops(n: u64) -> Vec<BatchOp> {
    let mut ops = vec![BatchOp::put(key(n, ""), value(n, ""))];
    if is_batch(n) {
        ops.push(BatchOp::put(key(n, ".a"), value(n, ".a")));
        ops.push(BatchOp::del(key(n - 1, "")));
        ops.push(BatchOp::put(key(n, ".b"), value(n, ".b")));
    }
    ops
}

/// The child: writes until killed (or for [`CHILD_MAX_RUN`]), then exits without returning.
fn run_child<B: Backend>(backend: &B, dir: &Path, options: &OpenOptions) -> ! {
    let first = std::env::var(CHILD_START_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let code = match child_writes(backend, dir, options, first) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("rave-conformance crash child: {message}");
            let _ = writeln!(std::io::stdout(), "{ERROR}{message}");
            2
        }
    };
    std::process::exit(code)
}

fn child_writes<B: Backend>(
    backend: &B,
    dir: &Path,
    options: &OpenOptions,
    first: u64,
) -> Result<(), String> {
    let store = backend
        .open(dir, options)
        .map_err(|e| format!("open {}: {e}", dir.display()))?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let deadline = Instant::now() + CHILD_MAX_RUN;
        let mut n = first;
        while Instant::now() < deadline {
            let ops = write_ops(n);
            let result = if is_batch(n) {
                store.batch(ops).await
            } else {
                match ops.into_iter().next() {
                    Some(BatchOp::Put { key, value }) => store.put(&key, &value).await,
                    _ => Ok(()),
                }
            };
            result.map_err(|e| format!("write {n}: {e}"))?;
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{ACK}{n}")
                .and_then(|()| out.flush())
                .is_err()
            {
                // The parent is gone: nobody is counting.
                break;
            }
            n += 1;
        }
        store.close().await.map_err(|e| format!("close: {e}"))
    })
}

/// Kills and reaps the child when the parent returns early or panics.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

enum Line {
    Text(String),
    End,
}

/// Reads whole lines from the child; a line cut by the kill (no newline) is not an ack.
fn read_lines(stdout: std::process::ChildStdout, tx: mpsc::Sender<Line>) {
    let mut reader = BufReader::new(stdout);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.ends_with('\n') => {
                if tx.send(Line::Text(line.trim_end().to_string())).is_err() {
                    return;
                }
            }
            Ok(_) => break,
        }
    }
    let _ = tx.send(Line::End);
}

/// The child's acknowledgement line is `rave-crash: acked N`. The marker may follow other text
/// on the line: libtest prints `test <name> ... ` without a newline before the test runs.
const ACK: &str = "rave-crash: acked ";
/// The child's error line.
const ERROR: &str = "rave-crash: error ";

/// Parses an acknowledgement, checking that they come in order: `next` is the number of the
/// write expected next.
fn note_line(line: &str, next: &mut u64, child_error: &mut Option<String>) -> Result<(), String> {
    if let Some(at) = line.find(ACK) {
        let rest = &line[at + ACK.len()..];
        let n: u64 = rest
            .parse()
            .map_err(|_| format!("the child printed a malformed line {line:?}"))?;
        if n != *next {
            return Err(format!(
                "the child acknowledged write {n}, expected {next} next"
            ));
        }
        *next += 1;
    } else if let Some(at) = line.find(ERROR) {
        *child_error = Some(line[at + ERROR.len()..].to_string());
    }
    Ok(())
}

fn run_parent<B: Backend>(backend: &B, test_name: &str, config: &Kill9) -> Result<String, String> {
    let start = Instant::now();
    let scratch = tempfile::Builder::new()
        .prefix("rave-kill9-")
        .tempdir()
        .map_err(|e| format!("create a temporary directory: {e}"))?;
    let dir = scratch.path().join("db");
    let mut next = 0;
    let mut keys = 0;
    for round in 1..=config.rounds.max(1) {
        next =
            one_round(test_name, config, &dir, next).map_err(|e| format!("round {round}: {e}"))?;
        keys = verify(backend, &dir, next - 1).map_err(|e| format!("round {round}: {e}"))?;
    }
    Ok(format!(
        "{next} acknowledged writes in {} kill -9 rounds ({keys} keys checked) all present ({:?})",
        config.rounds.max(1),
        start.elapsed()
    ))
}

/// Runs one child writing from write `first` on, kills it after enough acknowledgements, and
/// returns the number of the first write it did not acknowledge.
fn one_round(test_name: &str, config: &Kill9, dir: &Path, first: u64) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("find the test binary: {e}"))?;
    let mut child = Command::new(&exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(CHILD_START_ENV, first.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("start {} as the crash child: {e}", exe.display()))?;
    let stdout = child.stdout.take();
    let mut reaper = Reaper(Some(child));
    let stdout = stdout.ok_or("the child has no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::Builder::new()
        .name("kill9-reader".into())
        .spawn(move || read_lines(stdout, tx))
        .map_err(|e| format!("start the reader thread: {e}"))?;

    let mut next = first;
    let mut child_error = None;
    let deadline = Instant::now() + config.timeout;
    while next - first < config.acks_before_kill.max(1) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Line::Text(line)) => note_line(&line, &mut next, &mut child_error)?,
            Ok(Line::End) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = reaper.0.as_mut().map(|c| c.wait());
                return Err(format!(
                    "the child stopped after {} acknowledged writes, before it was killed \
                     (status {status:?}, error {child_error:?}); was {test_name:?} the test's exact name?",
                    next - first
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "only {} of {} writes acknowledged within {:?}",
                    next - first,
                    config.acks_before_kill,
                    config.timeout
                ));
            }
        }
    }

    // The child is still writing: kill it mid-stream.
    let mut child = reaper.0.take().ok_or("the child is gone")?;
    let killed = child.kill();
    let status = child.wait();
    killed.map_err(|e| format!("kill the child: {e}"))?;
    let status = status.map_err(|e| format!("reap the child: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if status.signal() != Some(SIGKILL) {
            return Err(format!(
                "the child was not killed by SIGKILL but ended with {status}: it stopped writing by itself"
            ));
        }
    }
    // Acknowledgements printed before the kill, still in the pipe.
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Line::Text(line)) => note_line(&line, &mut next, &mut child_error)?,
            Ok(Line::End) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err("the child's stdout stayed open 10 s after it was killed".into());
            }
        }
    }
    let _ = reader.join();
    Ok(next)
}

/// SIGKILL's number (9 on every unix).
#[cfg(unix)]
const SIGKILL: i32 = 9;

/// A runtime on this thread, for the child and the check, which run one store each.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("start a runtime: {e}"))
}

/// Reopens the directory and checks every acknowledged write; returns how many keys it read.
fn verify<B: Backend>(backend: &B, dir: &Path, last: u64) -> Result<usize, String> {
    let store = backend
        .open(dir, &OpenOptions::default())
        .map_err(|e| format!("reopen {} after kill -9: {e}", dir.display()))?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let checked = tokio::time::timeout(Duration::from_secs(60), check_writes(&store, last))
            .await
            .map_err(|_| "reading the reopened database took over 60 s".to_string())
            .and_then(|r| r);
        let closed = store.close().await;
        let checked = checked?;
        closed.map_err(|e| format!("close the reopened database: {e}"))?;
        Ok(checked)
    })
}

/// One expectation: the key, and its value — `Some(None)` absent, `None` either way.
type Expect = (Vec<u8>, Option<Option<Vec<u8>>>, String);

async fn check_writes(store: &dyn KvStore, last: u64) -> Result<usize, String> {
    let mut expect: Vec<Expect> = Vec::new();
    for n in 0..=last {
        let next_is_batch = is_batch(n + 1);
        let own = if !next_is_batch {
            Some(Some(value(n, "")))
        } else if n < last {
            // Write n + 1, acknowledged, deleted this key.
            Some(None)
        } else {
            // Write n + 1 may or may not have happened.
            None
        };
        expect.push((key(n, ""), own, format!("write {n}")));
        if is_batch(n) {
            for suffix in [".a", ".b"] {
                expect.push((
                    key(n, suffix),
                    Some(Some(value(n, suffix))),
                    format!("write {n} (a batch)"),
                ));
            }
        }
    }
    for chunk in expect.chunks(256) {
        let keys: Vec<Vec<u8>> = chunk.iter().map(|(k, _, _)| k.clone()).collect();
        let got = store
            .get_many(&keys)
            .await
            .map_err(|e| format!("get_many after kill -9: {e}"))?;
        if got.len() != keys.len() {
            return Err(format!(
                "get_many of {} keys returned {} values",
                keys.len(),
                got.len()
            ));
        }
        for ((k, want, what), got) in chunk.iter().zip(got) {
            let key = String::from_utf8_lossy(k);
            match want {
                Some(Some(v)) if got.as_ref() != Some(v) => {
                    return Err(format!(
                        "{what} was acknowledged, but after kill -9 key {key} is {}, expected {} bytes",
                        got.map_or("missing".to_string(), |g| format!("{} bytes", g.len())),
                        v.len()
                    ));
                }
                Some(None) if got.is_some() => {
                    return Err(format!(
                        "key {key} of {what} was deleted by an acknowledged batch, but is present after kill -9"
                    ));
                }
                None => {
                    if let Some(g) = &got
                        && *g != value(last, "")
                    {
                        return Err(format!("key {key} holds a value never written"));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(expect.len())
}
