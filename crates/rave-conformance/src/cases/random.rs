//! A randomized model test: random operations, the store compared with a `BTreeMap` after
//! every step. The seed comes from `RAVE_SEED` or is random, and is in every failure message.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rave_api::{BatchOp, Projection, Range};

use crate::support::{Ctx, Db, Failure, Scratch, ensure, expect_value, show, show_range};
use crate::{Harness, Model, Outcome, TestResult};

const STEPS: usize = 400;

/// Bytes chosen to stress ordering: both ends, and the signed/unsigned boundary.
const ALPHABET: [u8; 8] = [0x00, 0x01, b'a', b'b', 0x7f, 0x80, 0xfe, 0xff];

fn random_key(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(0..=3);
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect()
}

fn random_value(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(0..=12);
    (0..len).map(|_| rng.random()).collect()
}

fn random_range(rng: &mut StdRng) -> Range {
    let mut range = Range::all();
    if rng.random_bool(0.3) {
        range = range.gt(random_key(rng));
    }
    if rng.random_bool(0.3) {
        range = range.gte(random_key(rng));
    }
    if rng.random_bool(0.3) {
        range = range.lt(random_key(rng));
    }
    if rng.random_bool(0.3) {
        range = range.lte(random_key(rng));
    }
    if rng.random_bool(0.5) {
        range = range.reverse();
    }
    if rng.random_bool(0.5) {
        range = range.limit(rng.random_range(0..=12));
    }
    range.projection = match rng.random_range(0..4) {
        0 => Projection::KeysOnly,
        1 => Projection::ValuesOnly,
        _ => Projection::KeysAndValues,
    };
    range
}

fn seed() -> Result<u64, Failure> {
    match std::env::var("RAVE_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|e| Failure::new(format!("RAVE_SEED={s:?} is not a u64: {e}"))),
        Err(_) => Ok(rand::random()),
    }
}

pub(crate) async fn randomized_model(h: &dyn Harness) -> TestResult {
    let seed = seed()?;
    tracing::info!(seed, "randomized_model");
    let scratch = Scratch::new()?;
    let mut history: Vec<String> = Vec::new();
    let result = run(h, &scratch, seed, &mut history).await;
    result.map_err(|failure| {
        let start = history.len().saturating_sub(12);
        let recent: Vec<String> = history[start..]
            .iter()
            .enumerate()
            .map(|(i, op)| format!("  step {}: {op}", start + i))
            .collect();
        failure.context(format!(
            "with seed {seed} (rerun with RAVE_SEED={seed}) at step {} of {STEPS}; last steps:\n{}\nfailure",
            history.len().saturating_sub(1),
            recent.join("\n")
        ))
    })
}

async fn run(
    h: &dyn Harness,
    scratch: &Scratch,
    seed: u64,
    history: &mut Vec<String>,
) -> Result<Outcome, Failure> {
    let mut rng = StdRng::seed_from_u64(seed);
    let persistent = h.capabilities().persistent;
    let mut db = Db::open(h, &scratch.db()).await?;
    let mut model = Model::new();
    for _ in 0..STEPS {
        let dice = rng.random_range(0..100);
        match dice {
            0..=24 => {
                let (key, value) = (random_key(&mut rng), random_value(&mut rng));
                history.push(format!("put {}={}", show(&key), show(&value)));
                db.put(&key, &value).await.ctx("put")?;
                model.put(&key, &value);
            }
            25..=34 => {
                let key = random_key(&mut rng);
                history.push(format!("del {}", show(&key)));
                db.del(&key).await.ctx("del")?;
                model.del(&key);
            }
            35..=49 => {
                let ops: Vec<BatchOp> = (0..rng.random_range(0..=8))
                    .map(|_| {
                        if rng.random_bool(0.7) {
                            BatchOp::put(random_key(&mut rng), random_value(&mut rng))
                        } else {
                            BatchOp::del(random_key(&mut rng))
                        }
                    })
                    .collect();
                let shown: Vec<String> = ops
                    .iter()
                    .map(|op| match op {
                        BatchOp::Put { key, value } => format!("put {}={}", show(key), show(value)),
                        BatchOp::Del { key } => format!("del {}", show(key)),
                    })
                    .collect();
                history.push(format!("batch [{}]", shown.join(", ")));
                db.batch(ops.clone()).await.ctx("batch")?;
                model.apply(&ops);
            }
            50..=54 => {
                let range = random_range(&mut rng);
                history.push(format!("clear {}", show_range(&range)));
                db.clear(range.clone()).await.ctx("clear")?;
                model.clear(&range);
            }
            55..=66 => {
                let key = random_key(&mut rng);
                history.push(format!("get {}", show(&key)));
                let got = db.get(&key).await.ctx("get")?;
                expect_value(
                    format!("get {}", show(&key)),
                    got.as_deref(),
                    model.get(&key),
                )?;
            }
            67..=71 => {
                let keys: Vec<Vec<u8>> = (0..rng.random_range(0..=6))
                    .map(|_| random_key(&mut rng))
                    .collect();
                history.push(format!("get_many of {} keys", keys.len()));
                let got = db.get_many(&keys).await.ctx("get_many")?;
                let expected: Vec<Option<Vec<u8>>> = keys
                    .iter()
                    .map(|k| model.get(k).map(<[u8]>::to_vec))
                    .collect();
                ensure!(
                    got == expected,
                    "get_many of {:?}: expected {expected:?}, got {got:?}",
                    keys.iter().map(|k| show(k)).collect::<Vec<_>>()
                );
            }
            72..=97 => {
                let range = random_range(&mut rng);
                let chunk = rng.random_range(1..=9);
                history.push(format!(
                    "iterate {} in chunks of {chunk}",
                    show_range(&range)
                ));
                db.expect_range(&range, chunk, &model.query(&range)).await?;
            }
            _ if persistent => {
                history.push("close and reopen".to_string());
                db.close().await?;
                db = Db::open(h, &scratch.db()).await?;
            }
            _ => {
                history.push("(reopen skipped: not persistent)".to_string());
            }
        }
        db.check_state(&model)
            .await
            .map_err(|f| f.context("state after the step"))?;
    }
    db.close().await?;
    Ok(Outcome::Passed)
}
