//! The final state, read through rave and by opening the engine directly: every acknowledged
//! write is there (unique puts, batches, the frozen prefix), each register's value is not older
//! than an acknowledged write, batches are all or nothing, and no key appears that nobody wrote.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::writes::{Batch, Register, Writes};
use super::{Input, Report};
use crate::schema::{
    GROUP_KEYS, HOT_KEYS, SLOTS, batch_key, frozen_index, frozen_key, frozen_value, group_key,
    hot_key, parse_put_value,
};

/// Checks every view of the final state; a write lost in any view counts once.
pub(super) fn check(report: &mut Report, input: &Input, writes: &Writes) {
    let mut lost: HashSet<String> = HashSet::new();
    for (view, map) in &input.finals {
        check_final(
            report,
            &mut lost,
            view,
            map,
            &FinalExpect {
                acked_puts: &writes.acked_puts,
                puts: &writes.puts,
                registers: &writes.registers,
                batches: &writes.batches,
                frozen: input.frozen,
            },
        );
    }
    report.lost = lost.len() as u64;
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
