//! The commands that act on a directory, generic over the engine.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use rave::{Backend, BatchOp, Change, KvStore, Range, Rave, RaveOptions, Role, WatchEvent};

use super::{BackendName, Cli, CliError, Command, RangeArgs, demo};

/// Runs the parsed command with the engine it names.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.backend {
        #[cfg(feature = "redb")]
        BackendName::Redb => run_with(rave::backends::RedbBackend, cli).await,
        #[cfg(feature = "leveldb")]
        BackendName::Leveldb => run_with(rave::backends::LevelDbBackend, cli).await,
        #[cfg(feature = "rocksdb")]
        BackendName::Rocksdb => run_with(rave::backends::RocksDbBackend, cli).await,
        #[cfg(feature = "etcd")]
        BackendName::Etcd => {
            let mut cli = cli;
            let url = need_dir(&cli)?;
            let backend = rave::backends::EtcdBackend::from_url(&url.to_string_lossy())?;
            // The URL names the namespace; the database is the namespace itself.
            cli.dir = Some(PathBuf::new());
            run_with(backend, cli).await
        }
        #[allow(unreachable_patterns)]
        other => Err(CliError::Usage(format!(
            "the {} engine is not compiled into this rave; rebuild with `--features {}`",
            other.as_str(),
            other.as_str()
        ))),
    }
}

/// The handle options the global flags ask for.
pub fn options(cli: &Cli) -> Result<RaveOptions, CliError> {
    let mut options = RaveOptions::default()
        .retry(!cli.no_retry)
        .level_compat(cli.level_compat);
    if let Some(secs) = cli.timeout {
        let timeout = Duration::try_from_secs_f64(secs)
            .map_err(|_| CliError::Usage(format!("--timeout {secs}: not a duration")))?;
        options = options.election_timeout(timeout);
    }
    Ok(options)
}

fn need_dir(cli: &Cli) -> Result<PathBuf, CliError> {
    cli.dir.clone().ok_or_else(|| {
        CliError::Usage("this command needs the database directory: rave <DIR> <COMMAND>".into())
    })
}

async fn run_with<B: Backend + Clone>(backend: B, cli: Cli) -> Result<(), CliError> {
    let options = options(&cli)?;
    let codec = Codec { hex: cli.hex };
    match &cli.command {
        Command::Demo(args) => return demo::run(&cli, backend, args).await,
        #[cfg(unix)]
        Command::LevelServe => return super::level_serve::run(backend, options).await,
        Command::LevelWorker(args) => {
            let db = Rave::open_with(backend, need_dir(&cli)?, options)?;
            return super::level_worker::run(db, args).await;
        }
        Command::DemoWriter(args) => {
            let db = Rave::open_with(backend, need_dir(&cli)?, options)?;
            return demo::writer(db, args).await;
        }
        Command::DemoReader(args) => {
            let db = Rave::open_with(backend, need_dir(&cli)?, options)?;
            return demo::reader(db, args).await;
        }
        _ => {}
    }
    let db = Rave::open_with(backend, need_dir(&cli)?, options)?;
    let result = execute(&db, &cli.command, &codec).await;
    let closed = db.close().await;
    result?;
    Ok(closed?)
}

async fn execute<B: Backend>(
    db: &Rave<B>,
    command: &Command,
    codec: &Codec,
) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Put { key, value } => db.put(&codec.decode(key)?, &codec.decode(value)?).await?,
        Command::Get { key } => match db.get(&codec.decode(key)?).await? {
            Some(value) => {
                codec.write(&mut out, &value)?;
                writeln!(out).map_err(stdout_error)?;
            }
            None => return Err(CliError::NotFound(key.clone())),
        },
        Command::Del { key } => db.del(&codec.decode(key)?).await?,
        Command::Scan { range } => {
            let range = codec.range(range)?;
            let projection = range.projection;
            let mut iter = db.iterator(range).await?;
            loop {
                let chunk = iter.next_chunk(rave::DEFAULT_CHUNK).await?;
                if chunk.is_empty() {
                    break;
                }
                for entry in chunk {
                    if projection.keys() {
                        codec.write(&mut out, &entry.key)?;
                    }
                    if projection.keys() && projection.values() {
                        out.write_all(b"\t").map_err(stdout_error)?;
                    }
                    if projection.values() {
                        codec.write(&mut out, &entry.value)?;
                    }
                    out.write_all(b"\n").map_err(stdout_error)?;
                }
            }
        }
        Command::Clear { range } => db.clear(codec.range(range)?).await?,
        Command::Batch => {
            let mut ops = Vec::new();
            for (number, line) in std::io::stdin().lock().lines().enumerate() {
                let line = line.map_err(|e| CliError::Rave(rave::Error::io("read stdin", &e)))?;
                if line.is_empty() {
                    continue;
                }
                ops.push(codec.batch_line(number + 1, &line)?);
            }
            db.batch(ops).await?;
        }
        Command::Hold => hold(db).await?,
        Command::Watch {
            range,
            from,
            progress,
        } => {
            drop(out);
            return watch(db, codec.range(range)?, *from, *progress, codec).await;
        }
        Command::Status => {
            let role = db.ready().await?;
            if role == Role::Direct {
                // A shared store: no leader, no socket.
                writeln!(out, "role\t{role}\nsequence\t{}", db.sequence().await?)
                    .map_err(stdout_error)?;
                out.flush().map_err(stdout_error)?;
                return Ok(());
            }
            let record = db.leader_record()?;
            writeln!(out, "role\t{role}").map_err(stdout_error)?;
            // A follower without an epoch follows a Node (rave-level) leader, which keeps no
            // record: the one in the directory is an earlier rave leader's.
            let record = record.filter(|_| role != Role::Follower || db.epoch().is_some());
            match record {
                Some(record) => {
                    let pid = if role == Role::Leader {
                        std::process::id()
                    } else {
                        record.pid
                    };
                    writeln!(out, "leader_pid\t{pid}\nepoch\t{}", record.epoch)
                        .map_err(stdout_error)?;
                }
                None => writeln!(out, "leader_pid\tunknown").map_err(stdout_error)?,
            }
            writeln!(out, "socket\t{}", db.socket_path()?.display()).map_err(stdout_error)?;
            // A Node (rave-level) leader keeps no commit sequence.
            match db.sequence().await {
                Ok(sequence) => writeln!(out, "sequence\t{sequence}"),
                Err(rave::Error::Unsupported { .. }) => writeln!(out, "sequence\tnone"),
                Err(e) => return Err(e.into()),
            }
            .map_err(stdout_error)?;
        }
        Command::Demo(_)
        | Command::DemoWriter(_)
        | Command::DemoReader(_)
        | Command::LevelWorker(_) => {}
        #[cfg(unix)]
        Command::LevelServe => {}
    }
    out.flush().map_err(stdout_error)?;
    Ok(())
}

/// Prints every change of `range` after `from` until SIGTERM or SIGINT (or the stream fails).
async fn watch<B: Backend>(
    db: &Rave<B>,
    range: Range,
    from: Option<u64>,
    progress: bool,
    codec: &Codec,
) -> Result<(), CliError> {
    let mut stop = super::StopSignal::new()?;
    let mut stream = db.watch(range, from).await?;
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = stop.recv() => return Ok(()),
        };
        let Some(event) = event else {
            return Ok(());
        };
        let mut out = std::io::stdout().lock();
        match event? {
            WatchEvent::Progress { sequence } => {
                if progress {
                    writeln!(out, "{sequence}\tprogress").map_err(stdout_error)?;
                }
            }
            WatchEvent::Commit(commit) => {
                for change in &commit.changes {
                    codec.write_change(&mut out, commit.sequence, change)?;
                }
            }
        }
        out.flush().map_err(stdout_error)?;
    }
}

/// Prints the role at start and at every change until SIGTERM or SIGINT.
async fn hold<B: Backend>(db: &Rave<B>) -> Result<(), CliError> {
    let mut stop = super::StopSignal::new()?;
    let mut roles = db.watch_role();
    let first = db.ready().await?;
    println_flush(&first.to_string());
    let mut last = first;
    loop {
        tokio::select! {
            changed = roles.changed() => {
                if changed.is_err() { return Ok(()); }
                let role = *roles.borrow_and_update();
                if role != last && matches!(role, Role::Leader | Role::Follower | Role::Direct) {
                    println_flush(&role.to_string());
                    last = role;
                }
            }
            _ = stop.recv() => return Ok(()),
        }
    }
}

pub fn println_flush(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn stdout_error(e: std::io::Error) -> CliError {
    CliError::Rave(rave::Error::io("write stdout", &e))
}

/// How keys and values are read from arguments and printed.
struct Codec {
    hex: bool,
}

impl Codec {
    fn decode(&self, text: &str) -> Result<Vec<u8>, CliError> {
        if !self.hex {
            return Ok(text.as_bytes().to_vec());
        }
        hex_decode(text).ok_or_else(|| CliError::Usage(format!("{text:?} is not hex")))
    }

    fn write(&self, out: &mut impl Write, bytes: &[u8]) -> Result<(), CliError> {
        let result = if self.hex {
            out.write_all(hex_encode(bytes).as_bytes())
        } else {
            out.write_all(bytes)
        };
        result.map_err(stdout_error)
    }

    /// One line of `rave watch`.
    fn write_change(
        &self,
        out: &mut impl Write,
        sequence: u64,
        change: &Change,
    ) -> Result<(), CliError> {
        write!(out, "{sequence}\t").map_err(stdout_error)?;
        match change {
            Change::Put { key, value } => {
                out.write_all(b"put\t").map_err(stdout_error)?;
                self.write(out, key)?;
                out.write_all(b"\t").map_err(stdout_error)?;
                self.write(out, value)?;
            }
            Change::Del { key } => {
                out.write_all(b"del\t").map_err(stdout_error)?;
                self.write(out, key)?;
            }
            Change::Clear { range } => {
                out.write_all(b"clear").map_err(stdout_error)?;
                let lower = [("gt", &range.gt), ("gte", &range.gte)];
                let upper = [("lt", &range.lt), ("lte", &range.lte)];
                for side in [lower, upper] {
                    out.write_all(b"\t").map_err(stdout_error)?;
                    let mut any = false;
                    for (name, bound) in side {
                        if let Some(key) = bound {
                            if any {
                                out.write_all(b",").map_err(stdout_error)?;
                            }
                            write!(out, "{name}=").map_err(stdout_error)?;
                            self.write(out, key)?;
                            any = true;
                        }
                    }
                    if !any {
                        out.write_all(b"-").map_err(stdout_error)?;
                    }
                }
            }
        }
        out.write_all(b"\n").map_err(stdout_error)
    }

    fn range(&self, args: &RangeArgs) -> Result<Range, CliError> {
        let mut range = Range::all();
        let bound = |k: &Option<String>| k.as_deref().map(|k| self.decode(k)).transpose();
        range.gt = bound(&args.gt)?;
        range.gte = bound(&args.gte)?;
        range.lt = bound(&args.lt)?;
        range.lte = bound(&args.lte)?;
        range.reverse = args.reverse;
        range.limit = args.limit;
        if args.keys_only {
            range = range.keys_only();
        }
        if args.values_only {
            range = range.values_only();
        }
        Ok(range)
    }

    fn batch_line(&self, number: usize, line: &str) -> Result<BatchOp, CliError> {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["put", key, value] => Ok(BatchOp::put(self.decode(key)?, self.decode(value)?)),
            ["del", key] => Ok(BatchOp::del(self.decode(key)?)),
            _ => Err(CliError::Usage(format!(
                "stdin line {number}: expected \"put<TAB>KEY<TAB>VALUE\" or \"del<TAB>KEY\""
            ))),
        }
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = vec![0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(hex_decode(&hex_encode(&bytes)), Some(bytes));
        assert_eq!(hex_decode("0"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode(""), Some(Vec::new()));
    }
}
