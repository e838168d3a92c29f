//! The shared behaviour suite through `Rave` on a three-member etcd cluster started by the
//! test (one cluster per test): every handle is `Direct` (no election on a shared backend), and
//! the suite passes unchanged. Needs the `etcd` feature and Debian's `etcd-server`
//! (`scripts/deps etcd protoc`).
#![cfg(feature = "etcd")]

use std::path::Path;

use async_trait::async_trait;
use rave::backends::EtcdBackend;
use rave::etcd::EtcdOptions;
use rave::etcd::testing::EtcdCluster;
use rave::{Backend, Capabilities, Error, KvStore, Rave, RaveOptions, Result, Role};
use rave_conformance::Harness;

/// `Rave` handles on a three-member cluster that lives as long as the harness.
struct RaveOnEtcd {
    backend: EtcdBackend,
    _cluster: EtcdCluster,
}

impl RaveOnEtcd {
    fn new() -> Self {
        let cluster = EtcdCluster::start(3).expect("start etcd (scripts/deps etcd installs it)");
        let options = EtcdOptions {
            max_request_bytes: cluster.options().max_request_bytes,
            max_txn_ops: cluster.options().max_txn_ops,
            ..EtcdOptions::default()
        };
        let backend = EtcdBackend::new(cluster.endpoints(), "rave").with_options(options);
        RaveOnEtcd {
            backend,
            _cluster: cluster,
        }
    }
}

#[async_trait]
impl Harness for RaveOnEtcd {
    fn name(&self) -> String {
        "rave on etcd (3 members)".into()
    }

    fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    async fn open(&self, path: &Path) -> Result<Box<dyn KvStore>> {
        let handle = Rave::open_with(self.backend.clone(), path, RaveOptions::default())?;
        let role = handle.ready().await?;
        if role != Role::Direct {
            return Err(Error::other(format!("a handle on etcd became {role}")));
        }
        Ok(Box::new(handle))
    }
}

rave_conformance::suite!(rave_on_etcd, RaveOnEtcd::new());

/// Two handles on one namespace, opened like two processes would: both `Direct`, each sees
/// the other's writes at once, and closing one leaves the other working (no leader to lose).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_share_a_namespace_directly() {
    let cluster = EtcdCluster::start(3).unwrap();
    let backend = EtcdBackend::new(cluster.endpoints(), "shared");
    let a = Rave::open_with(backend.clone(), "db", RaveOptions::default()).unwrap();
    let b = Rave::open_with(backend.clone(), "db", RaveOptions::default()).unwrap();
    assert_eq!(a.ready().await.unwrap(), Role::Direct);
    assert_eq!(b.ready().await.unwrap(), Role::Direct);
    assert!(
        !Path::new("db").exists(),
        "a shared backend's path is not a directory"
    );
    a.put(b"k", b"from a").await.unwrap();
    assert_eq!(b.get(b"k").await.unwrap(), Some(b"from a".to_vec()));
    a.close().await.unwrap();
    b.put(b"k", b"from b").await.unwrap();
    let other = Rave::open_with(backend, "other-db", RaveOptions::default()).unwrap();
    assert_eq!(
        other.get(b"k").await.unwrap(),
        None,
        "namespaces are separate"
    );
    b.close().await.unwrap();
    other.close().await.unwrap();
}
