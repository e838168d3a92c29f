//! Values stored with a checksum of their entry, checked on every read.
//!
//! redb checksums its pages, but only checks them when it repairs or is asked to
//! (`Database::check_integrity`, a walk of the whole file): a read of a damaged leaf returns
//! whatever bytes are there. So each value is stored followed by a crc32c of its entry (the
//! key's length, the key, the value), and a read whose entry does not match fails with
//! [`rave_api::ErrorKind::Corruption`]: damage to a value, to a key (an entry under another
//! key) or to the lengths that split a leaf into entries reads as an error, never as data.
//!
//! The checksummed entries live in their own table, [`TABLE`]. A file written before them has
//! its entries in [`LEGACY`]; [`migrate`] moves them over when the database opens, in the same
//! write transaction that removes the old table, so a crash leaves one table or the other.

use std::path::Path;

use rave_api::EngineOp;
use rave_api::{Error, Result};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
    WriteTransaction,
};

use crate::error;

/// The table: byte keys to values each followed by [`CHECKSUM_LEN`] bytes of checksum, ordered
/// by unsigned lexicographic byte order (redb's order for `&[u8]`).
pub(crate) const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rave.crc32c");

/// The table of files written before values had checksums: the same keys, bare values.
const LEGACY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rave");

/// The checksum after each value: crc32c, little-endian.
const CHECKSUM_LEN: usize = 4;

/// The checksum of the entry `key`, `value`. The key's length comes first, so that bytes moved
/// between key and value change it.
fn checksum(key: &[u8], value: &[u8]) -> u32 {
    let len = (key.len() as u64).to_le_bytes();
    let crc = crc32c::crc32c(&len);
    let crc = crc32c::crc32c_append(crc, key);
    crc32c::crc32c_append(crc, value)
}

/// Stores `value` under `key` in `table`, with its checksum.
pub(crate) fn insert(
    table: &mut redb::Table<&[u8], &[u8]>,
    key: &[u8],
    value: &[u8],
    file: &Path,
) -> Result<()> {
    // Written in place: no copy of the value is made.
    let mut slot = table
        .insert_reserve(key, value.len() + CHECKSUM_LEN)
        .map_err(|e| error::map(e, EngineOp::Write, file))?;
    let (stored, sum) = slot.as_mut().split_at_mut(value.len());
    stored.copy_from_slice(value);
    sum.copy_from_slice(&checksum(key, value).to_le_bytes());
    Ok(())
}

/// The value stored under `key`, checked against its checksum.
pub(crate) fn verified(key: &[u8], stored: &[u8], file: &Path) -> Result<Vec<u8>> {
    let damaged = || {
        Error::corruption(format!(
            "redb {}: the entry under key {} fails its checksum (the file is damaged)",
            file.display(),
            key.escape_ascii()
        ))
    };
    let at = stored.len().checked_sub(CHECKSUM_LEN).ok_or_else(damaged)?;
    let (value, sum) = stored.split_at(at);
    let sum: [u8; CHECKSUM_LEN] = sum.try_into().map_err(|_| damaged())?;
    if u32::from_le_bytes(sum) != checksum(key, value) {
        return Err(damaged());
    }
    Ok(value.to_vec())
}

/// Makes the database ready for use at open: creates [`TABLE`], so that reads on an empty
/// database find it, and [`migrate`]s a file written before checksums, in one durable commit.
pub(crate) fn prepare(db: &Database, file: &Path) -> Result<()> {
    let what = EngineOp::Open;
    // Every open but the first finds the table there and no old one: then there is nothing to
    // do, and a read transaction tells so without a durable commit (whose fsyncs were most of
    // the engine open in failovers under load).
    if is_ready(db, file)? {
        return Ok(());
    }
    let mut txn = db.begin_write().map_err(|e| error::map(e, what, file))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| error::map(e, what, file))?;
    txn.set_quick_repair(true);
    let moved = migrate(&txn, file)?;
    txn.open_table(TABLE)
        .map_err(|e| error::map(e, what, file))?;
    txn.commit().map_err(|e| error::map(e, what, file))?;
    if moved > 0 {
        tracing::info!(file = %file.display(), entries = moved, "redb: values given checksums");
    }
    Ok(())
}

/// Whether [`TABLE`] exists and [`LEGACY`] does not.
fn is_ready(db: &Database, file: &Path) -> Result<bool> {
    let what = EngineOp::Open;
    let txn = db.begin_read().map_err(|e| error::map(e, what, file))?;
    let mut table = false;
    for handle in txn.list_tables().map_err(|e| error::map(e, what, file))? {
        if handle.name() == LEGACY.name() {
            return Ok(false);
        }
        table |= handle.name() == TABLE.name();
    }
    Ok(table)
}

/// Moves the entries of a file written before checksums into [`TABLE`], with checksums, and
/// removes the old table, inside `txn` (the caller commits). Does nothing on a file without
/// the old table. Returns how many entries moved.
fn migrate(txn: &WriteTransaction, file: &Path) -> Result<u64> {
    let what = EngineOp::Open;
    let has_legacy = txn
        .list_tables()
        .map_err(|e| error::map(e, what, file))?
        .any(|table| table.name() == LEGACY.name());
    if !has_legacy {
        return Ok(0);
    }
    let mut moved = 0;
    {
        let legacy = txn
            .open_table(LEGACY)
            .map_err(|e| error::map(e, what, file))?;
        let mut table = txn
            .open_table(TABLE)
            .map_err(|e| error::map(e, what, file))?;
        for entry in legacy.iter().map_err(|e| error::map(e, what, file))? {
            let (key, value) = entry.map_err(|e| error::map(e, what, file))?;
            insert(&mut table, key.value(), value.value(), file)?;
            moved += 1;
        }
    }
    txn.delete_table(LEGACY)
        .map_err(|e| error::map(e, what, file))?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_entry_fails_its_checksum() {
        let file = Path::new("data.redb");
        let mut stored = b"value".to_vec();
        stored.extend_from_slice(&checksum(b"key", b"value").to_le_bytes());
        assert_eq!(verified(b"key", &stored, file).unwrap(), b"value");
        // Another key, a byte of the value, a byte moved from the key into the value, a cut.
        assert!(verified(b"kez", &stored, file).is_err());
        let mut flipped = stored.clone();
        flipped[1] ^= 1;
        assert!(verified(b"key", &flipped, file).is_err());
        let mut moved = b"yvalue".to_vec();
        moved.extend_from_slice(&checksum(b"key", b"value").to_le_bytes());
        assert!(verified(b"ke", &moved, file).is_err());
        assert!(verified(b"key", &stored[..3], file).is_err());
        let e = verified(b"key", &[], file).unwrap_err();
        assert_eq!(e.kind(), rave_api::ErrorKind::Corruption);
    }
}
