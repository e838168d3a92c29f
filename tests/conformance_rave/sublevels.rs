//! The suite through views, the way abstract-level re-runs its suite on a sublevel: a harness
//! that wraps another's stores in a nested sublevel (`!x!!y!`), so every test runs with its
//! keys, ranges, clears and iterators mapped into the sublevel, next to data outside it that
//! must stay untouched; and a typed-values case run through any harness.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rave::stream::TryStreamExt;
use rave::{Capabilities, KvStore, Range, Result, Sublevel};
use rave_conformance::{Failure, Harness, LeaderChanges};

/// Keys written next to the sublevel (below, around and above it) before each test; after
/// the test they must hold exactly what they held, whatever the test cleared.
const NEIGHBOURS: &[&[u8]] = &[b"", b"!x!", b"!x!!y", b"!x!!y\"", b"!x!!z!a", b"!x\"", b"~"];

/// Runs the suite of `H` through the sublevel `y` of the sublevel `x` of its stores.
pub struct Sublevels<H>(pub H);

#[async_trait]
impl<H: Harness> Harness for Sublevels<H> {
    fn name(&self) -> String {
        format!("{} through the sublevel !x!!y!", self.0.name())
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    async fn open(&self, path: &Path) -> Result<Box<dyn KvStore>> {
        let store: Arc<dyn KvStore> = Arc::from(self.0.open(path).await?);
        // Neighbours are written once per directory (a reopening test finds them there), in
        // one batch: two operations, so a planned failover mostly falls inside the test.
        if store.get(b"~").await?.is_none() {
            let ops = NEIGHBOURS
                .iter()
                .map(|key| rave::BatchOp::put(*key, &b"neighbour"[..]))
                .collect();
            store.batch(ops).await?;
        }
        Ok(Box::new(Checked(
            Sublevel::root(store).sublevel("x").sublevel("y"),
        )))
    }

    fn open_cursors(&self, path: &Path) -> Option<usize> {
        self.0.open_cursors(path)
    }

    fn leader_changes(&self) -> LeaderChanges {
        self.0.leader_changes()
    }

    fn verify(&self) -> std::result::Result<(), Failure> {
        self.0.verify()
    }
}

/// A sublevel that checks, at close, that the keys outside it were left alone.
struct Checked(Sublevel);

#[async_trait]
impl KvStore for Checked {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        KvStore::get(&self.0, key).await
    }
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        KvStore::get_many(&self.0, keys).await
    }
    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        KvStore::put(&self.0, key, value).await
    }
    async fn del(&self, key: &[u8]) -> Result<()> {
        KvStore::del(&self.0, key).await
    }
    async fn batch(&self, ops: Vec<rave::BatchOp>) -> Result<()> {
        KvStore::batch(&self.0, ops).await
    }
    async fn iterator(&self, range: Range) -> Result<Box<dyn rave::KvIterator>> {
        KvStore::iterator(&self.0, range).await
    }
    async fn clear(&self, range: Range) -> Result<()> {
        KvStore::clear(&self.0, range).await
    }
    async fn write(&self, write: rave::Write) -> Result<()> {
        KvStore::write(&self.0, write).await
    }
    async fn write_stamped(&self, stamp: rave::WriteStamp, write: rave::Write) -> Result<()> {
        KvStore::write_stamped(&self.0, stamp, write).await
    }
    async fn sequence(&self) -> Result<u64> {
        KvStore::sequence(&self.0).await
    }
    async fn watch(&self, range: Range, from: Option<u64>) -> Result<rave::WatchStream> {
        KvStore::watch(&self.0, range, from).await
    }
    async fn close(&self) -> Result<()> {
        let store = self.0.store();
        // A store already closed by the test has nothing more to check.
        if let Ok(found) = store
            .get_many(&NEIGHBOURS.iter().map(|k| k.to_vec()).collect::<Vec<_>>())
            .await
        {
            for (key, value) in NEIGHBOURS.iter().zip(found) {
                if value.as_deref() != Some(&b"neighbour"[..]) {
                    return Err(rave::Error::other(format!(
                        "the key {:?} outside the sublevel holds {value:?} after the test",
                        String::from_utf8_lossy(key)
                    )));
                }
            }
        }
        KvStore::close(&self.0).await
    }
}

#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct User {
    name: String,
    age: u32,
    tags: Vec<String>,
}

fn fail(message: String) -> rave::Error {
    rave::Error::other(message)
}

/// Typed values and keys through `harness`'s store, in a sublevel: JSON and MessagePack
/// round trips, the JSON bytes rave-level writes, integer and tuple keys in their natural
/// order across a range, typed batches spanning sublevels, and a typed clear.
pub async fn typed_values(harness: &dyn Harness) -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| rave::Error::io("temp dir", &e))?;
    let store: Arc<dyn KvStore> = Arc::from(harness.open(dir.path()).await?);
    let root = Sublevel::root(store.clone());
    let users = root.sublevel("users").typed::<User>();
    let ada = User {
        name: "Ada".into(),
        age: 36,
        tags: vec!["math".into()],
    };
    users.put("ada", &ada).await?;
    if users.get("ada").await? != Some(ada.clone()) {
        return Err(fail("the JSON value did not read back".into()));
    }
    let raw = store.get(b"!users!ada").await?;
    if raw.as_deref() != Some(&br#"{"name":"Ada","age":36,"tags":["math"]}"#[..]) {
        return Err(fail(format!("JSON bytes {raw:?}")));
    }
    let packed = root
        .sublevel("packed")
        .typed::<User>()
        .with_codec::<rave::view::MsgPack>();
    packed.put("ada", &ada).await?;
    if packed.get("ada").await? != Some(ada.clone()) {
        return Err(fail("the MessagePack value did not read back".into()));
    }

    // Integer keys: inserted out of order, scanned in numeric order, negatives first.
    let numbers = root.sublevel("numbers").typed::<i64>().with_keys::<i64>();
    let keys = [10i64, -3, 0, 2, -100, 1 << 40, 9];
    for k in keys {
        numbers.put(k, &(k * 2)).await?;
    }
    let got: Vec<(i64, i64)> = numbers.range(-50i64..=1 << 40).await?.try_collect().await?;
    let mut want: Vec<i64> = keys
        .into_iter()
        .filter(|k| (-50..=1 << 40).contains(k))
        .collect();
    want.sort();
    let want: Vec<(i64, i64)> = want.into_iter().map(|k| (k, k * 2)).collect();
    if got != want {
        return Err(fail(format!("integer range: {got:?}, expected {want:?}")));
    }

    // Tuple keys, and a batch spanning two typed sublevels.
    let events = root
        .sublevel("events")
        .typed::<String>()
        .with_keys::<(String, u32)>();
    let counts = root.sublevel("counts").typed::<u32>();
    let mut ops = Vec::new();
    for (who, n) in [("bob", 2u32), ("ada", 10), ("ada", 9), ("ab", 1)] {
        ops.push(events.put_op((who.to_string(), n), &format!("{who}{n}"))?);
    }
    ops.push(counts.put_op("ada", &2)?);
    store.batch(ops).await?;
    let got: Vec<(String, u32)> = events
        .iter()
        .await?
        .map_ok(|(k, _)| k)
        .try_collect()
        .await?;
    let want = [("ab", 1), ("ada", 9), ("ada", 10), ("bob", 2)]
        .map(|(w, n)| (w.to_string(), n))
        .to_vec();
    if got != want {
        return Err(fail(format!("tuple keys: {got:?}, expected {want:?}")));
    }
    if counts.get("ada").await? != Some(2) {
        return Err(fail("the batch across sublevels lost a write".into()));
    }

    // A typed clear stays inside its range and sublevel; a value of the wrong type is an
    // InvalidArgument, not a panic.
    numbers.clear(..0i64).await?;
    let left: Vec<(i64, i64)> = numbers.iter().await?.try_collect().await?;
    if left.iter().any(|(k, _)| *k < 0) || left.len() != 5 {
        return Err(fail(format!("after the clear: {left:?}")));
    }
    let wrong = root.sublevel("users").typed::<u32>();
    match wrong.get("ada").await {
        Err(e) if e.kind() == rave::ErrorKind::InvalidArgument => {}
        other => return Err(fail(format!("a mismatched type read {other:?}"))),
    }
    if users.get("ada").await? != Some(ada) {
        return Err(fail("another sublevel's clear reached users".into()));
    }
    store.close().await
}

/// Expands to a `#[tokio::test]` running [`typed_values`] through `$harness`, followed by
/// the harness's own check of what it planned (a failover).
macro_rules! typed_case {
    ($name:ident, $harness:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let harness = $harness;
            if let Err(e) = crate::sublevels::typed_values(&harness).await {
                panic!(
                    "typed values [{}]: {e}",
                    rave_conformance::Harness::name(&harness)
                );
            }
            if let Err(e) = rave_conformance::Harness::verify(&harness) {
                panic!(
                    "typed values [{}]: {e:?}",
                    rave_conformance::Harness::name(&harness)
                );
            }
        }
    };
}

pub(crate) use typed_case;
