//! Hostile environments: each ends in a clear, typed error, never a panic or a hang, and loses
//! nothing that was acknowledged.
//!
//! - A full disk (a 2 MiB tmpfs, when root): writes fail with `Io` ("No space left"), every
//!   acknowledged write stays readable, from the same handle and after reopening on the still
//!   full disk (with LevelDB, whose engine cannot reopen on a full disk, reads fail with the
//!   same typed error once a later write made the leader try). Once space is freed, writes and
//!   reads succeed again through the same leader and follower, without restarting anything.
//! - A directory the user may not write (as `rave-test-other` when root, else by mode): exit 3
//!   with a permission error.
//! - A corrupt database file: exit 3 with a corruption message.
//! - A "directory" that is a regular file: `InvalidArgument`, exit 3.
//! - A leader stopped with SIGSTOP: followers time out (`Timeout`), nobody else becomes leader,
//!   and after SIGCONT everything works again.
//!
//! The tmpfs and the other user need root: without it those tests print why they are skipped
//! and pass, except in CI (`CI` set), where a skip is a failure (`common::skip_or_fail`).

#[macro_use]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    Engine, Proc, is_root, open_handle, other_user, run_rave, skip_or_fail, start_leader, tempdir,
    within,
};
use rave::{ErrorKind, KvStore, Range, Rave, RaveOptions, Role};

per_engine!(
    a_full_disk_is_a_typed_io_error_and_loses_nothing,
    a_full_disk_heals_when_space_returns,
    a_directory_without_write_permission_is_a_permission_error,
    a_corrupt_database_is_a_corruption_error,
    a_regular_file_is_not_a_database_directory,
    a_stopped_leader_times_out_followers_and_is_not_replaced,
);

/// A tmpfs mounted on a directory, unmounted when dropped (lazily if something still holds a
/// file open there).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

/// 8 KiB, different for every key.
fn value(i: usize) -> Vec<u8> {
    format!("{i:08}").into_bytes().repeat(1024)
}

/// Whether `err` is the OS's "no space left on device", as a typed `Io` error.
fn is_no_space(err: &rave::Error) -> bool {
    let text = err.to_string();
    err.kind() == ErrorKind::Io
        && (text.contains("No space left")
            || text.contains("StorageFull")
            || matches!(err, rave::Error::Io { kind, .. } if *kind == std::io::ErrorKind::StorageFull))
}

/// Reads every acknowledged key through `db`, and scans them all.
async fn assert_all_readable<B: Engine>(db: &Rave<B>, acked: &[usize], what: &str) {
    for &i in acked {
        let got = within(what, Duration::from_secs(10), db.get(&key(i)))
            .await
            .unwrap_or_else(|e| panic!("{what}: get {i}: {e}"));
        assert!(
            got == Some(value(i)),
            "{what}: key {i} of {} acknowledged is {}",
            acked.len(),
            match &got {
                None => "missing".to_string(),
                Some(v) => format!("damaged ({} bytes)", v.len()),
            }
        );
    }
    let mut iter = db
        .iterator(Range::prefix("key").keys_only())
        .await
        .unwrap_or_else(|e| panic!("{what}: iterator: {e}"));
    let mut seen = 0;
    loop {
        let chunk = within(what, Duration::from_secs(10), iter.next_chunk(256))
            .await
            .unwrap_or_else(|e| panic!("{what}: scan: {e}"));
        if chunk.is_empty() {
            break;
        }
        seen += chunk.len();
    }
    // Entries of a write that failed may or may not be there; acknowledged ones all are.
    assert!(
        seen >= acked.len(),
        "{what}: scanned {seen} of {}",
        acked.len()
    );
}

/// Writes 8 KiB values through `db` until the disk is full; returns the acknowledged ones and
/// checks that the failure is a typed no-space error.
async fn fill<B: Engine>(db: &Rave<B>) -> Vec<usize> {
    let mut acked = Vec::new();
    // Far more than any of these small disks holds.
    for i in 0..1024 {
        match within(
            "a write",
            Duration::from_secs(20),
            db.put(&key(i), &value(i)),
        )
        .await
        {
            Ok(()) => acked.push(i),
            Err(err) => {
                println!("{} acknowledged writes, then: {err}", acked.len());
                assert!(!acked.is_empty(), "not even one write fitted");
                assert!(
                    is_no_space(&err),
                    "the error is not a typed Io no-space error: {err:?}"
                );
                return acked;
            }
        }
    }
    panic!("the disk never filled up");
}

/// A small tmpfs holding a database directory `db` (not created) and a file `filler`, to free
/// later.
struct SmallDisk {
    dir: PathBuf,
    filler: PathBuf,
    // Dropped before `_tmp`: unmounted before the directory is removed.
    _mount: Tmpfs,
    _tmp: tempfile::TempDir,
}

/// A tmpfs of `size` for test `test`, with a filler of `filler` bytes; `None` (after
/// `skip_or_fail`) when this process cannot mount one.
fn small_disk(test: &str, size: &str, filler: usize) -> Option<SmallDisk> {
    if !is_root() {
        skip_or_fail(test, "not running as root: cannot mount a small tmpfs");
        return None;
    }
    let tmp = tempdir();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mount = match Tmpfs::mount(&mnt, size) {
        Ok(mount) => mount,
        Err(why) => {
            skip_or_fail(test, &why);
            return None;
        }
    };
    let disk = SmallDisk {
        dir: mnt.join("db"),
        filler: mnt.join("filler"),
        _mount: mount,
        _tmp: tmp,
    };
    std::fs::write(&disk.filler, vec![0u8; filler]).unwrap();
    Some(disk)
}

async fn a_full_disk_is_a_typed_io_error_and_loses_nothing<B: Engine>() {
    // Room to free later, in case reopening needs some (LevelDB turns its log into a table
    // when it opens, which takes about as much room as the data).
    let Some(disk) = small_disk(
        "a_full_disk_is_a_typed_io_error_and_loses_nothing",
        "2m",
        1 << 20,
    ) else {
        return;
    };
    let (dir, filler) = (disk.dir.clone(), disk.filler.clone());

    // A leader and a follower in this process; writes go through the follower, so the error
    // also crosses the wire.
    let (leader, role) = open_handle::<B>(&dir, RaveOptions::default()).await;
    assert_eq!(role, Role::Leader);
    let (follower, role) = open_handle::<B>(&dir, RaveOptions::default()).await;
    assert_eq!(role, Role::Follower);
    // The 1 MiB left holds fewer than 128 values of 8 KiB.
    let acked = fill(&follower).await;
    // Every acknowledged write is readable, through both handles.
    assert_all_readable(&leader, &acked, "the leader, disk full").await;
    assert_all_readable(&follower, &acked, "the follower, disk full").await;

    // Later writes fail too, typed; nothing panics. redb and LevelDB refuse every write after
    // a failed one until reopened, so the leader reopens its engine first: LevelDB cannot even
    // reopen on a full disk (it turns its log into a table), and the open's error answers;
    // redb reopens, and a write may still fit in the room its journal already holds (the zeros
    // written ahead of its records), but not past the journal's next checkpoint, which needs
    // room in the database file. Whatever is acknowledged meanwhile must stay readable.
    let mut acked = acked;
    let mut again = None;
    for i in 1024..1024 + 512 {
        match within(
            "a write",
            Duration::from_secs(20),
            leader.put(&key(i), &value(i)),
        )
        .await
        {
            Ok(()) => acked.push(i),
            Err(err) => {
                again = Some(err);
                break;
            }
        }
    }
    let again = again.expect("writes of 4 MiB all fitted on a full disk");
    println!("then: {again}");
    assert!(is_no_space(&again), "{again:?}");
    // Until the engine reopens, reads fail with that typed error too (never a wrong answer);
    // redb's reads go on. `a_full_disk_heals_when_space_returns` shows them coming back.
    for (db, what) in [(&leader, "the leader"), (&follower, "the follower")] {
        match within("a get", Duration::from_secs(20), db.get(&key(acked[0]))).await {
            Ok(got) => assert_eq!(got, Some(value(acked[0])), "{what}"),
            Err(e) => assert!(is_no_space(&e), "{what}: {e:?}"),
        }
    }
    within("close", Duration::from_secs(20), follower.close())
        .await
        .unwrap();
    // Closing may report the full disk; it must not panic or hang.
    let closed = within("close", Duration::from_secs(20), leader.close()).await;
    if let Err(e) = &closed {
        assert_eq!(e.kind(), ErrorKind::Io, "{e:?}");
    }

    // Reopened while the disk is still full: everything acknowledged is there (redb), or the
    // engine's own open fails with the same typed error (LevelDB turns its log into a table when
    // it opens) and then, with a little room made, everything is there. The election never is
    // the reason: a new leader rewrites its record in place when there is no room for a new file.
    let reopened = Rave::<B>::open_engine(&dir, RaveOptions::default()).unwrap();
    match within(
        "a get",
        Duration::from_secs(20),
        reopened.get(&key(acked[0])),
    )
    .await
    {
        Ok(_) => assert_all_readable(&reopened, &acked, "reopened on the full disk").await,
        Err(e) => {
            assert!(is_no_space(&e), "reopening on a full disk: {e:?}");
            assert!(
                !e.to_string().contains(rave_election::LOCK_FILE),
                "the election itself failed on the full disk: {e}"
            );
            println!("note: the store cannot be reopened while the disk is full: {e}");
            within("close", Duration::from_secs(20), reopened.close())
                .await
                .ok();
            std::fs::remove_file(&filler).unwrap();
            let reopened = Rave::<B>::open_engine(&dir, RaveOptions::default()).unwrap();
            assert_all_readable(&reopened, &acked, "reopened with 1 MiB free").await;
            within("close", Duration::from_secs(20), reopened.close())
                .await
                .ok();
            return;
        }
    }
    within("close", Duration::from_secs(20), reopened.close())
        .await
        .ok();
}

/// The engine refuses writes after the disk filled up, until it is reopened: the leader reopens
/// it itself, so once space is freed writes succeed again through the same leader and follower,
/// with nothing restarted and nothing lost.
async fn a_full_disk_heals_when_space_returns<B: Engine>() {
    // A filler larger than the data will be: freeing it leaves room for LevelDB's reopen, which
    // turns its log into a table.
    let Some(disk) = small_disk("a_full_disk_heals_when_space_returns", "4m", 2 << 20) else {
        return;
    };
    let (dir, filler) = (disk.dir.clone(), disk.filler.clone());
    let (leader, role) = open_handle::<B>(&dir, RaveOptions::default()).await;
    assert_eq!(role, Role::Leader);
    let (follower, role) = open_handle::<B>(&dir, RaveOptions::default()).await;
    assert_eq!(role, Role::Follower);
    let epoch = leader.epoch();

    let mut acked = fill(&follower).await;
    let again = within(
        "a write",
        Duration::from_secs(20),
        leader.put(b"one-more", &value(0)),
    )
    .await
    .expect_err("the disk is still full");
    assert!(is_no_space(&again), "{again:?}");

    std::fs::remove_file(&filler).unwrap();
    // Reopens are paced (at most 1 s apart), so the first writes may still fail, typed.
    for (db, i) in [(&follower, acked.len()), (&leader, acked.len() + 1)] {
        within(
            "a write once there is room",
            Duration::from_secs(20),
            async {
                loop {
                    match db.put(&key(i), &value(i)).await {
                        Ok(()) => break,
                        // No space, or the engine's refusal after it (redb: "previous I/O
                        // error") until the paced reopen comes.
                        Err(e) => assert_eq!(e.kind(), ErrorKind::Io, "{e:?}"),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await;
        acked.push(i);
    }
    assert_all_readable(&leader, &acked, "the leader, healed").await;
    assert_all_readable(&follower, &acked, "the follower, healed").await;
    // Healed in place: the same leader, never replaced.
    assert_eq!(
        (leader.role(), follower.role()),
        (Role::Leader, Role::Follower)
    );
    assert_eq!(follower.epoch(), epoch);
    within("close", Duration::from_secs(20), follower.close())
        .await
        .unwrap();
    within("close", Duration::from_secs(20), leader.close())
        .await
        .unwrap();
}

async fn a_directory_without_write_permission_is_a_permission_error<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    std::fs::create_dir(&dir).unwrap();
    let mut command = common::rave_cmd::<B>(&["--timeout", "3"], &dir, &["put", "k", "v"]);
    if is_root() {
        // Root ignores modes: become a user that does not own the directory.
        let (uid, gid) = match other_user() {
            Ok(user) => user,
            Err(why) => {
                return skip_or_fail(
                    "a_directory_without_write_permission_is_a_permission_error",
                    &why,
                );
            }
        };
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        command.uid(uid).gid(gid);
    } else {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let out = Proc::spawn("rave put in a read-only directory", command, None)
        .finish(Duration::from_secs(30))
        .await;
    out.assert_code(3, "put in a directory without write permission");
    assert!(
        out.stderr.contains("ermission denied"),
        "stderr {:?}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "stderr {:?}", out.stderr);
    // Nothing was created.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

/// Garbage over the engine's key file: redb's data file, LevelDB's CURRENT.
fn corrupt(dir: &Path, engine: &str) {
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = match engine {
        "redb" => dir.join("data.redb"),
        "leveldb" => dir.join("CURRENT"),
        // RocksDB keeps LevelDB's layout for this: CURRENT names the manifest.
        _ => dir.join("CURRENT"),
    };
    assert!(file.exists(), "{file:?} is not there to corrupt");
    std::fs::write(&file, garbage).unwrap();
}

async fn a_corrupt_database_is_a_corruption_error<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    run_rave::<B>(&[], &dir, &["put", "k", "v"], None)
        .await
        .assert_code(0, "put");
    corrupt(&dir, B::CLI);
    let out = run_rave::<B>(&[], &dir, &["get", "k"], None).await;
    out.assert_code(3, "get on a corrupt database");
    assert!(
        out.stderr.to_lowercase().contains("corrupt"),
        "stderr {:?}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "stderr {:?}", out.stderr);
    assert!(out.text().is_empty(), "stdout {:?}", out.text());
    // The same through the API: a typed Corruption.
    let db = Rave::<B>::open_engine(&dir, RaveOptions::default()).unwrap();
    let err = within("get", Duration::from_secs(20), db.get(b"k"))
        .await
        .expect_err("a corrupt database does not read");
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err:?}");
    within("close", Duration::from_secs(20), db.close())
        .await
        .ok();
}

async fn a_regular_file_is_not_a_database_directory<B: Engine>() {
    let tmp = tempdir();
    let file = tmp.path().join("plain");
    std::fs::write(&file, b"not a database").unwrap();
    let err = match Rave::<B>::open_engine(&file, RaveOptions::default()) {
        Ok(_) => panic!("a regular file opened as a database"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err:?}");
    let out = run_rave::<B>(&[], &file, &["get", "k"], None).await;
    out.assert_code(3, "get on a regular file");
    assert!(
        out.stderr.contains("not a directory"),
        "stderr {:?}",
        out.stderr
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"not a database");
}

async fn a_stopped_leader_times_out_followers_and_is_not_replaced<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    let mut leader = start_leader::<B>(&dir).await;
    let options = RaveOptions::default()
        .op_timeout(Some(Duration::from_millis(500)))
        .election_timeout(Duration::from_secs(3));
    let (a, role) = open_handle::<B>(&dir, options.clone()).await;
    assert_eq!(role, Role::Follower);
    let (b, role) = open_handle::<B>(&dir, options).await;
    assert_eq!(role, Role::Follower);
    a.put(b"k", b"v").await.unwrap();
    let record = rave_election::read_leader_record(&dir).unwrap().unwrap();
    assert_eq!(record.pid, leader.pid());

    // An iterator that has more to read than the follower's window (512 entries).
    let ops = (0..2000u32)
        .map(|i| rave::BatchOp::put(format!("it{i:05}"), vec![7u8; 64]))
        .collect();
    a.batch(ops).await.unwrap();
    let mut iter = a.iterator(Range::prefix("it")).await.unwrap();
    assert_eq!(iter.next_chunk(10).await.unwrap().len(), 10);

    leader.signal(libc::SIGSTOP);
    // The iterator hands out what it has buffered, then times out too: it never hangs.
    let mut read = 10;
    let err = loop {
        match within(
            "an iterator of a stopped leader",
            Duration::from_secs(5),
            iter.next_chunk(100),
        )
        .await
        {
            Ok(chunk) => {
                assert!(!chunk.is_empty(), "the iterator ended after {read} of 2000");
                read += chunk.len();
            }
            Err(e) => break e,
        }
    };
    assert_eq!(
        err.kind(),
        ErrorKind::Timeout,
        "after {read} entries: {err:?}"
    );
    // Every operation of every follower fails with Timeout, promptly.
    for round in 0..3 {
        for (name, db) in [("a", &a), ("b", &b)] {
            let started = Instant::now();
            let err = within("a follower's get", Duration::from_secs(20), db.get(b"k"))
                .await
                .expect_err("a stopped leader answers nothing");
            assert_eq!(
                err.kind(),
                ErrorKind::Timeout,
                "{name} round {round}: {err:?}"
            );
            // One op timeout (500 ms), not several: the bound leaves a loaded machine 9 s.
            let took = started.elapsed();
            assert!(
                took < Duration::from_secs(10),
                "{name} round {round}: {took:?}"
            );
            let err = within(
                "a follower's put",
                Duration::from_secs(5),
                db.put(b"k2", b"v2"),
            )
            .await
            .expect_err("a stopped leader answers nothing");
            assert_eq!(
                err.kind(),
                ErrorKind::Timeout,
                "{name} round {round}: {err:?}"
            );
        }
    }
    let err = match within(
        "a follower's iterator",
        Duration::from_secs(5),
        a.iterator(Range::all()),
    )
    .await
    {
        Ok(_) => panic!("an iterator opened on a stopped leader"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    // A new process cannot take over: the lock is still held, so it finds no leader.
    let out = run_rave::<B>(&["--timeout", "2"], &dir, &["get", "k"], None).await;
    out.assert_code(3, "get while the leader is stopped");
    assert!(out.stderr.contains("no leader"), "stderr {:?}", out.stderr);
    // No second leader: same record, both handles still followers.
    assert_eq!(
        rave_election::read_leader_record(&dir).unwrap().unwrap(),
        record
    );
    assert_eq!(a.role(), Role::Follower);
    assert_eq!(b.role(), Role::Follower);

    leader.signal(libc::SIGCONT);
    // The iterator goes on where it stopped: all 2000 entries, in order, none twice.
    let mut keys = Vec::new();
    within(
        "the iterator after SIGCONT",
        Duration::from_secs(10),
        async {
            loop {
                let chunk = iter.next_chunk(500).await.unwrap();
                if chunk.is_empty() {
                    break;
                }
                keys.extend(chunk.into_iter().map(|e| e.key));
            }
        },
    )
    .await;
    assert_eq!(
        read + keys.len(),
        2000,
        "{read} before the stop, {} after",
        keys.len()
    );
    assert_eq!(keys.first(), Some(&format!("it{read:05}").into_bytes()));
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    drop(iter);
    // Everything works again, on the same leader.
    within("recovery", Duration::from_secs(10), async {
        assert_eq!(a.get(b"k").await.unwrap(), Some(b"v".to_vec()));
        b.put(b"k3", b"v3").await.unwrap();
        assert_eq!(a.get(b"k3").await.unwrap(), Some(b"v3".to_vec()));
    })
    .await;
    let out = run_rave::<B>(&[], &dir, &["get", "k3"], None).await;
    out.assert_code(0, "get after SIGCONT");
    assert_eq!(out.text(), "v3\n");
    assert_eq!(
        rave_election::read_leader_record(&dir).unwrap().unwrap(),
        record
    );
    assert_eq!(a.epoch(), Some(record.epoch));
    a.close().await.unwrap();
    b.close().await.unwrap();
    leader.kill();
}
