//! Plugging your own engine into rave, as an outside crate would, and proving it with the
//! conformance suite.
//!
//! The engine here is small on purpose: an append-only log file holding every write, replayed
//! into a `BTreeMap` at open. Snapshots are copy-on-write (`Rc<BTreeMap>`): an iterator keeps
//! the map it was created on, and the next write clones the map only while such an iterator
//! lives. A write is one checksummed record written with one `write` call, so a crash leaves
//! either the whole record or a torn tail, which the next open cuts off: batches are atomic and
//! acknowledged writes survive `kill -9`. (No compaction: the log only grows.)
//!
//! `rave_api::EngineBackend` and `rave_api::engine_thread` do the rest: the directory is checked
//! and recorded, the engine runs on a thread of its own, writes are
//! group-committed, iterators are read in chunks, limits and projections are applied.
//!
//! ```sh
//! cargo run --example custom_backend
//! ```
//!
//! It runs the kill -9 durability test and the whole behaviour suite against the engine, prints
//! a line per test, and exits non-zero when any test fails.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

use rave_api::engine_thread::{Engine, EngineIter};
use rave_api::{BatchOp, Capabilities, EngineBackend, Error, OpenOptions, Range, Result};
use rave_conformance::BackendHarness;
use rave_conformance::crash::{self, Kill9};

/// The engine's name, recorded in the directory.
const NAME: &str = "applog";
/// The log file inside the database directory.
const LOG_FILE: &str = "applog.log";
/// A record's header: payload length (u32) and FNV-1a checksum of the payload (u64).
const HEADER: usize = 12;

/// The backend: what rave (or the suite) opens.
#[derive(Clone, Copy, Debug, Default)]
struct AppendLogBackend;

// `EngineBackend` gives the `Backend` impl: it refuses a file, another engine's directory, a
// missing database without create_if_missing..., records our name, and opens the engine on a
// thread of its own.
impl EngineBackend for AppendLogBackend {
    const NAME: &'static str = NAME;
    const CAPABILITIES: Capabilities = Capabilities::full();
    type Engine = LogEngine;

    fn open_engine(dir: &Path, options: &OpenOptions) -> Result<LogEngine> {
        LogEngine::open(dir.join(LOG_FILE), options.sync)
    }
}

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

struct LogEngine {
    file: RefCell<File>,
    path: PathBuf,
    map: RefCell<Rc<Map>>,
    sync: bool,
}

impl LogEngine {
    fn open(path: PathBuf, sync: bool) -> Result<Self> {
        let io =
            |what: &str, e: std::io::Error| Error::io(format!("{what} {}", path.display()), &e);
        let mut file = File::options()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io("open", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| io("read", e))?;
        let mut map = Map::new();
        let mut at = 0;
        while let Some((ops, next)) = decode_record(&bytes, at) {
            for op in ops {
                apply(&mut map, op);
            }
            at = next;
        }
        if at < bytes.len() {
            // A torn tail: the write that was cut was never acknowledged. Drop it.
            tracing::warn!(path = %path.display(), kept = at, len = bytes.len(), "cutting a torn log tail");
            file.set_len(at as u64).map_err(|e| io("truncate", e))?;
            file.seek(SeekFrom::End(0)).map_err(|e| io("seek", e))?;
        }
        Ok(LogEngine {
            file: RefCell::new(file),
            path,
            map: RefCell::new(Rc::new(map)),
            sync,
        })
    }
}

fn apply(map: &mut Map, op: BatchOp) {
    match op {
        BatchOp::Put { key, value } => {
            map.insert(key, value);
        }
        BatchOp::Del { key } => {
            map.remove(&key);
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    let len =
        u32::try_from(bytes.len()).map_err(|_| Error::invalid("a key or value over 4 GiB"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn encode_record(ops: &[BatchOp]) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    for op in ops {
        match op {
            BatchOp::Put { key, value } => {
                payload.push(1);
                put_bytes(&mut payload, key)?;
                put_bytes(&mut payload, value)?;
            }
            BatchOp::Del { key } => {
                payload.push(2);
                put_bytes(&mut payload, key)?;
            }
        }
    }
    let len = u32::try_from(payload.len()).map_err(|_| Error::invalid("a batch over 4 GiB"))?;
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&fnv1a(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// The record at `at` and where the next one starts, or `None` at the end or at a torn or
/// damaged record.
fn decode_record(bytes: &[u8], at: usize) -> Option<(Vec<BatchOp>, usize)> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(header[4..].try_into().ok()?);
    let end = at.checked_add(HEADER)?.checked_add(len)?;
    let payload = bytes.get(at + HEADER..end)?;
    if fnv1a(payload) != sum {
        return None;
    }
    let mut ops = Vec::new();
    let mut p = payload;
    let take = |p: &mut &[u8]| -> Option<Vec<u8>> {
        let n = u32::from_le_bytes(p.get(..4)?.try_into().ok()?) as usize;
        let bytes = p.get(4..4usize.checked_add(n)?)?.to_vec();
        *p = &p[4 + n..];
        Some(bytes)
    };
    while let Some((&tag, rest)) = p.split_first() {
        p = rest;
        match tag {
            1 => {
                let key = take(&mut p)?;
                let value = take(&mut p)?;
                ops.push(BatchOp::Put { key, value });
            }
            2 => ops.push(BatchOp::Del { key: take(&mut p)? }),
            _ => return None,
        }
    }
    Some((ops, end))
}

impl Engine for LogEngine {
    type Iter<'a> = LogIter;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.borrow().get(key).cloned())
    }

    fn write(&self, ops: &[BatchOp]) -> Result<()> {
        let record = encode_record(ops)?;
        let mut file = self.file.borrow_mut();
        // One write call: in the OS (durable against a process crash) when it returns.
        file.write_all(&record)
            .map_err(|e| Error::io(format!("append to {}", self.path.display()), &e))?;
        if self.sync {
            file.sync_data()
                .map_err(|e| Error::io(format!("sync {}", self.path.display()), &e))?;
        }
        // Copy-on-write: clones the map only while an iterator holds the old one.
        let mut map = self.map.borrow_mut();
        let map = Rc::make_mut(&mut map);
        for op in ops {
            apply(map, op.clone());
        }
        Ok(())
    }

    fn iter(&self, range: &Range) -> Result<LogIter> {
        Ok(LogIter {
            map: Rc::clone(&self.map.borrow()),
            range: range.clone(),
            last: None,
        })
    }

    fn close(self) -> Result<()> {
        self.file
            .borrow()
            .sync_all()
            .map_err(|e| Error::io(format!("sync {}", self.path.display()), &e))
    }
}

/// A cursor over the snapshot it holds: each step looks up the next key after the last one.
struct LogIter {
    map: Rc<Map>,
    range: Range,
    last: Option<Vec<u8>>,
}

impl EngineIter for LogIter {
    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let (mut lower, mut upper) = (self.range.lower(), self.range.upper());
        match (&self.last, self.range.reverse) {
            (Some(last), false) => lower = Bound::Excluded(last),
            (Some(last), true) => upper = Bound::Excluded(last),
            (None, _) => {}
        }
        if !is_valid(lower, upper) {
            return Ok(None);
        }
        let mut within = self.map.range::<[u8], _>((lower, upper));
        let next = if self.range.reverse {
            within.next_back()
        } else {
            within.next()
        };
        let next = next.map(|(k, v)| (k.clone(), v.clone()));
        if let Some((k, _)) = &next {
            self.last = Some(k.clone());
        }
        Ok(next)
    }
}

/// Whether `BTreeMap::range` accepts these bounds (it panics on inverted ones).
fn is_valid(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    match (lower, upper) {
        (Bound::Excluded(lo), Bound::Excluded(hi)) => lo < hi,
        (Bound::Included(lo) | Bound::Excluded(lo), Bound::Included(hi) | Bound::Excluded(hi)) => {
            lo <= hi
        }
        _ => true,
    }
}

fn main() -> ExitCode {
    // First, before any runtime: in the crash child (started by this very program) this call
    // writes until it is killed and never returns.
    let crash = crash::run_kill9(&AppendLogBackend, "kill9_durability", &Kill9::default());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(rave_conformance::run_all(&BackendHarness::new(
        AppendLogBackend,
    )));
    println!("{report}");
    match &crash {
        Ok(outcome) => println!("kill9_durability: {outcome:?}"),
        Err(failure) => println!("kill9_durability FAILED: {failure}"),
    }
    if report.success() && crash.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
