//! `rave export` and `rave import`: entries to stdout and back, in bounded atomic batches, with
//! a progress bar on a terminal and a one-line summary otherwise.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use rave::{BatchOp, KvStore, Range};
use tokio::sync::mpsc;

use super::codec::stdout_error;
use super::format::{Format, LineFormat};
use super::{CliError, RangeArgs, StopSignal};

/// The most entries one import batch holds.
pub const BATCH_ENTRIES: usize = 1000;
/// The most bytes (keys plus values) one import batch holds; a larger entry is a batch alone.
pub const BATCH_BYTES: usize = 1 << 20;

/// What `rave import --help` adds about interruptions.
pub const IMPORT_HELP: &str = "\
Each batch is one atomic write: an entry is either in the store or not, never half. After
every batch the import knows how many lines of stdin are committed. When it stops early (a bad
line, a failed write, SIGINT or SIGTERM) it says so on stderr — \"stdin lines 1-L are
committed; re-run with --skip L to resume\" — and the same input with --skip L continues where
it stopped, without applying those lines again. Re-running the whole import instead converges
to the same state too (an import only puts, and a put is idempotent), but overwrites what was
written to those keys in between. An import never removes keys that are not in its input: clear
first (`rave DIR clear`) for an exact copy. A kill -9 leaves no message: re-run with the last
--skip you know of (or none).

See `rave export --help` for the formats.";

/// `rave export`'s flags.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// The line format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
}

/// `rave import`'s flags.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The line format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    /// Skip the first N lines of stdin: the lines an interrupted import reported committed.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub skip: u64,
}

/// Writes the entries of `range` in `store` to stdout, from one snapshot.
pub async fn export<S: KvStore + ?Sized>(
    store: &S,
    range: Range,
    lines: LineFormat,
) -> Result<(), CliError> {
    let mut progress = Progress::new("exported");
    let mut iter = store.iterator(range).await?;
    let mut out = std::io::stdout().lock();
    let mut buffer = Vec::new();
    loop {
        let chunk = iter.next_chunk(rave::DEFAULT_CHUNK).await?;
        if chunk.is_empty() {
            break;
        }
        buffer.clear();
        let mut bytes = 0;
        for entry in &chunk {
            lines.encode(&entry.key, &entry.value, &mut buffer);
            bytes += entry.key.len() + entry.value.len();
        }
        out.write_all(&buffer).map_err(stdout_error)?;
        progress.add(chunk.len(), bytes, None);
    }
    out.flush().map_err(stdout_error)?;
    progress.finish("");
    Ok(())
}

/// A numbered line of stdin (its newline removed), or the failure that ended reading.
type InputLine = std::io::Result<(u64, Vec<u8>)>;

/// Reads stdin on a thread of its own (a blocked read never holds up a signal), one line at a
/// time, numbered from 1.
fn read_stdin() -> mpsc::Receiver<InputLine> {
    let (tx, rx) = mpsc::channel(4 * BATCH_ENTRIES);
    // Detached: the process may exit while it waits for input.
    std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        let mut number = 0u64;
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    number += 1;
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx.blocking_send(Ok((number, line))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// Puts the entries of stdin into `store`, in atomic batches (see [`IMPORT_HELP`]).
pub async fn import<S: KvStore + ?Sized>(
    store: &S,
    args: &ImportArgs,
    lines: LineFormat,
) -> Result<(), CliError> {
    let mut stop = StopSignal::new()?;
    let mut input = read_stdin();
    let mut progress = Progress::new("imported");
    let mut batch = Batch::default();
    // Every stdin line up to this one is committed (or skipped).
    let mut committed = 0u64;
    let resume = |committed: u64| {
        format!("stdin lines 1-{committed} are committed; re-run with --skip {committed} to resume")
    };
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.recv() => {
                progress.finish(" before the interruption");
                return Err(CliError::Failed(format!("interrupted: {}", resume(committed))));
            }
            next = input.recv() => next,
        };
        let (number, line) = match next {
            None => break,
            Some(Ok(line)) => line,
            Some(Err(e)) => {
                progress.finish(" before the failure");
                return Err(CliError::Failed(format!(
                    "read stdin: {e}; {}",
                    resume(committed)
                )));
            }
        };
        batch.last_line = number;
        if number <= args.skip {
            committed = number;
            continue;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (key, value) = match lines.decode(line) {
            Ok(entry) => entry,
            Err(why) => {
                progress.finish(" before the bad line");
                return Err(CliError::Usage(format!(
                    "stdin line {number}: {why}; {}",
                    resume(committed)
                )));
            }
        };
        let size = key.len() + value.len();
        if !batch.ops.is_empty() && batch.bytes + size > BATCH_BYTES {
            // The line that does not fit is not committed: the batch ends at the one before.
            batch.last_line = number - 1;
            committed = batch
                .commit(store, &mut progress, committed, &resume)
                .await?;
            batch.last_line = number;
        }
        batch.ops.push(BatchOp::put(key, value));
        batch.bytes += size;
        if batch.ops.len() >= BATCH_ENTRIES {
            committed = batch
                .commit(store, &mut progress, committed, &resume)
                .await?;
        }
    }
    committed = batch
        .commit(store, &mut progress, committed, &resume)
        .await?;
    progress.finish(&format!(", stdin lines 1-{committed}"));
    Ok(())
}

/// The import batch being filled.
#[derive(Default)]
struct Batch {
    ops: Vec<BatchOp>,
    bytes: usize,
    /// The last stdin line read into it (blank lines too).
    last_line: u64,
}

impl Batch {
    /// Writes the batch as one atomic write and returns the new committed line.
    async fn commit<S: KvStore + ?Sized>(
        &mut self,
        store: &S,
        progress: &mut Progress,
        committed: u64,
        resume: &impl Fn(u64) -> String,
    ) -> Result<u64, CliError> {
        let ops = std::mem::take(&mut self.ops);
        let (entries, bytes) = (ops.len(), std::mem::take(&mut self.bytes));
        if !ops.is_empty()
            && let Err(e) = store.batch(ops).await
        {
            progress.finish(" before the failure");
            return Err(CliError::Failed(format!("{e}; {}", resume(committed))));
        }
        progress.add(entries, bytes, Some(self.last_line));
        Ok(self.last_line.max(committed))
    }
}

/// Counts entries and bytes; a progress bar on stderr when it is a terminal, a one-line summary
/// at the end either way.
struct Progress {
    verb: &'static str,
    entries: u64,
    bytes: u64,
    start: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(verb: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} {human_pos} entries, {msg} [{elapsed}]")
            {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Progress {
            verb,
            entries: 0,
            bytes: 0,
            start: Instant::now(),
            bar,
        }
    }

    /// Counts `entries` more, of `bytes` bytes; `line` is the stdin line committed so far.
    fn add(&mut self, entries: usize, bytes: usize, line: Option<u64>) {
        self.entries += entries as u64;
        self.bytes += bytes as u64;
        if let Some(bar) = &self.bar {
            bar.set_position(self.entries);
            let rate = self.entries as f64 / self.start.elapsed().as_secs_f64().max(1e-3);
            let mut message = format!("{}, {rate:.0} entries/s", HumanBytes(self.bytes));
            if let Some(line) = line {
                message.push_str(&format!(", committed through line {line}"));
            }
            bar.set_message(message);
        }
    }

    /// Clears the bar and prints the summary, `what` appended.
    fn finish(&mut self, what: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!(
            "{} {} entries ({} bytes) in {:.1} s{what}",
            self.verb,
            self.entries,
            self.bytes,
            self.start.elapsed().as_secs_f64()
        );
    }
}
