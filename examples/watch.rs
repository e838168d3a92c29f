//! Follow every change under a prefix, from any process, through every change of leader:
//! `cargo run --example watch -- DIR PREFIX [FROM]` prints each commit's changes as they are
//! made by any process on DIR (try `rave DIR put PREFIXa 1` in another shell). With FROM (a
//! sequence printed earlier) it first prints what came after it, from the database's history.

use futures::StreamExt;
use rave::{Change, Range, WatchEvent};

#[tokio::main]
async fn main() -> rave::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "./data".into());
    let prefix = args.next().unwrap_or_default();
    let from = args.next().and_then(|s| s.parse().ok());
    let db = rave::Rave::open(&dir, Default::default())?;
    let mut changes = db.watch(Range::prefix(prefix), from).await?;
    while let Some(event) = changes.next().await {
        match event? {
            WatchEvent::Progress { sequence } => println!("-- up to date at {sequence}"),
            WatchEvent::Commit(commit) => {
                for change in commit.changes {
                    match change {
                        Change::Put { key, value } => println!(
                            "{} put {} = {}",
                            commit.sequence,
                            String::from_utf8_lossy(&key),
                            String::from_utf8_lossy(&value)
                        ),
                        Change::Del { key } => {
                            println!("{} del {}", commit.sequence, String::from_utf8_lossy(&key))
                        }
                        Change::Clear { range } => println!("{} clear {range:?}", commit.sequence),
                    }
                }
            }
        }
    }
    db.close().await
}
