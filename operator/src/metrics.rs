//! The operator's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of issued certificates.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuedLabels {
    /// `root`, `identity` or `webhook`.
    pub kind: String,
    /// Why it was issued (`Missing`, `Renewal`, `RootRotated`, `Corrupt`, ...).
    pub reason: String,
}

/// Labels of failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// What failed: `root-rotation`, `identity`, `webhook`, `mesh-status`.
    pub operation: String,
}

/// Labels of certificate expiry gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpiryLabels {
    /// `root` or `identity` or `webhook`.
    pub kind: String,
    /// The root's fingerprint prefix, or `namespace/serviceaccount`.
    pub name: String,
}

/// Labels of a resource kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind (`VirtualService`, `Pod`, ...).
    pub kind: String,
}

/// Labels of Kubernetes writes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `configmap`, `configmap-delete`, `status` or `event`.
    pub target: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Metrics of the configuration compiler.
#[derive(Clone)]
pub struct ConfigMetrics {
    /// Compile passes.
    pub reconciles: Counter,
    /// Passes that could not write everything.
    pub errors: Counter,
    /// Seconds per pass (compile and writes).
    pub duration: Histogram,
    /// Seconds of the pure compile.
    pub compile_duration: Histogram,
    /// Bytes of the largest configuration.
    pub largest_config_bytes: Gauge,
    /// Bytes of all configurations.
    pub config_bytes: Gauge,
    /// Objects indexed, by kind.
    pub objects: Family<KindLabels, Gauge>,
    /// Writes to the API server.
    pub writes: Family<WriteLabels, Counter>,
    /// Resources not accepted, by kind.
    pub rejected: Family<KindLabels, Gauge>,
}

impl Default for ConfigMetrics {
    fn default() -> Self {
        let buckets = || {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 16,
            ))
        };
        Self {
            reconciles: Counter::default(),
            errors: Counter::default(),
            duration: buckets(),
            compile_duration: buckets(),
            largest_config_bytes: Gauge::default(),
            config_bytes: Gauge::default(),
            objects: Family::default(),
            writes: Family::default(),
            rejected: Family::default(),
        }
    }
}

impl ConfigMetrics {
    /// Counts a write.
    pub fn wrote(&self, target: &str, ok: bool) {
        self.writes
            .get_or_create(&WriteLabels {
                target: target.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }
}

/// Every metric of the operator.
#[derive(Clone, Default)]
pub struct Metrics {
    /// Certificates issued.
    pub issued: Family<IssuedLabels, Counter>,
    /// Failures of rotations and reconciles.
    pub failures: Family<FailureLabels, Counter>,
    /// Expiry of each certificate, seconds since the epoch.
    pub expiry: Family<ExpiryLabels, Gauge<f64, AtomicU64>>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// The configuration compiler.
    pub config: ConfigMetrics,
}

impl Metrics {
    /// Registers the metrics under `plexus_`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let registry = registry.sub_registry_with_prefix("plexus");
        registry.register(
            "certificates_issued",
            "Certificates issued by the mesh's CA",
            metrics.issued.clone(),
        );
        registry.register(
            "ca_failures",
            "Failed root rotations, issues and status updates",
            metrics.failures.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When each root and identity certificate expires",
            metrics.expiry.clone(),
        );
        registry.register(
            "operator_leader",
            "1 while this replica is the leader",
            metrics.leader.clone(),
        );
        let c = &metrics.config;
        registry.register(
            "config_reconciles",
            "Configuration compile passes",
            c.reconciles.clone(),
        );
        registry.register(
            "config_reconcile_errors",
            "Compile passes that could not write everything",
            c.errors.clone(),
        );
        registry.register(
            "config_reconcile_duration_seconds",
            "Duration of a pass: compile and writes",
            c.duration.clone(),
        );
        registry.register(
            "config_compile_duration_seconds",
            "Duration of the pure compile",
            c.compile_duration.clone(),
        );
        registry.register(
            "config_largest_bytes",
            "Bytes of the largest proxy configuration",
            c.largest_config_bytes.clone(),
        );
        registry.register(
            "config_bytes",
            "Bytes of all proxy configurations",
            c.config_bytes.clone(),
        );
        registry.register(
            "config_objects_indexed",
            "Objects indexed by the compiler, by kind",
            c.objects.clone(),
        );
        registry.register(
            "config_writes",
            "Writes of ConfigMaps, statuses and Events",
            c.writes.clone(),
        );
        registry.register(
            "config_rejected_resources",
            "Resources with Accepted=False, by kind",
            c.rejected.clone(),
        );
        metrics
    }

    /// Counts an issued certificate.
    pub fn issued(&self, kind: &str, reason: &str) {
        self.issued
            .get_or_create(&IssuedLabels {
                kind: kind.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a failure.
    pub fn failed(&self, operation: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                operation: operation.into(),
            })
            .inc();
    }

    /// Records when a certificate expires.
    pub fn expires(&self, kind: &str, name: &str, not_after: std::time::SystemTime) {
        let seconds = not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        self.expiry
            .get_or_create(&ExpiryLabels {
                kind: kind.into(),
                name: name.into(),
            })
            .set(seconds);
    }

    /// Forgets a certificate that no longer exists.
    pub fn forget(&self, kind: &str, name: &str) {
        self.expiry.remove(&ExpiryLabels {
            kind: kind.into(),
            name: name.into(),
        });
    }
}
