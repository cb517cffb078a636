//! The operator's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
