//! The shared behaviour suite (rave-conformance) on the RocksDB engine, opened directly.

use rave_backend_rocksdb::RocksDbBackend;
use rave_conformance::BackendHarness;

rave_conformance::suite!(rocksdb, BackendHarness::new(RocksDbBackend));
