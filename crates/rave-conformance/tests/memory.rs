//! The suite on the reference in-memory engine.

use rave_api::{Backend, MemoryBackend};
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

/// The memory engine, claiming concurrent reads it does not have: its point reads queue on the
/// engine thread.
struct ClaimsConcurrentReads;

impl Backend for ClaimsConcurrentReads {
    type Store = rave_api::engine_thread::EngineStore;

    fn name(&self) -> &'static str {
        "memory claiming concurrent reads"
    }

    fn capabilities(&self) -> rave_api::Capabilities {
        rave_api::Capabilities::in_memory()
            .with_concurrent_reads(true)
            .with_exactly_once(true)
    }

    fn open(
        &self,
        path: &std::path::Path,
        options: &rave_api::OpenOptions,
    ) -> rave_api::Result<Self::Store> {
        MemoryBackend.open(path, options)
    }
}

/// The shared-read tests catch an engine whose reads wait for the engine thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_concurrent_reads_claim_fails() {
    let harness = BackendHarness::new(ClaimsConcurrentReads);
    let test =
        rave_conformance::backend_test("shared_point_reads_complete_on_their_first_poll").unwrap();
    let report = rave_conformance::run_backend_test(&harness, test).await;
    let failure = report.failure().expect("the claim went unnoticed");
    assert!(failure.contains("first poll"), "{failure}");
}

/// The check of a leftover shared reader does not apply to an engine without one.
#[test]
fn a_leftover_reader_check_skips_an_engine_without_a_shared_reader() {
    let outcome = rave_conformance::shared_reads::leftover_reader_holds_nothing("memory", || {
        Ok(rave_api::MemoryEngine::default())
    });
    assert!(
        matches!(outcome, Ok(rave_conformance::Outcome::Skipped(_))),
        "{outcome:?}"
    );
}
