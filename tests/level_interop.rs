//! Level-compatible mode with real Node processes: the seed's `put.js` and `get.js` and a Node
//! writer (interop/node/) running rave-level 1.0.0, and rave processes and handles, on one
//! LevelDB directory; leaders of both kinds killed with SIGKILL; nothing acknowledged lost.
//!
//! The pinned npm packages come from `scripts/level-suite --install` (a cache directory, see
//! there). Without them, or without node, these tests skip outside CI and fail in CI.

#![cfg(all(unix, feature = "leveldb"))]

#[macro_use]
#[allow(unused_macros)]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rave::backends::LevelDbBackend;
use rave::{BatchOp, KvStore, Range, Rave, RaveOptions, Role};

use crate::common::{Proc, node, rave_cmd, run_rave, tempdir, wait_role};

/// The node_modules holding rave-level, or `None` (after saying why) when the test must skip.
fn node_modules(test: &str) -> Option<PathBuf> {
    let found = common::level_node_modules();
    if found.is_none() {
        common::skip_or_fail(
            test,
            "node or rave-level is missing: run `scripts/level-suite --install` first",
        );
    }
    found
}

const LIMIT: Duration = Duration::from_secs(60);

/// Reads lines of `proc` until `done` says so, within `LIMIT`; returns whether it did.
async fn read_until(proc: &mut Proc, mut done: impl FnMut(&str) -> bool) -> bool {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match proc.next_line(left).await {
            Ok(Some(line)) if done(&line) => return true,
            Ok(Some(_)) => {}
            Ok(None) | Err(()) => return false,
        }
    }
}

/// The numbers a `writer.js` acknowledged (its `ack N` lines seen so far).
fn acks(proc: &mut Proc) -> BTreeSet<u64> {
    proc.drain_lines();
    proc.seen()
        .iter()
        .filter_map(|l| l.strip_prefix("ack ")?.parse().ok())
        .collect()
}

/// Waits until `writer` has acknowledged `more` writes past what it had.
async fn more_acks(writer: &mut Proc, more: usize) {
    let start = acks(writer).len();
    let mut seen = start;
    let reached = read_until(writer, |line| {
        if line.starts_with("ack ") {
            seen += 1;
        }
        seen >= start + more
    })
    .await;
    assert!(
        reached,
        "the writer stalled at {seen} acks: {}",
        writer.stderr()
    );
}

/// The keys under `prefix` (`prefix/00000012`) as numbers, read by a `rave --level-compat`
/// process (which follows whoever leads, or leads).
async fn numbers_by_rave(dir: &Path, prefix: &str) -> BTreeSet<u64> {
    let gte = format!("{prefix}/");
    let lt = format!("{prefix}0");
    let out = run_rave::<LevelDbBackend>(
        &["--level-compat"],
        dir,
        &["scan", "--keys-only", "--gte", &gte, "--lt", &lt],
        None,
    )
    .await;
    out.assert_code(0, "rave scan");
    out.text()
        .lines()
        .map(|l| l.trim_start_matches(&gte).parse().expect("a writer's key"))
        .collect()
}

/// Stops a `writer.js` (SIGTERM: it finishes its put and closes) and returns what it acked.
async fn stop_writer(writer: &mut Proc) -> BTreeSet<u64> {
    writer.signal(libc::SIGTERM);
    writer.finish(LIMIT).await.assert_code(0, "writer.js");
    acks(writer)
}

fn assert_none_lost(acked: &BTreeSet<u64>, stored: &BTreeSet<u64>, who: &str) {
    let lost: Vec<_> = acked.difference(stored).collect();
    assert!(lost.is_empty(), "{who}: acknowledged but lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn level_compat_refuses_other_engines_and_long_paths() {
    let dir = tempdir();
    let options = RaveOptions::default().level_compat(true);
    #[cfg(feature = "redb")]
    {
        let err = Rave::<rave::backends::RedbBackend>::open_engine(dir.path(), options.clone())
            .err()
            .expect("redb refused");
        assert_eq!(err.kind(), rave::ErrorKind::InvalidArgument, "{err}");
    }
    let long = dir.path().join("d".repeat(120));
    let err = Rave::<LevelDbBackend>::open_engine(&long, options.clone())
        .err()
        .expect("a path Node truncates is refused");
    assert!(err.to_string().contains("truncates"), "{err}");
    let out = run_rave::<LevelDbBackend>(&["--level-compat"], &long, &["get", "a"], None).await;
    out.assert_code(3, "rave --level-compat on a long path");
}

/// Every rave-level operation (interop/node/all-ops.js: three instances; gets, batches, getMany,
/// iterators with ranges, reverse, limits and seeks, clears, sublevels) through a rave leader,
/// none of the Node instances leading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_operation_through_a_rave_leader() {
    let Some(modules) = node_modules("every_node_operation_through_a_rave_leader") else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    let mut leader = Proc::spawn(
        "rave hold",
        rave_cmd::<LevelDbBackend>(&["--level-compat"], &dir, &["hold"]),
        None,
    );
    leader.expect_line("leader", LIMIT).await;
    let mut ops = node(&modules, "all-ops.js", &[dir.to_str().unwrap()], &[]);
    let out = ops.finish(LIMIT).await;
    assert_eq!(out.text().trim(), "ALL OK", "{}", out.stderr);
    // What Node wrote, read by rave: JSON text, sublevel prefixes, byte for byte.
    let got = run_rave::<LevelDbBackend>(&["--level-compat"], &dir, &["get", "!s!q"], None).await;
    assert_eq!(
        got.assert_code(0, "rave get").text().trim(),
        r#"{"deep":true}"#
    );
    assert!(leader.try_status().is_none(), "the rave leader died");
}

/// Rust leads, Node follows: the seed's put.js and get.js and a Node writer use a rave leader
/// for every operation (none of them leads); then the rave leader is SIGKILLed, a Node process
/// takes over, and no acknowledged write is lost. A rave process then follows the Node leader,
/// and finally leads itself on the directory classic-level wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_leads_node_then_node_takes_over() {
    let Some(modules) = node_modules("rust_leads_node_then_node_takes_over") else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    let dir_arg = dir.to_str().unwrap();
    let mut leader = Proc::spawn(
        "rave hold",
        rave_cmd::<LevelDbBackend>(&["--level-compat"], &dir, &["hold"]),
        None,
    );
    leader.expect_line("leader", LIMIT).await;

    let mut put = node(&modules, "put.js", &[dir_arg], &[("PUT_INTERVAL_MS", "50")]);
    let mut get = node(&modules, "get.js", &[dir_arg], &[("GET_INTERVAL_MS", "50")]);
    let mut writer = node(&modules, "writer.js", &[dir_arg, "w"], &[("PACE_MS", "2")]);
    // The seed's programs meet through the rave leader: get.js reads what put.js wrote.
    let mut written = String::new();
    assert!(
        read_until(&mut put, |l| match l.strip_prefix("put a=") {
            Some(v) => {
                written = v.to_string();
                true
            }
            None => false,
        })
        .await,
        "put.js: {}",
        put.stderr()
    );
    let want = format!("a= {written}");
    assert!(
        read_until(&mut get, |l| l == want).await,
        "get.js never read {want}: {:?}",
        get.seen()
    );
    more_acks(&mut writer, 200).await;
    // rave reads what Node wrote, as Node encoded it (JSON).
    let out = run_rave::<LevelDbBackend>(&["--level-compat"], &dir, &["get", "a"], None).await;
    assert_eq!(out.assert_code(0, "rave get a").text().trim(), written);
    for p in [&mut put, &mut get, &mut writer] {
        p.drain_lines();
        assert!(
            !p.seen().iter().any(|l| l == "leader"),
            "a Node process led beside rave"
        );
    }

    leader.kill();
    more_acks(&mut writer, 200).await;
    let node_leaders = [&mut put, &mut get, &mut writer]
        .into_iter()
        .filter_map(|p| {
            p.drain_lines();
            p.seen().iter().any(|l| l == "leader").then_some(())
        })
        .count();
    assert_eq!(node_leaders, 1, "exactly one Node process took over");

    let acked = stop_writer(&mut writer).await;
    // A rave process follows the Node leader (or leads, if that was the writer) and reads all.
    assert_none_lost(
        &acked,
        &numbers_by_rave(&dir, "w").await,
        "read through the new leader",
    );
    put.kill();
    get.kill();
    // With every Node process gone, rave leads on the files classic-level wrote.
    assert_none_lost(
        &acked,
        &numbers_by_rave(&dir, "w").await,
        "read by a rave leader",
    );
}

/// Node leads, Rust follows: a rave handle uses a Node leader for every operation, resumes a
/// reverse iterator across the Node leader's SIGKILL without a duplicate or a gap, and takes
/// over when no Node process is left; nothing acknowledged by either side is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_leads_rust_follows_then_takes_over() {
    let Some(modules) = node_modules("node_leads_rust_follows_then_takes_over") else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    let dir_arg = dir.to_str().unwrap();
    let mut node_leader = node(&modules, "writer.js", &[dir_arg, "n"], &[("PACE_MS", "2")]);
    assert!(
        read_until(&mut node_leader, |l| l == "leader").await,
        "{}",
        node_leader.stderr()
    );
    let mut get = node(&modules, "get.js", &[dir_arg], &[("GET_INTERVAL_MS", "50")]);

    let options = RaveOptions::default()
        .level_compat(true)
        .op_timeout(Some(Duration::from_secs(5)));
    let db = Rave::<LevelDbBackend>::open_engine(&dir, options).unwrap();
    assert_eq!(db.ready().await.unwrap(), Role::Follower);
    assert_eq!(db.epoch(), None, "a Node leader has no epoch");

    // Every operation through the Node leader.
    db.put(b"a", b"12345").await.unwrap();
    assert!(
        read_until(&mut get, |l| l == "a= 12345").await,
        "get.js: {:?}",
        get.seen()
    );
    assert_eq!(db.get(b"a").await.unwrap(), Some(b"12345".to_vec()));
    assert_eq!(db.get(b"absent").await.unwrap(), None);
    let ops: Vec<BatchOp> = (0..300)
        .map(|i| BatchOp::put(format!("it/{i:04}"), format!("{i}")))
        .chain([BatchOp::put("x/1", ""), BatchOp::put("x/2", "2")])
        .collect();
    db.batch(ops).await.unwrap();
    db.del(b"x/2").await.unwrap();
    assert_eq!(
        db.get_many(&[b"x/1".to_vec(), b"x/2".to_vec()])
            .await
            .unwrap(),
        vec![Some(Vec::new()), None]
    );
    db.clear(Range::prefix("x/")).await.unwrap();
    assert_eq!(db.get(b"x/1").await.unwrap(), None);
    let some = db
        .iterator(Range::prefix("it/").reverse().limit(3).keys_only())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let keys: Vec<_> = some.iter().map(|e| e.key.clone()).collect();
    assert_eq!(
        keys,
        vec![
            b"it/0299".to_vec(),
            b"it/0298".to_vec(),
            b"it/0297".to_vec()
        ]
    );
    assert!(matches!(
        db.sequence().await,
        Err(rave::Error::Unsupported { .. })
    ));
    assert!(matches!(
        db.watch(Range::all(), None).await.err(),
        Some(rave::Error::Unsupported { .. })
    ));

    // A reverse iterator open across the Node leader's death.
    let mut it = db
        .iterator(Range::prefix("it/").reverse().keys_only())
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 100 {
        seen.extend(it.next_chunk(10).await.unwrap().into_iter().map(|e| e.key));
    }
    more_acks(&mut node_leader, 100).await;
    node_leader.kill();
    let node_acked = acks(&mut node_leader);
    // Writes of this handle go on through whoever leads next (get.js, or this handle).
    for i in 0..50 {
        db.put(format!("r/{i:08}").as_bytes(), b"r").await.unwrap();
    }
    seen.extend(it.collect_all().await.unwrap().into_iter().map(|e| e.key));
    let want: Vec<Vec<u8>> = (0..300)
        .rev()
        .map(|i| format!("it/{i:04}").into_bytes())
        .collect();
    assert_eq!(
        seen.len(),
        want.len(),
        "no duplicate, no gap across the failover"
    );
    assert_eq!(seen, want);
    assert_none_lost(
        &node_acked,
        &numbers_by_rave(&dir, "n").await,
        "Node's writes",
    );

    // No Node process left: this handle leads.
    get.kill();
    wait_role(&db, Role::Leader, LIMIT).await;
    for i in 50..60 {
        db.put(format!("r/{i:08}").as_bytes(), b"r").await.unwrap();
    }
    let mut all = db.iterator(Range::prefix("r/").keys_only()).await.unwrap();
    assert_eq!(all.collect_all().await.unwrap().len(), 60);
    let stored: BTreeSet<u64> = db
        .iterator(Range::prefix("n/").keys_only())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
        .iter()
        .map(|e| String::from_utf8_lossy(&e.key[2..]).parse().unwrap())
        .collect();
    assert_none_lost(
        &node_acked,
        &stored,
        "Node's writes, read by the rave leader",
    );
    db.close().await.unwrap();
}

/// The Rust examples (`examples/put.rs`, `get.rs` with `--level-compat`), built by `cargo test`
/// beside the `rave` binary; `None` (after saying why) when they are missing.
fn rust_examples(test: &str) -> Option<(PathBuf, PathBuf)> {
    let dir = Path::new(common::rave_bin()).parent()?.join("examples");
    let (put, get) = (dir.join("put"), dir.join("get"));
    if put.is_file() && get.is_file() {
        return Some((put, get));
    }
    common::skip_or_fail(
        test,
        "the examples are not built (`cargo test` without a target filter, or `cargo build \
         --examples --features leveldb`)",
    );
    None
}

fn example(path: &Path, dir: &Path) -> Proc {
    let mut command = Command::new(path);
    command.arg("--level-compat").arg(dir);
    Proc::spawn(format!("{} --level-compat", path.display()), command, None)
}

/// Waits until `reader` prints `a= V` for a value `V` that `writer` acknowledged after this call.
async fn reads_a_new_put(reader: &mut Proc, writer: &mut Proc) {
    writer.drain_lines();
    let mut fresh = None;
    let got = read_until(writer, |l| {
        fresh = l.strip_prefix("put a=").map(str::to_string);
        fresh.is_some()
    })
    .await;
    let fresh = fresh
        .filter(|_| got)
        .unwrap_or_else(|| panic!("no put: {}", writer.stderr()));
    let want = format!("a= {fresh}");
    let seen = read_until(reader, |l| l == want).await;
    assert!(
        seen,
        "{want} never read; the reader said {:?}",
        &reader.seen()[reader.seen().len().saturating_sub(5)..]
    );
}

/// The seed's two Node programs and the Rust examples on one directory, both starting orders,
/// the leader's whole side SIGKILLed in turn (Node's, then Rust's): the readers of both sides
/// keep reading what the writers of both sides write, and the acknowledged writes of a Node
/// writer killed with its side are all there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_programs_and_rust_examples_together() {
    let test = "seed_programs_and_rust_examples_together";
    let Some(modules) = node_modules(test) else {
        return;
    };
    let Some((put_rs, get_rs)) = rust_examples(test) else {
        return;
    };
    for node_first in [true, false] {
        let tmp = tempdir();
        let dir = tmp.path().join("data");
        let d = dir.to_str().unwrap();
        let fast = [("PUT_INTERVAL_MS", "200"), ("GET_INTERVAL_MS", "100")];
        let start_node = |modules: &Path| {
            (
                node(modules, "put.js", &[d], &fast),
                node(modules, "get.js", &[d], &fast),
                node(modules, "writer.js", &[d, "w"], &[("PACE_MS", "5")]),
            )
        };
        let (mut put_js, mut get_js, mut writer, mut put_ex, mut get_ex);
        if node_first {
            (put_js, get_js, writer) = start_node(&modules);
            assert!(read_until(&mut put_js, |l| l.starts_with("put a=")).await);
            (put_ex, get_ex) = (example(&put_rs, &dir), example(&get_rs, &dir));
        } else {
            (put_ex, get_ex) = (example(&put_rs, &dir), example(&get_rs, &dir));
            assert!(read_until(&mut put_ex, |l| l.starts_with("put a=")).await);
            (put_js, get_js, writer) = start_node(&modules);
        }
        // Each side reads what the other writes.
        reads_a_new_put(&mut get_js, &mut put_ex).await;
        reads_a_new_put(&mut get_ex, &mut put_js).await;
        more_acks(&mut writer, 50).await;

        // Node's side dies whole (its leader, if it led): Rust's carries on, and a new Node
        // side follows whoever leads.
        for p in [&mut put_js, &mut get_js, &mut writer] {
            p.kill();
        }
        let acked = acks(&mut writer);
        reads_a_new_put(&mut get_ex, &mut put_ex).await;
        (put_js, get_js, writer) = start_node(&modules);
        reads_a_new_put(&mut get_js, &mut put_ex).await;
        reads_a_new_put(&mut get_ex, &mut put_js).await;
        assert_none_lost(
            &acked,
            &numbers_by_rave(&dir, "w").await,
            "after Node's side died",
        );
        more_acks(&mut writer, 50).await;

        // Rust's side dies whole: Node's carries on.
        put_ex.kill();
        get_ex.kill();
        reads_a_new_put(&mut get_js, &mut put_js).await;
        more_acks(&mut writer, 50).await;
        let acked = stop_writer(&mut writer).await;
        assert_none_lost(
            &acked,
            &numbers_by_rave(&dir, "w").await,
            "after Rust's side died",
        );
        put_js.kill();
        get_js.kill();
    }
}
