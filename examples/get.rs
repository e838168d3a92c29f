//! The seed's `get.js` in Rust: print `a` four times a second, whoever leads.
//!
//! `--level-compat` (with `--features leveldb`): share the directory with the seed's Node
//! programs (see `put.rs`).

use std::time::Duration;

use rave::{Backend, Rave, RaveOptions};

async fn get_forever<B: Backend>(db: Rave<B>) -> rave::Result<()> {
    loop {
        match db.get(b"a").await? {
            Some(value) => println!("a= {}", String::from_utf8_lossy(&value)),
            None => println!("a= (not set yet)"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
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
            return get_forever(db).await;
        }
        #[cfg(not(feature = "leveldb"))]
        return Err(rave::Error::invalid(
            "--level-compat needs `--features leveldb`",
        ));
    }
    get_forever(Rave::open(&dir, RaveOptions::default())?).await
}
