//! Iterators: over the frozen prefix they deliver exactly the expected keys (no duplicate, no
//! skipped key, nothing outside the range, in order); over live keys they keep strict order.

use std::collections::{HashMap, HashSet};

use super::Report;
use super::ops::OpRec;
use crate::schema::{FrozenSpec, decode_runs};

/// Judges an iterator over the frozen prefix from the runs of keys it recorded.
pub(super) fn check_frozen(
    report: &mut Report,
    file: &str,
    o: &OpRec,
    spec: &FrozenSpec,
    total: u32,
) {
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

/// Counts what an iterator over live keys recorded itself: repeated keys and keys out of order.
pub(super) fn check_live(report: &mut Report, file: &str, o: &OpRec) {
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
