//! Sublevels: namespaces laid out as Level lays them out (`!name!key`), nested, cleared and
//! written atomically together. `cargo run --example sublevels -- <dir>`

use rave::stream::TryStreamExt;

#[tokio::main]
async fn main() -> rave::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "./data".into());
    let db = rave::Rave::open(&dir, Default::default())?;
    let users = db.sublevel("users");
    let sessions = users.sublevel("sessions"); // keys under `!users!!sessions!`

    // One atomic batch across sublevels.
    db.batch(vec![
        users.put_op("ada", "Ada Lovelace"),
        sessions.put_op("ada", "token-1"),
    ])
    .await?;

    // Each sublevel sees only its own keys, without the prefix.
    let in_users: Vec<(Vec<u8>, Vec<u8>)> = users.range(..).await?.try_collect().await?;
    println!(
        "users holds {} key(s): {:?}",
        in_users.len(),
        String::from_utf8_lossy(&in_users[0].0)
    );
    // The store holds the prefixed keys, byte for byte what rave-level writes.
    let raw: Vec<(Vec<u8>, Vec<u8>)> = db.range(..).await?.try_collect().await?;
    for (key, _) in &raw {
        println!("stored: {}", String::from_utf8_lossy(key));
    }

    sessions.clear(..).await?; // stays inside the sublevel
    println!(
        "after clearing sessions: {:?}",
        users.get("ada").await?.is_some()
    );
    db.close().await
}
