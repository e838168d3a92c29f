//! The `rave` command's contract: exit codes, `--hex`, atomic `batch`, `scan` flags, `status`
//! and `hold`. Every test runs once per compiled-in engine.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Engine, Proc, open_handle, run_rave, start_leader, tempdir, within};
use rave::{KvStore, Range, RaveOptions, Role};

per_engine!(
    get_of_a_missing_key_exits_1,
    usage_errors_exit_2,
    hex_round_trips_binary_keys_and_values,
    batch_from_stdin_is_atomic,
    scan_flags,
    put_del_clear,
    status_names_the_leader,
    hold_reports_every_role_change,
);

async fn get_of_a_missing_key_exits_1<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let out = run_rave::<B>(&[], dir, &["get", "missing"], None).await;
    out.assert_code(1, "get of a missing key");
    assert!(out.stdout.is_empty(), "stdout {:?}", out.text());
    // Also through a leader in another process.
    let mut leader = start_leader::<B>(dir).await;
    let out = run_rave::<B>(&[], dir, &["get", "missing"], None).await;
    out.assert_code(1, "get of a missing key through a leader");
    assert!(out.stdout.is_empty(), "stdout {:?}", out.text());
    leader.kill();
}

/// A command line: global flags, arguments after the directory, and stdin.
type Case<'a> = (&'a [&'a str], &'a [&'a str], Option<&'a [u8]>);

async fn usage_errors_exit_2<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let cases: &[Case] = &[
        (&[], &["put", "only-a-key"], None),
        (&[], &["frobnicate"], None),
        (&[], &[], None),
        (&["--hex"], &["get", "zz"], None),
        (&["--hex"], &["put", "abc", "00"], None),
        (&["--timeout", "soon"], &["get", "k"], None),
        (&[], &["scan", "--keys-only", "--values-only"], None),
        (&[], &["scan", "--limit", "many"], None),
        (&[], &["batch"], Some(b"put\ta\t1\nset\tb\t2\n")),
        (&[], &["batch"], Some(b"put\tonly-a-key\n")),
    ];
    for (flags, args, stdin) in cases {
        let out = run_rave::<B>(flags, dir, args, *stdin).await;
        out.assert_code(2, &format!("rave {flags:?} DIR {args:?}"));
        assert!(
            !out.stderr.is_empty(),
            "a usage error says why: {flags:?} {args:?}"
        );
    }
    // No directory at all.
    let mut proc = Proc::spawn(
        "rave put",
        {
            let mut command = std::process::Command::new(common::rave_bin());
            command.args(["--backend", B::CLI, "get"]);
            command
        },
        None,
    );
    proc.finish(Duration::from_secs(10))
        .await
        .assert_code(2, "rave without a directory");
    // The bad batches above applied nothing.
    let out = run_rave::<B>(&[], dir, &["scan"], None).await;
    out.assert_code(0, "scan");
    assert_eq!(out.text(), "");
}

async fn hex_round_trips_binary_keys_and_values<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    run_rave::<B>(&["--hex"], dir, &["put", "00ff0a", "ff000d0a"], None)
        .await
        .assert_code(0, "hex put");
    run_rave::<B>(&["--hex"], dir, &["put", "ff", ""], None)
        .await
        .assert_code(0, "hex put of an empty value");
    let out = run_rave::<B>(&["--hex"], dir, &["get", "00ff0a"], None).await;
    out.assert_code(0, "hex get");
    assert_eq!(out.text(), "ff000d0a\n");
    let out = run_rave::<B>(&["--hex"], dir, &["get", "ff"], None).await;
    out.assert_code(0, "hex get of an empty value");
    assert_eq!(out.text(), "\n");
    let out = run_rave::<B>(&["--hex"], dir, &["scan"], None).await;
    out.assert_code(0, "hex scan");
    assert_eq!(out.text(), "00ff0a\tff000d0a\nff\t\n");
    let out = run_rave::<B>(&["--hex"], dir, &["scan", "--reverse", "--keys-only"], None).await;
    assert_eq!(out.text(), "ff\n00ff0a\n");
    // Through a handle: the bytes themselves.
    let (db, _) = open_handle::<B>(dir, RaveOptions::default()).await;
    assert_eq!(
        db.get(&[0x00, 0xff, 0x0a]).await.unwrap(),
        Some(vec![0xff, 0x00, 0x0d, 0x0a])
    );
    assert_eq!(db.get(&[0xff]).await.unwrap(), Some(Vec::new()));
    db.put(&[0x01, 0x00], &[0x00]).await.unwrap();
    // And the CLI reads what a handle wrote, as a follower of this process.
    let out = run_rave::<B>(&["--hex"], dir, &["get", "0100"], None).await;
    out.assert_code(0, "hex get through a follower");
    assert_eq!(out.text(), "00\n");
    db.close().await.unwrap();
}

/// `rave batch` applies its stdin as one atomic batch: a reader with snapshots sees all of it
/// or none of it, and a batch with a bad line applies nothing.
async fn batch_from_stdin_is_atomic<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let (db, role) = open_handle::<B>(dir, RaveOptions::default()).await;
    assert_eq!(role, Role::Leader);
    db.put(b"gone", b"x").await.unwrap();
    let mut input = String::new();
    for i in 0..300 {
        input.push_str(&format!("put\tbk{i:03}\tv{i}\n"));
    }
    input.push_str("del\tgone\n\n");
    let mut batch = Proc::spawn(
        "rave batch",
        common::rave_cmd::<B>(&[], dir, &["batch"]),
        Some(input.into_bytes()),
    );
    let mut seen_counts = Vec::new();
    within("the batch", Duration::from_secs(30), async {
        loop {
            let exited = batch.try_status().is_some();
            let mut iter = db.iterator(Range::all()).await.unwrap();
            let all = iter.collect_all().await.unwrap();
            let batched = all.iter().filter(|e| e.key.starts_with(b"bk")).count();
            let gone = all.iter().any(|e| e.key == b"gone");
            assert!(
                (batched == 0 && gone) || (batched == 300 && !gone),
                "a snapshot saw part of the batch: {batched} puts, gone present: {gone}"
            );
            seen_counts.push(batched);
            if exited {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    batch
        .finish(Duration::from_secs(10))
        .await
        .assert_code(0, "rave batch");
    assert_eq!(seen_counts.last(), Some(&300));
    assert_eq!(
        db.get(b"bk299").await.unwrap().as_deref(),
        Some(&b"v299"[..])
    );
    assert_eq!(db.get(b"gone").await.unwrap(), None);

    // A bad line anywhere: nothing applied.
    let out = run_rave::<B>(
        &[],
        dir,
        &["batch"],
        Some(b"put\tnew1\t1\ndel\tbk000\nbogus line\nput\tnew2\t2\n"),
    )
    .await;
    out.assert_code(2, "a batch with a bad line");
    assert_eq!(db.get(b"new1").await.unwrap(), None);
    assert!(db.get(b"bk000").await.unwrap().is_some());
    db.close().await.unwrap();
}

async fn scan_flags<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let mut leader = start_leader::<B>(dir).await;
    for (k, v) in [("a", "1"), ("ab", "2"), ("b", "3"), ("c", "4")] {
        run_rave::<B>(&[], dir, &["put", k, v], None)
            .await
            .assert_code(0, "put");
    }
    let cases: &[(&[&str], &str)] = &[
        (&[], "a\t1\nab\t2\nb\t3\nc\t4\n"),
        (&["--gt", "a"], "ab\t2\nb\t3\nc\t4\n"),
        (&["--gte", "ab"], "ab\t2\nb\t3\nc\t4\n"),
        (&["--lt", "b"], "a\t1\nab\t2\n"),
        (&["--lte", "b"], "a\t1\nab\t2\nb\t3\n"),
        (&["--gt", "a", "--lt", "c"], "ab\t2\nb\t3\n"),
        (&["--reverse"], "c\t4\nb\t3\nab\t2\na\t1\n"),
        (&["--reverse", "--lt", "c"], "b\t3\nab\t2\na\t1\n"),
        (&["--limit", "2"], "a\t1\nab\t2\n"),
        (&["--reverse", "--limit", "2"], "c\t4\nb\t3\n"),
        (&["--limit", "0"], ""),
        (&["--keys-only"], "a\nab\nb\nc\n"),
        (&["--values-only"], "1\n2\n3\n4\n"),
        (&["--values-only", "--reverse", "--limit", "3"], "4\n3\n2\n"),
        (&["--keys-only", "--gte", "ab", "--lte", "b"], "ab\nb\n"),
        (&["--gt", "c"], ""),
        (&["--gt", "b", "--lt", "a"], ""),
    ];
    let mut args = Vec::new();
    for (flags, want) in cases {
        args.clear();
        args.push("scan");
        args.extend_from_slice(flags);
        let out = run_rave::<B>(&[], dir, &args, None).await;
        out.assert_code(0, &format!("scan {flags:?}"));
        assert_eq!(out.text(), *want, "scan {flags:?}");
    }
    leader.kill();
}

async fn put_del_clear<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    for k in ["a", "b", "c", "d", "e"] {
        run_rave::<B>(&[], dir, &["put", k, k], None)
            .await
            .assert_code(0, "put");
    }
    run_rave::<B>(&[], dir, &["del", "a"], None)
        .await
        .assert_code(0, "del");
    run_rave::<B>(&[], dir, &["del", "never-there"], None)
        .await
        .assert_code(0, "del of an absent key");
    run_rave::<B>(&[], dir, &["clear", "--gt", "b", "--lte", "d"], None)
        .await
        .assert_code(0, "clear a range");
    let out = run_rave::<B>(&[], dir, &["scan", "--keys-only"], None).await;
    assert_eq!(out.text(), "b\ne\n");
    run_rave::<B>(&[], dir, &["clear"], None)
        .await
        .assert_code(0, "clear all");
    let out = run_rave::<B>(&[], dir, &["scan"], None).await;
    assert_eq!(out.text(), "");
}

fn status_fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|line| {
            let (k, v) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("status line {line:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

async fn status_names_the_leader<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let socket = rave_election::socket_path(dir).unwrap();
    // Nobody leads: the status process leads itself.
    let mut alone = Proc::rave::<B>(&[], dir, &["status"]);
    let pid = alone.pid();
    let out = alone.finish(Duration::from_secs(30)).await;
    out.assert_code(0, "status alone");
    let fields = status_fields(&out.text());
    let expect = |role: &str, pid: u32, epoch: u64, sequence: u64| {
        vec![
            ("role".to_string(), role.to_string()),
            ("leader_pid".to_string(), pid.to_string()),
            ("epoch".to_string(), epoch.to_string()),
            ("socket".to_string(), socket.display().to_string()),
            ("sequence".to_string(), sequence.to_string()),
        ]
    };
    assert_eq!(fields, expect("leader", pid, 1, 0));
    // A leader in another process; one write later the sequence is 1.
    let mut leader = start_leader::<B>(dir).await;
    run_rave::<B>(&[], dir, &["put", "k", "v"], None)
        .await
        .assert_code(0, "put");
    let out = run_rave::<B>(&[], dir, &["status"], None).await;
    out.assert_code(0, "status as a follower");
    assert_eq!(
        status_fields(&out.text()),
        expect("follower", leader.pid(), 2, 1)
    );
    leader.kill();
}

/// `hold` prints `leader`, or `follower` and then `leader` once the leader is killed.
async fn hold_reports_every_role_change<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let mut first = start_leader::<B>(dir).await;
    let mut second = Proc::rave::<B>(&[], dir, &["hold"]);
    second
        .expect_line("follower", Duration::from_secs(20))
        .await;
    first.kill();
    second.expect_line("leader", Duration::from_secs(20)).await;
    assert_eq!(second.seen(), ["follower", "leader"]);
    let mut third = Proc::rave::<B>(&[], dir, &["hold"]);
    third.expect_line("follower", Duration::from_secs(20)).await;
    // SIGTERM ends a hold cleanly, and its follower takes over.
    second.signal(libc::SIGTERM);
    let out = second.finish(Duration::from_secs(10)).await;
    out.assert_code(0, "hold after SIGTERM");
    third.expect_line("leader", Duration::from_secs(20)).await;
    third.kill();
}
