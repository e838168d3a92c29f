use std::ops::Bound;

use rave::Projection;

use super::*;
use crate::history::Op;
use crate::schema::{
    DRAIN_KEYS, DRAIN_VALUE, FrozenSpec, GROUP_KEYS, batch_key, drain_key, frozen_key,
    frozen_value, group_key, put_value, unique_key,
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

fn get(key: &str) -> Op {
    Op::Get { key: key.into() }
}

/// A put applied, read, replaced by a newer acknowledged put, then applied again (its re-send
/// after a failover): the value is back. Both this checker's `twice` rule and stateright flag
/// the key; without the earlier read both accept it (the put may simply have taken effect late).
#[test]
fn a_put_applied_twice_is_caught_by_both_checkers() {
    let key = "l/0000000001/0";
    let run = |first_read: bool| {
        let mut a = Builder::new("w0i0", 10);
        // Put X: started at 10, answered only at 100 (after its re-send).
        a.op(10, Some(100), put(key, "w0i0", 1), "ok", 1, "");
        let mut b = Builder::new("w1i0", 11);
        // Put Y: started at 40, acknowledged at 50.
        b.op(40, Some(50), put(key, "w1i0", 1), "ok", 2, "");
        let mut r = Builder::new("r0i0", 12);
        if first_read {
            r.op(20, Some(30), get(key), "ok", 1, "w0i0:1:0");
        }
        // X again, in a read that began after Y was acknowledged.
        r.op(60, Some(70), get(key), "ok", 2, "w0i0:1:0");
        let mut fin = BTreeMap::new();
        fin.insert(key.as_bytes().to_vec(), put_value("w0i0", 1, 0));
        check(&Input {
            procs: vec![a.done(), b.done(), r.done()],
            nemesis: vec![exit(10, 200), exit(11, 200), exit(12, 200)],
            frozen: 0,
            finals: vec![("rave".into(), fin)],
        })
    };
    let report = run(true);
    // The read at 60 and the final state.
    assert_eq!(report.twice, 2, "{:?}", report.examples);
    assert_eq!(report.stale, 0);
    assert_eq!((report.lin_checked, report.nonlinear), (1, 1));
    assert_eq!(report.lin_disagree, 0, "{:?}", report.examples);
    assert!(!report.ok());
    assert!(
        report
            .summary("redb", 1)
            .contains(" lost=0 twice=2 overlapping_terms=0 ")
    );
    let report = run(false);
    assert!(report.ok(), "{:?}", report.examples);
    assert_eq!((report.lin_checked, report.lin_ok), (1, 1));
}

/// A stale read (the value's put was acknowledged before the newer one started) stays `stale`,
/// not `twice`, and stateright rejects it too.
#[test]
fn a_stale_linearizability_register_read_is_not_counted_twice() {
    let key = "l/0000000001/1";
    let a = Builder::new("w0i0", 10)
        .op(10, Some(20), put(key, "w0i0", 1), "ok", 1, "")
        .op(30, Some(40), put(key, "w0i0", 2), "ok", 1, "")
        .done();
    let r = Builder::new("r0i0", 12)
        .op(50, Some(60), get(key), "ok", 1, "w0i0:1:0")
        .done();
    let report = check(&Input {
        procs: vec![a, r],
        nemesis: vec![exit(10, 200), exit(12, 200)],
        frozen: 0,
        finals: vec![],
    });
    assert_eq!((report.stale, report.twice), (1, 0));
    assert_eq!((report.nonlinear, report.lin_disagree), (1, 0));
}

fn drain_final(uid: &str, left: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    (DRAIN_KEYS - left..DRAIN_KEYS)
        .map(|i| (drain_key(uid, i).into_bytes(), DRAIN_VALUE.to_vec()))
        .collect()
}

fn clear(uid: &str, limit: u32) -> Op {
    Op::Clear {
        uid: uid.into(),
        limit,
    }
}

/// A drain filled, then cleared with limits 2 (acknowledged), 3 (failed: may have applied) and
/// 1 (acknowledged): between 3 and 6 keys may be gone. 7 gone is a clear applied twice; 2 gone
/// is an acknowledged clear lost. stateright's search over the same history agrees each time.
#[test]
fn drain_clears_are_counted_against_their_limits() {
    let uid = "w0i0";
    let run = |removed: u32| {
        let w = Builder::new(uid, 10)
            .op(
                1,
                Some(2),
                Op::Fill {
                    uid: uid.into(),
                    keys: DRAIN_KEYS,
                },
                "ok",
                1,
                "",
            )
            .op(3, Some(4), clear(uid, 2), "ok", 1, "")
            .op(5, Some(6), clear(uid, 3), "LeaderLost", 1, "")
            .op(7, Some(8), clear(uid, 1), "ok", 2, "")
            .done();
        let fin = drain_final(uid, DRAIN_KEYS - removed);
        check(&Input {
            procs: vec![w],
            nemesis: vec![exit(10, 100)],
            frozen: 0,
            finals: vec![("rave".into(), fin.clone()), ("direct".into(), fin)],
        })
    };
    for removed in [3, 6] {
        let report = run(removed);
        assert!(report.ok(), "{removed}: {:?}", report.examples);
        assert_eq!((report.lin_checked, report.lin_ok), (1, 1));
        assert_eq!(report.acked, 3);
    }
    let report = run(7);
    assert_eq!((report.twice, report.lost), (1, 0), "{:?}", report.examples);
    assert_eq!((report.nonlinear, report.lin_disagree), (1, 0));
    let report = run(2);
    assert_eq!((report.twice, report.lost), (0, 1), "{:?}", report.examples);
    assert_eq!((report.nonlinear, report.lin_disagree), (1, 0));
}

/// A process started with the fault point armed that died of a SIGKILL nobody sent killed
/// itself: not a crash; its leader term ends with its last line.
#[test]
fn a_leader_killed_at_the_fault_point_is_not_a_crash() {
    let a = Builder::new("w0i0", 10)
        .role(5, "leader", Some(1))
        .op(10, None, put("h/0", "w0i0", 1), "", 1, "")
        .done();
    let b = Builder::new("w1i0", 11)
        .role(20, "leader", Some(2))
        .op(60, Some(70), Op::Close, "ok", 2, "")
        .done();
    let spawn = |pid, uid: &str, fault| {
        (
            1,
            NemEvent::Spawn {
                pid,
                uid: uid.into(),
                fault,
            },
        )
    };
    let input = Input {
        procs: vec![a, b],
        nemesis: vec![
            spawn(10, "w0i0", true),
            spawn(11, "w1i0", false),
            (
                30,
                NemEvent::Exit {
                    pid: 10,
                    status: "signal:9".into(),
                },
            ),
            exit(11, 100),
        ],
        frozen: 0,
        finals: vec![],
    };
    let report = check(&input);
    assert!(report.ok(), "{:?}", report.examples);
    assert_eq!((report.fault_kills, report.indeterminate), (1, 1));
    // Not armed: the same death is a crash.
    let mut input = input;
    input.nemesis[0] = spawn(10, "w0i0", false);
    assert_eq!(check(&input).crashed, 1);
}

/// A long run reuses pids: each nemesis event belongs to the incarnation last spawned with its
/// pid. Here pid 10 led and killed itself at the fault point, then came back as a storm process
/// that exited cleanly; the term of the first still ends with its last line.
#[test]
fn a_reused_pid_does_not_extend_an_earlier_term() {
    let a = Builder::new("w0i0", 10)
        .role(5, "leader", Some(1))
        .op(8, Some(9), get("h/0"), "ok", 1, "-")
        .done();
    let b = Builder::new("w1i0", 11)
        .role(20, "leader", Some(2))
        .op(60, Some(70), Op::Close, "ok", 2, "")
        .done();
    let mut c = Builder::new("s1", 10);
    c.p.kind = "storm".into();
    let c = c.op(40, Some(45), Op::Close, "ok", 2, "").done();
    let spawn = |t, pid, uid: &str, fault| {
        (
            t,
            NemEvent::Spawn {
                pid,
                uid: uid.into(),
                fault,
            },
        )
    };
    let report = check(&Input {
        procs: vec![a, b, c],
        nemesis: vec![
            spawn(1, 10, "w0i0", true),
            spawn(2, 11, "w1i0", false),
            (
                12,
                NemEvent::Exit {
                    pid: 10,
                    status: "signal:9".into(),
                },
            ),
            spawn(30, 10, "s1", false),
            exit(10, 50),
            exit(11, 100),
        ],
        frozen: 0,
        finals: vec![],
    });
    assert!(report.ok(), "{:?}", report.examples);
    assert_eq!((report.fault_kills, report.terms), (1, 2));
}
