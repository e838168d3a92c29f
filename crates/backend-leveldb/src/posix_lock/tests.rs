//! The lock against real other processes: python3's `fcntl.lockf`, a classic POSIX lock (what
//! LevelDB itself takes), held by a child process or tried by one.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use rave_api::{Backend, ErrorKind, KvStore, OpenOptions};

use super::{LOCK_FILE, PosixLock};
use crate::LevelDbBackend;

/// Locks `path` with `fcntl.lockf` (F_SETLK) without waiting; exits 0 when it got the lock.
const TRY_LOCK: &str = "import fcntl, sys
f = open(sys.argv[1], 'a')
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit(1)
print('locked', flush=True)
sys.stdin.read()";

/// Another LevelDB program holding `<dir>/LOCK` until dropped (killed and reaped).
struct Foreign(Child);

impl Foreign {
    fn hold(dir: &Path) -> Foreign {
        let mut child = Command::new("python3")
            .args(["-c", TRY_LOCK])
            .arg(dir.join(LOCK_FILE))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked", "the foreign process did not lock");
        Foreign(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether another process can take LevelDB's lock on `<dir>/LOCK` now.
fn foreign_can_lock(dir: &Path) -> bool {
    Command::new("python3")
        .args(["-c", TRY_LOCK])
        .arg(dir.join(LOCK_FILE))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("python3 runs")
        .success()
}

fn assert_refused(err: &rave_api::Error, holder: &Foreign) {
    assert_eq!(err.kind(), ErrorKind::Io, "{err:?}");
    assert!(
        matches!(
            err,
            rave_api::Error::Io {
                kind: std::io::ErrorKind::ResourceBusy,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("another LevelDB program"), "{text}");
    assert!(text.contains(&format!("pid {}", holder.pid())), "{text}");
}

#[test]
fn a_foreign_lock_refuses_the_lock_and_ours_refuses_theirs() {
    for classic in [false, true] {
        let acquire = if classic {
            PosixLock::acquire_classic
        } else {
            PosixLock::acquire
        };
        let dir = tempfile::tempdir().unwrap();
        let foreign = Foreign::hold(dir.path());
        let err = acquire(dir.path()).expect_err("the foreign lock is held");
        assert_refused(&err, &foreign);
        drop(foreign);

        let ours = acquire(dir.path()).unwrap();
        assert!(!foreign_can_lock(dir.path()), "classic {classic}");
        // What rusty-leveldb does beside it (its own descriptor, `flock`, closed) drops
        // nothing: OFD locks belong to their descriptor; a classic lock is kept from a second
        // open in this process.
        if classic {
            let again = acquire(dir.path()).expect_err("this process holds it");
            assert!(again.to_string().contains("in this process"), "{again}");
        } else {
            let other = std::fs::File::options()
                .write(true)
                .open(dir.path().join(LOCK_FILE))
                .unwrap();
            other.try_lock().unwrap();
            drop(other);
        }
        assert!(!foreign_can_lock(dir.path()), "classic {classic}");
        drop(ours);
        assert!(foreign_can_lock(dir.path()), "classic {classic}");
    }
}

#[tokio::test]
async fn the_engine_refuses_a_directory_another_leveldb_program_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = LevelDbBackend
        .open(dir.path(), &OpenOptions::default())
        .unwrap();
    store.put(b"k", b"v").await.unwrap();
    store.close().await.unwrap();
    let listing = |dir: &Path| {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), std::fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    let before = listing(dir.path());

    let foreign = Foreign::hold(dir.path());
    let err = match LevelDbBackend.open(dir.path(), &OpenOptions::default()) {
        Ok(_) => panic!("the engine opened a directory another LevelDB program holds"),
        Err(e) => e,
    };
    assert_refused(&err, &foreign);
    assert_eq!(listing(dir.path()), before, "the refused open wrote");
    drop(foreign);

    // While the engine has it open, another LevelDB program cannot lock it; after close it can.
    let store = LevelDbBackend
        .open(dir.path(), &OpenOptions::default())
        .unwrap();
    assert!(!foreign_can_lock(dir.path()));
    assert_eq!(store.get(b"k").await.unwrap(), Some(b"v".to_vec()));
    assert!(!foreign_can_lock(dir.path()));
    store.close().await.unwrap();
    assert!(foreign_can_lock(dir.path()));
}
