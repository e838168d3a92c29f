//! Reads: a `get` or a group's `get_many` never returns a value older than one acknowledged
//! before the read began, nor one nobody wrote; a group is all or nothing. Iterators are
//! judged in `iterators.rs`.

use super::iterators;
use super::ops::OpRec;
use super::writes::{Seen, Writes};
use super::{Input, Report};
use crate::history::Op;
use crate::schema::GROUP_KEYS;

/// Checks every finished read, in the order of the operations.
pub(super) fn check(report: &mut Report, input: &Input, ops: &[OpRec], writes: &Writes) {
    let register = |name: &str| writes.register(name);
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
                let what = format!("{file} get {key} began at {}", o.start);
                judge(report, key, &what, register(key).check(seen, o.start));
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
                let name = format!("g/{slot}");
                let what = format!("{file} group {slot} began at {} saw {}", o.start, o.result);
                judge(report, &name, &what, register(&name).check(seen, o.start));
            }
            Op::Frozen(spec) => iterators::check_frozen(report, file, o, spec, input.frozen),
            Op::Live { .. } => iterators::check_live(report, file, o),
            _ => {}
        }
    }
}

/// Counts a read's verdict (and remembers the register, for the cross-check).
fn judge(report: &mut Report, name: &str, what: &str, seen: Seen) {
    match seen {
        Seen::Fine => return,
        Seen::Phantom => {
            report.phantom += 1;
            report.example(format!("phantom: {what}: a value never written"));
        }
        Seen::Stale(why) => {
            report.stale += 1;
            report.example(format!("stale read: {what}: {why}"));
        }
        Seen::Twice(why) => {
            report.twice += 1;
            report.example(format!("twice: {what}: {why}"));
        }
    }
    report.flagged.insert(name.to_string());
}
