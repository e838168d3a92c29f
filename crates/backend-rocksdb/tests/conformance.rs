//! The shared behaviour suite and the engine contract (rave-conformance) on the RocksDB engine,
//! opened directly.

use rave_backend_rocksdb::RocksDbBackend;
use rave_conformance::BackendHarness;

rave_conformance::suite!(rocksdb, BackendHarness::new(RocksDbBackend));
rave_conformance::backend_suite!(rocksdb_contract, RocksDbBackend);
