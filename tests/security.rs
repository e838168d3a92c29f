//! Socket security through real processes: the leader is a `rave hold` child, attackers are raw
//! sockets in this process or processes of another user.
//!
//! - The socket is an owner-only (0600) socket file inside the database directory (or, for a
//!   long path, in the private per-user runtime directory).
//! - Another user cannot connect (EACCES from the socket's mode); with the mode opened up
//!   (chmod 0666), the leader's peer-uid check still drops them without a word.
//! - A client that says nothing, or trickles its Hello, is dropped after the handshake timeout
//!   and never blocks another client.
//! - No client makes the leader allocate without bound: a 4 GiB length prefix is refused at once,
//!   frames announced at the limit cost nothing until their bytes arrive, and iterators whose
//!   follower never reads or never grants credit keep the leader's memory flat.
//!
//! The other-user tests need root (to create `rave-test-other` and become it); without root they
//! print why they are skipped and pass, except in CI (`CI` set), where a skip is a failure.

#[macro_use]
mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    Engine, OTHER_USER, Proc, open_handle, run_rave, skip_or_fail, start_leader, tempdir, within,
};
use rave::{BatchOp, RaveOptions, Role};
use rave_transport::wire::{self, ClientMessage, MAGIC, PROTOCOL_VERSION, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

per_engine!(
    the_socket_is_owner_only_and_inside_the_directory,
    another_user_can_neither_connect_nor_be_served,
    silent_and_trickling_clients_are_dropped_and_block_no_one,
    a_huge_length_prefix_is_refused_without_allocating,
    iterators_without_credit_keep_the_leader_bounded,
);

/// A user id and group id.
#[derive(Clone, Copy, Debug)]
struct User {
    uid: u32,
    gid: u32,
}

/// `rave-test-other`, created if needed; `Err` says why the test must be skipped.
fn other_user() -> Result<User, String> {
    common::other_user().map(|(uid, gid)| User { uid, gid })
}

/// The leader's resident memory, in KiB (VmRSS of /proc/<pid>/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

fn socket_of(dir: &Path) -> PathBuf {
    rave_election::socket_path(dir).expect("the socket path")
}

/// A length-prefixed frame of `message`.
fn frame(message: &ClientMessage) -> Vec<u8> {
    let body = wire::encode(message).expect("encode");
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&body);
    bytes
}

fn hello() -> Vec<u8> {
    frame(&ClientMessage::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
    })
}

/// Splits what a leader sent into its messages (a torn tail is ignored).
fn messages(mut bytes: &[u8]) -> Vec<ServerMessage> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let Some(body) = bytes.get(4..4 + len) else {
            break;
        };
        out.push(wire::decode(body).expect("the leader sends valid messages"));
        bytes = &bytes[4 + len..];
    }
    out
}

/// Reads until EOF (or a reset), bounded; returns what came and how long it took.
async fn read_to_eof(stream: &mut UnixStream, limit: Duration) -> Vec<u8> {
    let mut seen = Vec::new();
    within("the leader closing the connection", limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    seen
}

/// Whether `stream` is still connected with nothing to read, asked of the socket itself at once
/// (a peek that does not wait), not of the runtime, which may not have seen an EOF yet.
fn still_open(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a local buffer on a descriptor `stream` owns and keeps open.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    let err = std::io::Error::last_os_error();
    assert!(
        n <= 0,
        "the leader wrote to a client that has not said Hello"
    );
    n < 0 && err.kind() == std::io::ErrorKind::WouldBlock
}

/// A raw client that completed the handshake.
async fn handshaken(socket: &Path) -> UnixStream {
    let mut stream = UnixStream::connect(socket).await.expect("connect");
    stream.write_all(&hello()).await.expect("send Hello");
    let mut head = [0u8; 4];
    within(
        "Welcome",
        Duration::from_secs(10),
        stream.read_exact(&mut head),
    )
    .await
    .expect("Welcome's length");
    let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
    within(
        "Welcome",
        Duration::from_secs(10),
        stream.read_exact(&mut body),
    )
    .await
    .expect("Welcome's body");
    assert!(
        matches!(wire::decode(&body), Ok(ServerMessage::Welcome { .. })),
        "expected Welcome"
    );
    stream
}

async fn the_socket_is_owner_only_and_inside_the_directory<B: Engine>() {
    let tmp = tempdir();
    // A short path: the socket is <dir>/rave.sock.
    let dir = tmp.path().join("db");
    let mut leader = start_leader::<B>(&dir).await;
    let socket = socket_of(&dir);
    assert_eq!(
        socket,
        std::fs::canonicalize(&dir).unwrap().join("rave.sock")
    );
    let meta = std::fs::symlink_metadata(&socket).expect("the socket exists");
    assert!(meta.file_type().is_socket(), "{socket:?} is not a socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{socket:?}");
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    let status = run_rave::<B>(&[], &dir, &["status"], None).await;
    status.assert_code(0, "status");
    assert!(
        status
            .text()
            .contains(&format!("socket\t{}\n", socket.display())),
        "{}",
        status.text()
    );
    leader.kill();

    // A path too long for sun_path: a hashed name in the private runtime directory, still 0600,
    // in a 0700 directory of ours.
    let long = tmp.path().join("d".repeat(110));
    let mut leader = start_leader::<B>(&long).await;
    let socket = socket_of(&long);
    assert!(!socket.starts_with(&long), "{socket:?}");
    let meta = std::fs::symlink_metadata(&socket).expect("the socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{socket:?}");
    let parent = std::fs::metadata(socket.parent().unwrap()).unwrap();
    assert_eq!(parent.permissions().mode() & 0o777, 0o700);
    assert_eq!(parent.uid(), meta.uid());
    run_rave::<B>(&[], &long, &["put", "k", "v"], None)
        .await
        .assert_code(0, "put through the hashed socket");
    leader.kill();
}

/// What a connection attempt by another user's process got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    /// `connect(2)` failed with this errno.
    NotConnected(i32),
    /// Connected, then the leader closed (or reset) the connection without sending a byte.
    Dropped,
    /// Connected, and the leader sent this many bytes.
    Served(usize),
    /// Connected; nothing came, and the connection stayed open, for 5 s.
    Silence,
    /// The child could not become the other user (errno).
    NoSetuid(i32),
}

/// Forks a child that becomes `user`, connects to `socket`, writes `payload` and reads the
/// answer; returns what happened. The child uses only async-signal-safe calls (the parent has
/// other threads) and reports through a pipe.
fn connect_as(user: User, socket: &Path, payload: &[u8]) -> Attempt {
    let path = socket.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid (empty) address.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    assert!(path.len() < addr.sun_path.len(), "{socket:?} is too long");
    for (dst, src) in addr.sun_path.iter_mut().zip(path) {
        *dst = *src as libc::c_char;
    }
    let addr_len = (std::mem::size_of::<libc::sa_family_t>() + path.len() + 1) as libc::socklen_t;
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let [read_fd, write_fd] = fds;

    // SAFETY: the child runs only async-signal-safe functions (setgroups, setgid, setuid,
    // socket, connect, setsockopt, write, read, _exit) on memory prepared before the fork, and
    // never returns into Rust code of the parent's threads.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let report = |kind: i32, value: i32| -> ! {
            let mut buf = [0u8; 8];
            buf[..4].copy_from_slice(&kind.to_ne_bytes());
            buf[4..].copy_from_slice(&value.to_ne_bytes());
            // SAFETY: write(2) and _exit(2) are async-signal-safe; buf outlives the call.
            unsafe {
                libc::write(write_fd, buf.as_ptr().cast(), buf.len());
                libc::_exit(0)
            }
        };
        let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // SAFETY: plain system calls on values owned by this (child) process.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(user.gid) != 0
                || libc::setuid(user.uid) != 0
            {
                report(4, errno());
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if fd < 0 {
                report(5, errno());
            }
            if libc::connect(fd, (&raw const addr).cast(), addr_len) != 0 {
                report(1, errno());
            }
            let timeout = libc::timeval {
                tv_sec: 5,
                tv_usec: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            // A write to a connection the leader already dropped may fail: that is fine.
            libc::write(fd, payload.as_ptr().cast(), payload.len());
            let mut buf = [0u8; 256];
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n > 0 {
                report(3, n as i32);
            }
            if n == 0 {
                report(2, 0);
            }
            match errno() {
                libc::ECONNRESET => report(2, 0),
                libc::EAGAIN => report(6, 0),
                other => report(5, other),
            }
        }
    }

    // SAFETY: closing our copy of the pipe's write end, which nothing else uses.
    unsafe { libc::close(write_fd) };
    let started = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child, which nothing else reaps.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            // SAFETY: the child is ours and not reaped yet, so the pid is still its.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
                libc::close(read_fd);
            }
            panic!("the other user's connection attempt did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut buf = [0u8; 8];
    // SAFETY: reading into a buffer of the size given, from our end of the pipe.
    let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: our end of the pipe, closed once.
    unsafe { libc::close(read_fd) };
    assert_eq!(n, 8, "the child reported nothing (status {status})");
    let kind = i32::from_ne_bytes(buf[..4].try_into().unwrap());
    let value = i32::from_ne_bytes(buf[4..].try_into().unwrap());
    match kind {
        1 => Attempt::NotConnected(value),
        2 => Attempt::Dropped,
        3 => Attempt::Served(value as usize),
        4 => Attempt::NoSetuid(value),
        6 => Attempt::Silence,
        _ => panic!("the child failed: errno {value}"),
    }
}

/// The `rave` binary run as `user`.
fn rave_as<B: Engine>(user: User, dir: &Path, args: &[&str]) -> Proc {
    let mut command = common::rave_cmd::<B>(&["--timeout", "3"], dir, args);
    command.uid(user.uid).gid(user.gid);
    Proc::spawn(
        format!("rave {} as {OTHER_USER}", args.join(" ")),
        command,
        None,
    )
}

async fn another_user_can_neither_connect_nor_be_served<B: Engine>() {
    let user = match other_user() {
        Ok(user) => user,
        Err(why) => return skip_or_fail("another_user_can_neither_connect_nor_be_served", &why),
    };
    let tmp = tempdir();
    // Let the other user reach the directory, so that the socket's own mode is what stops it.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().join("db");
    let mut leader = start_leader::<B>(&dir).await;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    run_rave::<B>(&[], &dir, &["put", "secret", "value"], None)
        .await
        .assert_code(0, "put");
    let socket = socket_of(&dir);

    // 1. The socket is 0600: connect(2) itself is refused.
    let attempt = tokio::task::spawn_blocking({
        let socket = socket.clone();
        move || connect_as(user, &socket, &hello())
    })
    .await
    .unwrap();
    assert_eq!(attempt, Attempt::NotConnected(libc::EACCES));

    // The CLI as that user gets nothing either: exit 3 with a permission error, no value.
    let out = rave_as::<B>(user, &dir, &["get", "secret"])
        .finish(Duration::from_secs(30))
        .await;
    out.assert_code(3, "get as another user");
    assert!(
        out.stderr.contains("ermission denied"),
        "stderr {:?}",
        out.stderr
    );
    assert!(!out.text().contains("value"), "stdout {:?}", out.text());

    // 2. Even with the socket opened to everyone, the leader checks the peer's uid and drops
    //    the connection without a byte: no Welcome, no reply to anything.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut payload = hello();
    payload.extend(frame(&ClientMessage::Request {
        id: 1,
        op: rave_transport::wire::Op::Get {
            key: b"secret".to_vec(),
        },
    }));
    let attempt = tokio::task::spawn_blocking({
        let socket = socket.clone();
        move || connect_as(user, &socket, &payload)
    })
    .await
    .unwrap();
    assert_eq!(attempt, Attempt::Dropped);
    // It was the uid check that dropped it.
    within("the leader's warning", Duration::from_secs(5), async {
        while !leader.stderr().contains("another user") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // The owner is still served.
    let out = run_rave::<B>(&[], &dir, &["get", "secret"], None).await;
    out.assert_code(0, "get as the owner");
    assert_eq!(out.text(), "value\n");
    leader.kill();
}

/// A leader serving a fresh database that holds `k` = `v`, and its socket.
struct Served {
    /// The temporary directory holding `dir`, removed when dropped.
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    leader: Proc,
    socket: PathBuf,
}

async fn served<B: Engine>() -> Served {
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    let leader = start_leader::<B>(&dir).await;
    run_rave::<B>(&[], &dir, &["put", "k", "v"], None)
        .await
        .assert_code(0, "put");
    let socket = socket_of(&dir);
    Served {
        _tmp: tmp,
        dir,
        leader,
        socket,
    }
}

/// Whether the leader's bytes `seen` hold a Welcome.
fn welcomed(seen: &[u8]) -> bool {
    messages(seen)
        .iter()
        .any(|m| matches!(m, ServerMessage::Welcome { .. }))
}

/// Frames opening iterators `0..count` over everything, each with `credit`.
fn iter_opens(count: u64, credit: u32) -> Vec<u8> {
    (0..count)
        .flat_map(|iter| {
            frame(&ClientMessage::IterOpen {
                iter,
                range: rave::Range::all(),
                credit,
            })
        })
        .collect()
}

async fn silent_and_trickling_clients_are_dropped_and_block_no_one<B: Engine>() {
    let Served {
        _tmp,
        dir,
        mut leader,
        socket,
    } = served::<B>().await;
    let started = Instant::now();
    let mut silent = UnixStream::connect(&socket).await.unwrap();
    // A valid Hello, one byte every 300 ms: ~10 s, twice the handshake timeout.
    let trickler = {
        let mut stream = UnixStream::connect(&socket).await.unwrap();
        tokio::spawn(async move {
            for byte in hello() {
                if stream.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let seen = read_to_eof(&mut stream, Duration::from_secs(30)).await;
            (seen, started.elapsed())
        })
    };
    // Both hold connections the leader has not finished; another client goes straight through:
    // its get is done while the silent one is still connected (were it waiting behind the
    // stalled handshakes, it would be done only after the leader dropped them).
    let out = run_rave::<B>(&[], &dir, &["get", "k"], None).await;
    out.assert_code(0, "get while two clients stall");
    assert_eq!(out.text(), "v\n");
    assert!(
        still_open(&silent),
        "the get was served only after the silent client was dropped, {:?} after it connected",
        started.elapsed()
    );
    // The silent one is dropped at the handshake timeout (5 s), without a Welcome.
    let seen = read_to_eof(&mut silent, Duration::from_secs(30)).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(4), "{waited:?}");
    assert!(!welcomed(&seen), "{seen:?}");
    // So is the trickler, before its Hello is complete.
    let (seen, _) = within("the trickler", Duration::from_secs(30), trickler)
        .await
        .unwrap();
    assert!(!welcomed(&seen), "{seen:?}");
    let out = run_rave::<B>(&[], &dir, &["get", "k"], None).await;
    out.assert_code(0, "get afterwards");
    leader.kill();
}

/// The most a leader process may hold, in KiB, through the memory tests.
const RSS_LIMIT_KIB: u64 = 100 * 1024;

async fn a_huge_length_prefix_is_refused_without_allocating<B: Engine>() {
    let Served {
        _tmp,
        dir,
        mut leader,
        socket,
    } = served::<B>().await;
    let before = rss_kib(leader.pid());

    // 0xffffffff (4 GiB - 1), before and after the handshake: refused at once, with a reason.
    for handshake in [false, true] {
        let mut stream = if handshake {
            handshaken(&socket).await
        } else {
            UnixStream::connect(&socket).await.unwrap()
        };
        stream.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        // Some body bytes, which the leader must not wait for.
        let _ = stream.write_all(&[0u8; 1024]).await;
        let seen = read_to_eof(&mut stream, Duration::from_secs(5)).await;
        let refused = messages(&seen)
            .into_iter()
            .any(|m| matches!(m, ServerMessage::Refused { message } if message.contains("frame")));
        assert!(refused, "handshake {handshake}: {:?}", messages(&seen));
    }

    // Frames announced at the limit (64 MiB) on many connections cost nothing until their
    // bytes arrive: the leader reads what comes, it does not pre-fill what was announced.
    let announced = rave_transport::Limits::default().max_frame as u32;
    let mut held = Vec::new();
    for _ in 0..24 {
        let mut stream = handshaken(&socket).await;
        stream.write_all(&announced.to_be_bytes()).await.unwrap();
        stream.write_all(&[0u8; 4096]).await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_kib(leader.pid());
    println!("leader RSS: {before} KiB before, {during} KiB with 24 frames of 64 MiB announced");
    assert!(
        during < RSS_LIMIT_KIB && during.saturating_sub(before) < 32 * 1024,
        "leader RSS {before} KiB before, {during} KiB with 24 frames of 64 MiB announced"
    );
    // And it still serves.
    let out = run_rave::<B>(&[], &dir, &["get", "k"], None).await;
    out.assert_code(0, "get meanwhile");
    drop(held);
    leader.kill();
}

async fn iterators_without_credit_keep_the_leader_bounded<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    let mut leader = start_leader::<B>(&dir).await;
    // 4 MiB of data: 4096 entries of 1 KiB.
    let (db, role) = open_handle::<B>(&dir, RaveOptions::default()).await;
    assert_eq!(role, Role::Follower);
    for batch in 0..16u32 {
        let ops = (0..256u32)
            .map(|i| {
                let n = batch * 256 + i;
                BatchOp::put(format!("key{n:06}"), vec![(n % 251) as u8; 1024])
            })
            .collect();
        db.batch(ops).await.unwrap();
    }
    let socket = socket_of(&dir);
    let before = rss_kib(leader.pid());

    // 800 iterators opened with no credit and never granted any: each pins a snapshot, and
    // nothing else.
    let mut idle = handshaken(&socket).await;
    idle.write_all(&iter_opens(800, 0)).await.unwrap();
    // 32 iterators granted everything, on a connection that never reads: 32 full scans, 128 MiB
    // in all, of which the leader may hold only what its bounded queue and the socket take.
    let mut greedy = handshaken(&socket).await;
    greedy.write_all(&iter_opens(32, u32::MAX)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = rss_kib(leader.pid());
    println!("leader RSS: {before} KiB before, {during} KiB with 832 iterators nobody reads");
    // A plateau, not slow growth: a second later it holds about the same.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = rss_kib(leader.pid());
    assert!(
        later.saturating_sub(during) < 8 * 1024,
        "leader RSS still growing: {during} KiB, then {later} KiB"
    );
    assert!(
        during < RSS_LIMIT_KIB && during.saturating_sub(before) < 64 * 1024,
        "leader RSS {before} KiB before, {during} KiB with 832 iterators nobody reads"
    );
    // Everyone else is still served, iterators included.
    let out = run_rave::<B>(&[], &dir, &["scan", "--keys-only", "--limit", "3"], None).await;
    out.assert_code(0, "scan meanwhile");
    assert_eq!(out.text(), "key000000\nkey000001\nkey000002\n");
    assert_eq!(
        db.get(b"key004095").await.unwrap(),
        Some(vec![(4095 % 251) as u8; 1024])
    );
    drop((idle, greedy));
    db.close().await.unwrap();
    leader.kill();
}
