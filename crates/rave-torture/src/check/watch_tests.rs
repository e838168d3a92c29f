//! The watcher rules on hand-made histories: a clean one passes; a missed write, a commit
//! delivered twice, two watchers disagreeing and a phantom change are each flagged.

use rave::{Change, Range};

use super::*;
use crate::history::Op;
use crate::watchlog::put_id;

fn put_op(key: &str, uid: &str, seq: u64) -> Op {
    Op::Put {
        key: key.into(),
        uid: uid.into(),
        seq,
        pad: 0,
    }
}

/// A writer that put `u/w0i0/N` for N in 1..=n, each acknowledged at time 10*N+5.
fn writer(n: u64) -> ProcHistory {
    let mut events = vec![(
        1,
        Event::Hello {
            kind: "writer".into(),
            uid: "w0i0".into(),
            pid: 10,
        },
    )];
    for i in 1..=n {
        events.push((
            10 * i,
            Event::Start {
                id: i,
                op: put_op(&format!("u/w0i0/{i}"), "w0i0", i),
            },
        ));
        events.push((
            10 * i + 5,
            Event::End {
                id: i,
                outcome: "ok".into(),
                epoch: Some(1),
                result: String::new(),
            },
        ));
    }
    events.push((
        1000,
        Event::Start {
            id: 100,
            op: Op::Close,
        },
    ));
    events.push((
        1001,
        Event::End {
            id: 100,
            outcome: "ok".into(),
            epoch: Some(1),
            result: String::new(),
        },
    ));
    ProcHistory {
        file: "w0i0.log".into(),
        kind: "writer".into(),
        uid: "w0i0".into(),
        pid: 10,
        events,
    }
}

fn commit(i: u64) -> Event {
    Event::Commit {
        seq: i,
        changes: vec![Change::Put {
            key: format!("u/w0i0/{i}").into_bytes(),
            value: put_id("w0i0", i, 0).into_bytes(),
        }],
    }
}

/// A watcher incarnation `uid` (pid `pid`) that opened after `from` and then saw `events`.
fn watcher(uid: &str, pid: u32, from: u64, events: Vec<Event>) -> ProcHistory {
    let mut all = vec![
        (
            2,
            Event::Hello {
                kind: "watcher".into(),
                uid: uid.into(),
                pid,
            },
        ),
        (
            3,
            Event::WatchOpen {
                from: Some(from),
                range: Range::all(),
            },
        ),
        (4, Event::Progress { seq: from }),
    ];
    all.extend(
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| (5 + i as u64, e)),
    );
    ProcHistory {
        file: format!("{uid}.log"),
        kind: "watcher".into(),
        uid: uid.into(),
        pid,
        events: all,
    }
}

fn clean_exits(procs: &[ProcHistory]) -> NemLog {
    let mut log = Vec::new();
    for p in procs {
        log.push((
            0,
            NemEvent::Spawn {
                pid: p.pid,
                uid: p.uid.clone(),
                fault: false,
            },
        ));
        log.push((
            2000,
            NemEvent::Exit {
                pid: p.pid,
                status: "code:0".into(),
            },
        ));
    }
    log
}

fn run(procs: Vec<ProcHistory>) -> Report {
    let nemesis = clean_exits(&procs);
    check(&Input {
        procs,
        nemesis,
        frozen: 0,
        finals: vec![],
    })
}

fn all_commits(n: u64) -> Vec<Event> {
    (1..=n).map(commit).collect()
}

#[test]
fn watchers_that_saw_everything_once_pass() {
    let report = run(vec![
        writer(4),
        // v0 was killed after commit 2 and resumed after it.
        watcher("v0i0", 20, 0, vec![commit(1), commit(2)]),
        watcher("v0i1", 21, 2, vec![commit(3), commit(4)]),
        watcher("v1i0", 22, 0, all_commits(4)),
    ]);
    assert!(report.ok(), "{:?}", report.examples);
    assert_eq!(report.watchers, 2);
    assert_eq!(report.watch_acked_seen, 8);
    assert_eq!(report.watch_resumes, 1);
}

#[test]
fn a_watcher_that_skipped_a_commit_missed_a_write() {
    let report = run(vec![
        writer(4),
        // Resumed one past its position (from 3 instead of 2): commit 3 never arrives.
        watcher("v0i0", 20, 0, vec![commit(1), commit(2)]),
        watcher("v0i1", 21, 3, vec![commit(4)]),
        watcher("v1i0", 22, 0, all_commits(4)),
    ]);
    // A resume from anywhere but the position reached is flagged (the jump from 2 to 3 then
    // starts a new stretch of coverage, which does not hold commit 3)...
    assert_eq!(report.watch_disorder, 1, "{:?}", report.examples);
    assert!(!report.ok());
    // ...so the same skip inside one stretch is what is caught:
    let report = run(vec![
        writer(4),
        watcher("v0i0", 20, 0, vec![commit(1), commit(2), commit(4)]),
        watcher("v1i0", 22, 0, all_commits(4)),
    ]);
    assert_eq!(report.watch_missed, 1, "{:?}", report.examples);
    assert_eq!(report.watch_gaps, 1);
    assert!(!report.ok());
}

#[test]
fn a_commit_delivered_twice_is_a_dup() {
    let report = run(vec![
        writer(3),
        watcher("v0i0", 20, 0, vec![commit(1), commit(2)]),
        // Resumed from its position, and yet commit 2 came again.
        watcher("v0i1", 21, 2, vec![commit(2), commit(3)]),
    ]);
    assert!(report.watch_dup >= 1, "{:?}", report.examples);
    assert!(!report.ok());
    let report = run(vec![
        writer(3),
        watcher("v0i0", 20, 0, vec![commit(1), commit(2)]),
        // Resumed from one before its position: commit 2 again, and a wrong resume.
        watcher("v0i1", 21, 1, vec![commit(2), commit(3)]),
    ]);
    assert_eq!(report.watch_disorder, 1, "{:?}", report.examples);
    assert!(report.watch_dup >= 1, "{:?}", report.examples);
    assert!(!report.ok());
}

#[test]
fn watchers_disagreeing_on_a_commit_are_flagged() {
    let mut other = all_commits(3);
    other[1] = Event::Commit {
        seq: 2,
        changes: vec![Change::Put {
            key: b"u/w0i0/3".to_vec(),
            value: put_id("w0i0", 3, 0).into_bytes(),
        }],
    };
    other[2] = Event::Commit {
        seq: 3,
        changes: vec![Change::Put {
            key: b"u/w0i0/2".to_vec(),
            value: put_id("w0i0", 2, 0).into_bytes(),
        }],
    };
    let report = run(vec![
        writer(3),
        watcher("v0i0", 20, 0, all_commits(3)),
        watcher("v1i0", 21, 0, other),
    ]);
    assert_eq!(report.watch_disagree, 2, "{:?}", report.examples);
    assert!(!report.ok());
}

#[test]
fn a_change_nobody_wrote_is_a_phantom() {
    let mut events = all_commits(2);
    events.push(Event::Commit {
        seq: 3,
        changes: vec![Change::Put {
            key: b"u/w0i0/9".to_vec(),
            value: put_id("w0i0", 9, 0).into_bytes(),
        }],
    });
    let report = run(vec![writer(2), watcher("v0i0", 20, 0, events)]);
    assert_eq!(report.watch_phantom, 1, "{:?}", report.examples);
    assert!(!report.ok());
}

#[test]
fn a_write_nobody_delivered_is_missed_when_a_probe_bounds_it() {
    // Commit 3 (the third put) reached no watcher; a probe that began after its
    // acknowledgement answered 3, and the watcher reached 3.
    let mut w = watcher(
        "v0i0",
        20,
        0,
        vec![commit(1), commit(2), Event::Progress { seq: 3 }],
    );
    w.events.push((40, Event::Start { id: 1, op: Op::Seq }));
    w.events.push((
        41,
        Event::End {
            id: 1,
            outcome: "ok".into(),
            epoch: Some(1),
            result: "3".into(),
        },
    ));
    let report = run(vec![writer(3), w.clone()]);
    assert_eq!(report.watch_missed, 1, "{:?}", report.examples);
    // Without the probe nothing bounds its number: unchecked, not missed.
    w.events.truncate(w.events.len() - 2);
    let report = run(vec![writer(3), w]);
    assert_eq!(report.watch_missed, 0, "{:?}", report.examples);
    assert_eq!(report.watch_unchecked, 1);
}
