//! The journal's LSN held by the database: written in every commit, read at open to know which
//! journal records the file already holds (see [`rave_api::journal`]).

use std::path::Path;

use rave_api::{EngineOp, Result};
use redb::{Database, ReadableDatabase, TableDefinition, TableError};

use crate::error;

/// One entry: [`KEY`] → the LSN of the last journal record the database holds.
const TABLE: TableDefinition<&str, u64> = TableDefinition::new("rave.journal");
const KEY: &str = "lsn";

/// The LSN the database holds (0 for a file that never had a journal).
pub(crate) fn load(db: &Database, file: &Path) -> Result<u64> {
    let op = EngineOp::Open;
    let txn = db.begin_read().map_err(|e| error::map(e, op, file))?;
    let table = match txn.open_table(TABLE) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(error::map(e, op, file)),
    };
    let lsn = table.get(KEY).map_err(|e| error::map(e, op, file))?;
    Ok(lsn.map_or(0, |v| v.value()))
}

/// Records `lsn` in the write transaction `txn`.
pub(crate) fn store(txn: &redb::WriteTransaction, lsn: u64, file: &Path) -> Result<()> {
    let op = EngineOp::Write;
    let mut table = txn.open_table(TABLE).map_err(|e| error::map(e, op, file))?;
    table
        .insert(KEY, lsn)
        .map_err(|e| error::map(e, op, file))?;
    Ok(())
}
