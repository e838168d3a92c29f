//! Reads: a `get` or a group's `get_many` never returns a value older than one acknowledged
//! before the read began, nor one nobody wrote; a group is all or nothing. Iterators are
//! judged in `iterators.rs`.

use super::iterators;
use super::ops::OpRec;
use super::writes::Writes;
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
            Op::Frozen(spec) => iterators::check_frozen(report, file, o, spec, input.frozen),
            Op::Live { .. } => iterators::check_live(report, file, o),
            _ => {}
        }
    }
}
