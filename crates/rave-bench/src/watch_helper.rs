//! The helper modes of the change-subscription figures (W1, W2) on rave's side: a process
//! that watches and records arrivals, and a writer that puts one key at a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use rave::{Backend, Change, Error, Range, Rave, RaveOptions, Result, Role, WatchEvent};

use crate::cli::runtime;
use crate::engines::{self, EngineName, with_engine};
use crate::helper::{say, wait_for_go};
use crate::tally::{Tally, index_of, mono_ns, write_rows};

/// The prefix every watched write uses (W1's `w:<index>` keys, W2's `w<id>-...` keys).
pub const PREFIX: &str = "w";

/// A watcher of [`PREFIX`] in `dir`.
#[derive(clap::Args, Debug, Clone)]
pub struct WatcherArgs {
    #[arg(long)]
    backend: EngineName,
    #[arg(long)]
    dir: PathBuf,
    /// Lead `dir` (start before anyone else opens it) instead of following.
    #[arg(long)]
    lead: bool,
    /// Where to write each put's arrival (`index ns` lines) at every `until`.
    #[arg(long)]
    record: Option<PathBuf>,
}

/// A writer of `count` keys `w:<index>`, one put at a time.
#[derive(clap::Args, Debug, Clone)]
pub struct PutLoopArgs {
    #[arg(long)]
    backend: EngineName,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Where to write `index start_ns ack_ns` lines.
    #[arg(long)]
    record: PathBuf,
}

/// Runs the watcher mode: `ready` once watching, then `until <n>` commands (see [`Tally`]).
pub fn watcher(args: &WatcherArgs) -> Result<()> {
    with_engine!(args.backend, B => watch::<B>(args))
}

/// Runs the put-loop mode: `ready`, then `go`, then `done` once every put was acknowledged.
pub fn put_loop(args: &PutLoopArgs) -> Result<()> {
    with_engine!(args.backend, B => puts::<B>(args))
}

async fn open<B: Backend + Default>(dir: &Path, want: Role) -> Result<Rave<B>> {
    let db = Rave::<B>::open_engine(dir, RaveOptions::default())?;
    let role = db.ready().await?;
    if role != want {
        return Err(Error::other(format!(
            "expected to be {want}, but this handle is {role}"
        )));
    }
    Ok(db)
}

fn watch<B: Backend + Default>(args: &WatcherArgs) -> Result<()> {
    let rt = runtime()?;
    let want = if args.lead {
        Role::Leader
    } else {
        Role::Follower
    };
    let tally = Arc::new(Tally::new(args.record.is_some()));
    let db = rt.block_on(async {
        let db = open::<B>(&args.dir, want).await?;
        let mut stream = db.watch(Range::prefix(PREFIX), None).await?;
        // The first item is the starting position: once it is here, every later commit
        // reaches this watcher.
        match stream.next().await {
            Some(Ok(WatchEvent::Progress { .. })) => {}
            other => return Err(Error::other(format!("a watch began with {other:?}"))),
        }
        let tally = tally.clone();
        // A task of the multi-thread runtime, where an application would consume events.
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(WatchEvent::Commit(commit)) => {
                        let now = mono_ns();
                        tally.arrived(
                            now,
                            commit.changes.iter().map(|change| match change {
                                Change::Put { key, .. } => index_of(key),
                                _ => None,
                            }),
                        );
                    }
                    Ok(WatchEvent::Progress { .. }) => {}
                    Err(e) => {
                        tally.fail(e.to_string());
                        return;
                    }
                }
            }
            tally.fail("the stream ended".into());
        });
        Ok::<_, Error>(db)
    })?;
    say("ready");
    tally.serve(&rt, args.record.as_deref())?;
    rt.block_on(db.close())
}

fn puts<B: Backend + Default>(args: &PutLoopArgs) -> Result<()> {
    let rt = runtime()?;
    let db = rt.block_on(async {
        let db = open::<B>(&args.dir, Role::Follower).await?;
        // One round trip before the clock starts, so that connecting is not measured.
        db.get(b"warm-up").await?;
        Ok::<_, Error>(db)
    })?;
    say("ready");
    wait_for_go()?;
    let value = engines::value(args.value_size);
    let rows = rt.block_on(async {
        let db = db.clone();
        let count = args.count;
        // From a task, as P1 measures: where server code calls rave from.
        tokio::spawn(async move {
            let mut rows = Vec::with_capacity(count);
            for i in 0..count as u64 {
                let key = format!("w:{i:012}").into_bytes();
                let start = mono_ns();
                db.put(&key, &value).await?;
                rows.push([i, start, mono_ns()]);
            }
            Ok::<_, Error>(rows)
        })
        .await
        .map_err(|e| Error::other(format!("the put task failed: {e}")))?
    })?;
    write_rows(&args.record, &rows)?;
    say("done");
    crate::helper::wait_for_eof();
    rt.block_on(db.close())
}
