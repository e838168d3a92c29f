//! A write-ahead journal for engines whose own durable commit costs more than one write and one
//! `fdatasync` of a small file.
//!
//! redb makes a commit durable by rewriting its copy-on-write pages and syncing twice (quick
//! repair's two-phase commit); LevelDB and RocksDB append to their own log and sync once. An
//! engine of the first kind keeps its promise ("when `write` returns, the write survives a crash,
//! and power loss") more cheaply this way:
//!
//! 1. [`Journal::append`] writes the commit (its engine ranges to delete and its operations) as
//!    one checksummed record and `fdatasync`s it;
//! 2. the engine commits *without* syncing, recording the record's number (its LSN) in the same
//!    commit;
//! 3. now and then (when the journal is full, a record is large, or the engine closes) the engine
//!    makes a durable commit — a *checkpoint* — and calls [`Journal::checkpointed`]: the journal
//!    starts over at its beginning.
//!
//! After a crash the engine holds some prefix of its commits, at least up to its last checkpoint,
//! and knows the LSN of the last one it holds. [`Journal::open`] returns every record after that
//! LSN, in order; the engine applies them again (a record is a physical redo: "delete these
//! ranges, then put and delete these keys", so applying the records that follow a state of the
//! engine in order always ends in the state after the last one), without a sync: they stay in
//! the journal, and the next records follow them. So taking over after a crash costs no sync,
//! and works on a full disk.
//!
//! The file grows in chunks of zeros written ahead of the records, up to its capacity, and is then
//! rewritten in place from its start: an `fdatasync` that does not grow the file has no metadata
//! to write (measured on this machine's ext4: ~25% more syncs per second than
//! appending). Records of an earlier pass stay behind the newest ones; they are told apart by
//! their LSNs, which increase by one from record to record and never repeat across passes, so the
//! replay stops at the first record that does not continue the sequence (or fails its checksum:
//! a torn write of the last record before a crash).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use crate::{BatchOp, Error, Range, Result};

/// The journal's size. A record that does not fit the rest of it asks for a
/// checkpoint first. It also bounds the replay at open: at most this much is re-applied when
/// the next leader takes over after a crash.
pub const DEFAULT_CAPACITY: u64 = 1 << 20;

/// How much the file grows at a time, in zeros written ahead of the records.
pub const GROWTH: u64 = 128 << 10;

/// Bytes before a record's payload: payload length (u32), CRC-32C of LSN and payload (u32),
/// LSN (u64), all little-endian.
const HEADER: usize = 16;

/// One commit read back from the journal, to apply again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's number.
    pub lsn: u64,
    /// Engine ranges to delete, before `ops` (see [`crate::engine_thread::Engine::delete_ranges_and_write`]).
    pub ranges: Vec<Range>,
    /// The operations, in order.
    pub ops: Vec<BatchOp>,
}

/// An open journal file (see the module docs).
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    capacity: u64,
    /// The file's length: zeros or records up to there.
    allocated: u64,
    /// Where the next record goes.
    end: u64,
    /// The LSN of the last record written (or, after a checkpoint or at open, held by the engine).
    last_lsn: u64,
    /// Whether the journal holds records the engine's durable state lacks.
    pending: bool,
    /// Where the last record written starts, while it can still be revoked.
    last_start: Option<u64>,
    /// The encoding buffer, kept between appends.
    buf: Vec<u8>,
}

impl Journal {
    /// Opens the journal at `path`, creating it (and syncing its directory) when missing; it
    /// grows by [`GROWTH`] bytes of zeros at a time, as records need, up to `capacity`.
    /// `applied` is the LSN of the last record the engine holds; the records after it are
    /// returned, in order, for the engine to apply again before it serves. They stay in the
    /// journal (the next records follow them), so the engine may apply them without a sync: a
    /// crash before its next checkpoint applies them again.
    pub fn open(path: &Path, capacity: u64, applied: u64) -> Result<(Journal, Vec<Record>)> {
        let io =
            |what: &str, e: std::io::Error| Error::io(format!("{what} {}", path.display()), &e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io("open the journal", e))?;
        let len = file
            .metadata()
            .map_err(|e| io("stat the journal", e))?
            .len();
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes)
            .map_err(|e| io("read the journal", e))?;
        let Replayed {
            records,
            run_end,
            run_last,
        } = replay(&bytes, applied)?;
        if len == 0
            && let Some(dir) = path.parent()
        {
            crate::dir::sync_dir(dir).map_err(|e| io("sync the directory of", e))?;
        }
        // The next record continues the run when its number follows the run's last; otherwise
        // (the engine checkpointed after the run) every record in the file is held durably, and
        // the journal starts over.
        let (end, last_lsn) = match (records.last(), run_last) {
            (Some(last), _) => (run_end, last.lsn),
            (None, Some(last)) if last == applied => (run_end, applied),
            _ => (0, applied),
        };
        let journal = Journal {
            file,
            path: path.to_path_buf(),
            capacity: capacity.max(len),
            allocated: len,
            end,
            last_lsn,
            pending: !records.is_empty(),
            last_start: None,
            buf: Vec::new(),
        };
        Ok((journal, records))
    }

    /// The LSN of the last record written (or held by the engine): the engine records it with
    /// each commit.
    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }

    /// Writes one record of `ranges` and `ops` and syncs it. `Ok(None)`: it does not fit the
    /// journal's room left (or the journal awaits its first checkpoint); nothing was written, and
    /// the engine must commit this write durably itself (a checkpoint). `Ok(Some(lsn))`: the
    /// record is on disk.
    pub fn append(&mut self, ranges: &[Range], ops: &[BatchOp]) -> Result<Option<u64>> {
        let lsn = self.last_lsn + 1;
        self.buf.clear();
        self.buf.extend_from_slice(&[0u8; HEADER]);
        encode(&mut self.buf, ranges, ops);
        let total = self.buf.len() as u64;
        if self.end.saturating_add(total) > self.capacity {
            return Ok(None);
        }
        let payload_len = u32::try_from(self.buf.len() - HEADER)
            .map_err(|_| Error::invalid("a commit larger than 4 GiB cannot be journaled"))?;
        let crc = checksum(lsn, &self.buf[HEADER..]);
        self.buf[0..4].copy_from_slice(&payload_len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        self.buf[8..16].copy_from_slice(&lsn.to_le_bytes());
        let start = self.end;
        if start + total > self.allocated {
            self.grow(start + total)?;
        }
        if let Err(e) = write_at(&self.file, &self.buf, start) {
            // The record may be whole in the page cache even though its sync failed: its header
            // is zeroed (best effort) so that no replay applies a write reported as failed.
            let _ = write_at(&self.file, &[0u8; HEADER], start);
            return Err(Error::io(
                format!("write the journal {}", self.path.display()),
                &e,
            ));
        }
        self.end = start + total;
        self.last_lsn = lsn;
        self.pending = true;
        self.last_start = Some(start);
        Ok(Some(lsn))
    }

    /// Extends the file with zeros to hold `needed` bytes (a chunk at a time, so that most syncs
    /// write no metadata), without syncing: the record's sync that follows covers it. No room on
    /// the disk fails this write with a typed error, and nothing is written.
    fn grow(&mut self, needed: u64) -> Result<()> {
        let target = needed
            .max(self.allocated + GROWTH)
            .min(self.capacity.max(needed));
        let zeros = vec![0u8; (target - self.allocated) as usize];
        let mut file = &self.file;
        file.seek(SeekFrom::Start(self.allocated))
            .and_then(|_| file.write_all(&zeros))
            .map_err(|e| {
                // A partial extension is zeros too: only the length counted here is trusted.
                Error::io(format!("extend the journal {}", self.path.display()), &e)
            })?;
        self.allocated = target;
        Ok(())
    }

    /// Takes back the last record appended, because the engine failed to apply it: its header
    /// is zeroed and synced, so that no replay applies it. If this fails too, the record may be
    /// applied at the next open, and the error says so.
    pub fn revoke(&mut self) -> Result<()> {
        let Some(start) = self.last_start.take() else {
            return Ok(());
        };
        write_at(&self.file, &[0u8; HEADER], start).map_err(|e| {
            Error::io(
                format!(
                    "revoke a write the engine refused from the journal {} (it may be \
                         applied when the database is next opened)",
                    self.path.display()
                ),
                &e,
            )
        })?;
        self.end = start;
        self.last_lsn -= 1;
        Ok(())
    }

    /// Whether records were written since the last checkpoint (the engine's durable state lacks
    /// them until the next).
    pub fn pending(&self) -> bool {
        self.pending
    }

    /// The engine holds every record up to [`Journal::last_lsn`] durably: the next record goes
    /// to the journal's beginning.
    pub fn checkpointed(&mut self) {
        self.end = 0;
        self.pending = false;
        self.last_start = None;
    }
}

/// Writes `bytes` at `offset` and syncs the file's data (not its metadata: the file does not
/// grow).
fn write_at(mut file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)?;
    file.sync_data()
}

/// The records after `applied` in `bytes`, in order: the run of valid records from the start
/// whose LSNs increase by one, less those the engine holds; and where that run ends.
fn replay(bytes: &[u8], applied: u64) -> Result<Replayed> {
    let mut records = Vec::new();
    let mut at = 0usize;
    let mut previous: Option<u64> = None;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let lsn = u64::from_le_bytes([
            header[8], header[9], header[10], header[11], header[12], header[13], header[14],
            header[15],
        ]);
        if len == 0 && crc == 0 && lsn == 0 {
            break;
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if checksum(lsn, payload) != crc || previous.is_some_and(|p| lsn != p + 1) {
            // A torn last record, or a record of an earlier pass.
            break;
        }
        previous = Some(lsn);
        if lsn > applied {
            if records.is_empty() && lsn != applied + 1 {
                return Err(Error::corruption(format!(
                    "the journal continues at record {lsn}, but the engine holds records up to \
                     {applied} only: records in between are missing"
                )));
            }
            let (ranges, ops) = decode(payload).ok_or_else(|| {
                Error::corruption(format!(
                    "journal record {lsn} passes its checksum but cannot be decoded"
                ))
            })?;
            records.push(Record { lsn, ranges, ops });
        }
        at += HEADER + len;
    }
    Ok(Replayed {
        records,
        run_end: at as u64,
        run_last: previous,
    })
}

/// What [`replay`] found.
struct Replayed {
    /// The records after the engine's LSN.
    records: Vec<Record>,
    /// Where the run of valid records ends, and the LSN of its last record.
    run_end: u64,
    run_last: Option<u64>,
}

fn checksum(lsn: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&lsn.to_le_bytes()), payload)
}

// The payload: u32 range count, each range as two bounds; u32 op count, each op as a tag (0 put,
// 1 delete) and its key (and value). A bound is a tag (0 unbounded, 1 included, 2 excluded) and,
// when bounded, its key. Byte strings are a u32 length and the bytes.

fn encode(buf: &mut Vec<u8>, ranges: &[Range], ops: &[BatchOp]) {
    put_len(buf, ranges.len());
    for range in ranges {
        put_bound(buf, range.lower());
        put_bound(buf, range.upper());
    }
    put_len(buf, ops.len());
    for op in ops {
        match op {
            BatchOp::Put { key, value } => {
                buf.push(0);
                put_bytes(buf, key);
                put_bytes(buf, value);
            }
            BatchOp::Del { key } => {
                buf.push(1);
                put_bytes(buf, key);
            }
        }
    }
}

fn put_len(buf: &mut Vec<u8>, len: usize) {
    // Lengths come from one commit, bounded by the engine thread's group size (64 MiB).
    buf.extend_from_slice(&(len as u32).to_le_bytes());
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_len(buf, bytes.len());
    buf.extend_from_slice(bytes);
}

fn put_bound(buf: &mut Vec<u8>, bound: Bound<&[u8]>) {
    match bound {
        Bound::Unbounded => buf.push(0),
        Bound::Included(key) => {
            buf.push(1);
            put_bytes(buf, key);
        }
        Bound::Excluded(key) => {
            buf.push(2);
            put_bytes(buf, key);
        }
    }
}

/// Reads a payload; `None` if it is not one.
fn decode(payload: &[u8]) -> Option<(Vec<Range>, Vec<BatchOp>)> {
    let mut reader = Reader(payload);
    let mut ranges = Vec::new();
    for _ in 0..reader.len()? {
        let mut range = Range::all();
        match reader.bound()? {
            Bound::Unbounded => {}
            Bound::Included(key) => range.gte = Some(key),
            Bound::Excluded(key) => range.gt = Some(key),
        }
        match reader.bound()? {
            Bound::Unbounded => {}
            Bound::Included(key) => range.lte = Some(key),
            Bound::Excluded(key) => range.lt = Some(key),
        }
        ranges.push(range);
    }
    let mut ops = Vec::new();
    for _ in 0..reader.len()? {
        match reader.byte()? {
            0 => {
                let key = reader.bytes()?;
                let value = reader.bytes()?;
                ops.push(BatchOp::Put { key, value });
            }
            1 => ops.push(BatchOp::Del {
                key: reader.bytes()?,
            }),
            _ => return None,
        }
    }
    reader.0.is_empty().then_some((ranges, ops))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn len(&mut self) -> Option<usize> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_le_bytes(*head) as usize)
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.len()?;
        let (head, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(head.to_vec())
    }

    fn bound(&mut self) -> Option<Bound<Vec<u8>>> {
        match self.byte()? {
            0 => Some(Bound::Unbounded),
            1 => Some(Bound::Included(self.bytes()?)),
            2 => Some(Bound::Excluded(self.bytes()?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
