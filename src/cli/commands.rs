//! The commands that act on a directory, generic over the engine.

use std::io::{BufRead, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use rave::{
    Backend, BatchOp, Check, KvStore, Range, Rave, RaveOptions, Role, Sublevel, WatchEvent, Write,
};

use super::codec::{Codec, stdout_error};
use super::format::LineFormat;
use super::{BackendName, Cli, CliError, Command, demo, status, transfer};

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
    let result = match sublevel(&db, &cli.sublevel) {
        Ok(None) => execute(&db, &db, &cli).await,
        Ok(Some(view)) => execute(&db, &view, &cli).await,
        Err(e) => Err(e),
    };
    let closed = db.close().await;
    result?;
    Ok(closed?)
}

/// The view the `--sublevel` flags name (`None`: the whole store).
fn sublevel<B: Backend>(db: &Rave<B>, names: &[String]) -> Result<Option<Sublevel>, CliError> {
    let Some((first, rest)) = names.split_first() else {
        return Ok(None);
    };
    let usage = |e: rave::Error| CliError::Usage(format!("--sublevel: {e}"));
    let mut view = db.try_sublevel(first).map_err(usage)?;
    for name in rest {
        view = view.try_sublevel(name).map_err(usage)?;
    }
    Ok(Some(view))
}

/// Runs a command on the handle `db`; the data commands act on `store`, the handle itself or
/// the sublevel `--sublevel` names.
async fn execute<B: Backend, S: KvStore>(
    db: &Rave<B>,
    store: &S,
    cli: &Cli,
) -> Result<(), CliError> {
    let codec = &Codec { hex: cli.hex };
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Put { key, value } => {
            store
                .put(&codec.decode(key)?, &codec.decode(value)?)
                .await?;
        }
        Command::Get { key } => match store.get(&codec.decode(key)?).await? {
            Some(value) => {
                codec.write(&mut out, &value)?;
                writeln!(out).map_err(stdout_error)?;
            }
            None => return Err(CliError::NotFound(key.clone())),
        },
        Command::Del { key } => store.del(&codec.decode(key)?).await?,
        Command::Scan { range, projection } => {
            let range = codec.range(range, Some(projection))?;
            let projection = range.projection;
            let mut iter = store.iterator(range).await?;
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
        Command::Clear { range } => store.clear(codec.range(range, None)?).await?,
        Command::Batch => {
            let mut ops = Vec::new();
            for (number, line) in std::io::stdin().lock().lines().enumerate() {
                let line = line.map_err(|e| CliError::Rave(rave::Error::io("read stdin", &e)))?;
                if line.is_empty() {
                    continue;
                }
                ops.push(codec.batch_line(number + 1, &line)?);
            }
            store.batch(ops).await?;
        }
        Command::Export(args) => {
            drop(out);
            let range = codec.range(&args.range, None)?;
            let lines = LineFormat {
                format: args.format,
                hex: cli.hex,
            };
            return transfer::export(store, range, lines).await;
        }
        Command::Import(args) => {
            let lines = LineFormat {
                format: args.format,
                hex: cli.hex,
            };
            return transfer::import(store, args, lines).await;
        }
        Command::Cas(args) => return cas(store, args, codec).await,
        Command::Hold => hold(db).await?,
        Command::Watch {
            range,
            projection,
            from,
            progress,
        } => {
            drop(out);
            let range = codec.range(range, Some(projection))?;
            return watch(store, range, *from, *progress, codec).await;
        }
        Command::Status => status::status(db, &mut out).await?,
        Command::Stats(args) => {
            status::stats(db, store, cli.backend.as_str(), args, &mut out).await?;
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

/// `rave cas`'s arguments.
#[derive(Args, Debug)]
pub struct CasArgs {
    /// The key.
    pub key: String,
    /// EXPECTED then NEW; EXPECTED is left out with `--expect-absent`, NEW with `--delete`.
    #[arg(value_name = "EXPECTED NEW", num_args = 0..=2)]
    pub values: Vec<String>,
    /// Expect KEY to be absent (and give no EXPECTED).
    #[arg(long)]
    pub expect_absent: bool,
    /// Remove KEY when the condition holds (and give no NEW).
    #[arg(long)]
    pub delete: bool,
}

/// Sets (or removes) a key only if it holds the expected value (or is absent).
async fn cas<S: KvStore>(store: &S, args: &CasArgs, codec: &Codec) -> Result<(), CliError> {
    let wanted = usize::from(!args.expect_absent) + usize::from(!args.delete);
    if args.values.len() != wanted {
        let names = match (args.expect_absent, args.delete) {
            (false, false) => "KEY EXPECTED NEW",
            (true, false) => "KEY NEW (with --expect-absent)",
            (false, true) => "KEY EXPECTED (with --delete)",
            (true, true) => "KEY alone (with --expect-absent --delete)",
        };
        return Err(CliError::Usage(format!("cas takes {names}")));
    }
    let mut values = args.values.iter();
    let mut next = || -> Result<Vec<u8>, CliError> {
        let text = values
            .next()
            .ok_or_else(|| CliError::Usage("cas: a value is missing".into()))?;
        codec.decode(text)
    };
    let key = codec.decode(&args.key)?;
    let expected = if args.expect_absent {
        None
    } else {
        Some(next()?)
    };
    let op = if args.delete {
        BatchOp::del(key.clone())
    } else {
        BatchOp::put(key.clone(), next()?)
    };
    let write = Write::Conditional {
        checks: vec![Check { key, expected }],
        ops: vec![op],
    };
    match store.write(write).await {
        Ok(()) => Ok(()),
        Err(rave::Error::ConditionFailed { current, .. }) => Err(CliError::ConditionFailed(
            current.map_or_else(|| b"<absent>".to_vec(), |value| codec.encode(&value)),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Prints every change of `range` after `from` until SIGTERM or SIGINT (or the stream fails).
async fn watch<S: KvStore>(
    store: &S,
    range: Range,
    from: Option<u64>,
    progress: bool,
    codec: &Codec,
) -> Result<(), CliError> {
    let mut stop = super::StopSignal::new()?;
    let mut stream = store.watch(range, from).await?;
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
