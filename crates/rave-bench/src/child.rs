//! Helper processes: this binary spawned in a helper mode, spoken to by lines on stdin/stdout.
//!
//! Every helper is killed when its [`Helper`] is dropped (`kill_on_drop`), so an error or a
//! panic in the harness never leaves a leader or a writer running. A helper exits by itself
//! when its stdin closes, so it never outlives a harness that was killed either.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rave::{Backend, Error, Rave, RaveOptions, Result, Role};

use crate::engines::EngineName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long a helper may take to answer a command that does no measured work.
pub const SHORT: Duration = Duration::from_secs(60);

/// One running helper process.
pub struct Helper {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Helper {
    /// Spawns `rave-bench helper <args...>`; `what` names it in errors.
    pub fn spawn<I, S>(what: impl Into<String>, args: I) -> Result<Helper>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let what = what.into();
        let exe =
            std::env::current_exe().map_err(|e| Error::io("find the rave-bench binary", &e))?;
        let mut command = Command::new(exe);
        command
            .arg("helper")
            .args(args.into_iter().map(Into::into))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| Error::io(format!("spawn the {what} helper"), &e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::other(format!("the {what} helper has no stdout")))?;
        Ok(Helper {
            stdin: child.stdin.take(),
            lines: BufReader::new(stdout).lines(),
            child,
            what,
        })
    }

    /// Spawns a leader of `dir` on `engine` that first writes the data set `data` (the leader
    /// helper's flags without their dashes, e.g. `[("keys", 1000), ("value-size", 100)]`).
    pub fn leader(engine: EngineName, dir: &Path, data: &[(&str, usize)]) -> Result<Helper> {
        let mut args = vec![
            "leader".to_string(),
            "--backend".into(),
            engine.to_string(),
            "--dir".into(),
            dir.display().to_string(),
        ];
        for (flag, value) in data {
            args.push(format!("--{flag}"));
            args.push(value.to_string());
        }
        Helper::spawn("leader", args)
    }

    /// The helper's process id (none once it was reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Reads lines until one whose first word is `word`; returns its other words. A line
    /// starting with `error` ends the wait with that error, and so do EOF and `limit`.
    pub async fn expect(&mut self, word: &str, limit: Duration) -> Result<Vec<String>> {
        let what = self.what.clone();
        let wait = async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .map_err(|e| Error::io(format!("read from the {what} helper"), &e))?;
                let Some(line) = line else {
                    return Err(Error::other(format!(
                        "the {what} helper exited before saying `{word}`"
                    )));
                };
                let mut words = line.split_whitespace();
                match words.next() {
                    Some(w) if w == word => return Ok(words.map(str::to_string).collect()),
                    Some("error") => {
                        return Err(Error::other(format!("the {what} helper failed: {line}")));
                    }
                    _ => tracing::debug!(helper = %what, %line, "helper said"),
                }
            }
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { waited: limit }),
        }
    }

    /// Sends one command line.
    pub async fn send(&mut self, line: &str) -> Result<()> {
        let what = &self.what;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| Error::other(format!("the {what} helper's stdin is closed")))?;
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        stdin
            .write_all(&bytes)
            .await
            .map_err(|e| Error::io(format!("write to the {what} helper"), &e))?;
        stdin
            .flush()
            .await
            .map_err(|e| Error::io(format!("write to the {what} helper"), &e))
    }

    /// SIGKILL, without waiting.
    pub fn kill(&mut self) -> Result<()> {
        self.child
            .start_kill()
            .map_err(|e| Error::io(format!("kill the {} helper", self.what), &e))
    }

    /// Waits for the helper to be gone (after [`Helper::kill`]), at most `limit`.
    pub async fn reap(&mut self, limit: Duration) -> Result<()> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::io(format!("wait for the {} helper", self.what), &e)),
            Err(_) => Err(Error::Timeout { waited: limit }),
        }
    }

    /// Closes stdin (the helper exits cleanly) and waits a little; kills it if it lingers.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }

    /// Kills the helper and waits for it.
    pub async fn kill_and_reap(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Parses the `i`-th word of a helper's answer.
pub fn field<T: std::str::FromStr>(words: &[String], i: usize, what: &str) -> Result<T> {
    words
        .get(i)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| Error::protocol(format!("a helper's answer lacks {what}: {words:?}")))
}

/// A fresh temporary directory for one figure (removed when dropped).
pub fn temp_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("rave-bench-")
        .tempdir()
        .map_err(|e| Error::io("create a temporary directory", &e))
}

/// Opens a handle on `dir` with `options`; it must follow (a leader helper serves `dir`).
pub async fn follow<B: Backend + Default>(dir: &Path, options: RaveOptions) -> Result<Rave<B>> {
    let db = Rave::<B>::open_engine(dir, options)?;
    let role = db.ready().await?;
    if role != Role::Follower {
        return Err(Error::other(format!(
            "expected to follow, but this handle is {role}"
        )));
    }
    Ok(db)
}
