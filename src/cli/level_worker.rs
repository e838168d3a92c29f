//! `rave level-worker` (hidden): the Rust workers of the mixed Node/Rust torture
//! (tests/level_torture.rs), beside interop/node/writer.js and reader.js.
//!
//! - `--kind writer`: puts `<prefix>/<i>` (8 digits) = `i` one at a time and prints `ack <i>`
//!   after each acknowledged put;
//! - `--kind reader`: scans the frozen keys `f/0000`.. (`--frozen N` of them) again and again,
//!   forward and reverse in chunks of 50, and prints `scan ok` or `scan bad dup=D skip=S`.
//!
//! Both print `leader` whenever the handle becomes leader, and stop at SIGTERM.

use std::collections::BTreeSet;

use clap::Args;
use rave::{Backend, KvStore, Range, Rave, Role};

use super::CliError;

/// Options of `rave level-worker`.
#[derive(Args, Debug, Clone)]
pub struct LevelWorkerArgs {
    /// `writer` or `reader`.
    #[arg(long)]
    pub kind: String,
    /// A writer's key prefix.
    #[arg(long, default_value = "w")]
    pub prefix: String,
    /// How many frozen keys a reader expects.
    #[arg(long, default_value_t = 0)]
    pub frozen: u32,
    /// A reader's pause between two chunks, in milliseconds (so scans span failovers).
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The frozen key `i`.
pub fn frozen_key(i: u32) -> Vec<u8> {
    format!("f/{i:04}").into_bytes()
}

/// Runs the worker until SIGTERM.
pub async fn run<B: Backend>(db: Rave<B>, args: &LevelWorkerArgs) -> Result<(), CliError> {
    let mut stop = super::StopSignal::new()?;
    // `leader` once per leadership, from a task of its own: an operation in flight is never
    // cancelled by a role change (a scan spanning a failover must resume, not restart).
    let mut roles = db.watch_role();
    let watcher = tokio::spawn(async move {
        let mut led = false;
        loop {
            let leads = *roles.borrow_and_update() == Role::Leader;
            if leads && !led {
                say("leader");
            }
            led = leads;
            if roles.changed().await.is_err() {
                return;
            }
        }
    });
    let mut i = 0u64;
    let mut reverse = false;
    loop {
        let step = async {
            match args.kind.as_str() {
                "writer" => {
                    let key = format!("{}/{i:08}", args.prefix);
                    db.put(key.as_bytes(), i.to_string().as_bytes()).await?;
                    say(&format!("ack {i}"));
                    i += 1;
                }
                _ => {
                    say(&scan(&db, args, reverse).await?);
                    reverse = !reverse;
                }
            }
            Ok::<(), rave::Error>(())
        };
        tokio::select! {
            result = step => if let Err(e) = result {
                say(&format!("err {}", e.kind()));
            },
            _ = stop.recv() => break,
        }
    }
    watcher.abort();
    db.close().await?;
    say("done");
    Ok(())
}

/// One scan of the frozen entries in chunks of 50: `scan ok`, or what went wrong.
async fn scan<B: Backend>(
    db: &Rave<B>,
    args: &LevelWorkerArgs,
    reverse: bool,
) -> rave::Result<String> {
    let mut range = Range::prefix("f/");
    if reverse {
        range = range.reverse();
    }
    let mut it = db.iterator(range).await?;
    let (mut seen, mut dup, mut order) = (BTreeSet::new(), 0, 0);
    let mut last: Option<Vec<u8>> = None;
    loop {
        let chunk = it.next_chunk(50).await?;
        if chunk.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(args.pause_ms)).await;
        for entry in chunk {
            if let Some(prev) = &last
                && (if reverse {
                    entry.key >= *prev
                } else {
                    entry.key <= *prev
                })
            {
                order += 1;
            }
            last = Some(entry.key.clone());
            if !seen.insert(entry.key) {
                dup += 1;
            }
        }
    }
    let skip = (0..args.frozen)
        .filter(|i| !seen.contains(&frozen_key(*i)))
        .count();
    Ok(if dup == 0 && skip == 0 && order == 0 {
        format!("scan ok {}", if reverse { "reverse" } else { "forward" })
    } else {
        format!("scan bad dup={dup} skip={skip} order={order} reverse={reverse}")
    })
}
