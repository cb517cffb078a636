//! What every admission reads: namespace labels (a reflector), the injection
//! settings (from the `Mesh`), the serving certificate and the metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use plexus_crds::mesh::{MESH_NAME, Mesh, ProxyDefaults};

use crate::inject::InjectConfig;
use crate::metrics::Metrics;
use crate::tls::CertStore;

pub struct State {
    pub namespaces: Store<Namespace>,
    pub config: RwLock<InjectConfig>,
    pub certs: Arc<CertStore>,
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM: /readyz fails so that the Service stops sending
    /// reviews here, while the server keeps answering for a grace period.
    pub draining: std::sync::atomic::AtomicBool,
}

impl State {
    pub fn new(namespaces: Store<Namespace>, config: InjectConfig) -> Self {
        Self {
            namespaces,
            config: RwLock::new(config),
            certs: Arc::default(),
            metrics: Arc::default(),
            draining: Default::default(),
        }
    }

    /// The labels of `namespace`, empty when it is unknown.
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(&ObjectRef::new(namespace))
            .map(|ns| ns.labels().clone())
            .unwrap_or_default()
    }

    pub fn config(&self) -> InjectConfig {
        match self.config.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_proxy_defaults(&self, proxy: ProxyDefaults) {
        let mut config = match self.config.write() {
            Ok(config) => config,
            Err(poisoned) => poisoned.into_inner(),
        };
        if config.proxy != proxy {
            tracing::info!(image = %proxy.image, "proxy defaults from the Mesh");
            config.proxy = proxy;
        }
    }
}

/// A namespace reflector: the store, and the future that keeps it filled.
pub fn namespace_reflector(
    client: Client,
) -> (Store<Namespace>, impl std::future::Future<Output = ()>) {
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher::watcher(Api::<Namespace>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|event| async move {
        if let Err(error) = event {
            tracing::warn!(%error, "watching namespaces");
        }
    });
    (reader, stream)
}

/// Follows the `Mesh` named `default`: its proxy defaults are what pods
/// get; without it, the built-in defaults.
pub async fn follow_mesh(client: Client, state: Arc<State>) {
    let meshes: Api<Mesh> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={MESH_NAME}"));
    let mut events = watcher::watcher(meshes, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(mesh) | Event::InitApply(mesh)) => {
                state.set_proxy_defaults(mesh.spec.proxy.clone());
            }
            Ok(Event::Delete(_)) => state.set_proxy_defaults(ProxyDefaults::default()),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "watching the Mesh"),
        }
    }
}

/// Whether the API server runs native sidecars (Kubernetes 1.29 or later;
/// 1.28 has them only behind a feature gate).
pub async fn detect_native_sidecars(client: &Client) -> kube::Result<bool> {
    let version = client.apiserver_version().await?;
    let minor: u32 = version.minor.trim_end_matches('+').parse().unwrap_or(0);
    Ok(version.major == "1" && minor >= 29)
}
