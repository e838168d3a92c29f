//! The suite on the reference in-memory engine.

use rave_api::MemoryBackend;
use rave_conformance::BackendHarness;

rave_conformance::suite!(memory, BackendHarness::new(MemoryBackend));
rave_conformance::backend_suite!(memory_contract, MemoryBackend);

/// The programmatic runner gives the same verdicts, and every test of the list ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_reports_every_test() {
    let report = rave_conformance::run_all(&BackendHarness::new(MemoryBackend)).await;
    assert!(report.success(), "{report}");
    assert_eq!(report.tests.len(), rave_conformance::tests().len());
    // Memory is not persistent: exactly the reopen test does not apply.
    assert_eq!(report.skipped(), 1, "{report}");
    assert!(report.to_string().contains("memory: "), "{report}");
}

/// The engine contract is about the directory, which the memory engine ignores: every test
/// runs, and is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_contract_skips_a_non_persistent_engine() {
    let report = rave_conformance::run_backend_suite(&BackendHarness::new(MemoryBackend)).await;
    assert!(report.success(), "{report}");
    assert_eq!(report.tests.len(), rave_conformance::backend_tests().len());
    assert_eq!(report.skipped(), report.tests.len(), "{report}");
}
