//! The history checker.
//!
//! It reads every worker history and the nemesis log, plus the final contents of the database
//! (read through rave, and read again by opening the engine directly), and verifies:
//! - **lost**: every acknowledged write is in the final state (unique puts, batches, the frozen
//!   prefix), and the final value of each register (hot key, group slot) is not older than an
//!   acknowledged write;
//! - **batches** are all or nothing, in the final state and in every `get_many` of a group slot;
//! - **terms**: leader terms (role `leader` until its close, its SIGKILL as logged by the
//!   nemesis, or its next role change) never overlap, and epochs grow with them;
//! - **iterators** over the frozen prefix deliver exactly the expected keys: no duplicate, no
//!   skipped key, nothing outside the range, in order; iterators over live keys keep strict order;
//! - **reads** never return a value older than one acknowledged before the read began;
//! - **no hang**: an operation that started and never ended in a process that was still alive at
//!   the end (it ignored SIGTERM past the grace period, or exited without ending it) is hung.
//!
//! "Older" is decided conservatively: every recorded start is before the real issue and every
//! recorded end is after the real acknowledgement, and only acknowledged writes are used as
//! evidence, so a flagged read is a real violation. A write that failed or whose process died
//! mid-operation may have been applied at any moment after its start, so it is never evidence.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::history::{Event, NemEvent, Op, parse_line, parse_nemesis_line};
use crate::schema::{
    FrozenSpec, GROUP_KEYS, HOT_KEYS, SLOTS, batch_id, batch_key, decode_runs, frozen_index,
    frozen_key, frozen_value, group_key, hot_key, parse_put_value, put_value,
};

/// Final database contents: key to value.
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// The nemesis log: time and event.
pub type NemLog = Vec<(u64, NemEvent)>;

/// One worker's history.
#[derive(Clone, Debug, Default)]
pub struct ProcHistory {
    /// The file it came from.
    pub file: String,
    /// writer / reader / storm.
    pub kind: String,
    /// Incarnation id.
    pub uid: String,
    /// Its pid.
    pub pid: u32,
    /// Its events, in file order.
    pub events: Vec<(u64, Event)>,
}

/// Everything the checker looks at.
#[derive(Clone, Debug, Default)]
pub struct Input {
    /// Worker histories.
    pub procs: Vec<ProcHistory>,
    /// The nemesis log.
    pub nemesis: NemLog,
    /// Size of the frozen prefix.
    pub frozen: u32,
    /// Final database contents, by view (`rave`, `direct`).
    pub finals: Vec<(String, State)>,
}

/// What the checker found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Leader SIGKILLs.
    pub kills: u64,
    /// Acknowledged writes (puts and batches).
    pub acked: u64,
    /// Acknowledged writes missing from a final view (counted once across views).
    pub lost: u64,
    /// Pairs of overlapping leader terms, plus terms whose epoch did not grow.
    pub overlapping_terms: u64,
    /// Entries an iterator returned twice.
    pub dup: u64,
    /// Entries an iterator should have returned and did not.
    pub skip: u64,
    /// Operations that never ended in a process alive at the end.
    pub hung: u64,
    /// Reads that returned a value older than one acknowledged before they began.
    pub stale: u64,
    /// Batches seen partly (final state or a get_many of a group slot).
    pub partial: u64,
    /// Values nobody wrote.
    pub phantom: u64,
    /// Iterator entries outside their range.
    pub stray: u64,
    /// Iterator entries out of order.
    pub disorder: u64,
    /// Entries whose value does not match their key.
    pub corrupt: u64,
    /// Epochs that went backwards (in one process, or in the leader record).
    pub epoch_regress: u64,
    /// Workers that exited on their own, not by the nemesis nor cleanly.
    pub crashed: u64,
    /// Times no leader appeared for 20 s after a kill.
    pub stalls: u64,
    /// Operations whose process was killed mid-operation.
    pub indeterminate: u64,
    /// Operations that ended.
    pub ops: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// The longest operation, in ms.
    pub max_op_ms: f64,
    /// Failover times (kill to the first successful operation served by a newer leader), ms.
    pub failovers_ms: Vec<f64>,
    /// Leader terms seen.
    pub terms: u64,
    /// Leader kills that landed while a batch was in flight.
    pub kills_mid_batch: u64,
    /// Leader kills that landed while a frozen-prefix iterator was open.
    pub kills_mid_iter: u64,
    /// Frozen-prefix iterators that completed across at least one leader kill.
    pub iters_across_kills: u64,
    /// The first violations, with their evidence.
    pub examples: Vec<String>,
    example_kinds: HashMap<String, usize>,
}

const MAX_PER_KIND: usize = 5;

impl Report {
    /// Keeps `text` as evidence, at most [`MAX_PER_KIND`] per kind of violation (the words
    /// before the first `:`), so one flood does not hide the others.
    fn example(&mut self, text: String) {
        let kind = text.split(':').next().unwrap_or("").to_string();
        let n = self.example_kinds.entry(kind).or_insert(0);
        *n += 1;
        if *n <= MAX_PER_KIND {
            self.examples.push(text);
        }
    }

    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        [
            self.lost,
            self.overlapping_terms,
            self.dup,
            self.skip,
            self.hung,
            self.stale,
            self.partial,
            self.phantom,
            self.stray,
            self.disorder,
            self.corrupt,
            self.epoch_regress,
            self.crashed,
            self.stalls,
        ]
        .iter()
        .all(|&n| n == 0)
    }

    /// A failover percentile (nearest rank), 0 when there is none.
    pub fn failover_percentile(&self, p: f64) -> f64 {
        let mut v = self.failovers_ms.clone();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    /// The final line.
    pub fn summary(&self, backend: &str, seed: u64) -> String {
        format!(
            "torture: backend={backend} kills={} acked={} lost={} overlapping_terms={} dup={} skip={} hung={} failover_p50_ms={:.0} failover_p99_ms={:.0} seed={seed}",
            self.kills,
            self.acked,
            self.lost,
            self.overlapping_terms,
            self.dup,
            self.skip,
            self.hung,
            self.failover_percentile(50.0),
            self.failover_percentile(99.0),
        )
    }

    /// The other counters, one line.
    pub fn details(&self) -> String {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect();
        format!(
            "torture-detail: ops={} terms={} kills_mid_batch={} kills_mid_iter={} iters_across_kills={} stale={} partial={} phantom={} stray={} disorder={} corrupt={} epoch_regress={} crashed={} stalls={} indeterminate={} max_op_ms={:.0} errors={}",
            self.ops,
            self.terms,
            self.kills_mid_batch,
            self.kills_mid_iter,
            self.iters_across_kills,
            self.stale,
            self.partial,
            self.phantom,
            self.stray,
            self.disorder,
            self.corrupt,
            self.epoch_regress,
            self.crashed,
            self.stalls,
            self.indeterminate,
            self.max_op_ms,
            if errors.is_empty() {
                "-".to_string()
            } else {
                errors.join(",")
            }
        )
    }
}

/// Reads a history directory (`*.log` worker files and `nemesis.log`).
pub fn load(hist: &Path) -> std::io::Result<(Vec<ProcHistory>, NemLog)> {
    let (files, nemesis) = crate::nemesis::history_files(hist)?;
    let mut procs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let mut p = ProcHistory {
            file: file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..ProcHistory::default()
        };
        for line in text.lines() {
            match parse_line(line) {
                Some((t, Event::Hello { kind, uid, pid })) => {
                    p.kind = kind.clone();
                    p.uid = uid.clone();
                    p.pid = pid;
                    p.events.push((t, Event::Hello { kind, uid, pid }));
                }
                Some(ev) => p.events.push(ev),
                None => eprintln!("rave-torture: {}: unreadable line {line:?}", p.file),
            }
        }
        procs.push(p);
    }
    let mut nem = Vec::new();
    if let Ok(text) = std::fs::read_to_string(&nemesis) {
        for line in text.lines() {
            match parse_nemesis_line(line) {
                Some(ev) => nem.push(ev),
                None => eprintln!("rave-torture: nemesis.log: unreadable line {line:?}"),
            }
        }
    }
    // A worker killed before it wrote its first line has an empty history: its pid (and so
    // its fate) comes from the nemesis's spawn record, by the file's name (`UID.log`).
    let spawned: HashMap<&str, u32> = nem
        .iter()
        .filter_map(|(_, e)| match e {
            NemEvent::Spawn { pid, uid } => Some((uid.as_str(), *pid)),
            _ => None,
        })
        .collect();
    for p in &mut procs {
        if p.uid.is_empty() {
            p.uid = p.file.trim_end_matches(".log").to_string();
        }
        if p.pid == 0
            && let Some(pid) = spawned.get(p.uid.as_str())
        {
            p.pid = *pid;
        }
    }
    Ok((procs, nem))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Exited 0 after SIGTERM.
    Clean,
    /// Killed by the nemesis (or by SIGTERM before its handler was in place).
    Killed,
    /// Still alive at the end and killed then.
    Hung,
    /// Died on its own.
    Crashed,
}

/// Each process's fate, and the time of the first SIGKILL sent to it (by the nemesis or at the
/// end), which ends a leader term at the latest.
fn fates(nemesis: &[(u64, NemEvent)]) -> (HashMap<u32, Fate>, HashMap<u32, u64>) {
    let mut killed = HashMap::new();
    let mut any_kill = HashMap::new();
    let mut hung = HashSet::new();
    let mut termed = HashSet::new();
    let mut exits = HashMap::new();
    for (t, ev) in nemesis {
        match ev {
            NemEvent::Kill { pid, target, .. } => {
                any_kill.entry(*pid).or_insert(*t);
                if target == "end" {
                    hung.insert(*pid);
                } else {
                    killed.entry(*pid).or_insert(*t);
                }
            }
            NemEvent::Term { pid } => {
                termed.insert(*pid);
            }
            NemEvent::Exit { pid, status } => {
                exits.insert(*pid, status.clone());
            }
            _ => {}
        }
    }
    let mut out = HashMap::new();
    let pids: HashSet<u32> = exits
        .keys()
        .chain(killed.keys())
        .chain(hung.iter())
        .copied()
        .collect();
    for pid in pids {
        let status = exits.get(&pid).map(String::as_str);
        let fate = if hung.contains(&pid) {
            Fate::Hung
        } else if killed.contains_key(&pid) {
            Fate::Killed
        } else if status == Some("code:0") {
            Fate::Clean
        } else if termed.contains(&pid) && status == Some("signal:15") {
            Fate::Killed
        } else {
            Fate::Crashed
        };
        out.insert(pid, fate);
    }
    (out, any_kill)
}

/// One operation, start to end.
#[derive(Clone, Debug)]
struct OpRec {
    pid: u32,
    file: usize,
    start: u64,
    end: Option<u64>,
    op: Op,
    outcome: String,
    epoch: Option<u64>,
    result: String,
}

impl OpRec {
    fn ok(&self) -> bool {
        self.end.is_some() && self.outcome == "ok"
    }
}

/// A write to a register (hot key or group slot), by its value id.
#[derive(Clone, Debug)]
struct RegWrite {
    start: u64,
    /// `Some` only when acknowledged.
    acked_end: Option<u64>,
}

/// The writes of one register and, for the acknowledged ones sorted by end, the running
/// maximum of their starts: "the newest write acknowledged before time t" in a binary search.
#[derive(Default)]
struct Register {
    writes: HashMap<String, RegWrite>,
    by_end: Vec<(u64, u64)>,
}

impl Register {
    fn finish(&mut self) {
        let mut acked: Vec<(u64, u64)> = self
            .writes
            .values()
            .filter_map(|w| w.acked_end.map(|e| (e, w.start)))
            .collect();
        acked.sort_unstable();
        let mut max_start = 0;
        for (_, start) in &mut acked {
            max_start = max_start.max(*start);
            *start = max_start;
        }
        self.by_end = acked;
    }

    /// The latest start among writes acknowledged strictly before `t`, if any.
    fn newest_acked_start_before(&self, t: u64) -> Option<u64> {
        let n = self.by_end.partition_point(|(end, _)| *end < t);
        n.checked_sub(1).map(|i| self.by_end[i].1)
    }

    /// Checks a value `seen` (a value id, or `None` for absent) read by an operation that began
    /// at `t`: `Err` explains the violation. `Ok(false)` when the value is unknown (phantom).
    fn check(&self, seen: Option<&str>, t: u64) -> Result<bool, String> {
        let newest = self.newest_acked_start_before(t);
        match seen {
            None => match newest {
                Some(s) => Err(format!(
                    "absent, but a write that started at {s} was acknowledged before {t}"
                )),
                None => Ok(true),
            },
            Some(id) => {
                let Some(w) = self.writes.get(id) else {
                    return Ok(false);
                };
                match (w.acked_end, newest) {
                    (Some(end), Some(s)) if s > end => Err(format!(
                        "value {id} (acknowledged at {end}) but a write that started later, at \
                         {s}, was acknowledged before {t}"
                    )),
                    _ => Ok(true),
                }
            }
        }
    }
}

struct Batch {
    uid: String,
    n: u64,
    keys: u32,
    acked: bool,
}

/// Runs every check.
pub fn check(input: &Input) -> Report {
    let mut report = Report::default();
    let (fate, kill_time) = fates(&input.nemesis);

    // Operations, per process.
    let mut ops: Vec<OpRec> = Vec::new();
    for (fi, p) in input.procs.iter().enumerate() {
        let mut open: HashMap<u64, usize> = HashMap::new();
        for (t, ev) in &p.events {
            match ev {
                Event::Start { id, op } => {
                    open.insert(*id, ops.len());
                    ops.push(OpRec {
                        pid: p.pid,
                        file: fi,
                        start: *t,
                        end: None,
                        op: op.clone(),
                        outcome: String::new(),
                        epoch: None,
                        result: String::new(),
                    });
                }
                Event::End {
                    id,
                    outcome,
                    epoch,
                    result,
                } => {
                    if let Some(i) = open.remove(id) {
                        let o = &mut ops[i];
                        o.end = Some(*t);
                        o.outcome = outcome.clone();
                        o.epoch = *epoch;
                        o.result = result.clone();
                    }
                }
                _ => {}
            }
        }
        let f = fate.get(&p.pid).copied().unwrap_or(Fate::Crashed);
        if f == Fate::Crashed {
            report.crashed += 1;
            report.example(format!(
                "crashed: {} (pid {}) died without being killed or stopped cleanly",
                p.file, p.pid
            ));
        }
        let mut pending: Vec<usize> = open.into_values().collect();
        pending.sort_unstable();
        for i in pending {
            match f {
                Fate::Killed | Fate::Crashed => report.indeterminate += 1,
                Fate::Clean | Fate::Hung => {
                    report.hung += 1;
                    let o = &ops[i];
                    report.example(format!(
                        "hung: {} (pid {}) {:?} started at {} never ended ({:?})",
                        p.file, p.pid, o.op, o.start, f
                    ));
                }
            }
        }
    }
    for o in &ops {
        if let Some(end) = o.end {
            report.ops += 1;
            report.max_op_ms = report.max_op_ms.max((end - o.start.min(end)) as f64 / 1e6);
            if o.outcome != "ok" {
                *report.errors.entry(o.outcome.clone()).or_insert(0) += 1;
            }
        }
    }

    // Writes.
    let mut puts: HashMap<String, Vec<u8>> = HashMap::new();
    let mut acked_puts: Vec<(String, Vec<u8>)> = Vec::new();
    let mut registers: HashMap<String, Register> = HashMap::new();
    let mut batches: HashMap<String, Batch> = HashMap::new();
    for o in &ops {
        match &o.op {
            Op::Put { key, uid, seq, pad } => {
                let value = put_value(uid, *seq, *pad);
                if o.ok() {
                    report.acked += 1;
                }
                if key.starts_with("h/") {
                    registers.entry(key.clone()).or_default().writes.insert(
                        format!("{uid}:{seq}:{pad}"),
                        RegWrite {
                            start: o.start,
                            acked_end: o.end.filter(|_| o.ok()),
                        },
                    );
                } else {
                    if o.ok() {
                        acked_puts.push((key.clone(), value.clone()));
                    }
                    puts.insert(key.clone(), value);
                }
            }
            Op::Batch { uid, n, keys, slot } => {
                if o.ok() {
                    report.acked += 1;
                }
                let bid = batch_id(uid, *n);
                registers
                    .entry(format!("g/{slot}"))
                    .or_default()
                    .writes
                    .insert(
                        bid.clone(),
                        RegWrite {
                            start: o.start,
                            acked_end: o.end.filter(|_| o.ok()),
                        },
                    );
                batches.insert(
                    bid,
                    Batch {
                        uid: uid.clone(),
                        n: *n,
                        keys: *keys,
                        acked: o.ok(),
                    },
                );
            }
            _ => {}
        }
    }
    for r in registers.values_mut() {
        r.finish();
    }
    let empty_register = Register::default();
    let register = |name: &str| registers.get(name).unwrap_or(&empty_register);

    // Reads.
    for o in ops.iter().filter(|o| o.end.is_some()) {
        let file = &input.procs[o.file].file;
        match &o.op {
            Op::Get { key } if o.ok() => {
                let seen = match o.result.as_str() {
                    "-" => None,
                    "?" => {
                        report.corrupt += 1;
                        report.example(format!(
                            "corrupt: {file} get {key} at {} returned a value nobody writes",
                            o.start
                        ));
                        continue;
                    }
                    v => Some(v),
                };
                match register(key).check(seen, o.start) {
                    Ok(true) => {}
                    Ok(false) => {
                        report.phantom += 1;
                        report.example(format!(
                            "phantom: {file} get {key} at {} returned {:?}, never written",
                            o.start, o.result
                        ));
                    }
                    Err(why) => {
                        report.stale += 1;
                        report.example(format!(
                            "stale read: {file} get {key} began at {}: {why}",
                            o.start
                        ));
                    }
                }
            }
            Op::Group { slot } if o.ok() => {
                let values: Vec<&str> = o.result.split(',').collect();
                if values.len() != GROUP_KEYS as usize || values.iter().any(|v| *v != values[0]) {
                    report.partial += 1;
                    report.example(format!(
                        "partial batch: {file} get_many of group {slot} at {} saw {}",
                        o.start, o.result
                    ));
                    continue;
                }
                let seen = match values[0] {
                    "-" => None,
                    "?" => {
                        report.corrupt += 1;
                        continue;
                    }
                    v => Some(v),
                };
                match register(&format!("g/{slot}")).check(seen, o.start) {
                    Ok(true) => {}
                    Ok(false) => {
                        report.phantom += 1;
                        report.example(format!(
                            "phantom: {file} group {slot} at {} saw {}",
                            o.start, o.result
                        ));
                    }
                    Err(why) => {
                        report.stale += 1;
                        report.example(format!(
                            "stale read: {file} group {slot} began at {}: {why}",
                            o.start
                        ));
                    }
                }
            }
            Op::Frozen(spec) => check_frozen(&mut report, file, o, spec, input.frozen),
            Op::Live { .. } => {
                for word in o.result.split(' ') {
                    if let Some((k, v)) = word.split_once('=') {
                        let v: u64 = v.parse().unwrap_or(0);
                        match k {
                            "repeat" if v > 0 => {
                                report.dup += v;
                                report.example(format!(
                                    "dup: {file} live iterator at {} repeated {v} key(s)",
                                    o.start
                                ));
                            }
                            "disorder" if v > 0 => {
                                report.disorder += v;
                                report.example(format!(
                                    "disorder: {file} live iterator at {} out of order {v} time(s)",
                                    o.start
                                ));
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }

    // Final state, per view; a write lost in any view counts once.
    let mut lost: HashSet<String> = HashSet::new();
    for (view, map) in &input.finals {
        check_final(
            &mut report,
            &mut lost,
            view,
            map,
            &FinalExpect {
                acked_puts: &acked_puts,
                puts: &puts,
                registers: &registers,
                batches: &batches,
                frozen: input.frozen,
            },
        );
    }
    report.lost = lost.len() as u64;

    check_terms(&mut report, input, &fate, &kill_time);
    check_epochs(&mut report, input);
    check_failover(&mut report, input, &ops);
    coverage(&mut report, input, &ops, &kill_time);
    report.stalls = input
        .nemesis
        .iter()
        .filter(|(_, e)| matches!(e, NemEvent::Stall { .. }))
        .count() as u64;
    report
}

fn check_frozen(report: &mut Report, file: &str, o: &OpRec, spec: &FrozenSpec, total: u32) {
    let mut words = o.result.split(' ');
    let runs = words.next().unwrap_or(".");
    let bad: u64 = words
        .next()
        .and_then(|w| w.strip_prefix("bad="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if o.result.is_empty() {
        // An iterator that failed before recording anything (old format): nothing to check.
        return;
    }
    let Some(delivered) = decode_runs(runs) else {
        report.corrupt += 1;
        return;
    };
    if bad > 0 {
        report.corrupt += bad;
        report.example(format!(
            "corrupt: {file} frozen iterator at {}: {bad} entries whose key and value disagree",
            o.start
        ));
    }
    let expected = spec.expected(total);
    let pos: HashMap<u32, usize> = expected.iter().enumerate().map(|(p, i)| (*i, p)).collect();
    let mut seen: HashSet<u32> = HashSet::new();
    let (mut dup, mut stray, mut disorder) = (0u64, 0u64, 0u64);
    let mut last_pos: Option<usize> = None;
    let mut max_pos: Option<usize> = None;
    for &i in &delivered {
        if !seen.insert(i) {
            dup += 1;
            continue;
        }
        let Some(&p) = pos.get(&i) else {
            stray += 1;
            continue;
        };
        if last_pos.is_some_and(|l| p < l) {
            disorder += 1;
        }
        last_pos = Some(p);
        max_pos = Some(max_pos.map_or(p, |m: usize| m.max(p)));
    }
    let covered = seen.iter().filter(|i| pos.contains_key(i)).count() as u64;
    let skip = if o.ok() {
        expected.len() as u64 - covered
    } else {
        // A failed iterator: only the gaps before the furthest key it reached.
        max_pos.map_or(0, |m| (m as u64 + 1).saturating_sub(covered))
    };
    let what = format!(
        "{file} frozen iterator {} began at {} ended {} epoch {:?}: delivered {}",
        spec.to_words(),
        o.start,
        o.outcome,
        o.epoch,
        runs
    );
    if dup > 0 {
        report.dup += dup;
        report.example(format!("dup={dup}: {what}"));
    }
    if skip > 0 {
        report.skip += skip;
        report.example(format!("skip={skip}: {what}"));
    }
    if stray > 0 {
        report.stray += stray;
        report.example(format!("stray={stray}: {what}"));
    }
    if disorder > 0 {
        report.disorder += disorder;
        report.example(format!("disorder={disorder}: {what}"));
    }
}

struct FinalExpect<'a> {
    acked_puts: &'a [(String, Vec<u8>)],
    puts: &'a HashMap<String, Vec<u8>>,
    registers: &'a HashMap<String, Register>,
    batches: &'a HashMap<String, Batch>,
    frozen: u32,
}

fn check_final(
    report: &mut Report,
    lost: &mut HashSet<String>,
    view: &str,
    map: &BTreeMap<Vec<u8>, Vec<u8>>,
    want: &FinalExpect<'_>,
) {
    let mut lost_here = 0u64;
    let mut note_lost = |report: &mut Report, id: String, why: String| {
        lost_here += 1;
        report.example(format!("lost ({view}): {why}"));
        lost.insert(id);
    };
    for (key, value) in want.acked_puts {
        if map.get(key.as_bytes()) != Some(value) {
            let found = map
                .get(key.as_bytes())
                .map(|v| String::from_utf8_lossy(&v[..v.len().min(40)]).into_owned());
            note_lost(
                report,
                format!("put {key}"),
                format!("acknowledged put {key} reads {found:?}"),
            );
        }
    }
    for i in 0..want.frozen {
        if map.get(frozen_key(i).as_bytes()) != Some(&frozen_value(i).into_bytes()) {
            note_lost(
                report,
                format!("frozen {i}"),
                format!("frozen key {}", frozen_key(i)),
            );
        }
    }
    let empty = Register::default();
    for k in 0..HOT_KEYS {
        let key = hot_key(k);
        let reg = want.registers.get(&key).unwrap_or(&empty);
        let seen = map.get(key.as_bytes()).map(|v| match parse_put_value(v) {
            Some((uid, seq, pad)) => format!("{uid}:{seq}:{pad}"),
            None => "?".to_string(),
        });
        match reg.check(seen.as_deref(), u64::MAX) {
            Ok(true) => {}
            Ok(false) => {
                report.phantom += 1;
                report.example(format!("phantom ({view}): {key} = {seen:?}"));
            }
            Err(why) => note_lost(report, format!("register {key}"), format!("{key}: {why}")),
        }
    }
    for slot in 0..SLOTS {
        let values: Vec<Option<&Vec<u8>>> = (0..GROUP_KEYS)
            .map(|i| map.get(group_key(slot, i).as_bytes()))
            .collect();
        if values.iter().any(|v| *v != values[0]) {
            report.partial += 1;
            report.example(format!(
                "partial ({view}): group slot {slot} holds {values:?}"
            ));
            continue;
        }
        let seen = values[0].map(|v| String::from_utf8_lossy(v).into_owned());
        let name = format!("g/{slot}");
        match want
            .registers
            .get(&name)
            .unwrap_or(&empty)
            .check(seen.as_deref(), u64::MAX)
        {
            Ok(true) => {}
            Ok(false) => {
                report.phantom += 1;
                report.example(format!("phantom ({view}): group slot {slot} = {seen:?}"));
            }
            Err(why) => note_lost(report, format!("register {name}"), format!("{name}: {why}")),
        }
    }
    let mut bids: Vec<&String> = want.batches.keys().collect();
    bids.sort();
    for bid in bids {
        let b = &want.batches[bid];
        let mut present = 0u32;
        for i in 0..b.keys {
            match map.get(batch_key(&b.uid, b.n, i).as_bytes()) {
                Some(v) if v == bid.as_bytes() => present += 1,
                Some(_) => report.corrupt += 1,
                None => {}
            }
        }
        if b.acked && present != b.keys {
            note_lost(
                report,
                format!("batch {bid}"),
                format!("acknowledged batch {bid}: {present} of {} keys", b.keys),
            );
        } else if present != 0 && present != b.keys {
            report.partial += 1;
            report.example(format!(
                "partial ({view}): batch {bid} has {present} of {} keys",
                b.keys
            ));
        }
    }
    // Keys nobody wrote.
    for (key, value) in map {
        let known = if key.starts_with(b"u/") {
            let key = String::from_utf8_lossy(key);
            want.puts.get(key.as_ref()) == Some(value)
        } else if key.starts_with(b"b/") {
            want.batches
                .get(String::from_utf8_lossy(value).as_ref())
                .is_some()
        } else if key.starts_with(b"f/") {
            frozen_index(key).is_some_and(|i| i < want.frozen)
        } else {
            key.starts_with(b"h/") || key.starts_with(b"g/")
        };
        if !known {
            report.phantom += 1;
            report.example(format!(
                "phantom ({view}): key {:?}",
                String::from_utf8_lossy(key)
            ));
        }
    }
    if lost_here > 0 {
        eprintln!("rave-torture: {lost_here} acknowledged write(s) missing in the {view} view");
    }
}

fn check_terms(
    report: &mut Report,
    input: &Input,
    fate: &HashMap<u32, Fate>,
    kill_time: &HashMap<u32, u64>,
) {
    // (start, end, epoch, file)
    let mut terms: Vec<(u64, u64, Option<u64>, &str)> = Vec::new();
    for p in &input.procs {
        let last_t = p.events.last().map_or(0, |(t, _)| *t);
        let mut open: Option<(u64, Option<u64>)> = None;
        let mut ends: Vec<(u64, Option<u64>, u64)> = Vec::new();
        for (t, ev) in &p.events {
            let stops = match ev {
                Event::Role { role, .. } => role != "leader",
                Event::Start { op: Op::Close, .. } => true,
                _ => false,
            };
            if stops && let Some((s, e)) = open.take() {
                ends.push((s, e, *t));
            }
            if let Event::Role { role, epoch } = ev
                && role == "leader"
                && open.is_none()
            {
                open = Some((*t, *epoch));
            }
        }
        if let Some((s, e)) = open {
            // Still leading when its history stops: the term ended with the process.
            let end = match (kill_time.get(&p.pid), fate.get(&p.pid)) {
                (Some(k), _) => (*k).max(s),
                (None, Some(Fate::Crashed) | None) => last_t.max(s),
                _ => u64::MAX,
            };
            ends.push((s, e, end));
        }
        for (s, e, end) in ends {
            // A SIGKILL logged before the role change was recorded (the signal takes a moment
            // to land): the term ends at the kill, or at once.
            let end = match kill_time.get(&p.pid) {
                Some(k) if *k >= s => end.min(*k),
                _ => end,
            };
            terms.push((s, end, e, p.file.as_str()));
        }
    }
    terms.sort_by_key(|t| (t.0, t.1));
    report.terms = terms.len() as u64;
    let mut max_epoch: Option<u64> = None;
    for j in 0..terms.len() {
        let (sj, _, ej, fj) = terms[j];
        for &(si, endi, ei, fi) in &terms[..j] {
            if endi > sj {
                report.overlapping_terms += 1;
                report.example(format!(
                    "overlapping terms: {fi} led epoch {ei:?} from {si} to {endi}; {fj} led epoch {ej:?} from {sj}"
                ));
            }
        }
        if let Some(e) = ej {
            if max_epoch.is_some_and(|m| e <= m) {
                report.overlapping_terms += 1;
                report.example(format!(
                    "epoch did not grow: {fj} led epoch {e} from {sj} after epoch {max_epoch:?}"
                ));
            }
            max_epoch = Some(max_epoch.map_or(e, |m| m.max(e)));
        }
    }
}

fn check_epochs(report: &mut Report, input: &Input) {
    for p in &input.procs {
        let mut last: Option<u64> = None;
        for (t, ev) in &p.events {
            let epoch = match ev {
                Event::End { epoch, .. } | Event::Role { epoch, .. } => *epoch,
                _ => None,
            };
            if let Some(e) = epoch {
                if last.is_some_and(|l| e < l) {
                    report.epoch_regress += 1;
                    report.example(format!(
                        "epoch went back: {} saw epoch {e} at {t} after {last:?}",
                        p.file
                    ));
                }
                last = Some(last.map_or(e, |l| l.max(e)));
            }
        }
    }
    let mut last = 0;
    for (t, ev) in &input.nemesis {
        if let NemEvent::Leader { epoch, .. } = ev {
            if *epoch < last {
                report.epoch_regress += 1;
                report.example(format!(
                    "leader record went back from epoch {last} to {epoch} at {t}"
                ));
            }
            last = last.max(*epoch);
        }
    }
}

fn check_failover(report: &mut Report, input: &Input, ops: &[OpRec]) {
    let mut served: Vec<(u64, u32, u64)> = ops
        .iter()
        .filter(|o| o.ok())
        .filter_map(|o| Some((o.end?, o.pid, o.epoch?)))
        .collect();
    served.sort_unstable();
    for (t, ev) in &input.nemesis {
        let NemEvent::Kill {
            pid,
            epoch: Some(killed),
            target,
            ..
        } = ev
        else {
            continue;
        };
        if target != "leader" {
            continue;
        }
        report.kills += 1;
        let from = served.partition_point(|(end, _, _)| end <= t);
        if let Some((end, _, _)) = served[from..]
            .iter()
            .find(|(_, p, e)| p != pid && e > killed)
        {
            report.failovers_ms.push((end - t) as f64 / 1e6);
        }
    }
}

/// How often the nemesis hit the moments that matter: kills during a batch, during a frozen
/// iterator, and iterators that completed across a kill (so they resumed).
fn coverage(report: &mut Report, input: &Input, ops: &[OpRec], kill_time: &HashMap<u32, u64>) {
    let mut kills: Vec<u64> = input
        .nemesis
        .iter()
        .filter_map(|(t, e)| match e {
            NemEvent::Kill { target, .. } if target == "leader" => Some(*t),
            _ => None,
        })
        .collect();
    kills.sort_unstable();
    let mut mid_batch = HashSet::new();
    let mut mid_iter = HashSet::new();
    for o in ops {
        // An operation cut short by its process's death was in flight until that death.
        let end = o
            .end
            .or_else(|| kill_time.get(&o.pid).copied())
            .unwrap_or(u64::MAX);
        let from = kills.partition_point(|k| *k < o.start);
        let to = kills.partition_point(|k| *k <= end);
        match o.op {
            Op::Batch { .. } => mid_batch.extend(from..to),
            Op::Frozen(_) => {
                mid_iter.extend(from..to);
                if to > from && o.ok() {
                    report.iters_across_kills += 1;
                }
            }
            _ => {}
        }
    }
    report.kills_mid_batch = mid_batch.len() as u64;
    report.kills_mid_iter = mid_iter.len() as u64;
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use rave::Projection;

    use super::*;
    use crate::schema::unique_key;

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
}
