//! The seed's `put.js` in Rust: every second, set `a` to a number of this process's own, and
//! print `put a=N` once the write is acknowledged.
//!
//! Start several, in any order, on one directory, with `get` beside them:
//!
//! ```sh
//! cargo run --release --example put -- ./data & cargo run --release --example get -- ./data
//! ```
//!
//! With `--level-compat` (and `--features leveldb`) they share the directory with the seed's
//! Node programs (rave-level): `node put.js & node get.js & cargo run --features leveldb
//! --example put -- --level-compat ./data`. `a` holds the same bytes either way (Node's
//! `valueEncoding: 'json'` writes a number as its digits).

use std::time::Duration;

use rave::{Backend, Rave, RaveOptions};

async fn put_forever<B: Backend>(db: Rave<B>) -> rave::Result<()> {
    let n = rand::random_range(0..100_000u64);
    loop {
        db.put(b"a", (n + 1).to_string().as_bytes()).await?;
        println!("put a={}", n + 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::main]
async fn main() -> rave::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let level_compat = args.iter().any(|a| a == "--level-compat");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "./data".into());
    if level_compat {
        #[cfg(feature = "leveldb")]
        {
            let options = RaveOptions::default().level_compat(true);
            let db = Rave::<rave::backends::LevelDbBackend>::open_engine(&dir, options)?;
            return put_forever(db).await;
        }
        #[cfg(not(feature = "leveldb"))]
        return Err(rave::Error::invalid(
            "--level-compat needs `--features leveldb`",
        ));
    }
    put_forever(Rave::open(&dir, RaveOptions::default())?).await
}
