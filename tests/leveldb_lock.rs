//! A LevelDB directory excludes every other LevelDB program, in both directions, with real
//! other processes: python3's `fcntl.lockf` takes the POSIX lock on `<dir>/LOCK` that LevelDB
//! (C++), classic-level and rave-level take.
//!
//! - Held by another program: the CLI exits 3 and a handle's operations fail at once (an `Io`
//!   error saying the directory is in use by another LevelDB program), nothing is written; once
//!   it lets go, the same handle leads and works.
//! - Held by a rave leader: the other program cannot lock; once the leader is killed, it can.
#![cfg(feature = "leveldb")]

#[allow(unused_macros)]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, run_rave, start_leader, tempdir, within};
use rave::backends::LevelDbBackend;
use rave::{ErrorKind, Rave, RaveOptions};

/// Locks the file named by the first argument with `fcntl.lockf` (F_SETLK) without waiting:
/// exits 1 when it cannot, else says `locked` and holds the lock until killed.
const LOCKER: &str = "import fcntl, sys, time
f = open(sys.argv[1], 'a')
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit(1)
print('locked', flush=True)
time.sleep(3600)";

fn locker(dir: &Path) -> Command {
    let mut command = Command::new("python3");
    command.args(["-c", LOCKER]).arg(dir.join("LOCK"));
    command
}

/// Another LevelDB program holding `<dir>/LOCK` (killed when dropped).
async fn foreign_holder(dir: &Path) -> Proc {
    let mut holder = Proc::spawn("python3 holding LOCK", locker(dir), None);
    holder.expect_line("locked", Duration::from_secs(20)).await;
    holder
}

/// Whether another program can lock `<dir>/LOCK` now.
fn foreign_can_lock(dir: &Path) -> bool {
    // The locker holds the lock for an hour once it has it: kill it as soon as it says so.
    let mut child = locker(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let status = child.wait().unwrap();
    match line.trim() {
        "locked" => true,
        _ => {
            assert_eq!(status.code(), Some(1), "the locker failed otherwise");
            false
        }
    }
}

/// The LevelDB files of `dir` with their contents (rave's own files left out).
fn leveldb_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| !name.starts_with("rave"))
        .map(|(name, path)| (name, std::fs::read(path).unwrap()))
        .collect();
    files.sort();
    files
}

fn says_another_leveldb_program(err: &rave::Error) {
    assert_eq!(err.kind(), ErrorKind::Io, "{err:?}");
    assert!(
        err.to_string()
            .contains("in use by another LevelDB program"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_leveldb_programs_lock_refuses_rave_and_nothing_is_written() {
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    run_rave::<LevelDbBackend>(&[], &dir, &["put", "k", "v"], None)
        .await
        .assert_code(0, "put");
    let before = leveldb_files(&dir);
    let holder = foreign_holder(&dir).await;

    let out =
        run_rave::<LevelDbBackend>(&["--timeout", "3"], &dir, &["put", "k", "new"], None).await;
    out.assert_code(3, "put while another LevelDB program holds the directory");
    assert!(
        out.stderr.contains("in use by another LevelDB program"),
        "stderr {:?}",
        out.stderr
    );

    let db = Rave::<LevelDbBackend>::open_engine(&dir, RaveOptions::default()).unwrap();
    for _ in 0..3 {
        let err = within("a put", Duration::from_secs(20), db.put(b"k", b"new"))
            .await
            .expect_err("another LevelDB program holds the directory");
        says_another_leveldb_program(&err);
        let err = within("a get", Duration::from_secs(20), db.get(b"k"))
            .await
            .expect_err("another LevelDB program holds the directory");
        says_another_leveldb_program(&err);
    }
    assert_eq!(
        leveldb_files(&dir),
        before,
        "rave wrote to a directory it did not hold"
    );

    // Once the other program lets go, the same handle leads.
    drop(holder);
    within("a put", Duration::from_secs(20), db.put(b"k", b"new"))
        .await
        .unwrap();
    assert!(!foreign_can_lock(&dir), "rave leads without LevelDB's lock");
    within("close", Duration::from_secs(20), db.close())
        .await
        .unwrap();
    assert!(foreign_can_lock(&dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rave_leader_refuses_another_leveldb_program() {
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    let mut leader = start_leader::<LevelDbBackend>(&dir).await;
    assert!(!foreign_can_lock(&dir), "another LevelDB program locked it");
    leader.kill();
    assert!(
        foreign_can_lock(&dir),
        "the dead leader's lock is still there"
    );
}

/// In Level-compatible mode a LevelDB program holding `LOCK` may be a Node leader about to
/// serve: operations wait for a leader instead of failing with `Io`, and end with `NoLeader`
/// within the election timeout when nobody serves (bounded, where rave-level polls forever);
/// once the lock is free, the same handle leads.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn level_compat_waits_for_a_lock_holder_that_does_not_serve_then_says_no_leader() {
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    std::fs::create_dir_all(&dir).unwrap();
    let mut holder = foreign_holder(&dir).await;
    let options = RaveOptions::default()
        .level_compat(true)
        .election_timeout(Duration::from_secs(1));
    let db = Rave::<LevelDbBackend>::open_engine(&dir, options).unwrap();
    let started = std::time::Instant::now();
    let err = within("a get", Duration::from_secs(30), db.get(b"a"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoLeader, "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it did not wait"
    );
    holder.kill();
    within("a put", Duration::from_secs(30), db.put(b"a", b"1"))
        .await
        .unwrap();
    assert_eq!(db.ready().await.unwrap(), rave::Role::Leader);
    db.close().await.unwrap();
}
