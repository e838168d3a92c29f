//! The fsync ceiling of P5: how many `fdatasync`s per second this machine's file system does.
//!
//! A durable commit needs at least one `fdatasync`, so a leader that commits every put in
//! flight at once can reach at most `processes × in flight × this rate` puts per second (and
//! SQLite WAL FULL, one fsync per commit, about this rate). Measured in the same run and on
//! the same file system as the P5 databases (the temporary directory of [`temp_dir`]).

use std::io::Write;
use std::time::{Duration, Instant};

use rave::{Error, Result};

use crate::child::temp_dir;

/// `fdatasync`s per second: one thread appending `value_size` bytes and syncing, for `seconds`.
pub async fn rate(value_size: usize, seconds: f64) -> Result<f64> {
    tokio::task::spawn_blocking(move || measure(value_size, seconds))
        .await
        .map_err(|e| Error::other(format!("the fsync measurement panicked: {e}")))?
}

fn measure(value_size: usize, seconds: f64) -> Result<f64> {
    let tmp = temp_dir()?;
    let path = tmp.path().join("fsync-ceiling");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io("create the fsync probe file", &e))?;
    let record = vec![0x5a; value_size.max(1)];
    let io = |e: std::io::Error| Error::io("append and fdatasync the probe file", &e);
    let limit = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < limit {
        file.write_all(&record).map_err(io)?;
        file.sync_data().map_err(io)?;
        syncs += 1;
    }
    Ok(syncs as f64 / start.elapsed().as_secs_f64())
}
