//! The shared behaviour suite and the engine contract (rave-conformance) on the LevelDB engine,
//! opened directly.

use rave_backend_leveldb::LevelDbBackend;
use rave_conformance::BackendHarness;

rave_conformance::suite!(leveldb, BackendHarness::new(LevelDbBackend));
rave_conformance::backend_suite!(leveldb_contract, LevelDbBackend);
