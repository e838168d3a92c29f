//! `rave --backend etcd 'etcd://HOST:PORT[,...]/NAMESPACE' COMMAND`: every command on a
//! namespace of a three-member cluster, from processes that reach the cluster through
//! different members (a "local" one and a "remote" one), sharing the data at once.
#![cfg(feature = "etcd")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

use rave::etcd::testing::EtcdCluster;

fn rave(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rave"))
        .args(["--backend", "etcd", url])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// One member's URL of namespace `ns`.
fn url_via(cluster: &EtcdCluster, member: usize, ns: &str) -> String {
    let endpoint = cluster.endpoint(member);
    format!("etcd://{}/{ns}", endpoint.trim_start_matches("http://"))
}

#[test]
fn every_command_on_a_shared_namespace() {
    let cluster = EtcdCluster::start(3).unwrap();
    let local = cluster.url("app");
    let remote = url_via(&cluster, 2, "app");

    stdout(&rave(&local, &["put", "a", "1"]));
    assert_eq!(
        stdout(&rave(&remote, &["get", "a"])),
        "1\n",
        "seen through another member"
    );
    let mut batch = Command::new(env!("CARGO_BIN_EXE_rave"))
        .args(["--backend", "etcd", &remote, "batch"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    batch
        .stdin
        .take()
        .unwrap()
        .write_all(b"put\tb\t2\nput\tc\t3\ndel\ta\n")
        .unwrap();
    assert!(batch.wait().unwrap().success());
    assert_eq!(stdout(&rave(&local, &["scan"])), "b\t2\nc\t3\n");
    assert_eq!(
        stdout(&rave(&local, &["scan", "--reverse", "--keys-only"])),
        "c\nb\n"
    );
    assert_eq!(
        rave(&local, &["get", "a"]).status.code(),
        Some(1),
        "a missing key"
    );
    stdout(&rave(&remote, &["clear", "--gte", "c"]));
    stdout(&rave(&local, &["del", "b"]));
    assert_eq!(stdout(&rave(&remote, &["scan"])), "");
    let status = stdout(&rave(&local, &["status"]));
    assert!(status.starts_with("role\tdirect\nsequence\t"), "{status}");
    assert_eq!(
        stdout(&rave(&url_via(&cluster, 1, "other"), &["scan"])),
        "",
        "namespaces are separate"
    );

    // `hold` prints its role (direct) like on a directory.
    let mut hold = Command::new(env!("CARGO_BIN_EXE_rave"))
        .args(["--backend", "etcd", &local, "hold"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(hold.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "direct\n");
    hold.kill().unwrap();
    hold.wait().unwrap();

    let bad = rave("etcd://", &["get", "a"]);
    assert_eq!(bad.status.code(), Some(3), "{bad:?}");
}
