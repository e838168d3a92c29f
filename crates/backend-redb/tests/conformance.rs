//! The shared behaviour suite and the engine contract (rave-conformance) on the redb engine,
//! opened directly.

use rave_backend_redb::RedbBackend;
use rave_conformance::BackendHarness;

rave_conformance::suite!(redb, BackendHarness::new(RedbBackend));
rave_conformance::backend_suite!(redb_contract, RedbBackend);
