//! The configuration and identity the proxy runs with: read from the
//! mounted ConfigMap and Secret at start and whenever their directories
//! change (Kubernetes swaps a symlink), and taken from the API watch of the
//! same objects while it is live (`watch`). An update that does not parse is
//! rejected: the last good one stays in force, a log line and a metric say so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use plexus_config::ProxyConfig;
use plexus_config::sidecar::{CA_CERT_KEY, CONFIG_KEY, TLS_CERT_KEY, TLS_KEY_KEY};

use crate::balance::{Cluster, Clusters};
use crate::client_certs::ClientCertificates;
use crate::policy;
use crate::routing::{Resolved, Table};
use crate::telemetry::Metrics;
use crate::tls::{Tls, parse_identity};

/// A configuration in force: the routing table compiled from it, the
/// live balance state of its clusters, and this pod's inbound policy.
#[derive(Debug)]
pub struct Snapshot {
    pub table: Table,
    pub clusters: Clusters,
    pub inbound: Arc<policy::Inbound>,
}

impl Snapshot {
    pub fn config(&self) -> &Arc<ProxyConfig> {
        &self.table.config
    }

    /// The live cluster at a routing table's cluster index.
    pub fn cluster(&self, index: usize) -> Option<&Arc<Cluster>> {
        self.clusters.get(index)
    }
}

#[derive(Default)]
struct Current {
    /// The configuration, compiled, with its balance state.
    snapshot: Option<Arc<Snapshot>>,
    /// SHA-256 of the configuration as mounted, hex: its version.
    config_version: Option<String>,
    config_bytes: Vec<u8>,
    tls: Option<Arc<Tls>>,
    identity_bytes: Vec<u8>,
    /// What the mounted files held when last read.
    config_file: Vec<u8>,
    identity_file: Vec<u8>,
}

/// The hex SHA-256 of `bytes`.
fn digest(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct ProxyState {
    pub config_dir: PathBuf,
    pub identity_dir: PathBuf,
    pub metrics: Arc<Metrics>,
    /// `/ns/<namespace>/sa/<account>`: the identity a certificate must
    /// carry (any trust domain), when the pod's account is known.
    expected_identity: Option<String>,
    /// The pod's labels: policies and routes select workloads by them.
    labels: BTreeMap<String, String>,
    current: RwLock<Current>,
    /// What the proxy's DNS lookups found for the configuration's names
    /// (`dns`).
    resolved: RwLock<Resolved>,
    /// Counts the updates of `resolved`.
    resolved_updates: std::sync::atomic::AtomicU64,
    /// Wakes the DNS refresh when a configuration needs other names.
    pub names_changed: tokio::sync::Notify,
    draining: AtomicBool,
    api_config: AtomicBool,
    api_identity: AtomicBool,
    /// MUTUAL origination's client certificates, which `watch` reads.
    pub client_certificates: Arc<ClientCertificates>,
}

impl ProxyState {
    pub fn new(config_dir: PathBuf, identity_dir: PathBuf, metrics: Arc<Metrics>) -> Self {
        Self {
            config_dir,
            identity_dir,
            metrics,
            expected_identity: None,
            labels: BTreeMap::new(),
            current: RwLock::default(),
            resolved: RwLock::default(),
            resolved_updates: std::sync::atomic::AtomicU64::new(0),
            names_changed: tokio::sync::Notify::new(),
            draining: AtomicBool::new(false),
            api_config: AtomicBool::new(false),
            api_identity: AtomicBool::new(false),
            client_certificates: Arc::default(),
        }
    }

    /// Refuses certificates for another identity than ServiceAccount
    /// `account` of `namespace`.
    pub fn expect_identity(mut self, namespace: &str, account: &str) -> Self {
        self.expected_identity = Some(format!("/ns/{namespace}/sa/{account}"));
        self
    }

    /// The pod's labels, which its policies are selected by.
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    pub fn config(&self) -> Option<Arc<ProxyConfig>> {
        self.snapshot().map(|s| s.config().clone())
    }

    /// The configuration in force, compiled, with its balance state.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.read().ok().and_then(|c| c.snapshot.clone())
    }

    /// The version (content digest) of the configuration in force.
    pub fn config_version(&self) -> Option<String> {
        self.current
            .read()
            .ok()
            .and_then(|c| c.config_version.clone())
    }

    /// The TLS side of the current certificate.
    pub fn tls(&self) -> Option<Arc<Tls>> {
        self.current.read().ok().and_then(|c| c.tls.clone())
    }

    /// This proxy's SPIFFE ID, "" before it has a certificate.
    pub fn own_identity(&self) -> String {
        self.tls().map(|t| t.id.clone()).unwrap_or_default()
    }

    /// Why the proxy is not ready, if it is not.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.draining.load(Ordering::Relaxed) {
            Some("shutting down")
        } else if self.config().is_none() {
            Some("no configuration yet")
        } else if self.tls().is_none() {
            Some("no certificate yet")
        } else {
            None
        }
    }

    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Reads the mounted files again; what changed and parses replaces
    /// what was, unless the API watch of that object is live (it sees
    /// updates first; the kubelet refreshes the files a minute or so later,
    /// and a file is then older than what is in force).
    pub fn reload(&self) {
        let path = self.config_dir.join(CONFIG_KEY);
        // Not there (yet): the ConfigMap volume is optional.
        if let Ok(bytes) = std::fs::read(&path)
            && self.file_changed(|c| &mut c.config_file, &bytes)
            && !self.api_config.load(Ordering::Relaxed)
        {
            self.apply_config(bytes, &path.display().to_string());
        }
        let read = |name: &str| std::fs::read(self.identity_dir.join(name));
        if let (Ok(cert), Ok(key), Ok(ca)) =
            (read(TLS_CERT_KEY), read(TLS_KEY_KEY), read(CA_CERT_KEY))
            && self.file_changed(
                |c| &mut c.identity_file,
                &[cert.as_slice(), &key, &ca].concat(),
            )
            && !self.api_identity.load(Ordering::Relaxed)
        {
            self.apply_identity(&cert, &key, &ca, &self.identity_dir.display().to_string());
        }
    }

    /// Whether a file's content differs from when it was last read.
    fn file_changed(&self, field: impl Fn(&mut Current) -> &mut Vec<u8>, bytes: &[u8]) -> bool {
        let Ok(mut current) = self.current.write() else {
            return false;
        };
        let last = field(&mut current);
        if last.as_slice() == bytes {
            return false;
        }
        *last = bytes.to_vec();
        true
    }

    /// Whether the API watch of the ConfigMap (`config`) or the Secret is
    /// live: while it is, the mounted file is not read.
    pub fn set_api_live(&self, config: bool, live: bool) {
        let flag = if config {
            &self.api_config
        } else {
            &self.api_identity
        };
        flag.store(live, Ordering::Relaxed);
    }

    /// Takes a configuration (gzip-compressed JSON, as in the ConfigMap)
    /// from `origin` if it differs from the one in force and compiles; a
    /// bad one is rejected and the last good one stays.
    pub fn apply_config(&self, bytes: Vec<u8>, origin: &str) {
        if self.current.read().is_ok_and(|c| c.config_bytes == bytes) {
            return;
        }
        let previous = self.snapshot();
        let updates = self.resolved_updates.load(Ordering::SeqCst);
        let compiled = ProxyConfig::from_gzip(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                let inbound = policy::Inbound::new(
                    &config,
                    &self.labels,
                    previous.as_ref().map(|s| &*s.inbound),
                )?;
                let resolved = self.resolved.read().map(|r| r.clone()).unwrap_or_default();
                let table = Table::compile(Arc::new(config), &resolved, &self.client_certificates)
                    .map_err(|e| e.to_string())?;
                Ok((table, inbound))
            });
        match compiled {
            Ok((table, inbound)) => {
                let version = digest(&bytes);
                tracing::info!(services = table.config.services.len(), %version, origin,
                    "configuration loaded");
                self.metrics.reload("config", "loaded");
                self.client_certificates
                    .want(mutual_credentials(&table.config));
                let names_changed = previous
                    .as_ref()
                    .is_none_or(|p| p.table.names() != table.names());
                if let Ok(mut current) = self.current.write() {
                    let previous = current.snapshot.as_ref().map(|s| &s.clusters);
                    let clusters = Clusters::new(&table, previous, &self.metrics.resilience);
                    current.snapshot = Some(Arc::new(Snapshot {
                        table,
                        clusters,
                        inbound: Arc::new(inbound),
                    }));
                    current.config_version = Some(version);
                    current.config_bytes = bytes;
                }
                if names_changed {
                    self.names_changed.notify_one();
                }
                // Names resolved while it compiled: compiled again with them.
                if self.resolved_updates.load(Ordering::SeqCst) != updates {
                    let resolved = self.resolved.read().map(|r| r.clone()).unwrap_or_default();
                    self.set_resolved(resolved);
                }
            }
            Err(error) => {
                tracing::error!(%error, origin,
                    "configuration rejected; the last good one stays in force");
                self.metrics.reload("config", "rejected");
                if let Ok(mut current) = self.current.write() {
                    current.config_bytes = bytes; // Not parsed again until it changes.
                }
            }
        }
    }

    /// Takes what the proxy's DNS lookups found: the configuration in
    /// force is compiled again with it (its balance state kept).
    pub fn set_resolved(&self, resolved: Resolved) {
        if let Ok(mut r) = self.resolved.write() {
            r.clone_from(&resolved);
        }
        self.resolved_updates.fetch_add(1, Ordering::SeqCst);
        // Under the lock: a configuration applied meanwhile is compiled
        // again too, whichever names it was compiled with.
        let Ok(mut current) = self.current.write() else {
            return;
        };
        let Some(snapshot) = current.snapshot.clone() else {
            return;
        };
        match Table::compile(
            snapshot.table.config.clone(),
            &resolved,
            &self.client_certificates,
        ) {
            Ok(table) => {
                let clusters =
                    Clusters::new(&table, Some(&snapshot.clusters), &self.metrics.resilience);
                current.snapshot = Some(Arc::new(Snapshot {
                    table,
                    clusters,
                    inbound: snapshot.inbound.clone(),
                }));
            }
            Err(error) => {
                tracing::error!(%error, "the configuration does not compile with the names resolved");
            }
        }
    }

    /// Takes a certificate, its key and the trust bundle (PEM, as in the
    /// identity Secret) from `origin` if they differ from those in force and
    /// can serve; a bad one is rejected and the last good one stays.
    pub fn apply_identity(&self, cert: &[u8], key: &[u8], ca: &[u8], origin: &str) {
        let bytes = [cert, key, ca].concat();
        if self.current.read().is_ok_and(|c| c.identity_bytes == bytes) {
            return;
        }
        let tls = parse_identity(cert, key, ca)
            .and_then(|identity| Tls::new(&identity).map_err(|e| e.to_string()))
            .and_then(|tls| match &self.expected_identity {
                Some(expected) if !tls.id.ends_with(expected.as_str()) => Err(format!(
                    "the certificate is for {}, not this pod's ServiceAccount ({expected})",
                    tls.id
                )),
                _ => Ok(tls),
            });
        match tls {
            Ok(tls) => {
                tracing::info!(id = %tls.id, origin, "certificate loaded");
                self.metrics.reload("identity", "loaded");
                if let Ok(mut current) = self.current.write() {
                    current.tls = Some(Arc::new(tls));
                    current.identity_bytes = bytes;
                }
            }
            Err(error) => {
                tracing::error!(%error, origin,
                    "certificate rejected; the last good one stays in force");
                self.metrics.reload("identity", "rejected");
                if let Ok(mut current) = self.current.write() {
                    current.identity_bytes = bytes;
                }
            }
        }
    }
}

/// The Secrets whose client certificates MUTUAL origination presents.
fn mutual_credentials(config: &ProxyConfig) -> std::collections::BTreeSet<String> {
    config
        .services
        .iter()
        .flat_map(plexus_config::Service::client_tls)
        .filter(|tls| tls.mode == plexus_config::ClientTlsMode::Mutual)
        .filter_map(|tls| tls.credential_name.clone())
        .collect()
}
