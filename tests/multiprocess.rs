//! Many processes on one directory: concurrent starts, hostile leftovers in the directory, long
//! paths, a lock held by someone who does not serve, idle followers, and two handles in one
//! process. Every test runs once per compiled-in engine.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    EXIT_LIMIT, Engine, Proc, expected, open_handle, run_rave, start_leader, tempdir, wait_role,
    within,
};
use rave::{BatchOp, ErrorKind, KvStore, Range, Rave, RaveOptions, Role};
use rave_election::DirLock;

per_engine!(
    ten_processes_put_at_once,
    junk_file_at_the_socket_path,
    stale_socket_of_a_killed_leader,
    directory_path_longer_than_sun_path,
    lock_held_by_a_process_that_does_not_serve,
    idle_follower_exits_by_itself,
    two_handles_in_one_process,
);

/// Ten `rave put` processes started at once on a fresh directory all exit 0 by themselves, and
/// all ten keys are there; twenty rounds.
async fn ten_processes_put_at_once<B: Engine>() {
    for round in 0..20 {
        let tmp = tempdir();
        // Not created yet: the processes race to create it too.
        let dir = tmp.path().join("db");
        let mut procs: Vec<Proc> = (0..10)
            .map(|i| {
                let (key, value) = (format!("k{i}"), format!("v{i}"));
                Proc::rave::<B>(&[], &dir, &["put", &key, &value])
            })
            .collect();
        let deadline = Instant::now() + EXIT_LIMIT;
        for proc in &mut procs {
            let left = deadline.saturating_duration_since(Instant::now());
            proc.finish(left)
                .await
                .assert_code(0, &format!("round {round}: rave put"));
        }
        let (db, _) = open_handle::<B>(&dir, RaveOptions::default()).await;
        let mut iter = db.iterator(Range::all()).await.expect("an iterator");
        let all = within("scan", Duration::from_secs(10), iter.collect_all())
            .await
            .expect("scan");
        let got: Vec<(String, String)> = all
            .into_iter()
            .map(|e| {
                (
                    String::from_utf8(e.key).unwrap(),
                    String::from_utf8(e.value).unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = (0..10)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        assert_eq!(got, want, "round {round}");
        db.close().await.expect("close");
    }
}

/// A regular file where the socket belongs does not stop the next process from leading.
async fn junk_file_at_the_socket_path<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let socket = rave_election::socket_path(dir).expect("socket path");
    assert_eq!(socket, dir.canonicalize().unwrap().join("rave.sock"));
    std::fs::write(&socket, b"this is not a socket\n").unwrap();
    run_rave::<B>(&[], dir, &["put", "k", "v"], None)
        .await
        .assert_code(0, "put over a junk socket file");
    let out = run_rave::<B>(&[], dir, &["get", "k"], None).await;
    out.assert_code(0, "get");
    assert_eq!(out.text(), "v\n");
}

/// A SIGKILLed leader leaves its socket file behind; the next process replaces it and leads.
async fn stale_socket_of_a_killed_leader<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let mut first = start_leader::<B>(dir).await;
    run_rave::<B>(&[], dir, &["put", "k", "before"], None)
        .await
        .assert_code(0, "put through the first leader");
    first.kill();
    let socket = rave_election::socket_path(dir).unwrap();
    assert!(
        std::fs::symlink_metadata(&socket).is_ok(),
        "a SIGKILLed leader leaves its socket file ({})",
        socket.display()
    );
    let mut second = start_leader::<B>(dir).await;
    let record = rave_election::read_leader_record(dir).unwrap().unwrap();
    assert_eq!(record.pid, second.pid());
    assert_eq!(record.epoch, 2);
    let out = run_rave::<B>(&[], dir, &["get", "k"], None).await;
    out.assert_code(0, "get through the second leader");
    assert_eq!(out.text(), "before\n");
    second.kill();
}

/// A directory whose `<dir>/rave.sock` would not fit `sun_path` still works across processes:
/// the socket moves to a private runtime directory.
async fn directory_path_longer_than_sun_path<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path().join("x".repeat(120));
    std::fs::create_dir(&dir).unwrap();
    assert!(dir.join("rave.sock").as_os_str().len() > 108);
    let (leader, role) = open_handle::<B>(&dir, RaveOptions::default()).await;
    assert_eq!(role, Role::Leader);
    let socket = leader.socket_path().unwrap();
    assert!(!socket.starts_with(&dir), "{}", socket.display());
    assert!(socket.as_os_str().len() <= 107, "{}", socket.display());
    leader.put(b"k", b"from the leader").await.unwrap();

    let status = run_rave::<B>(&[], &dir, &["status"], None).await;
    status.assert_code(0, "status");
    let text = status.text();
    assert!(text.contains("role\tfollower\n"), "{text}");
    assert!(
        text.contains(&format!("leader_pid\t{}\n", std::process::id())),
        "{text}"
    );
    assert!(
        text.contains(&format!("socket\t{}\n", socket.display())),
        "{text}"
    );
    let out = run_rave::<B>(&[], &dir, &["get", "k"], None).await;
    out.assert_code(0, "a follower process reads");
    assert_eq!(out.text(), "from the leader\n");
    run_rave::<B>(&[], &dir, &["put", "k2", "from a follower"], None)
        .await
        .assert_code(0, "a follower process writes");
    assert_eq!(
        leader.get(b"k2").await.unwrap().as_deref(),
        Some(&b"from a follower"[..])
    );
    leader.close().await.unwrap();
    assert!(
        std::fs::symlink_metadata(&socket).is_err(),
        "a leader that closes removes its socket"
    );
}

/// The lock is held but nobody serves: the CLI exits 3 with a NoLeader message within its
/// timeout, and handles fail with `NoLeader` instead of hanging.
async fn lock_held_by_a_process_that_does_not_serve<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let lock = DirLock::try_acquire(dir)
        .unwrap()
        .expect("the lock is free");

    let started = Instant::now();
    let out = run_rave::<B>(&["--timeout", "1"], dir, &["get", "k"], None).await;
    let took = started.elapsed();
    out.assert_code(3, "get with the lock held by a non-leader");
    assert!(out.stdout.is_empty(), "{:?}", out.text());
    assert!(
        out.stderr.to_lowercase().contains("no leader"),
        "stderr: {:?}",
        out.stderr
    );
    // The 1 s timeout, not a hang (`run_rave` gives up at 30 s); room for a loaded machine.
    assert!(took < Duration::from_secs(15), "took {took:?}");

    let options = RaveOptions::default().election_timeout(Duration::from_millis(500));
    let db = Rave::<B>::open_engine(dir, options).unwrap();
    let started = Instant::now();
    let err = within("get", Duration::from_secs(20), db.get(b"k"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoLeader, "{err}");
    // The 500 ms election timeout, not a hang; room for a loaded machine.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let err = within("put", Duration::from_secs(10), db.put(b"k", b"v"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoLeader, "{err}");
    let err = within("ready", Duration::from_secs(10), db.ready())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoLeader, "{err}");

    // Once the lock is free the same handle leads.
    drop(lock);
    within("put", Duration::from_secs(10), db.put(b"k", b"v"))
        .await
        .expect("a put once the lock is released");
    // The role is published once the operations queued during the election have run, so it
    // may trail the put by a moment.
    wait_role(&db, Role::Leader, Duration::from_secs(5)).await;
    db.close().await.unwrap();
}

const IDLE_CHILD_DIR: &str = "RAVE_TEST_IDLE_FOLLOWER_DIR";

/// A process whose follower handle is idle exits by itself: this test binary runs itself as a
/// child that opens a follower, waits for the role, does nothing, and returns.
async fn idle_follower_exits_by_itself<B: Engine>() {
    if let Some(dir) = std::env::var_os(IDLE_CHILD_DIR) {
        // The child: open, wait for the role, return (the handle is dropped on the way out).
        let (_db, role) = open_handle::<B>(dir.as_ref(), RaveOptions::default()).await;
        assert_eq!(role, Role::Follower);
        println!("idle follower ready (pid {})", std::process::id());
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path();
    let mut leader = start_leader::<B>(dir).await;
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            &format!("{}::idle_follower_exits_by_itself", B::CLI),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(IDLE_CHILD_DIR, dir);
    let mut child = Proc::spawn("idle follower (this test binary)", command, None);
    let out = child.finish(Duration::from_secs(10)).await;
    out.assert_code(0, "the idle follower process");
    let text = out.text();
    assert!(text.contains("idle follower ready"), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    // The leader never noticed anything worth a role change.
    assert!(leader.drain_lines().is_empty(), "{:?}", leader.seen());
    assert!(leader.try_status().is_none(), "the leader is still running");
    leader.kill();
}

/// Two handles in one process behave like two processes: A leads, B follows, B's writes reach
/// A, and closing A makes B the leader.
async fn two_handles_in_one_process<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let (a, role) = open_handle::<B>(dir, RaveOptions::default()).await;
    assert_eq!(role, Role::Leader);
    let (b, role) = open_handle::<B>(dir, RaveOptions::default()).await;
    assert_eq!(role, Role::Follower);
    assert_eq!(a.epoch(), b.epoch());

    b.put(b"from-b", b"1").await.unwrap();
    assert_eq!(a.get(b"from-b").await.unwrap().as_deref(), Some(&b"1"[..]));
    a.put(b"from-a", b"2").await.unwrap();
    assert_eq!(b.get(b"from-a").await.unwrap().as_deref(), Some(&b"2"[..]));
    b.batch(vec![BatchOp::put("x", "3"), BatchOp::del("from-a")])
        .await
        .unwrap();
    let mut model = BTreeMap::new();
    model.insert(b"from-b".to_vec(), b"1".to_vec());
    model.insert(b"x".to_vec(), b"3".to_vec());
    let mut iter = a.iterator(Range::all()).await.unwrap();
    assert_eq!(
        iter.collect_all().await.unwrap(),
        expected(&model, &Range::all())
    );

    let mut roles = b.watch_role();
    assert_eq!(*roles.borrow_and_update(), Role::Follower);
    let old_epoch = a.epoch().unwrap();
    within("closing the leader", Duration::from_secs(10), a.close())
        .await
        .unwrap();
    assert_eq!(a.role(), Role::Closed);
    // B sees Follower -> (Electing) -> Leader.
    let mut seen = Vec::new();
    within("B becoming leader", Duration::from_secs(10), async {
        while roles.changed().await.is_ok() {
            let role = *roles.borrow_and_update();
            seen.push(role);
            if role == Role::Leader {
                return;
            }
        }
    })
    .await;
    assert_eq!(seen.last(), Some(&Role::Leader), "{seen:?}");
    assert!(
        seen.iter()
            .all(|r| matches!(r, Role::Electing | Role::Leader)),
        "{seen:?}"
    );
    assert!(b.epoch().unwrap() > old_epoch);
    let mut iter = b.iterator(Range::all()).await.unwrap();
    assert_eq!(
        iter.collect_all().await.unwrap(),
        expected(&model, &Range::all())
    );
    assert_eq!(
        a.get(b"x").await.unwrap_err().kind(),
        ErrorKind::Closed,
        "a closed handle refuses operations"
    );
    wait_role(&b, Role::Leader, Duration::from_secs(1)).await;
    b.close().await.unwrap();
}
