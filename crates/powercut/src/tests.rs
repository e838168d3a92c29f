//! The file system mounted for real (needs root: outside CI a non-root run skips, in CI it
//! fails).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};

use super::*;

/// Whether the test can mount; otherwise says why it is skipped (or fails in CI, which runs
/// as root).
fn can_mount(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    // CI is set to anything but empty, `0` or `false` (the workspace's tests/common rule).
    let in_ci = std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"));
    assert!(
        !in_ci,
        "{test} cannot run: mounting FUSE needs root (CI is set, where this test must run, as root)"
    );
    println!("skipped: {test}: mounting FUSE needs root");
    false
}

fn mounted() -> (tempfile::TempDir, PowerCut) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("backing")).unwrap();
    std::fs::create_dir(dir.path().join("mnt")).unwrap();
    let fs = PowerCut::mount(&dir.path().join("backing"), &dir.path().join("mnt")).unwrap();
    (dir, fs)
}

fn errno(e: io::Error) -> Option<i32> {
    e.raw_os_error()
}

#[test]
fn a_cut_keeps_synced_data_only() {
    if !can_mount("a_cut_keeps_synced_data_only") {
        return;
    }
    let (_dir, fs) = mounted();
    let m = fs.mountpoint().to_path_buf();

    // Appended after a sync: the tail is lost.
    let mut a = File::create(m.join("a")).unwrap();
    a.write_all(b"synced").unwrap();
    a.sync_data().unwrap();
    a.write_all(b" lost").unwrap();

    // Overwritten and grown after a sync: the old bytes and length come back.
    let b = File::create(m.join("b")).unwrap();
    b.write_all_at(&[1; 10_000], 0).unwrap();
    b.sync_all().unwrap();
    b.write_all_at(&[2; 100], 5_000).unwrap();
    b.set_len(20_000).unwrap();
    b.write_all_at(&[3; 100], 19_000).unwrap();

    // Never synced: empty (its creation, metadata, stays).
    let mut c = File::create(m.join("c")).unwrap();
    c.write_all(b"gone").unwrap();

    // Shrunk after a sync: the cut-off bytes come back.
    let d = File::create(m.join("d")).unwrap();
    d.write_all_at(b"0123456789", 0).unwrap();
    d.sync_data().unwrap();
    d.set_len(3).unwrap();

    // Synced through another handle of the same file: durable (fsync syncs the inode).
    let mut e = File::create(m.join("e")).unwrap();
    e.write_all(b"other handle").unwrap();
    File::open(m.join("e")).unwrap().sync_all().unwrap();
    // Renamed after its sync: the rename is metadata, durable at once.
    std::fs::rename(m.join("e"), m.join("e2")).unwrap();

    let stats = fs.stats();
    assert!(stats.fdatasyncs >= 2 && stats.fsyncs >= 2, "{stats:?}");
    assert!(stats.writes >= 6 && stats.unsynced >= 5, "{stats:?}");
    assert_eq!(stats.syncs_by_name.get("a"), Some(&1), "{stats:?}");

    let report = fs.cut();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.files, 4, "{report:?}");

    // Nothing can be written, synced or even looked at any more.
    assert_eq!(a.write_all(b"x").map_err(errno), Err(Some(libc::EIO)));
    assert_eq!(a.sync_data().map_err(errno), Err(Some(libc::EIO)));
    assert_eq!(
        File::create(m.join("f")).map_err(errno).err(),
        Some(Some(libc::EIO))
    );
    drop((a, b, c, d, e));
    let backing = fs.backing().to_path_buf();
    fs.unmount().unwrap();

    let read = |name: &str| std::fs::read(backing.join(name)).unwrap();
    assert_eq!(read("a"), b"synced");
    assert_eq!(read("b"), vec![1; 10_000]);
    assert_eq!(read("c"), b"");
    assert_eq!(read("d"), b"0123456789");
    assert_eq!(read("e2"), b"other handle");
}

#[test]
fn sockets_locks_and_directories_work_on_the_mount() {
    if !can_mount("sockets_locks_and_directories_work_on_the_mount") {
        return;
    }
    let (_dir, fs) = mounted();
    let m = fs.mountpoint().to_path_buf();

    // A unix socket bound inside the mount (FUSE mknod) is reachable by its path.
    let listener = UnixListener::bind(m.join("s.sock")).unwrap();
    let mut client = UnixStream::connect(m.join("s.sock")).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");

    // flock (rave's directory lock) is enforced between open files (by the kernel: the file
    // system implements no lock operation).
    let one = File::create(m.join("LOCK")).unwrap();
    let two = File::open(m.join("LOCK")).unwrap();
    one.try_lock().unwrap();
    assert!(two.try_lock().is_err());
    drop(one);
    two.try_lock().unwrap();

    // Directories, listing, rename over an existing file, removal.
    std::fs::create_dir(m.join("sub")).unwrap();
    std::fs::write(m.join("sub/x"), b"x").unwrap();
    std::fs::write(m.join("sub/y"), b"y").unwrap();
    std::fs::rename(m.join("sub/x"), m.join("sub/y")).unwrap();
    let names: Vec<_> = std::fs::read_dir(m.join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![OsStr::new("y")]);
    assert_eq!(std::fs::read(m.join("sub/y")).unwrap(), b"x");
    std::fs::rename(m.join("sub"), m.join("sub2")).unwrap();
    assert_eq!(std::fs::read(m.join("sub2/y")).unwrap(), b"x");
    std::fs::remove_file(m.join("sub2/y")).unwrap();
    std::fs::remove_dir(m.join("sub2")).unwrap();
    assert!(!m.join("sub2").exists());

    drop((listener, client, server, two));
    fs.unmount().unwrap();
}
