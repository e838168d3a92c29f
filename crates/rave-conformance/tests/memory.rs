//! The suite on the reference in-memory engine.

use rave_api::MemoryBackend;
use rave_conformance::BackendHarness;

rave_conformance::suite!(memory, BackendHarness::new(MemoryBackend));

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
