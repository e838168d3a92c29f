//! The final state, read through rave and by opening the engine directly: every acknowledged
//! write is there (unique puts, batches, the frozen prefix), each register's value is not older
//! than an acknowledged write, batches are all or nothing, and no key appears that nobody wrote.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::writes::{Batch, Drain, Register, Seen, Writes};
use super::{Input, Report};
use crate::schema::{
    DRAIN_VALUE, GROUP_KEYS, HOT_KEYS, SLOTS, batch_key, drain_owner, drain_prefix, frozen_index,
    frozen_key, frozen_value, group_key, hot_key, parse_put_value,
};

/// Checks every view of the final state; a write lost in any view counts once.
pub(super) fn check(report: &mut Report, input: &Input, writes: &Writes) {
    let mut lost: HashSet<String> = HashSet::new();
    // Keys a drain lost to clears applied twice, the most any view shows.
    let mut drains_twice: HashMap<String, u64> = HashMap::new();
    for (view, map) in &input.finals {
        check_final(
            report,
            &mut lost,
            &mut drains_twice,
            view,
            map,
            &FinalExpect {
                acked_puts: &writes.acked_puts,
                puts: &writes.puts,
                registers: &writes.registers,
                batches: &writes.batches,
                drains: &writes.drains,
                frozen: input.frozen,
            },
        );
    }
    report.lost = lost.len() as u64;
    report.twice += drains_twice.values().sum::<u64>();
}

struct FinalExpect<'a> {
    acked_puts: &'a [(String, Vec<u8>)],
    puts: &'a HashMap<String, Vec<u8>>,
    registers: &'a HashMap<String, Register>,
    batches: &'a HashMap<String, Batch>,
    drains: &'a HashMap<String, Drain>,
    frozen: u32,
}

fn check_final(
    report: &mut Report,
    lost: &mut HashSet<String>,
    drains_twice: &mut HashMap<String, u64>,
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
    let mut put_registers: Vec<String> = (0..HOT_KEYS).map(hot_key).collect();
    put_registers.extend(
        want.registers
            .keys()
            .filter(|k| k.starts_with("l/"))
            .cloned(),
    );
    put_registers.sort();
    for key in put_registers {
        let reg = want.registers.get(&key).unwrap_or(&empty);
        let seen = map.get(key.as_bytes()).map(|v| match parse_put_value(v) {
            Some((uid, seq, pad)) => format!("{uid}:{seq}:{pad}"),
            None => "?".to_string(),
        });
        match reg.check(seen.as_deref(), u64::MAX) {
            Seen::Fine => {}
            Seen::Phantom => {
                report.phantom += 1;
                report.example(format!("phantom ({view}): {key} = {seen:?}"));
            }
            Seen::Stale(why) => {
                note_lost(report, format!("register {key}"), format!("{key}: {why}"));
                report.flagged.insert(key.clone());
            }
            Seen::Twice(why) => {
                report.twice += 1;
                report.example(format!("twice ({view}): final {key}: {why}"));
                report.flagged.insert(key.clone());
            }
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
            Seen::Fine => {}
            Seen::Phantom => {
                report.phantom += 1;
                report.example(format!("phantom ({view}): group slot {slot} = {seen:?}"));
            }
            Seen::Stale(why) => {
                note_lost(report, format!("register {name}"), format!("{name}: {why}"));
            }
            Seen::Twice(why) => {
                report.twice += 1;
                report.example(format!("twice ({view}): final {name}: {why}"));
            }
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
    // Drains: the keys removed lie between the limits of the acknowledged clears and those of
    // every clear that may have been applied.
    let mut uids: Vec<&String> = want.drains.keys().collect();
    uids.sort();
    for uid in uids {
        let d = &want.drains[uid];
        if d.keys == 0 {
            continue;
        }
        let prefix = drain_prefix(uid);
        let left = map
            .range(prefix.clone().into_bytes()..)
            .take_while(|(k, _)| k.starts_with(prefix.as_bytes()))
            .count() as u64;
        let removed = u64::from(d.keys).saturating_sub(left);
        let name = format!("d/{uid}");
        if removed > d.maybe {
            let extra = removed - d.maybe;
            let most = drains_twice.entry(name.clone()).or_insert(0);
            *most = (*most).max(extra);
            report.example(format!(
                "twice ({view}): drain {uid} lost {removed} keys to clears whose limits add up \
                 to {} (acknowledged {}): {extra} removed by a clear applied twice",
                d.maybe, d.acked
            ));
            report.flagged.insert(name);
        } else if removed < d.acked {
            note_lost(
                report,
                format!("drain {uid}"),
                format!(
                    "drain {uid} lost {removed} keys, but acknowledged clears remove {}",
                    d.acked
                ),
            );
            report.flagged.insert(name);
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
        } else if key.starts_with(b"d/") {
            value == DRAIN_VALUE && drain_owner(key).is_some_and(|u| want.drains.contains_key(u))
        } else {
            key.starts_with(b"h/") || key.starts_with(b"g/") || key.starts_with(b"l/")
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
