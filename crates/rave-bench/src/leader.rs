//! P4: the leader's own gets and puts against the bare engine, in this process.
//!
//! Same engine, same directory, same data, same `KvStore` calls: once through a `Rave` handle
//! that leads (nobody else has the directory open), once through `Backend::open` directly.
//! The two sides alternate which goes first from run to run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rave::{Backend, Error, KvStore, OpenOptions, Rave, RaveOptions, Result, Role};

use crate::child::temp_dir;
use crate::cli::Sizes;
use crate::engines::{self, EngineName, KeyGen, with_engine};
use crate::helper::fill;
use crate::report::{Figure, Target};

/// Measures P4 for `engine`.
pub async fn measure(engine: EngineName, sizes: &Sizes) -> Result<Vec<Figure>> {
    with_engine!(engine, B => measure_with::<B>(sizes).await)
}

/// Opens the bare engine on `dir` (off the runtime: it blocks).
pub async fn open_bare<B: Backend + Default>(dir: &Path) -> Result<B::Store> {
    let dir: PathBuf = dir.to_path_buf();
    tokio::task::spawn_blocking(move || B::default().open(&dir, &OpenOptions::default()))
        .await
        .map_err(|e| Error::other(format!("the engine open task failed: {e}")))?
}

/// Microseconds per get and per put, one operation at a time.
async fn workload<S: KvStore + ?Sized>(db: &S, sizes: &Sizes, seed: u64) -> Result<(f64, f64)> {
    let mut keygen = KeyGen::new(seed);
    let keys: Vec<Vec<u8>> = (0..sizes.leader_gets)
        .map(|_| engines::key(keygen.below(sizes.keys)))
        .collect();
    // Warm-up: the engine's own cache is per open.
    for key in keys.iter().take(1_000) {
        db.get(key).await?;
    }
    let started = Instant::now();
    for key in &keys {
        db.get(key).await?;
    }
    let get_us = started.elapsed().as_secs_f64() * 1e6 / keys.len().max(1) as f64;
    let value = engines::value(sizes.value_size);
    let started = Instant::now();
    for key in keys.iter().take(sizes.leader_puts) {
        db.put(key, &value).await?;
    }
    let puts = sizes.leader_puts.min(keys.len()).max(1);
    let put_us = started.elapsed().as_secs_f64() * 1e6 / puts as f64;
    Ok((get_us, put_us))
}

async fn measure_with<B: Backend + Default>(sizes: &Sizes) -> Result<Vec<Figure>> {
    let tmp = temp_dir()?;
    let dir = tmp.path().join("db");
    let bare = open_bare::<B>(&dir).await?;
    fill(
        &bare,
        sizes.keys,
        engines::key,
        &engines::value(sizes.value_size),
    )
    .await?;
    bare.close().await?;
    drop(bare);

    let (mut rave_get, mut rave_put, mut bare_get, mut bare_put) = (vec![], vec![], vec![], vec![]);
    for run in 0..sizes.runs {
        let seed = run as u64 + 7;
        for side in 0..2 {
            if (run + side) % 2 == 0 {
                let store = open_bare::<B>(&dir).await?;
                let (g, p) = workload(&store, sizes, seed).await?;
                store.close().await?;
                bare_get.push(g);
                bare_put.push(p);
            } else {
                let db = Rave::<B>::open_engine(&dir, RaveOptions::default())?;
                let role = db.ready().await?;
                if role != Role::Leader {
                    return Err(Error::other(format!(
                        "expected to lead, but this handle is {role}"
                    )));
                }
                let (g, p) = workload(&db, sizes, seed).await?;
                db.close().await?;
                rave_get.push(g);
                rave_put.push(p);
            }
        }
    }
    let bare = "the bare engine (Backend::open), same KvStore calls, same data";
    Ok(vec![
        Figure::new("P4", "leader get, time per op (1 in flight)", "µs")
            .subject("rave handle that leads, in-process", rave_get)
            .baseline(bare, bare_get)
            .target(Target::ratio_at_most(1.10)),
        Figure::new("P4", "leader put, time per op (1 in flight)", "µs")
            .subject("rave handle that leads, in-process", rave_put)
            .baseline(bare, bare_put)
            .target(Target::ratio_at_most(1.10))
            .note("Puts use the default open options on both sides (redb fsyncs every commit; LevelDB without `sync` does not)."),
    ])
}
