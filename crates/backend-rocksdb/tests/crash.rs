//! Acknowledged writes to the RocksDB engine survive `kill -9` of the writing process.
//!
//! This one test runs twice: as the parent (a plain `cargo test`), and as the child the parent
//! starts from this same binary and kills mid-write (see `rave_conformance::crash`).

use rave_backend_rocksdb::RocksDbBackend;

#[test]
fn kill9_durability() {
    rave_conformance::crash::kill9_durability(RocksDbBackend, "kill9_durability");
}
