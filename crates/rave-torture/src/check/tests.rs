use std::ops::Bound;

use rave::Projection;

use super::*;
use crate::history::Op;
use crate::schema::{
    FrozenSpec, GROUP_KEYS, batch_key, frozen_key, frozen_value, group_key, put_value, unique_key,
};

struct Builder {
    p: ProcHistory,
    next: u64,
}

impl Builder {
    fn new(uid: &str, pid: u32) -> Self {
        Builder {
            p: ProcHistory {
                file: format!("{uid}.log"),
                kind: "writer".into(),
                uid: uid.into(),
                pid,
                events: vec![],
            },
            next: 1,
        }
    }
    fn op(
        &mut self,
        start: u64,
        end: Option<u64>,
        op: Op,
        outcome: &str,
        epoch: u64,
        result: &str,
    ) -> &mut Self {
        let id = self.next;
        self.next += 1;
        self.p.events.push((start, Event::Start { id, op }));
        if let Some(end) = end {
            self.p.events.push((
                end,
                Event::End {
                    id,
                    outcome: outcome.into(),
                    epoch: Some(epoch),
                    result: result.into(),
                },
            ));
        }
        self
    }
    fn role(&mut self, t: u64, role: &str, epoch: Option<u64>) -> &mut Self {
        self.p.events.push((
            t,
            Event::Role {
                role: role.into(),
                epoch,
            },
        ));
        self
    }
    fn done(&mut self) -> ProcHistory {
        self.p.events.sort_by_key(|(t, _)| *t);
        self.p.clone()
    }
}

fn put(key: &str, uid: &str, seq: u64) -> Op {
    Op::Put {
        key: key.into(),
        uid: uid.into(),
        seq,
        pad: 0,
    }
}

fn exit(pid: u32, t: u64) -> (u64, NemEvent) {
    (
        t,
        NemEvent::Exit {
            pid,
            status: "code:0".into(),
        },
    )
}

fn base_final(frozen: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    (0..frozen)
        .map(|i| (frozen_key(i).into_bytes(), frozen_value(i).into_bytes()))
        .collect()
}

#[test]
fn a_clean_history_passes() {
    let k = unique_key("w0i0", 1);
    let w = Builder::new("w0i0", 10)
        .role(1, "follower", Some(1))
        .op(10, Some(20), put(&k, "w0i0", 1), "ok", 1, "")
        .op(30, Some(40), put("h/0", "w0i0", 2), "ok", 1, "")
        .op(50, Some(60), Op::Close, "ok", 1, "")
        .done();
    let r = Builder::new("r0i0", 11)
        .role(0, "leader", Some(1))
        .op(
            45,
            Some(46),
            Op::Get { key: "h/0".into() },
            "ok",
            1,
            "w0i0:2:0",
        )
        .op(70, Some(80), Op::Close, "ok", 1, "")
        .done();
    let mut fin = base_final(3);
    fin.insert(k.into_bytes(), put_value("w0i0", 1, 0));
    fin.insert(b"h/0".to_vec(), put_value("w0i0", 2, 0));
    let input = Input {
        procs: vec![w, r],
        nemesis: vec![exit(10, 100), exit(11, 100)],
        frozen: 3,
        finals: vec![("rave".into(), fin.clone()), ("direct".into(), fin)],
    };
    let report = check(&input);
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.acked, 2);
    assert_eq!(report.terms, 1);
}

#[test]
fn a_lost_acknowledged_write_is_caught_in_either_view() {
    let k = unique_key("w0i0", 1);
    let w = Builder::new("w0i0", 10)
        .op(10, Some(20), put(&k, "w0i0", 1), "ok", 1, "")
        .op(21, None, put(&unique_key("w0i0", 2), "w0i0", 2), "", 1, "")
        .done();
    let mut fin = base_final(0);
    fin.insert(k.clone().into_bytes(), put_value("w0i0", 1, 0));
    let input = Input {
        procs: vec![w],
        // Killed mid-put: the second put is indeterminate, not lost and not hung.
        nemesis: vec![
            (
                25,
                NemEvent::Kill {
                    pid: 10,
                    epoch: Some(1),
                    target: "leader".into(),
                    tag: "plain".into(),
                },
            ),
            (
                26,
                NemEvent::Exit {
                    pid: 10,
                    status: "signal:9".into(),
                },
            ),
        ],
        frozen: 0,
        finals: vec![("rave".into(), fin), ("direct".into(), BTreeMap::new())],
    };
    let report = check(&input);
    assert_eq!(report.lost, 1);
    assert_eq!(report.indeterminate, 1);
    assert_eq!(report.hung, 0);
    assert_eq!(report.kills, 1);
    assert!(!report.ok());
}

#[test]
fn a_stale_read_is_caught_and_a_concurrent_one_is_not() {
    let w = Builder::new("w0i0", 10)
        .op(10, Some(20), put("h/1", "w0i0", 1), "ok", 1, "")
        .op(30, Some(40), put("h/1", "w0i0", 2), "ok", 1, "")
        .done();
    let r = Builder::new("r0i0", 11)
        // Began after write 2 was acknowledged, yet saw write 1: stale.
        .op(
            50,
            Some(55),
            Op::Get { key: "h/1".into() },
            "ok",
            1,
            "w0i0:1:0",
        )
        // Began while write 2 ran: either value is fine.
        .op(
            35,
            Some(36),
            Op::Get { key: "h/1".into() },
            "ok",
            1,
            "w0i0:1:0",
        )
        // Began after write 1 was acknowledged, saw nothing: stale.
        .op(25, Some(26), Op::Get { key: "h/1".into() }, "ok", 1, "-")
        .done();
    let input = Input {
        procs: vec![w, r],
        nemesis: vec![exit(10, 100), exit(11, 100)],
        frozen: 0,
        finals: vec![],
    };
    let report = check(&input);
    assert_eq!(report.stale, 2, "{:?}", report.examples);
}

#[test]
fn iterator_duplicates_and_skips_are_counted() {
    let spec = FrozenSpec {
        lo: Bound::Included(10),
        hi: Bound::Excluded(20),
        reverse: false,
        limit: None,
        projection: Projection::KeysAndValues,
    };
    let r = Builder::new("r0i0", 11)
        // A resume with `gte` instead of `gt`: 14 twice.
        .op(
            1,
            Some(2),
            Op::Frozen(spec.clone()),
            "ok",
            1,
            "10-14,14-19 bad=0",
        )
        // A resume that skipped 15.
        .op(
            3,
            Some(4),
            Op::Frozen(spec.clone()),
            "ok",
            1,
            "10-14,16-19 bad=0",
        )
        // Failed after 12: no skip.
        .op(
            5,
            Some(6),
            Op::Frozen(spec.clone()),
            "NoLeader",
            1,
            "10-12 bad=0",
        )
        // Failed after 13 having missed 11: one skip.
        .op(
            7,
            Some(8),
            Op::Frozen(spec),
            "NoLeader",
            1,
            "10,12-13 bad=0",
        )
        .done();
    let input = Input {
        procs: vec![r],
        nemesis: vec![exit(11, 100)],
        frozen: 100,
        finals: vec![],
    };
    let report = check(&input);
    assert_eq!(report.dup, 1);
    assert_eq!(report.skip, 2);
    assert_eq!(report.stray, 0);
    assert_eq!(report.disorder, 0);
}

#[test]
fn overlapping_terms_and_hangs_are_caught() {
    let a = Builder::new("w0i0", 10)
        .role(10, "leader", Some(1))
        .op(50, None, Op::Get { key: "h/0".into() }, "", 1, "")
        .done();
    let b = Builder::new("w1i0", 11)
        .role(30, "leader", Some(2))
        .op(60, Some(70), Op::Close, "ok", 2, "")
        .done();
    let c = Builder::new("w2i0", 12).role(80, "leader", Some(2)).done();
    let input = Input {
        procs: vec![a, b, c],
        nemesis: vec![
            // 10 never stopped when asked: hung, and it led until then.
            (
                100,
                NemEvent::Kill {
                    pid: 10,
                    epoch: None,
                    target: "end".into(),
                    tag: "hung".into(),
                },
            ),
            (
                101,
                NemEvent::Exit {
                    pid: 10,
                    status: "signal:9".into(),
                },
            ),
            exit(11, 100),
            exit(12, 100),
        ],
        frozen: 0,
        finals: vec![],
    };
    let report = check(&input);
    assert_eq!(report.hung, 1);
    // 1 overlaps 2 and 3; 3 reuses epoch 2.
    assert_eq!(report.overlapping_terms, 3, "{:?}", report.examples);
}

#[test]
fn a_worker_killed_before_its_first_line_is_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r1i4.log"), "").unwrap();
    std::fs::write(
        dir.path().join("nemesis.log"),
        "10 spawn 77 r1i4\n20 kill 77 - follower plain\n30 exit 77 signal:9\n",
    )
    .unwrap();
    let (procs, nemesis) = load(dir.path()).unwrap();
    assert_eq!(procs.len(), 1);
    assert_eq!((procs[0].pid, procs[0].uid.as_str()), (77, "r1i4"));
    let report = check(&Input {
        procs,
        nemesis,
        frozen: 0,
        finals: vec![],
    });
    assert!(report.ok(), "{report:?}");
}

#[test]
fn partial_batches_are_caught() {
    let w = Builder::new("w0i0", 10)
        .op(
            10,
            Some(20),
            Op::Batch {
                uid: "w0i0".into(),
                n: 1,
                keys: 3,
                slot: 0,
            },
            "ok",
            1,
            "",
        )
        .op(
            30,
            Some(31),
            Op::Group { slot: 0 },
            "ok",
            1,
            "w0i0:1,w0i0:1,-,w0i0:1",
        )
        .done();
    let mut fin = BTreeMap::new();
    fin.insert(batch_key("w0i0", 1, 0).into_bytes(), b"w0i0:1".to_vec());
    for i in 0..GROUP_KEYS {
        fin.insert(group_key(0, i).into_bytes(), b"w0i0:1".to_vec());
    }
    let input = Input {
        procs: vec![w],
        nemesis: vec![exit(10, 100)],
        frozen: 0,
        finals: vec![("rave".into(), fin)],
    };
    let report = check(&input);
    assert_eq!(report.partial, 1);
    assert_eq!(report.lost, 1);
}

#[test]
fn failover_is_measured_from_the_kill_to_a_newer_leader() {
    let w = Builder::new("w0i0", 10)
        .op(
            5,
            Some(1_000_000),
            Op::Get { key: "h/0".into() },
            "ok",
            1,
            "-",
        )
        .op(
            2_000_000,
            Some(3_000_000),
            Op::Get { key: "h/0".into() },
            "ok",
            2,
            "-",
        )
        .done();
    let input = Input {
        procs: vec![w],
        nemesis: vec![
            (
                500_000,
                NemEvent::Kill {
                    pid: 99,
                    epoch: Some(1),
                    target: "leader".into(),
                    tag: "plain".into(),
                },
            ),
            exit(10, 4_000_000),
        ],
        frozen: 0,
        finals: vec![],
    };
    let report = check(&input);
    assert_eq!(report.kills, 1);
    assert_eq!(report.failovers_ms, vec![2.5]);
    assert_eq!(report.failover_percentile(99.0), 2.5);
    assert!(
        report
            .summary("redb", 7)
            .starts_with("torture: backend=redb kills=1 acked=0 lost=0")
    );
}
