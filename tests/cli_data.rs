//! The `rave` command's data tools: `export` / `import` (both formats, arbitrary bytes, bounded
//! atomic batches, resumption with `--skip`), `cas`, `--sublevel` and `stats`. Every test runs
//! once per compiled-in engine.

#[macro_use]
mod common;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    Engine, Output, Proc, open_handle, rave_cmd, run_rave, start_leader, tempdir, within,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rave::{Entry, KvStore, Range, RaveOptions, WatchEvent};

per_engine!(
    export_import_round_trips_arbitrary_bytes,
    a_large_import,
    a_bad_line_stops_the_import_and_skip_resumes_it,
    an_interrupted_import_resumes_with_skip,
    import_batches_are_bounded_and_atomic,
    cas_sets_deletes_and_reports_the_current_value,
    sublevel_flag_scopes_every_data_command,
    stats_prints_every_field,
);

/// Keys and values with every hard case: empty, tabs, newlines, carriage returns, backslashes,
/// escapes' look-alikes, JSON look-alikes, invalid UTF-8, a leading 0xff, plus `random` more.
fn hard_entries(random: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"".to_vec(), b"the empty key".to_vec()),
        (b"empty value".to_vec(), b"".to_vec()),
        (b"\t".to_vec(), b"\n".to_vec()),
        (b"a\tb\nc\r\n".to_vec(), b"\\t\\n\\x41\\".to_vec()),
        (vec![0xff, 0xfe, 0x00], vec![0x80, 0xc3, 0x28]),
        (vec![0xe2, 0x82], vec![0xe2, 0x82, 0xac]),
        (
            "ünï €".as_bytes().to_vec(),
            "\u{1F600}\"q\"".as_bytes().to_vec(),
        ),
        (
            b"{\"key\":\"x\"}".to_vec(),
            b"{\"value_hex\":\"zz\"}".to_vec(),
        ),
        (b"<absent>".to_vec(), vec![0x7f, 0x1b, 0x00]),
    ];
    let mut rng = StdRng::seed_from_u64(12);
    for i in 0..random {
        let len = rng.random_range(0..24);
        let mut key: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        // Unique keys: the index at the end.
        key.extend_from_slice(&(i as u32).to_be_bytes());
        let len = rng.random_range(0..64);
        let value = (0..len).map(|_| rng.random()).collect();
        entries.push((key, value));
    }
    entries
}

/// Every entry of the directory, read through a handle (opened and closed here).
async fn all_entries<B: Engine>(dir: &Path) -> Vec<Entry> {
    let (db, _) = open_handle::<B>(dir, RaveOptions::default()).await;
    let entries = db
        .iterator(Range::all())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    db.close().await.unwrap();
    entries
}

/// Puts `entries` into `dir` through a handle, in batches.
async fn fill<B: Engine>(dir: &Path, entries: &[(Vec<u8>, Vec<u8>)]) {
    let (db, _) = open_handle::<B>(dir, RaveOptions::default()).await;
    for chunk in entries.chunks(500) {
        let ops = chunk
            .iter()
            .map(|(k, v)| rave::BatchOp::put(k.clone(), v.clone()));
        db.batch(ops.collect()).await.unwrap();
    }
    db.close().await.unwrap();
}

/// The summary line of an import or export: `VERB N entries (B bytes) in S s...`.
fn summary(out: &Output, verb: &str) -> (u64, u64) {
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with(verb))
        .unwrap_or_else(|| panic!("no {verb:?} summary in {:?}", out.stderr));
    let words: Vec<&str> = line.split(' ').collect();
    let entries = words[1].parse().unwrap();
    let bytes = words[3].trim_start_matches('(').parse().unwrap();
    (entries, bytes)
}

async fn export_import_round_trips_arbitrary_bytes<B: Engine>() {
    let tmp = tempdir();
    let source = tmp.path().join("source");
    let entries = hard_entries(3000);
    fill::<B>(&source, &entries).await;
    let want = all_entries::<B>(&source).await;
    assert_eq!(want.len(), entries.len());
    let bytes: u64 = entries
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum();
    for (flags, format) in [
        (&[][..], "jsonl"),
        (&[][..], "tsv"),
        (&["--hex"][..], "jsonl"),
        (&["--hex"][..], "tsv"),
    ] {
        let what = format!("{flags:?} {format}");
        let export = run_rave::<B>(flags, &source, &["export", "--format", format], None).await;
        export.assert_code(0, &format!("export {what}"));
        assert_eq!(summary(&export, "exported"), (entries.len() as u64, bytes));
        assert!(std::str::from_utf8(&export.stdout).is_ok(), "{what}: text");
        assert_eq!(
            export.stdout.iter().filter(|&&b| b == b'\n').count(),
            entries.len(),
            "{what}: one line an entry"
        );
        let target = tmp.path().join(format!("target-{format}-{}", flags.len()));
        let import = run_rave::<B>(
            flags,
            &target,
            &["import", "--format", format],
            Some(&export.stdout),
        )
        .await;
        import.assert_code(0, &format!("import {what}"));
        assert_eq!(summary(&import, "imported"), (entries.len() as u64, bytes));
        let got = all_entries::<B>(&target).await;
        assert!(got == want, "{what}: the import differs from the source");
        // And the copy exports to the same bytes.
        let again = run_rave::<B>(flags, &target, &["export", "--format", format], None).await;
        assert!(
            again.stdout == export.stdout,
            "{what}: a second export differs"
        );
    }
    // Range flags pick what is exported.
    let out = run_rave::<B>(&[], &source, &["export", "--gte", "a", "--lt", "b"], None).await;
    out.assert_code(0, "export of a range");
    let in_range = want
        .iter()
        .filter(|e| e.key.as_slice() >= b"a".as_slice() && e.key.as_slice() < b"b".as_slice());
    assert_eq!(out.text().lines().count(), in_range.count());
}

/// 100k entries through import and export. `RAVE_TEST_LARGE_IMPORT=1000000` runs a million: in a
/// debug build on two cores LevelDB imports them in about 17 s, redb in more than the 30 s a
/// child may take here, so a million is not the default.
async fn a_large_import<B: Engine>() {
    let n: usize = std::env::var("RAVE_TEST_LARGE_IMPORT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let tmp = tempdir();
    let mut input = Vec::new();
    for i in 0..n {
        writeln!(
            input,
            "{{\"key\":\"k{i:07}\",\"value\":\"value number {i}\"}}"
        )
        .unwrap();
    }
    let started = Instant::now();
    let import = run_rave::<B>(&[], tmp.path(), &["import"], Some(&input)).await;
    import.assert_code(0, &format!("import of {n} entries"));
    assert_eq!(summary(&import, "imported").0, n as u64);
    eprintln!("imported {n} entries in {:?}", started.elapsed());
    let export = run_rave::<B>(&[], tmp.path(), &["export"], None).await;
    export.assert_code(0, &format!("export of {n} entries"));
    assert!(
        export.stdout == input,
        "the export is the input, line for line"
    );
    let stats = run_rave::<B>(&[], tmp.path(), &["stats", "--count"], None).await;
    assert!(
        stats.text().contains(&format!("keys\t{n} (counted)\n")),
        "{}",
        stats.text()
    );
}

/// `n` JSON lines `{"key":"kNNNNN","value":"vN"}`, with line `bad` (1-based) broken.
fn numbered_lines(n: usize, bad: Option<usize>) -> Vec<u8> {
    let mut input = Vec::new();
    for i in 0..n {
        if bad == Some(i + 1) {
            input.extend_from_slice(b"{\"key\":\"broken\"\n");
        } else {
            writeln!(input, "{{\"key\":\"k{i:05}\",\"value\":\"v{i}\"}}").unwrap();
        }
    }
    input
}

async fn a_bad_line_stops_the_import_and_skip_resumes_it<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let (db, _) = open_handle::<B>(dir, RaveOptions::default()).await;
    // Line 2500 is bad: the batches of lines 1-1000 and 1001-2000 are committed, no more.
    let out = run_rave::<B>(
        &[],
        dir,
        &["import"],
        Some(&numbered_lines(3000, Some(2500))),
    )
    .await;
    out.assert_code(2, "an import with a bad line");
    assert!(out.stderr.contains("stdin line 2500:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("re-run with --skip 2000"),
        "{}",
        out.stderr
    );
    assert!(db.get("k01999").await.unwrap().is_some());
    assert_eq!(db.get("k02000").await.unwrap(), None);
    // A line the first run committed changes meanwhile; the resumed run does not redo it.
    db.put("k00000", "changed").await.unwrap();
    let out = run_rave::<B>(
        &[],
        dir,
        &["import", "--skip", "2000"],
        Some(&numbered_lines(3000, None)),
    )
    .await;
    out.assert_code(0, "the resumed import");
    assert_eq!(summary(&out, "imported").0, 1000);
    assert!(out.stderr.contains("stdin lines 1-3000"), "{}", out.stderr);
    assert_eq!(
        db.get("k00000").await.unwrap().as_deref(),
        Some(&b"changed"[..])
    );
    let all = db
        .iterator(Range::all())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all.len(), 3000);
    assert_eq!(
        db.get("k02999").await.unwrap().as_deref(),
        Some(&b"v2999"[..])
    );
    // A bad TSV escape is a bad line too, and nothing of its batch is written.
    let out = run_rave::<B>(
        &[],
        dir,
        &["import", "--format", "tsv"],
        Some(b"x\t1\ny\\q\t2\n"),
    )
    .await;
    out.assert_code(2, "a bad escape");
    assert!(out.stderr.contains("--skip 0"), "{}", out.stderr);
    assert_eq!(db.get("x").await.unwrap(), None);
    db.close().await.unwrap();
}

async fn an_interrupted_import_resumes_with_skip<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let (db, _) = open_handle::<B>(dir, RaveOptions::default()).await;
    let input = numbered_lines(3000, None);
    let cut = input
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(2499)
        .map(|(i, _)| i + 1)
        .unwrap();
    let (mut import, mut stdin) =
        Proc::spawn_with_stdin("rave import", rave_cmd::<B>(&[], dir, &["import"]));
    // 2500 lines, and the pipe stays open: two batches commit, the third waits for more.
    stdin.write_all(&input[..cut]).unwrap();
    stdin.flush().unwrap();
    within("two batches", Duration::from_secs(30), async {
        while db.get("k01999").await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    import.signal(libc::SIGTERM);
    let out = import.finish(Duration::from_secs(10)).await;
    out.assert_code(3, "an interrupted import");
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    assert!(
        out.stderr.contains("re-run with --skip 2000"),
        "{}",
        out.stderr
    );
    assert_eq!(db.get("k02000").await.unwrap(), None);
    drop(stdin);
    db.put("k00000", "changed").await.unwrap();
    let out = run_rave::<B>(&[], dir, &["import", "--skip", "2000"], Some(&input)).await;
    out.assert_code(0, "the resumed import");
    assert_eq!(summary(&out, "imported").0, 1000, "{}", out.stderr);
    assert_eq!(
        db.get("k00000").await.unwrap().as_deref(),
        Some(&b"changed"[..])
    );
    let all = db
        .iterator(Range::all())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all.len(), 3000);
    db.close().await.unwrap();
}

/// Each batch is one commit of at most 1000 entries or 1 MiB (a larger entry alone).
async fn import_batches_are_bounded_and_atomic<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let (db, _) = open_handle::<B>(dir, RaveOptions::default()).await;
    let from = db.sequence().await.unwrap();
    let mut input = numbered_lines(2500, None);
    let big = "x".repeat(400 << 10);
    for i in 0..5 {
        writeln!(input, "{{\"key\":\"big{i}\",\"value\":\"{big}\"}}").unwrap();
    }
    writeln!(
        input,
        "{{\"key\":\"huge\",\"value\":\"{}\"}}",
        "y".repeat(1 << 21)
    )
    .unwrap();
    let mut events = db.watch(Range::all(), Some(from)).await.unwrap();
    run_rave::<B>(&[], dir, &["import"], Some(&input))
        .await
        .assert_code(0, "import");
    let mut sizes = Vec::new();
    within("the commits", Duration::from_secs(30), async {
        use futures::StreamExt;
        while sizes.iter().map(|(n, _)| n).sum::<usize>() < 2506 {
            if let WatchEvent::Commit(commit) = events.next().await.unwrap().unwrap() {
                let bytes: usize = commit
                    .changes
                    .iter()
                    .map(|c| match c {
                        rave::Change::Put { key, value } => key.len() + value.len(),
                        other => panic!("an import only puts: {other:?}"),
                    })
                    .sum();
                sizes.push((commit.changes.len(), bytes));
            }
        }
    })
    .await;
    let counts: Vec<usize> = sizes.iter().map(|(n, _)| *n).collect();
    // 1000, 1000, then the last 500 small lines with big0 and big1 (about 805 KiB: big2 would
    // pass 1 MiB), big2 and big3, big4 (with huge it would pass 1 MiB), and huge alone.
    assert_eq!(counts, [1000, 1000, 502, 2, 1, 1], "{sizes:?}");
    for (n, bytes) in &sizes {
        assert!(
            *n == 1 || *bytes <= 1 << 20,
            "a batch of {n} entries, {bytes} bytes"
        );
    }
    db.close().await.unwrap();
}

async fn cas_sets_deletes_and_reports_the_current_value<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let mut leader = start_leader::<B>(dir).await;
    let cas = |args: &'static [&'static str]| {
        let mut all = vec!["cas"];
        all.extend_from_slice(args);
        async move { run_rave::<B>(&[], dir, &all, None).await }
    };
    cas(&["--expect-absent", "k", "1"])
        .await
        .assert_code(0, "cas on an absent key");
    let out = cas(&["--expect-absent", "k", "2"]).await;
    out.assert_code(4, "cas expecting absence of a present key");
    assert_eq!(out.stderr, "1\n");
    cas(&["k", "1", "2"]).await.assert_code(0, "cas 1 -> 2");
    let out = cas(&["k", "1", "3"]).await;
    out.assert_code(4, "cas with a stale expectation");
    assert_eq!(out.stderr, "2\n");
    let out = run_rave::<B>(&[], dir, &["get", "k"], None).await;
    assert_eq!(out.text(), "2\n", "a failed cas writes nothing");
    let out = cas(&["--delete", "k", "3"]).await;
    out.assert_code(4, "cas --delete with a stale expectation");
    cas(&["--delete", "k", "2"])
        .await
        .assert_code(0, "cas --delete");
    run_rave::<B>(&[], dir, &["get", "k"], None)
        .await
        .assert_code(1, "deleted");
    let out = cas(&["k", "2", "3"]).await;
    out.assert_code(4, "cas on an absent key expecting a value");
    assert_eq!(out.stderr, "<absent>\n");
    cas(&["--expect-absent", "--delete", "k"])
        .await
        .assert_code(0, "delete of an absent key");
    // Binary values with --hex, and the current value printed as hex.
    run_rave::<B>(
        &["--hex"],
        dir,
        &["cas", "--expect-absent", "00ff", "0a09"],
        None,
    )
    .await
    .assert_code(0, "hex cas");
    let out = run_rave::<B>(&["--hex"], dir, &["cas", "00ff", "00", "01"], None).await;
    out.assert_code(4, "hex cas failure");
    assert_eq!(out.stderr, "0a09\n");
    // The wrong number of values is a usage error.
    for args in [
        &["k", "1"][..],
        &["k", "1", "2", "3"],
        &["--expect-absent", "k"],
        &["--delete", "k"],
        &["--expect-absent", "--delete", "k", "1"],
    ] {
        cas(args).await.assert_code(2, &format!("cas {args:?}"));
    }
    leader.kill();
}

async fn sublevel_flag_scopes_every_data_command<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let (db, _) = open_handle::<B>(dir, RaveOptions::default()).await;
    db.put("outside", "o").await.unwrap();
    db.sublevel("a").put("only-a", "x").await.unwrap();
    let ab: &[&str] = &["--sublevel", "a", "--sublevel", "b"];
    run_rave::<B>(ab, dir, &["put", "k1", "v1"], None)
        .await
        .assert_code(0, "put in a sublevel");
    assert_eq!(
        db.get("!a!!b!k1").await.unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    let nested = db.sublevel("a").sublevel("b");
    assert_eq!(nested.get("k1").await.unwrap().as_deref(), Some(&b"v1"[..]));
    nested.put("k2", "v2").await.unwrap();
    let out = run_rave::<B>(ab, dir, &["get", "k2"], None).await;
    assert_eq!(out.text(), "v2\n");
    let out = run_rave::<B>(ab, dir, &["scan"], None).await;
    assert_eq!(
        out.text(),
        "k1\tv1\nk2\tv2\n",
        "scan shows the sublevel only"
    );
    let out = run_rave::<B>(&["--sublevel", "a"], dir, &["scan", "--keys-only"], None).await;
    assert_eq!(out.text(), "!b!k1\n!b!k2\nonly-a\n");
    run_rave::<B>(ab, dir, &["batch"], Some(b"put\tk3\tv3\ndel\tk1\n"))
        .await
        .assert_code(0, "batch in a sublevel");
    run_rave::<B>(ab, dir, &["cas", "k3", "v3", "v4"], None)
        .await
        .assert_code(0, "cas in a sublevel");
    assert_eq!(nested.get("k3").await.unwrap().as_deref(), Some(&b"v4"[..]));
    run_rave::<B>(ab, dir, &["del", "k2"], None)
        .await
        .assert_code(0, "del in a sublevel");
    // Export strips the prefix; import into another sublevel adds its own.
    let export = run_rave::<B>(ab, dir, &["export", "--format", "tsv"], None).await;
    assert_eq!(export.text(), "k3\tv4\n");
    run_rave::<B>(
        &["--sublevel", "c"],
        dir,
        &["import", "--format", "tsv"],
        Some(&export.stdout),
    )
    .await
    .assert_code(0, "import into a sublevel");
    assert_eq!(db.get("!c!k3").await.unwrap().as_deref(), Some(&b"v4"[..]));
    let out = run_rave::<B>(&["--sublevel", "c"], dir, &["stats", "--count"], None).await;
    assert!(out.text().contains("keys\t1 (counted)\n"), "{}", out.text());
    run_rave::<B>(ab, dir, &["clear"], None)
        .await
        .assert_code(0, "clear a sublevel");
    let keys: Vec<Vec<u8>> = db
        .iterator(Range::all().keys_only())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, [&b"!a!only-a"[..], b"!c!k3", b"outside"]);
    // watch: the sublevel's changes only, keys without the prefix.
    let mut watcher = Proc::rave::<B>(ab, dir, &["watch", "--progress"]);
    let first = watcher.next_line(Duration::from_secs(20)).await;
    assert!(
        matches!(&first, Ok(Some(line)) if line.ends_with("\tprogress")),
        "{first:?}"
    );
    db.put("outside", "changed").await.unwrap();
    nested.put("w", "1").await.unwrap();
    let line = loop {
        match watcher.next_line(Duration::from_secs(20)).await {
            Ok(Some(line)) if line.ends_with("\tprogress") => continue,
            other => break other,
        }
    };
    let line = line.expect("a line in time").expect("a line");
    assert!(line.ends_with("\tput\tw\t1"), "{line:?}");
    watcher.kill();
    // A name abstract-level refuses is a usage error.
    run_rave::<B>(&["--sublevel", "a b"], dir, &["scan"], None)
        .await
        .assert_code(2, "a bad sublevel name");
    db.close().await.unwrap();
}

fn fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|line| {
            let (k, v) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("line {line:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

async fn stats_prints_every_field<B: Engine>() {
    let tmp = tempdir();
    let dir = tmp.path();
    let mut leader = start_leader::<B>(dir).await;
    run_rave::<B>(&[], dir, &["put", "k", "value"], None)
        .await
        .assert_code(0, "put");
    // Another follower holds a connection; the stats process itself is the second.
    let mut follower = Proc::rave::<B>(&[], dir, &["hold"]);
    follower
        .expect_line("follower", Duration::from_secs(20))
        .await;
    let out = run_rave::<B>(&[], dir, &["stats"], None).await;
    out.assert_code(0, "stats");
    let want = |keys: &str, bytes: &str| {
        [
            ("engine", B::CLI.to_string()),
            ("role", "follower".to_string()),
            ("leader_pid", leader.pid().to_string()),
            ("epoch", "1".to_string()),
            ("followers", "2".to_string()),
            ("sequence", "1".to_string()),
            ("keys", keys.to_string()),
            ("bytes", bytes.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec()
    };
    assert_eq!(fields(&out.text()), want("unknown", "unknown"));
    let out = run_rave::<B>(&[], dir, &["stats", "--count"], None).await;
    assert_eq!(fields(&out.text()), want("1 (counted)", "6 (counted)"));
    follower.kill();
    leader.kill();
}
