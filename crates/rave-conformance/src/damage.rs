//! What must follow damage to an engine's files, for the engine crates' own damage tests: only
//! the engine knows its files and how to damage them, but what comes after is the same for
//! every engine.
//!
//! ```no_run
//! # async fn example(dir: &std::path::Path) {
//! use std::collections::BTreeMap;
//! use rave_conformance::{BackendHarness, damage};
//! // ... write `written` into the database in `dir`, close it, damage its files ...
//! let written = BTreeMap::from([(b"key-0".to_vec(), b"value".to_vec())]);
//! let harness = BackendHarness::new(rave_api::MemoryBackend);
//! if let Err(failure) = damage::use_damaged(&harness, dir, &written).await {
//!     panic!("{failure}");
//! }
//! # }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use rave_api::{BatchOp, Entry, Error, ErrorKind, KvStore, Range, Result};

use crate::DirectHarness;
use crate::support::Failure;

/// How many of the written keys are read back one by one (spread evenly over them).
const POINT_READS: usize = 256;

/// Writes `batches` batches of `per_batch` puts into `store` (keys `key-0`, `key-1`, ...),
/// each value different from every other, so that a value read under the wrong key shows;
/// returns what it wrote, for [`use_damaged`].
pub async fn write_distinct(
    store: &dyn KvStore,
    batches: u32,
    per_batch: u32,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut written = BTreeMap::new();
    for batch in 0..batches {
        let ops: Vec<_> = (0..per_batch)
            .map(|i| {
                let n = batch * per_batch + i;
                BatchOp::put(format!("key-{n}"), format!("{n:08}").repeat(25))
            })
            .collect();
        for op in &ops {
            if let BatchOp::Put { key, value } = op {
                written.insert(key.clone(), value.clone());
            }
        }
        store.batch(ops).await?;
    }
    Ok(written)
}

/// Opens the database in `path`, whose files a test has damaged after writing exactly
/// `written` into it, with default options, and uses it: a full scan in each direction, point
/// reads of written keys, and a write read back; then closes it.
///
/// The engine may make sense of what is left (every step works: `Ok(None)`) or refuse it (the
/// open or a step fails with [`ErrorKind::Corruption`]: `Ok(Some(error))`). What it reads must
/// be what was written: damage may lose entries, never change them. Anything else is a
/// failure saying which step: an entry that was never written or has another value, a reverse
/// scan that is not the forward scan reversed, a point read that disagrees with the scan, an
/// error of another kind, or a panic in the engine (which comes out as an error).
pub async fn use_damaged(
    harness: &dyn DirectHarness,
    path: &Path,
    written: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> std::result::Result<Option<Error>, Failure> {
    use_damaged_with(harness, path, written, Loss::Allowed).await
}

/// [`use_damaged`] for damage that may not cost entries silently: a file holding durable,
/// acknowledged data (a table, not the tail of a log) was damaged, so the engine must refuse
/// it (an error of kind [`ErrorKind::Corruption`]) or read every written entry back.
pub async fn use_damaged_losing_nothing(
    harness: &dyn DirectHarness,
    path: &Path,
    written: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> std::result::Result<Option<Error>, Failure> {
    use_damaged_with(harness, path, written, Loss::Refused).await
}

/// Whether a damaged store that raises no error may read fewer entries than were written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Loss {
    Allowed,
    Refused,
}

async fn use_damaged_with(
    harness: &dyn DirectHarness,
    path: &Path,
    written: &BTreeMap<Vec<u8>, Vec<u8>>,
    loss: Loss,
) -> std::result::Result<Option<Error>, Failure> {
    let store = match harness
        .open_with(path, &rave_api::OpenOptions::default())
        .await
    {
        Ok(store) => store,
        Err(e) => return corruption(path, Step::Failed("the open", e)),
    };
    let result = use_store(&*store, written, loss).await;
    // The close may fail too, on a store already broken: what counts is the steps.
    let _ = store.close().await;
    match result {
        Ok(()) => Ok(None),
        Err(step) => corruption(path, step),
    }
}

/// Why the use of a damaged store stopped.
enum Step {
    /// A step failed with this error.
    Failed(&'static str, Error),
    /// A step read something that was not written.
    Wrong(String),
}

fn corruption(path: &Path, step: Step) -> std::result::Result<Option<Error>, Failure> {
    match step {
        Step::Failed(_, e) if e.kind() == ErrorKind::Corruption => Ok(Some(e)),
        Step::Failed(step, e) => Err(Failure::new(format!(
            "{step} of a damaged database in {}: expected success or an error of kind \
             Corruption, got kind {}: {e}",
            path.display(),
            e.kind()
        ))),
        Step::Wrong(what) => Err(Failure::new(format!(
            "a damaged database in {} silently read what was not written: {what}",
            path.display()
        ))),
    }
}

async fn use_store(
    store: &dyn KvStore,
    written: &BTreeMap<Vec<u8>, Vec<u8>>,
    loss: Loss,
) -> std::result::Result<(), Step> {
    async fn scan(store: &dyn KvStore, range: Range) -> Result<Vec<Entry>> {
        store.iterator(range).await?.collect_all().await
    }
    let forward = scan(store, Range::all())
        .await
        .map_err(|e| Step::Failed("a forward scan", e))?;
    let read = survivors(&forward, written).map_err(Step::Wrong)?;
    if loss == Loss::Refused && read.len() < written.len() {
        return Err(Step::Wrong(format!(
            "the scan lost {} of the {} entries written, without an error",
            written.len() - read.len(),
            written.len()
        )));
    }
    let mut reverse = scan(store, Range::all().reverse())
        .await
        .map_err(|e| Step::Failed("a reverse scan", e))?;
    reverse.reverse();
    if reverse != forward {
        return Err(Step::Wrong(format!(
            "the reverse scan ({} entries) is not the forward scan ({} entries) reversed",
            reverse.len(),
            forward.len()
        )));
    }
    let stride = (written.len() / POINT_READS).max(1);
    for key in written.keys().step_by(stride) {
        let got = store
            .get(key)
            .await
            .map_err(|e| Step::Failed("a point read", e))?;
        if got.as_deref() != read.get(key.as_slice()).copied() {
            return Err(Step::Wrong(format!(
                "a point read of {} gives {}, the scan {}",
                show(key),
                shown(got.as_deref()),
                shown(read.get(key.as_slice()).copied())
            )));
        }
    }
    let (key, value) = (b"written after the damage", b"1");
    store
        .put(key, value)
        .await
        .map_err(|e| Step::Failed("a write", e))?;
    let got = store
        .get(key)
        .await
        .map_err(|e| Step::Failed("a read of that write", e))?;
    if got.as_deref() != Some(&value[..]) {
        return Err(Step::Wrong(format!(
            "a write after the damage reads back as {}",
            shown(got.as_deref())
        )));
    }
    Ok(())
}

/// The entries of a forward scan as a map, checked against what was written: strictly
/// ordered, each a written key with its written value.
fn survivors<'a>(
    scanned: &'a [Entry],
    written: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> std::result::Result<BTreeMap<&'a [u8], &'a [u8]>, String> {
    if let Some(pair) = scanned.windows(2).find(|w| w[0].key >= w[1].key) {
        return Err(format!(
            "the scan is out of order: {} then {}",
            show(&pair[0].key),
            show(&pair[1].key)
        ));
    }
    for entry in scanned {
        match written.get(&entry.key) {
            None => return Err(format!("the scan has the key {}", show(&entry.key))),
            Some(value) if *value != entry.value => {
                let at = value
                    .iter()
                    .zip(&entry.value)
                    .take_while(|(a, b)| a == b)
                    .count();
                return Err(format!(
                    "the scan gives {} a value of {} bytes that differs from the {} written \
                     at byte {at}: {} instead of {}",
                    show(&entry.key),
                    entry.value.len(),
                    value.len(),
                    show(&entry.value[at.min(entry.value.len())..]),
                    show(&value[at.min(value.len())..])
                ));
            }
            Some(_) => {}
        }
    }
    Ok(scanned
        .iter()
        .map(|e| (e.key.as_slice(), e.value.as_slice()))
        .collect())
}

/// Bytes for a message: escaped, and cut short when long.
fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(24)];
    let more = if cut.len() < bytes.len() {
        format!("... ({} bytes)", bytes.len())
    } else {
        String::new()
    };
    format!("\"{}\"{more}", cut.escape_ascii())
}

fn shown(value: Option<&[u8]>) -> String {
    value.map_or_else(|| "nothing".to_string(), show)
}
