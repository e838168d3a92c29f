//! The seed's `put.js` in Rust: every second, set `a` to a number of this process's own.
//!
//! Start several, in any order, on one directory, with `get` beside them:
//!
//! ```sh
//! cargo run --release --example put -- ./data & cargo run --release --example get -- ./data
//! ```

use std::time::Duration;

use rave::{Rave, RaveOptions};

#[tokio::main]
async fn main() -> rave::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "./data".into());
    let db: Rave = Rave::open(&dir, RaveOptions::default())?;
    let n = rand::random_range(0..100_000u64);
    loop {
        db.put(b"a", (n + 1).to_string().as_bytes()).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
