//! The engine contract: what every persistent engine does with the directory it owns, checked
//! on the engine itself (a [`DirectHarness`]). Each test is
//! `async fn(&dyn DirectHarness) -> TestResult`, works in its own scratch directory and closes
//! every store it opens.
//!
//! The expected error kinds come from the contract ([`OpenOptions`], [`rave_api::dir`]), never
//! from the engine under test. A non-persistent engine ignores its directory, so every test
//! is skipped there. The tests of shared point reads live in [`crate::shared_reads`].

use std::path::Path;
use std::time::{Duration, Instant};

use rave_api::{BatchOp, Error, ErrorKind, KvStore, OpenOptions, Range, dir};

use crate::support::{
    Ctx, Db, Failure, OnDisk, Scratch, ensure, expect_refused, expect_value, show_options, skip,
};
use crate::{DirectHarness, Model, Outcome, TestResult};

// The engine contract's tests of point reads that bypass the engine thread.
pub(crate) use crate::shared_reads::{
    closing_during_shared_reads_releases_the_directory,
    shared_point_reads_complete_on_their_first_poll,
    shared_reads_see_acknowledged_writes_from_every_task,
};

/// A name no real engine records: a directory marked with it belongs to someone else.
const FOREIGN_ENGINE: &str = "rave-conformance-foreign-engine";

/// How long a dropped (not closed) store may take to let go of its directory.
const RELEASE_AFTER_DROP: Duration = Duration::from_secs(10);

fn options(create_if_missing: bool, error_if_exists: bool, sync: bool) -> OpenOptions {
    OpenOptions {
        create_if_missing,
        error_if_exists,
        sync,
        ..OpenOptions::default()
    }
}

fn no_create() -> OpenOptions {
    options(false, false, false)
}

fn exclusive() -> OpenOptions {
    options(true, true, false)
}

/// `None` (the test goes on) for a persistent engine, the skip outcome otherwise.
fn not_persistent(h: &dyn DirectHarness, test: &str) -> Option<TestResult> {
    (!h.capabilities().persistent).then(|| {
        skip(
            h,
            test,
            "the engine is not persistent: it ignores its directory",
        )
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, bytes).map_err(|e| Failure::new(format!("write {}: {e}", path.display())))
}

fn mkdir(path: &Path) -> Result<(), Failure> {
    std::fs::create_dir(path)
        .map_err(|e| Failure::new(format!("create directory {}: {e}", path.display())))
}

/// Fails unless `path` is recorded (in [`dir::ENGINE_FILE`]) as a database of `engine`.
fn expect_recorded(path: &Path, engine: &str, what: &str) -> Result<(), Failure> {
    let found = dir::detect(path).ctx(format!("read the engine record of {}", path.display()))?;
    ensure!(
        found.as_deref() == Some(engine),
        "{what}: expected {} to be recorded as a {engine} database, found {found:?}",
        path.display()
    );
    Ok(())
}

/// Writes `model` into a new database at `path` and closes it.
async fn create(h: &dyn DirectHarness, path: &Path, model: &Model) -> Result<(), Failure> {
    let db = Db::open(h, path).await?;
    db.load(model).await?;
    db.close().await
}

fn small_model() -> Model {
    let mut model = Model::new();
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        model.put(k.as_bytes(), v.as_bytes());
    }
    model
}

/// Without `create_if_missing`, a missing directory, an empty one and one recorded as this
/// engine's but without its files (a crash during the first open) are `DoesNotExist`, every
/// time; the refused open creates nothing where nothing was and leaves an empty directory
/// empty. With `create_if_missing`, each opens as an empty database, recorded as this
/// engine's.
pub(crate) async fn missing_database_without_create_if_missing(
    h: &dyn DirectHarness,
) -> TestResult {
    if let Some(skipped) = not_persistent(h, "missing_database_without_create_if_missing") {
        return skipped;
    }
    let scratch = Scratch::new()?;
    let missing = scratch.path("missing");
    let empty = scratch.path("empty");
    mkdir(&empty)?;
    let recorded = scratch.path("recorded");
    mkdir(&recorded)?;
    write(
        &recorded.join(dir::ENGINE_FILE),
        format!("{}\n", h.engine()).as_bytes(),
    )?;
    for (path, what) in [
        (&missing, "a missing directory"),
        (&empty, "an empty directory"),
        (
            &recorded,
            "a directory recorded as this engine's, without its files",
        ),
    ] {
        let before = OnDisk::read(path)?;
        // With nothing there, error_if_exists does not matter; a record counts as a database
        // for it (see `dir::prepare`), so it is left out there.
        let all_options = [no_create(), options(false, true, false)];
        let tried = if path == &recorded {
            &all_options[..1]
        } else {
            &all_options[..]
        };
        for options in tried {
            expect_refused(h, path, options, what, ErrorKind::DoesNotExist).await?;
            if path == &recorded {
                // The engine itself looked for its files here and may have left a lock or log
                // file behind (LevelDB does); the record stays, and no database appeared (the
                // next open is refused the same way).
                expect_recorded(path, h.engine(), &format!("a refused open of {what}"))?;
            } else {
                before.unchanged(path, &format!("a refused open of {what}"))?;
            }
        }
    }

    let mut model = Model::new();
    model.put(b"k", b"v");
    for (path, what) in [
        (&missing, "a missing directory"),
        (&empty, "an empty directory"),
        (
            &recorded,
            "a directory recorded as this engine's, without its files",
        ),
    ] {
        let db = Db::open(h, path)
            .await
            .map_err(|f| f.context(format!("create_if_missing on {what}")))?;
        db.check_state(&Model::new())
            .await
            .map_err(|f| f.context(format!("a new database in {what}")))?;
        db.load(&model).await?;
        db.check_state(&model).await?;
        db.close().await?;
        expect_recorded(path, h.engine(), &format!("a database created in {what}"))?;
    }
    Ok(Outcome::Passed)
}

/// `error_if_exists` opens a new directory and refuses an existing database with
/// `AlreadyExists`, leaving it as it was; without `create_if_missing` an existing database
/// opens with its data.
pub(crate) async fn open_options_on_an_existing_database(h: &dyn DirectHarness) -> TestResult {
    if let Some(skipped) = not_persistent(h, "open_options_on_an_existing_database") {
        return skipped;
    }
    let scratch = Scratch::new()?;
    let path = scratch.db();
    let mut model = small_model();
    let db = Db::open_with(h, &path, &exclusive())
        .await
        .map_err(|f| f.context("error_if_exists on a new directory"))?;
    db.load(&model).await?;
    db.close().await?;

    let before = OnDisk::read(&path)?;
    for options in [
        exclusive(),
        options(false, true, false),
        options(true, true, true),
    ] {
        expect_refused(
            h,
            &path,
            &options,
            "error_if_exists on an existing database",
            ErrorKind::AlreadyExists,
        )
        .await?;
        before.unchanged(&path, "an open refused by error_if_exists")?;
    }

    let db = Db::open_with(h, &path, &no_create())
        .await
        .map_err(|f| f.context("an existing database without create_if_missing"))?;
    db.check_state(&model)
        .await
        .map_err(|f| f.context("opened without create_if_missing"))?;
    db.put(b"d", b"4").await.ctx("put d")?;
    model.put(b"d", b"4");
    db.close().await?;
    let db = Db::open(h, &path).await?;
    db.check_state(&model).await?;
    db.close().await?;
    Ok(Outcome::Passed)
}

/// A path that is a regular file is `InvalidArgument` (a database is a directory), whatever the
/// options, and the file is left as it was.
pub(crate) async fn regular_file_is_not_a_database(h: &dyn DirectHarness) -> TestResult {
    if let Some(skipped) = not_persistent(h, "regular_file_is_not_a_database") {
        return skipped;
    }
    let scratch = Scratch::new()?;
    let file = scratch.path("file");
    write(&file, b"not a database")?;
    let before = OnDisk::read(&file)?;
    for options in [OpenOptions::default(), no_create(), exclusive()] {
        expect_refused(
            h,
            &file,
            &options,
            "a regular file",
            ErrorKind::InvalidArgument,
        )
        .await?;
        before.unchanged(&file, "a refused open of a regular file")?;
    }
    Ok(Outcome::Passed)
}

/// A directory layout of another engine: its name, how it is recognised, its files.
struct Foreign {
    engine: &'static str,
    how: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
}

/// Other engines' directories: a record naming them (next to some data of theirs that must be
/// left alone), or their well-known files in a plain directory (see [`dir::detect`]).
fn foreign_layouts(engine: &str) -> Vec<Foreign> {
    let mut layouts = Vec::new();
    for name in [FOREIGN_ENGINE, "redb", "leveldb", "rocksdb"] {
        layouts.push(Foreign {
            engine: name,
            how: "its record",
            files: vec![
                (dir::ENGINE_FILE, format!("{name}\n").into_bytes()),
                ("their-data", b"someone else's data".to_vec()),
            ],
        });
    }
    let plain = |engine, files: &[(&'static str, &[u8])]| Foreign {
        engine,
        how: "its plain files",
        files: files.iter().map(|(f, b)| (*f, b.to_vec())).collect(),
    };
    layouts.push(plain("redb", &[("data.redb", b"redb data")]));
    layouts.push(plain("leveldb", &[("CURRENT", b"MANIFEST-000001\n")]));
    layouts.push(plain(
        "rocksdb",
        &[
            ("CURRENT", b"MANIFEST-000005\n"),
            ("IDENTITY", b"id\n"),
            ("OPTIONS-000007", b"[Version]\n"),
        ],
    ));
    layouts.retain(|l| l.engine != engine);
    layouts
}

/// A directory holding another engine's database (recorded, or recognised by its files) is
/// refused with `WrongEngine` naming both engines, and left as it was; the other way round, a
/// directory this engine created records its name, so that every other engine (all check with
/// [`dir::prepare`]) refuses it, and it still opens here afterwards.
pub(crate) async fn other_engines_directories_are_refused(h: &dyn DirectHarness) -> TestResult {
    if let Some(skipped) = not_persistent(h, "other_engines_directories_are_refused") {
        return skipped;
    }
    let engine = h.engine().to_string();
    let scratch = Scratch::new()?;
    for (i, foreign) in foreign_layouts(&engine).into_iter().enumerate() {
        let found = foreign.engine;
        let path = scratch.path(&format!("foreign-{i}"));
        mkdir(&path)?;
        for (name, bytes) in &foreign.files {
            write(&path.join(name), bytes)?;
        }
        let what = format!("a {found} directory recognised by {}", foreign.how);
        let before = OnDisk::read(&path)?;
        for options in [OpenOptions::default(), no_create(), exclusive()] {
            let err = expect_refused(h, &path, &options, &what, ErrorKind::WrongEngine).await?;
            match &err {
                Error::WrongEngine {
                    expected,
                    found: actual,
                    ..
                } => ensure!(
                    *expected == engine && *actual == found,
                    "{what} with {}: expected WrongEngine {{ expected: {engine:?}, found: \
                     {found:?} }}, got {{ expected: {expected:?}, found: {actual:?} }}",
                    show_options(&options)
                ),
                other => {
                    return Err(Failure::new(format!(
                        "{what}: expected the WrongEngine variant, got {other:?}"
                    )));
                }
            }
            ensure!(
                err.to_string().contains(found),
                "{what}: expected the message to name {found}, got: {err}"
            );
            before.unchanged(&path, &format!("a refused open of {what}"))?;
        }
    }

    // The other way round.
    let path = scratch.db();
    let model = small_model();
    create(h, &path, &model).await?;
    expect_recorded(&path, &engine, "a database this engine created")?;
    let before = OnDisk::read(&path)?;
    match dir::prepare(&path, &OpenOptions::default(), FOREIGN_ENGINE) {
        Err(Error::WrongEngine { found, .. }) if found == engine => {}
        other => {
            return Err(Failure::new(format!(
                "another engine checking a {engine} directory: expected WrongEngine with \
                 found {engine:?}, got {other:?}"
            )));
        }
    }
    before.unchanged(&path, "another engine's refused open")?;
    let db = Db::open(h, &path).await?;
    db.check_state(&model).await?;
    db.close().await?;
    Ok(Outcome::Passed)
}

/// Fails unless `err` says the directory is busy: an I/O error of kind `ResourceBusy`.
fn expect_busy(err: &Error, what: &str) -> Result<(), Failure> {
    match err {
        Error::Io {
            kind: std::io::ErrorKind::ResourceBusy,
            ..
        } => Ok(()),
        other => Err(Failure::new(format!(
            "{what}: expected an I/O error of kind ResourceBusy (the directory is in use), got \
             {other:?}"
        ))),
    }
}

/// While one store has the directory open, a second open (in the same process) is refused with
/// an I/O error of kind `ResourceBusy` and does not disturb the first; once the first is
/// closed the directory opens at once, and once a store is dropped without close it opens
/// again soon (the engine closes in the background).
pub(crate) async fn busy_directory_is_refused_until_released(h: &dyn DirectHarness) -> TestResult {
    if let Some(skipped) = not_persistent(h, "busy_directory_is_refused_until_released") {
        return skipped;
    }
    let scratch = Scratch::new()?;
    let path = scratch.db();
    let mut model = Model::new();
    let first = Db::open(h, &path).await?;
    first.put(b"a", b"1").await.ctx("put a")?;
    model.put(b"a", b"1");
    for options in [
        OpenOptions::default(),
        no_create(),
        options(true, false, true),
    ] {
        let what = "a second open while the first store is open";
        let err = expect_refused(h, &path, &options, what, ErrorKind::Io).await?;
        expect_busy(&err, &format!("{what} with {}", show_options(&options)))?;
    }
    first
        .put(b"b", b"2")
        .await
        .ctx("put on the first store after the refused opens")?;
    model.put(b"b", b"2");
    let got = first.get(b"a").await.ctx("get a on the first store")?;
    expect_value(
        "get a on the first store after the refused opens",
        got.as_deref(),
        model.get(b"a"),
    )?;
    first.close().await?;

    let second = h
        .open_with(&path, &OpenOptions::default())
        .await
        .ctx("open right after the first store was closed")?;
    second.put(b"c", b"3").await.ctx("put c")?;
    model.put(b"c", b"3");
    // Dropped, not closed: the directory is released in the background.
    drop(second);
    let start = Instant::now();
    let third = loop {
        match h.open_with(&path, &OpenOptions::default()).await {
            Ok(store) => break Db::from_store(store),
            Err(e) if start.elapsed() < RELEASE_AFTER_DROP => {
                expect_busy(&e, "an open while a dropped store is closing")?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                return Err(Failure::new(format!(
                    "an open after a store was dropped: expected success within \
                     {RELEASE_AFTER_DROP:?}, still refused: {e}"
                )));
            }
        }
    };
    third
        .check_state(&model)
        .await
        .map_err(|f| f.context("after a dropped store released the directory"))?;
    third.close().await?;
    Ok(Outcome::Passed)
}

/// With `sync` on, every kind of write is read back, after close, by a store opened with or
/// without it; writes made without it are read back by a store opened with it.
pub(crate) async fn sync_option_round_trip(h: &dyn DirectHarness) -> TestResult {
    if let Some(skipped) = not_persistent(h, "sync_option_round_trip") {
        return skipped;
    }
    let scratch = Scratch::new()?;
    let path = scratch.db();
    let synced = options(true, false, true);
    let mut model = Model::new();
    let db = Db::open_with(h, &path, &synced).await?;
    for i in 0..20 {
        let key = format!("k{i:02}");
        db.put(key.as_bytes(), b"synced")
            .await
            .ctx(format!("put {key}"))?;
        model.put(key.as_bytes(), b"synced");
    }
    let ops = vec![
        BatchOp::put("batch", "synced"),
        BatchOp::del("k03"),
        BatchOp::put("k04", "overwritten"),
    ];
    db.batch(ops.clone()).await.ctx("batch")?;
    model.apply(&ops);
    db.del(b"k05").await.ctx("del k05")?;
    model.del(b"k05");
    let range = Range::all().gte("k10").lt("k15");
    db.clear(range.clone()).await.ctx("clear k10..k15")?;
    model.clear(&range);
    db.check_state(&model).await?;
    db.close().await?;

    let db = Db::open(h, &path)
        .await
        .map_err(|f| f.context("reopen without sync"))?;
    db.check_state(&model)
        .await
        .map_err(|f| f.context("written with sync, reopened without"))?;
    db.put(b"unsynced", b"1").await.ctx("put without sync")?;
    model.put(b"unsynced", b"1");
    db.close().await?;

    let db = Db::open_with(h, &path, &options(false, false, true))
        .await
        .map_err(|f| f.context("reopen with sync"))?;
    db.check_state(&model)
        .await
        .map_err(|f| f.context("reopened with sync"))?;
    db.close().await?;
    Ok(Outcome::Passed)
}
