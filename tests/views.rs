//! The views and the blocking handle across processes: the README's snippet
//! (`examples/blocking.rs`) run in two processes at once on one directory, and a blocking
//! handle used from inside an async runtime.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rave::Role;

#[macro_use]
#[allow(unused_macros)]
mod common;

use common::example;

/// A bound against hangs only (a loaded machine may be slow; the runs take seconds).
const HANG_LIMIT: Duration = Duration::from_secs(180);

/// Starts the example in `cwd` (it opens `./data` there).
fn spawn(exe: &Path, cwd: &Path) -> Child {
    Command::new(exe)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example")
}

/// Waits for `child` (killing it past the hang limit) and returns its output.
fn finish(mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > HANG_LIMIT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn check(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "the example failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("a = 1\n"), "{stdout}");
    assert!(
        stdout.contains(r#"ada: Some(User { name: "Ada", age: 36 })"#),
        "{stdout}"
    );
    // The range "a".."c" stays out of the sublevel (`!users!ada` sorts before "a").
    assert!(!stdout.contains("users"), "{stdout}");
    stdout
}

/// The snippet, twice at once on one directory with nobody else there: both succeed (one
/// leads, the other follows or leads after it), and the data is laid out as rave-level's.
#[test]
fn the_snippet_runs_in_two_processes_at_once() {
    let exe = example("blocking");
    let dir = tempfile::tempdir().unwrap();
    let children = [spawn(&exe, dir.path()), spawn(&exe, dir.path())];
    let outputs = children.map(finish);
    for output in &outputs {
        check(output);
    }
    let db = rave::blocking::Rave::open(dir.path().join("data"), Default::default()).unwrap();
    assert_eq!(
        db.get("!users!ada").unwrap(),
        Some(br#"{"name":"Ada","age":36}"#.to_vec())
    );
    db.close().unwrap();
}

/// With this test's blocking handle leading, both snippet processes run at once as followers.
#[test]
fn the_snippet_runs_as_two_followers_at_once() {
    let exe = example("blocking");
    let dir = tempfile::tempdir().unwrap();
    let leader = rave::blocking::Rave::open(dir.path().join("data"), Default::default()).unwrap();
    assert_eq!(leader.ready().unwrap(), Role::Leader);
    let children = [spawn(&exe, dir.path()), spawn(&exe, dir.path())];
    for output in children.map(finish) {
        let stdout = check(&output);
        assert!(stdout.contains("role: follower"), "{stdout}");
    }
    let typed = leader.sublevel("users").typed::<serde_json::Value>();
    assert_eq!(
        typed.get("ada").unwrap(),
        Some(serde_json::json!({"name": "Ada", "age": 36}))
    );
    leader.close().unwrap();
}

/// A blocking handle called from inside async code (a current-thread runtime, and a worker of
/// a multi-thread one) does not panic, and dropping it there does not either.
#[test]
fn blocking_calls_inside_a_runtime_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    current.block_on(async {
        let db = rave::blocking::Rave::open(&path, Default::default()).unwrap();
        db.put("k", "v").unwrap();
        assert_eq!(db.get("k").unwrap(), Some(b"v".to_vec()));
        let all: Vec<_> = db.range(..).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 1);
        drop(db); // closes the directory and stops its runtime, inside this one
    });
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    multi.block_on(async move {
        let task = tokio::spawn(async move {
            let db = rave::blocking::Rave::open(&path, Default::default()).unwrap();
            let value = db.get("k").unwrap();
            db.close().unwrap();
            value
        });
        assert_eq!(task.await.unwrap(), Some(b"v".to_vec()));
    });
}
