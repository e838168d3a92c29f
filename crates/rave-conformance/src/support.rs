//! What the tests share: results, failures with readable bytes, scratch directories, the store
//! guard and comparisons against the model.

use std::fmt::Write as _;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rave_api::{Entry, Error, ErrorKind, KvIterator, KvStore, OpenOptions, Range};

use crate::{DirectHarness, Harness, Model};

/// How a test that did not fail ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The test ran and every check held.
    Passed,
    /// The test does not apply to this store (the reason says why); it counts as passing.
    Skipped(String),
}

/// Why a test failed: what was expected and what came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    message: String,
}

impl Failure {
    /// A failure saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// This failure with `context` in front.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        Failure::new(format!("{context}: {}", self.message))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::new(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::new(message)
    }
}

/// The result of one test.
pub type TestResult = Result<Outcome, Failure>;

/// Turns a store error into a failure that says which operation failed.
pub(crate) trait Ctx<T> {
    fn ctx(self, what: impl std::fmt::Display) -> Result<T, Failure>;
}

impl<T> Ctx<T> for Result<T, Error> {
    fn ctx(self, what: impl std::fmt::Display) -> Result<T, Failure> {
        self.map_err(|e| {
            Failure::new(format!(
                "{what}: expected success, got error of kind {}: {e}",
                e.kind()
            ))
        })
    }
}

/// Fails the test with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::support::Failure::new(format!($($fmt)+)));
        }
    };
}
pub(crate) use ensure;

/// Says on stderr (and in the log) that a test does not apply, and returns the outcome.
pub(crate) fn skip(harness: &dyn Harness, test: &str, reason: &str) -> TestResult {
    skip_named(&harness.name(), test, reason)
}

/// [`skip`] for a test run on something named `name` rather than on a harness.
pub(crate) fn skip_named(name: &str, test: &str, reason: &str) -> TestResult {
    tracing::info!(test, harness = name, reason, "skipped");
    eprintln!("rave-conformance: {test} skipped on {name}: {reason}");
    Ok(Outcome::Skipped(reason.to_string()))
}

/// Bytes as readable text: `"ab\x00\xff"`, cut after 48 bytes for long values.
pub(crate) fn show(bytes: &[u8]) -> String {
    const MAX: usize = 48;
    let mut s = String::from("\"");
    for &b in bytes.iter().take(MAX) {
        match b {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(b as char);
            }
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    if bytes.len() > MAX {
        let _ = write!(s, "...({} bytes)", bytes.len());
    }
    s
}

/// An optional value as readable text.
pub(crate) fn show_opt(value: Option<&[u8]>) -> String {
    match value {
        Some(v) => format!("Some({})", show(v)),
        None => "None".to_string(),
    }
}

/// Entries as readable text, cut after 40 entries.
pub(crate) fn show_entries(entries: &[Entry]) -> String {
    const MAX: usize = 40;
    let mut s = String::from("[");
    for (i, e) in entries.iter().take(MAX).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}={}", show(&e.key), show(&e.value));
    }
    if entries.len() > MAX {
        let _ = write!(s, ", ...({} entries)", entries.len());
    }
    s.push(']');
    s
}

/// A range as readable text, e.g. `{gte "a", lt "b", reverse, limit 2, keys only}`.
pub(crate) fn show_range(range: &Range) -> String {
    let mut parts = Vec::new();
    for (name, bound) in [
        ("gt", &range.gt),
        ("gte", &range.gte),
        ("lt", &range.lt),
        ("lte", &range.lte),
    ] {
        if let Some(b) = bound {
            parts.push(format!("{name} {}", show(b)));
        }
    }
    if range.reverse {
        parts.push("reverse".into());
    }
    if let Some(n) = range.limit {
        parts.push(format!("limit {n}"));
    }
    match range.projection {
        rave_api::Projection::KeysAndValues => {}
        rave_api::Projection::KeysOnly => parts.push("keys only".into()),
        rave_api::Projection::ValuesOnly => parts.push("values only".into()),
    }
    format!("{{{}}}", parts.join(", "))
}

/// Fails unless `got` equals `expected`, showing both and where they first differ.
pub(crate) fn expect_entries(
    what: impl std::fmt::Display,
    got: &[Entry],
    expected: &[Entry],
) -> Result<(), Failure> {
    if got == expected {
        return Ok(());
    }
    let first_diff = got
        .iter()
        .zip(expected)
        .position(|(g, e)| g != e)
        .unwrap_or(got.len().min(expected.len()));
    Err(Failure::new(format!(
        "{what}: expected {} entries {}, got {} entries {} (first difference at index {first_diff})",
        expected.len(),
        show_entries(expected),
        got.len(),
        show_entries(got),
    )))
}

/// Fails unless `got`, everything an iterator over `range` (with keys) yielded, is snapshot
/// `before`'s sequence; or, when `spanned` (the leader changed during the iterator's life), a
/// prefix of it followed by what `after` holds in the range after the prefix's last entry: a
/// rave iterator resumes on a new leader after the last entry it delivered, with that leader's
/// state at the resume (`after`).
pub(crate) fn expect_snapshot(
    what: impl std::fmt::Display,
    got: &[Entry],
    range: &Range,
    before: &Model,
    after: &Model,
    spanned: bool,
) -> Result<(), Failure> {
    let old = before.query(range);
    if got == old {
        return Ok(());
    }
    if spanned {
        for split in 0..=got.len().min(old.len()) {
            if got[..split] != old[..split] {
                break;
            }
            let rest = match split.checked_sub(1) {
                Some(last) => range.remaining_after(&got[last].key, split as u64),
                None => range.clone(),
            };
            if got[split..] == after.query(&rest)[..] {
                return Ok(());
            }
        }
        return expect_entries(
            format!(
                "{what} (its life spanned a change of leader: expected its snapshot, or a prefix of it and then the new leader's state after that prefix)"
            ),
            got,
            &old,
        );
    }
    expect_entries(what, got, &old)
}

/// Waits until the engine serving `path` holds no cursor (when the harness can see them, see
/// [`Harness::open_cursors`]); fails when cursors are still open after 30 s. Returns whether
/// the cursors could be seen.
pub(crate) async fn expect_cursors_released(
    h: &dyn Harness,
    path: &Path,
    what: &str,
) -> Result<bool, Failure> {
    // Generous: a follower's drop reaches the leader's engine thread through a socket and two
    // tasks, on a machine that may be busy.
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);
    let start = std::time::Instant::now();
    loop {
        match h.open_cursors(path) {
            None => return Ok(false),
            Some(0) => return Ok(true),
            Some(n) if start.elapsed() > PATIENCE => {
                return Err(Failure::new(format!(
                    "{what}: expected the engine to hold no cursor once every iterator was dropped, still {n} after {PATIENCE:?}"
                )));
            }
            Some(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
}

/// Fails unless a read gave `expected`.
pub(crate) fn expect_value(
    what: impl std::fmt::Display,
    got: Option<&[u8]>,
    expected: Option<&[u8]>,
) -> Result<(), Failure> {
    if got == expected {
        return Ok(());
    }
    let detail = match (got, expected) {
        (Some(g), Some(e)) if g.len() == e.len() => {
            let at = g.iter().zip(e).position(|(a, b)| a != b).unwrap_or(0);
            format!(" (same length {}, first differing byte at {at})", g.len())
        }
        (Some(g), Some(e)) => format!(" (length {} instead of {})", g.len(), e.len()),
        _ => String::new(),
    };
    Err(Failure::new(format!(
        "{what}: expected {}, got {}{detail}",
        show_opt(expected),
        show_opt(got)
    )))
}

/// Fails unless `result` is an error of kind [`ErrorKind::Closed`].
pub(crate) fn expect_closed<T>(what: &str, result: Result<T, Error>) -> Result<(), Failure> {
    match result {
        Err(e) if e.kind() == ErrorKind::Closed => Ok(()),
        Err(e) => Err(Failure::new(format!(
            "{what} after close: expected an error of kind Closed, got kind {}: {e}",
            e.kind()
        ))),
        Ok(_) => Err(Failure::new(format!(
            "{what} after close: expected an error of kind Closed, got success"
        ))),
    }
}

/// Options as readable text, e.g. `{create_if_missing: false, error_if_exists: false, sync: false}`.
pub(crate) fn show_options(options: &OpenOptions) -> String {
    format!(
        "{{create_if_missing: {}, error_if_exists: {}, sync: {}}}",
        options.create_if_missing, options.error_if_exists, options.sync
    )
}

/// Opens `path` with `options` on the engine, which must refuse with an error of kind `kind`;
/// returns that error. A store that opens anyway is closed before the failure is returned.
pub(crate) async fn expect_refused(
    harness: &dyn DirectHarness,
    path: &Path,
    options: &OpenOptions,
    what: &str,
    kind: ErrorKind,
) -> Result<Error, Failure> {
    let what = format!("{what} ({} with {})", path.display(), show_options(options));
    match harness.open_with(path, options).await {
        Err(e) if e.kind() == kind => Ok(e),
        Err(e) => Err(Failure::new(format!(
            "{what}: expected an error of kind {kind}, got kind {}: {e}",
            e.kind()
        ))),
        Ok(store) => {
            let _ = store.close().await;
            Err(Failure::new(format!(
                "{what}: expected an error of kind {kind}, got an open store"
            )))
        }
    }
}

/// What is at a path, to prove that a refused open left it alone: nothing, a file's bytes, or
/// a directory's files (name and bytes; sub-directories by name only).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OnDisk {
    Missing,
    File(Vec<u8>),
    Dir(Vec<(String, Option<Vec<u8>>)>),
}

impl OnDisk {
    pub(crate) fn read(path: &Path) -> Result<OnDisk, Failure> {
        let fail =
            |what: &str, e: std::io::Error| Failure::new(format!("{what} {}: {e}", path.display()));
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OnDisk::Missing),
            Err(e) => return Err(fail("stat", e)),
        };
        if !meta.is_dir() {
            return std::fs::read(path)
                .map(OnDisk::File)
                .map_err(|e| fail("read", e));
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| fail("list", e))? {
            let entry = entry.map_err(|e| fail("list", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().map_err(|e| fail("stat in", e))?.is_dir();
            let bytes = if is_dir {
                None
            } else {
                Some(std::fs::read(entry.path()).map_err(|e| fail("read in", e))?)
            };
            files.push((name, bytes));
        }
        files.sort();
        Ok(OnDisk::Dir(files))
    }

    /// Fails unless `path` still holds what `self` recorded.
    pub(crate) fn unchanged(&self, path: &Path, what: &str) -> Result<(), Failure> {
        let now = OnDisk::read(path)?;
        if now == *self {
            return Ok(());
        }
        Err(Failure::new(format!(
            "{what}: expected {} to be left as it was ({}), found {}",
            path.display(),
            self.describe(),
            now.describe()
        )))
    }

    fn describe(&self) -> String {
        match self {
            OnDisk::Missing => "nothing".into(),
            OnDisk::File(bytes) => format!("a file holding {}", show(bytes)),
            OnDisk::Dir(files) => {
                let names: Vec<String> = files
                    .iter()
                    .map(|(name, bytes)| match bytes {
                        Some(b) => format!("{name} ({} bytes)", b.len()),
                        None => format!("{name}/"),
                    })
                    .collect();
                format!("a directory holding [{}]", names.join(", "))
            }
        }
    }
}

/// A directory the test owns, removed when dropped.
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new() -> Result<Self, Failure> {
        let dir = tempfile::Builder::new()
            .prefix("rave-conf-")
            .tempdir()
            .map_err(|e| Failure::new(format!("create a temporary directory: {e}")))?;
        Ok(Scratch { dir })
    }

    /// The database directory: a not-yet-existing child, so opening must create it.
    pub(crate) fn db(&self) -> PathBuf {
        self.path("db")
    }

    /// Another not-yet-existing child, named `name`.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// An open store. Tests call [`Db::close`]; a store dropped unclosed (a failed test) is closed
/// in the background.
pub(crate) struct Db {
    store: Arc<dyn KvStore>,
    closed: bool,
}

impl Db {
    pub(crate) async fn open(harness: &dyn Harness, path: &Path) -> Result<Db, Failure> {
        let store = harness.open(path).await.ctx(format!(
            "open {} on {}",
            path.display(),
            harness.name()
        ))?;
        Ok(Db::from_store(store))
    }

    /// Opens `path` with `options`, on the engine itself.
    pub(crate) async fn open_with(
        harness: &dyn DirectHarness,
        path: &Path,
        options: &OpenOptions,
    ) -> Result<Db, Failure> {
        let store = harness.open_with(path, options).await.ctx(format!(
            "open {} on {} with {}",
            path.display(),
            harness.name(),
            show_options(options)
        ))?;
        Ok(Db::from_store(store))
    }

    /// A store opened by the test itself.
    pub(crate) fn from_store(store: Box<dyn KvStore>) -> Db {
        Db {
            store: Arc::from(store),
            closed: false,
        }
    }

    /// The store, to share with spawned tasks.
    pub(crate) fn shared(&self) -> Arc<dyn KvStore> {
        Arc::clone(&self.store)
    }

    pub(crate) async fn close(mut self) -> Result<(), Failure> {
        self.closed = true;
        self.store.close().await.ctx("close")
    }

    /// Writes every entry of `model` with single puts.
    pub(crate) async fn load(&self, model: &Model) -> Result<(), Failure> {
        for e in model.entries() {
            self.put(&e.key, &e.value)
                .await
                .ctx(format!("put {}", show(&e.key)))?;
        }
        Ok(())
    }

    /// Fails unless iterating `range` yields what the model says.
    pub(crate) async fn check_range(
        &self,
        model: &Model,
        range: &Range,
        chunk: usize,
    ) -> Result<(), Failure> {
        self.expect_range(range, chunk, &model.query(range)).await
    }

    /// Fails unless iterating `range`, `chunk` entries at a time, yields exactly `expected`.
    pub(crate) async fn expect_range(
        &self,
        range: &Range,
        chunk: usize,
        expected: &[Entry],
    ) -> Result<(), Failure> {
        let got = collect(&*self.store, range.clone(), chunk).await?;
        expect_entries(
            format!("iterator over {}", show_range(range)),
            &got,
            expected,
        )
    }

    /// Clears `range` in the store and in `model`, then fails unless the two agree.
    pub(crate) async fn check_clear(
        &self,
        model: &mut Model,
        range: &Range,
    ) -> Result<(), Failure> {
        self.clear(range.clone())
            .await
            .ctx(format!("clear {}", show_range(range)))?;
        model.clear(range);
        self.check_state(model)
            .await
            .map_err(|f| f.context(format!("after clear {}", show_range(range))))
    }

    /// Fails unless the store holds exactly what the model holds.
    pub(crate) async fn check_state(&self, model: &Model) -> Result<(), Failure> {
        let got = collect(&*self.store, Range::all(), 97).await?;
        expect_entries("the whole store", &got, &model.entries())
    }
}

impl Deref for Db {
    type Target = dyn KvStore;

    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = Arc::clone(&self.store);
            runtime.spawn(async move {
                let _ = store.close().await;
            });
        }
    }
}

/// Every remaining entry of `iter`, asking for `chunk` at a time and checking that no chunk
/// is larger than asked.
pub(crate) async fn drain(
    iter: &mut dyn KvIterator,
    chunk: usize,
    what: &str,
) -> Result<Vec<Entry>, Failure> {
    let mut all = Vec::new();
    loop {
        let got = iter
            .next_chunk(chunk)
            .await
            .ctx(format!("next_chunk({chunk}) of {what}"))?;
        ensure!(
            got.len() <= chunk,
            "next_chunk({chunk}) of {what}: expected at most {chunk} entries, got {}",
            got.len()
        );
        if got.is_empty() {
            return Ok(all);
        }
        all.extend(got);
    }
}

/// The `i`th of a crowd of iterators over the whole store: forward for even `i`, reverse for
/// odd, and read `read` entries into unless `i` is a multiple of 3 (so the crowd mixes
/// directions, untouched and part-read iterators).
pub(crate) async fn crowd_iterator(
    store: &dyn KvStore,
    i: usize,
    read: usize,
) -> Result<Box<dyn KvIterator>, Failure> {
    let range = if i.is_multiple_of(2) {
        Range::all()
    } else {
        Range::all().reverse()
    };
    let mut iter = store
        .iterator(range)
        .await
        .ctx(format!("open iterator {i}"))?;
    if !i.is_multiple_of(3) {
        iter.next_chunk(read)
            .await
            .ctx(format!("read iterator {i}"))?;
    }
    Ok(iter)
}

/// Every entry of a new iterator over `range`.
pub(crate) async fn collect(
    store: &dyn KvStore,
    range: Range,
    chunk: usize,
) -> Result<Vec<Entry>, Failure> {
    let what = format!("iterator over {}", show_range(&range));
    let mut iter = store.iterator(range).await.ctx(format!("open {what}"))?;
    drain(&mut *iter, chunk, &what).await
}

/// `Entry` from two byte strings.
pub(crate) fn entry(key: &[u8], value: &[u8]) -> Entry {
    Entry::new(key, value)
}
