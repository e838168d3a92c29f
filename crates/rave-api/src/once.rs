//! Exactly once: every write a handle sends is applied once, however often it is re-sent and
//! whichever leader receives it.
//!
//! A rave handle stamps each write with its identity ([`ClientId`], random per handle) and a
//! sequence number of its own ([`WriteStamp::seq`]), and re-sends a write with the same stamp
//! after a failover. The engine thread ([`crate::engine_thread`]) keeps, for every stamp it
//! applied, a record **in the same engine commit as the write** (under rave's reserved keys, see
//! [`crate::keyspace`]): a record survives `kill -9` of the leader, and a write whose stamp has a
//! record is answered from it instead of being applied again, by this leader or the next.
//!
//! Records stay bounded:
//! - each stamp carries the handle's **floor** ([`WriteStamp::floor`]): every write of the handle
//!   below it has been answered, so their records are deleted in the same commit, and a write
//!   below the floor that still arrives (a stale re-send) is refused, never applied;
//! - a handle idle for [`RECORD_TTL`] is forgotten. A handle never re-sends a write that long
//!   after first sending it: its deadline ends the retries much earlier, and a retry later than
//!   [`RECORD_TTL`] fails with [`crate::Error::RetryRefused`] instead of risking a second apply.
//!
//! Records use the system clock (shared by the processes of one machine); a clock stepped by
//! more than [`RECORD_TTL`] could expire a record early.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::keyspace::{meta_key, meta_range};
use crate::{BatchOp, Error, Range, Result};

/// How long the records of a handle that sends nothing are kept.
pub const RECORD_TTL: Duration = Duration::from_secs(3600);

/// How often (at most) expired handles are swept, as a fraction of [`RECORD_TTL`].
const SWEEP_EVERY_MS: u64 = RECORD_TTL.as_millis() as u64 / 16;

/// The most expired handles forgotten in one commit (the rest wait for the next sweep).
const SWEEP_MAX: usize = 4096;

/// The identity of one handle: random, 128 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u128);

impl ClientId {
    /// A fresh random identity.
    pub fn random() -> Self {
        ClientId(rand::random())
    }
}

impl Serialize for ClientId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0.to_be_bytes())
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        let array: [u8; 16] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| serde::de::Error::invalid_length(bytes.len(), &"16 bytes"))?;
        Ok(ClientId(u128::from_be_bytes(array)))
    }
}

/// Which write of which handle: what makes a re-sent write recognisable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteStamp {
    /// The handle that sent the write.
    pub client: ClientId,
    /// The write's number among the handle's writes (from 1, never reused).
    pub seq: u64,
    /// Every write of this handle numbered below `floor` has had its answer.
    pub floor: u64,
}

/// A write as one unit that is applied exactly once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    /// `put`, `del` and `batch`: operations applied atomically.
    Batch(Vec<BatchOp>),
    /// `clear(range)`: the keys of the range, as found when it is applied.
    Clear(Range),
    /// A conditional batch: `ops`, applied atomically only if every check holds when the write
    /// is applied (evaluated by the leader in commit order, after every write committed or
    /// merged before it); otherwise nothing is applied and the write fails with
    /// [`crate::Error::ConditionFailed`] naming the first check that did not hold.
    Conditional {
        /// What must hold.
        checks: Vec<Check>,
        /// What to apply if it does.
        ops: Vec<BatchOp>,
    },
}

/// One condition of a [`Write::Conditional`]: `key` holds `expected` (`None`: is absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Its expected value; `None` when it must be absent.
    #[serde(with = "serde_bytes")]
    pub expected: Option<Vec<u8>>,
}

impl Check {
    /// `key` must hold `expected` (`None`: be absent).
    pub fn new(key: impl Into<Vec<u8>>, expected: Option<impl Into<Vec<u8>>>) -> Self {
        Check {
            key: key.into(),
            expected: expected.map(Into::into),
        }
    }
}

/// What to do with one stamped write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not seen before: apply it.
    Apply,
    /// Already applied (by this leader or an earlier one): answer `Ok` without applying.
    Applied,
    /// Applied in the commit being assembled: share its result.
    InThisCommit,
    /// Below the handle's floor: its answer was delivered long ago; refuse it.
    Stale,
}

/// What one handle's records say.
#[derive(Debug, Default)]
struct Client {
    floor: u64,
    applied: BTreeSet<u64>,
    last_active_ms: u64,
}

/// The exactly-once records of a database, kept in memory by the engine thread (loaded at open)
/// and mirrored in the engine under rave's reserved keys.
#[derive(Debug, Default)]
pub(crate) struct Records {
    clients: HashMap<ClientId, Client>,
    last_sweep_ms: u64,
}

/// The record changes of one commit, applied to [`Records`] once the commit succeeded.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    stamps: Vec<WriteStamp>,
    seen: HashSet<(ClientId, u64)>,
    floors: HashMap<ClientId, u64>,
    expired: Vec<ClientId>,
    swept_at: Option<u64>,
}

/// The name prefix of a record: `o` + client (16 bytes) + seq (8), valued status (1 byte),
/// last activity (8, ms) and the handle's floor when it was written (8). The floor needs no key
/// of its own: the newest record of a handle always carries its highest floor (the write that
/// raised the floor is at or above it, so its record is never trimmed by it).
const RECORD: &[u8] = b"o";

fn record_key(client: ClientId, seq: u64) -> Vec<u8> {
    let mut name = RECORD.to_vec();
    name.extend_from_slice(&client.0.to_be_bytes());
    name.extend_from_slice(&seq.to_be_bytes());
    meta_key(&name)
}

/// The engine ranges holding the records, for [`Records::load`].
pub(crate) fn record_ranges() -> [Range; 1] {
    [meta_range(RECORD)]
}

/// Milliseconds since the Unix epoch, by the system clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn u128_at(bytes: &[u8], at: usize) -> Option<u128> {
    Some(u128::from_be_bytes(
        bytes.get(at..at + 16)?.try_into().ok()?,
    ))
}

impl Records {
    /// Rebuilds the records from the engine entries of [`record_ranges`] (engine keys).
    pub fn load(entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Result<Self> {
        let mut records = Records::default();
        let damaged = |key: &[u8]| {
            Error::corruption(format!("a damaged exactly-once record (key {key:02x?})"))
        };
        let prefix = crate::keyspace::META_PREFIX.len();
        for (key, value) in entries {
            let name = key.get(prefix..).ok_or_else(|| damaged(&key))?;
            let client = ClientId(u128_at(name, 1).ok_or_else(|| damaged(&key))?);
            let entry = records.clients.entry(client).or_default();
            match name.first().copied() {
                Some(b'o') if name.len() == 25 && value.len() == 17 => {
                    let seq = u64_at(name, 17).ok_or_else(|| damaged(&key))?;
                    entry.applied.insert(seq);
                    let active = u64_at(&value, 1).ok_or_else(|| damaged(&key))?;
                    entry.last_active_ms = entry.last_active_ms.max(active);
                    let floor = u64_at(&value, 9).ok_or_else(|| damaged(&key))?;
                    entry.floor = entry.floor.max(floor);
                }
                _ => return Err(damaged(&key)),
            }
        }
        Ok(records)
    }

    /// Handles known (for tests and stats).
    #[cfg(test)]
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Records held (for tests and stats).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.clients.values().map(|c| c.applied.len()).sum()
    }

    /// What to do with `stamp`, given the records and the commit being assembled.
    pub fn verdict(&self, staged: &Staged, stamp: &WriteStamp) -> Verdict {
        if staged.seen.contains(&(stamp.client, stamp.seq)) {
            return Verdict::InThisCommit;
        }
        let client = self.clients.get(&stamp.client);
        let floor = staged
            .floors
            .get(&stamp.client)
            .copied()
            .max(client.map(|c| c.floor))
            .unwrap_or(0);
        if client.is_some_and(|c| c.applied.contains(&stamp.seq)) {
            Verdict::Applied
        } else if stamp.seq < floor {
            Verdict::Stale
        } else {
            Verdict::Apply
        }
    }

    /// Adds an applied `stamp` to the commit being assembled.
    pub fn stage(&self, staged: &mut Staged, stamp: WriteStamp) {
        staged.seen.insert((stamp.client, stamp.seq));
        staged.stamps.push(stamp);
        let floor = staged.floors.entry(stamp.client).or_insert(0);
        *floor = (*floor).max(stamp.floor);
    }

    /// The engine operations (engine keys) that record the staged commit: a record per stamp
    /// (carrying the handle's floor), the records below a raised floor deleted, expired handles
    /// forgotten.
    pub fn meta_ops(&self, staged: &mut Staged, now_ms: u64) -> Vec<BatchOp> {
        let mut ops = Vec::new();
        for stamp in &staged.stamps {
            let known = self.clients.get(&stamp.client).map_or(0, |c| c.floor);
            let floor = staged
                .floors
                .get(&stamp.client)
                .copied()
                .unwrap_or(0)
                .max(known);
            if stamp.seq >= floor {
                let mut value = [0u8; 17];
                value[1..9].copy_from_slice(&now_ms.to_be_bytes());
                value[9..].copy_from_slice(&floor.to_be_bytes());
                ops.push(BatchOp::put(record_key(stamp.client, stamp.seq), value));
            }
        }
        for (&client, &floor) in &staged.floors {
            if let Some(known) = self.clients.get(&client)
                && known.floor < floor
            {
                for &seq in known.applied.range(..floor) {
                    ops.push(BatchOp::del(record_key(client, seq)));
                }
            }
        }
        if now_ms.saturating_sub(self.last_sweep_ms) >= SWEEP_EVERY_MS {
            let horizon = now_ms.saturating_sub(RECORD_TTL.as_millis() as u64);
            for (&client, records) in &self.clients {
                if staged.expired.len() >= SWEEP_MAX {
                    break;
                }
                if records.last_active_ms < horizon && !staged.floors.contains_key(&client) {
                    staged.expired.push(client);
                    for &seq in &records.applied {
                        ops.push(BatchOp::del(record_key(client, seq)));
                    }
                }
            }
            staged.swept_at = Some(now_ms);
        }
        ops
    }

    /// The staged commit is in the engine: make the in-memory records say the same.
    pub fn commit(&mut self, staged: Staged, now_ms: u64) {
        for client in staged.expired {
            self.clients.remove(&client);
        }
        if let Some(at) = staged.swept_at {
            self.last_sweep_ms = at;
        }
        for stamp in staged.stamps {
            let client = self.clients.entry(stamp.client).or_default();
            client.applied.insert(stamp.seq);
            client.last_active_ms = now_ms;
        }
        for (id, floor) in staged.floors {
            let client = self.clients.entry(id).or_default();
            if floor > client.floor {
                client.floor = floor;
                client.applied = client.applied.split_off(&floor);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(client: u128, seq: u64, floor: u64) -> WriteStamp {
        WriteStamp {
            client: ClientId(client),
            seq,
            floor,
        }
    }

    /// Commits `stamps` to `records` and to `engine` (a map of engine keys).
    fn commit(
        records: &mut Records,
        engine: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        stamps: &[WriteStamp],
        now: u64,
    ) -> Vec<Verdict> {
        let mut staged = Staged::default();
        let verdicts = stamps
            .iter()
            .map(|s| {
                let verdict = records.verdict(&staged, s);
                if verdict == Verdict::Apply {
                    records.stage(&mut staged, *s);
                }
                verdict
            })
            .collect();
        let ops = records.meta_ops(&mut staged, now);
        BatchOp::apply_all(&ops, engine);
        records.commit(staged, now);
        verdicts
    }

    fn reload(engine: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>) -> Records {
        let ranges = record_ranges();
        Records::load(
            engine
                .iter()
                .filter(|(k, _)| ranges.iter().any(|r| r.contains(k)))
                .map(|(k, v)| (k.clone(), v.clone())),
        )
        .unwrap()
    }

    #[test]
    fn a_resent_write_is_answered_not_applied_on_any_leader() {
        let mut engine = Default::default();
        let mut records = Records::default();
        let now = RECORD_TTL.as_millis() as u64;
        assert_eq!(
            commit(
                &mut records,
                &mut engine,
                &[stamp(1, 1, 1), stamp(1, 2, 1)],
                now
            ),
            vec![Verdict::Apply, Verdict::Apply]
        );
        // The same leader, and a new one that loads the records from the engine.
        for records in [&mut records, &mut reload(&engine)] {
            let staged = Staged::default();
            assert_eq!(records.verdict(&staged, &stamp(1, 2, 1)), Verdict::Applied);
            assert_eq!(records.verdict(&staged, &stamp(2, 2, 1)), Verdict::Apply);
        }
        // Twice in one commit: the second shares the first's result.
        assert_eq!(
            commit(
                &mut records,
                &mut engine,
                &[stamp(1, 3, 1), stamp(1, 3, 1)],
                now
            ),
            vec![Verdict::Apply, Verdict::InThisCommit]
        );
    }

    #[test]
    fn the_floor_trims_records_and_refuses_stale_resends() {
        let mut engine = Default::default();
        let mut records = Records::default();
        let now = RECORD_TTL.as_millis() as u64;
        let stamps: Vec<_> = (1..=5).map(|seq| stamp(7, seq, 1)).collect();
        commit(&mut records, &mut engine, &stamps, now);
        assert_eq!(records.len(), 5);
        commit(&mut records, &mut engine, &[stamp(7, 6, 5)], now);
        assert_eq!(records.len(), 2, "records 1-4 are below the floor");
        let reloaded = reload(&engine);
        assert_eq!(reloaded.len(), 2);
        let staged = Staged::default();
        for records in [&records, &reloaded] {
            assert_eq!(records.verdict(&staged, &stamp(7, 3, 1)), Verdict::Stale);
            assert_eq!(records.verdict(&staged, &stamp(7, 5, 5)), Verdict::Applied);
        }
    }

    #[test]
    fn idle_handles_expire() {
        let mut engine = Default::default();
        let mut records = Records::default();
        let start = RECORD_TTL.as_millis() as u64;
        commit(&mut records, &mut engine, &[stamp(1, 1, 1)], start);
        commit(
            &mut records,
            &mut engine,
            &[stamp(2, 1, 1)],
            start + 2 * SWEEP_EVERY_MS,
        );
        assert_eq!(records.clients(), 2);
        let later = start + RECORD_TTL.as_millis() as u64 + SWEEP_EVERY_MS;
        commit(&mut records, &mut engine, &[stamp(3, 1, 1)], later);
        assert_eq!(
            records.clients(),
            2,
            "handle 1 was idle for longer than the TTL"
        );
        assert_eq!(reload(&engine).clients(), 2);
        assert!(
            engine
                .keys()
                .all(|k| !k.windows(16).any(|w| w == 1u128.to_be_bytes()))
        );
    }
}
