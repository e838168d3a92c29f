//! The blocking API, as the README shows it: no runtime of your own, no type annotation.
//!
//! `cargo run --example blocking` (in any directory: it opens `./data`). Run it in two
//! terminals at once: one process leads, the other follows, and both read and write.

use rave::blocking::Rave;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct User {
    name: String,
    age: u32,
}

fn main() -> rave::Result<()> {
    let db = Rave::open("./data", Default::default())?;
    db.put("a", "1")?; // keys and values: anything AsRef<[u8]>
    let users = db.sublevel("users"); // a namespace: a view with the same API
    let typed = users.typed::<User>(); // serde values, JSON by default
    typed.put(
        "ada",
        &User {
            name: "Ada".into(),
            age: 36,
        },
    )?;
    let ada: Option<User> = typed.get("ada")?;
    for entry in db.range("a".."c")? {
        let (key, value) = entry?;
        println!(
            "{} = {}",
            String::from_utf8_lossy(&key),
            String::from_utf8_lossy(&value)
        );
    }
    println!("ada: {ada:?}");
    println!("role: {}", db.role());
    db.close()
}
