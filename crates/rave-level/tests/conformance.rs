//! rave's shared behaviour suite through the protocol: each store under test is a [`Guest`]
//! whose host serves an in-memory engine over an in-process byte stream. Every operation of
//! every test is encoded, framed, decoded and answered by the host, so the guest and the host
//! together must behave like the engine itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rave_api::{Backend, Capabilities, KvStore, MemoryBackend, OpenOptions, Result};
use rave_conformance::Harness;
use rave_level::{Guest, GuestOptions, HostOptions};
use tokio_util::sync::CancellationToken;

/// The stores live as long as the harness, so a test's reopen finds its data.
#[derive(Default)]
struct Wire {
    stores: Mutex<HashMap<PathBuf, Arc<dyn KvStore>>>,
}

#[async_trait]
impl Harness for Wire {
    fn name(&self) -> String {
        "memory via many-level".into()
    }

    fn capabilities(&self) -> Capabilities {
        // Persistent while the harness lives; no exactly-once records, no change feed.
        Capabilities::full()
            .with_exactly_once(false)
            .with_watch(false)
    }

    async fn open(&self, path: &Path) -> Result<Box<dyn KvStore>> {
        let store = {
            let mut stores = self.stores.lock().unwrap();
            match stores.get(path) {
                Some(store) => store.clone(),
                None => {
                    let store: Arc<dyn KvStore> =
                        Arc::new(MemoryBackend.open(path, &OpenOptions::default())?);
                    stores.insert(path.to_path_buf(), store.clone());
                    store
                }
            }
        };
        let (guest_end, host_end) = tokio::io::duplex(64 * 1024);
        tokio::spawn(rave_level::serve_stream(
            host_end,
            store,
            HostOptions::default(),
            CancellationToken::new(),
        ));
        Ok(Box::new(Guest::new(guest_end, GuestOptions::default())))
    }
}

/// Tests that do not apply: a many-level leader keeps no commit sequence (the guest's
/// `sequence` is `Unsupported`, as documented), and nothing in the suite's capabilities says so.
const NOT_APPLICABLE: &[&str] = &["commit_sequence_grows"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_suite_through_the_protocol() {
    let harness = Wire::default();
    let mut failed = Vec::new();
    let mut passed = 0;
    for test in rave_conformance::tests() {
        if NOT_APPLICABLE.contains(&test.name) {
            continue;
        }
        let report = rave_conformance::run_test(&harness, *test).await;
        match report.result {
            Ok(_) => passed += 1,
            Err(why) => failed.push(format!("{}: {why}", test.name)),
        }
    }
    assert!(
        failed.is_empty(),
        "{} passed; failed:\n{}",
        passed,
        failed.join("\n")
    );
    assert!(passed > 20, "only {passed} tests ran");
}
