//! The shared behaviour suite (rave-conformance) on the redb engine, opened directly.

use rave_backend_redb::RedbBackend;
use rave_conformance::BackendHarness;

rave_conformance::suite!(redb, BackendHarness::new(RedbBackend));
