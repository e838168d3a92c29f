//! Table-file reads that cannot fail silently.
//!
//! rusty-leveldb verifies each table block's checksum when it reads it (table_block.rs
//! `read_table_block`), but its iterators drop the error: a table iterator whose next block
//! fails to load skips to the block after it (table_reader.rs `TableIterator::advance`, "try next
//! block, this might be corruption"), a failed `prev` or `seek` just ends it, and a table file
//! that fails to open ends the level's iterator (version.rs `VersionIter`). A scan of a damaged
//! database then succeeds with entries missing, and a compaction writes the survivors out as if
//! they were all. There is no status to ask afterwards (`LdbIterator` has none).
//!
//! So rave's environment hands rusty-leveldb a [`CheckedTable`] for every table file, which
//! checks each read the way the table reader will and notes what fails in [`Files`]; the engine
//! asks after every operation ([`Files::take_damage`]) and fails it with that error.
//!
//! The reads of a table reader are of three shapes, and a read of a sound file is always one of
//! them: the footer (the last [`FOOTER_LEN`] bytes, ending in the table magic); a block with its
//! trailer (`data, type byte, masked crc32c of data + type`, read whole by `read_table_block`);
//! the filter block without its trailer (`read_filter_block`), which the trailer right after it
//! covers (rusty-leveldb never checks that one; this does).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use rave_api::Error;
use rusty_leveldb::Result;
use rusty_leveldb::env::RandomAccess;

use crate::env::Files;
use crate::error::{self, Op};

/// The table footer: two block handles padded to 40 bytes, then the magic number.
pub(crate) const FOOTER_LEN: usize = 48;
/// LevelDB's table magic number 0xdb4775248b80fb57, little-endian, as it ends every table.
const MAGIC: [u8; 8] = 0xdb47_7524_8b80_fb57_u64.to_le_bytes();
/// A block's trailer: the compression type byte and the masked crc32c.
const TRAILER_LEN: usize = 5;
/// LevelDB's crc mask (log.rs `mask_crc`): stored checksums are masked.
const MASK_DELTA: u32 = 0xa282_ead8;

/// A table file whose reads are checked; what fails is noted in the shared [`Files`].
pub(crate) struct CheckedTable {
    file: Box<dyn RandomAccess>,
    size: usize,
    path: PathBuf,
    files: Rc<Files>,
}

impl CheckedTable {
    pub(crate) fn new(
        file: Box<dyn RandomAccess>,
        size: usize,
        path: &Path,
        files: Rc<Files>,
    ) -> Self {
        CheckedTable {
            file,
            size,
            path: path.to_path_buf(),
            files,
        }
    }

    /// What is wrong with `got`, read at `off` when `wanted` bytes were asked for.
    fn problem(&self, off: usize, got: &[u8], wanted: usize) -> Option<String> {
        if got.len() < wanted {
            return Some(format!(
                "a read of {wanted} bytes at {off} found only {} (the file ends at {})",
                got.len(),
                self.size
            ));
        }
        if off + wanted == self.size && wanted == FOOTER_LEN {
            return (got[FOOTER_LEN - MAGIC.len()..] != MAGIC)
                .then(|| "the footer lacks the table magic number".to_string());
        }
        if block_ok(got) {
            return None;
        }
        // The filter block, read without its trailer: the trailer follows.
        let mut trailer = [0u8; TRAILER_LEN];
        let read = self.file.read_at(off + wanted, &mut trailer).unwrap_or(0);
        if read == TRAILER_LEN && crc_matches(got, &trailer) {
            return None;
        }
        Some(format!(
            "the block of {wanted} bytes at {off} fails its checksum"
        ))
    }
}

impl RandomAccess for CheckedTable {
    fn read_at(&self, off: usize, dst: &mut [u8]) -> Result<usize> {
        match self.file.read_at(off, dst) {
            Ok(read) => {
                if let Some(problem) = self.problem(off, &dst[..read], dst.len()) {
                    self.files.note_damage(Error::corruption(format!(
                        "leveldb: the table file {} is damaged: {problem}",
                        self.path.display()
                    )));
                }
                Ok(read)
            }
            Err(status) => {
                let dir = self.path.parent().unwrap_or(&self.path);
                // Another table reader error rusty-leveldb would drop (an I/O error, say).
                self.files.note_damage(error::map(&status, Op::Read, dir));
                Err(status)
            }
        }
    }
}

/// Whether `block` is a block followed by its trailer, with a matching checksum.
fn block_ok(block: &[u8]) -> bool {
    block.len() >= TRAILER_LEN && {
        let (data, trailer) = block.split_at(block.len() - TRAILER_LEN);
        crc_matches(data, trailer.try_into().unwrap_or(&[0; TRAILER_LEN]))
    }
}

/// Whether `trailer` (type byte, masked crc32c) checks `data`.
fn crc_matches(data: &[u8], trailer: &[u8; TRAILER_LEN]) -> bool {
    let [kind, crc @ ..] = *trailer;
    let want = unmask(u32::from_le_bytes(crc));
    crc32c::crc32c_append(crc32c::crc32c(data), &[kind]) == want
}

fn unmask(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_right(17)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(crc: u32) -> u32 {
        crc.rotate_right(15).wrapping_add(MASK_DELTA)
    }

    #[test]
    fn checks_blocks_as_rusty_leveldb_writes_them() {
        let data = b"some block data";
        let mut block = data.to_vec();
        block.push(0);
        let crc = mask(crc32c::crc32c_append(crc32c::crc32c(data), &[0]));
        block.extend_from_slice(&crc.to_le_bytes());
        assert!(block_ok(&block));
        block[3] ^= 1;
        assert!(!block_ok(&block));
        assert!(!block_ok(b"abc"));
        assert_eq!(unmask(mask(0x1234_5678)), 0x1234_5678);
        assert_eq!(MAGIC, [0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb]);
    }
}
