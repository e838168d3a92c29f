//! The seed's `get.js` in Rust: print `a` four times a second, whoever leads.

use std::time::Duration;

use rave::{Rave, RaveOptions};

#[tokio::main]
async fn main() -> rave::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "./data".into());
    let db: Rave = Rave::open(&dir, RaveOptions::default())?;
    loop {
        match db.get(b"a").await? {
            Some(value) => println!("a= {}", String::from_utf8_lossy(&value)),
            None => println!("a= (not set yet)"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
