//! The shared behaviour suite (rave-conformance) on a one-member etcd started by the test,
//! each test on its own cluster and its own namespaces.

use std::path::Path;

use async_trait::async_trait;
use rave_api::{Capabilities, KvStore, OpenOptions, Result};
use rave_backend_etcd::testing::EtcdCluster;
use rave_backend_etcd::{EtcdBackend, EtcdOptions};
use rave_conformance::{BackendHarness, Harness};

/// The suite's harness on a cluster that lives as long as the harness.
struct EtcdHarness {
    inner: BackendHarness<EtcdBackend>,
    _cluster: EtcdCluster,
}

impl EtcdHarness {
    fn new() -> Self {
        let cluster = EtcdCluster::start(1).expect("start etcd (scripts/deps etcd installs it)");
        let options = EtcdOptions {
            max_request_bytes: cluster.options().max_request_bytes,
            max_txn_ops: cluster.options().max_txn_ops,
            ..EtcdOptions::default()
        };
        let backend = EtcdBackend::new(cluster.endpoints(), "conformance").with_options(options);
        EtcdHarness {
            inner: BackendHarness::with_options(backend, OpenOptions::default()),
            _cluster: cluster,
        }
    }
}

#[async_trait]
impl Harness for EtcdHarness {
    fn name(&self) -> String {
        "etcd (1 member)".into()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn open(&self, path: &Path) -> Result<Box<dyn KvStore>> {
        self.inner.open(path).await
    }
}

rave_conformance::suite!(etcd, EtcdHarness::new());
