//! What the resilience machinery did: outlier ejections and returns,
//! ejections the cluster could not afford, requests and retries the circuit
//! breakers refused, and retries not made (with why).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use std::net::SocketAddr;

use super::budget::LogBudget;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EjectionLabels {
    /// `<namespace>/<name>:<port>[/<subset>]`.
    pub cluster: String,
    /// The endpoint's address.
    pub endpoint: String,
    /// consecutive-5xx, consecutive-gateway-errors or
    /// consecutive-local-origin-failures.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub cluster: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterReasonLabels {
    pub cluster: String,
    /// Which limit: max-requests, max-pending-requests, max-retries,
    /// max-ejection-percent; or why a retry was not made.
    pub reason: &'static str,
}

/// The families (cheap to clone: each shares its series).
#[derive(Clone, Debug, Default)]
pub struct ResilienceMetrics {
    pub ejections: Family<EjectionLabels, Counter>,
    pub returns: Family<EndpointLabels, Counter>,
    pub not_ejected: Family<ClusterReasonLabels, Counter>,
    pub overflow: Family<ClusterReasonLabels, Counter>,
    pub retries_skipped: Family<ClusterReasonLabels, Counter>,
    /// Overflow lines.
    log: LogBudget,
}

impl ResilienceMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection, by cluster, endpoint and reason",
            self.ejections.clone(),
        );
        registry.register(
            "outlier_returns",
            "Ejected endpoints whose ejection time ended",
            self.returns.clone(),
        );
        registry.register(
            "outlier_not_ejected",
            "Ejections not made because the cluster had ejected its maximum share",
            self.not_ejected.clone(),
        );
        registry.register(
            "overflow",
            "Requests and retries refused by a connection pool limit",
            self.overflow.clone(),
        );
        registry.register(
            "retries_skipped",
            "Retryable attempts not retried, and why (body-too-large, max-retries)",
            self.retries_skipped.clone(),
        );
    }

    pub fn ejected(&self, cluster: &str, endpoint: SocketAddr, reason: &'static str) {
        self.ejections
            .get_or_create(&EjectionLabels {
                cluster: cluster.to_owned(),
                endpoint: endpoint.to_string(),
                reason,
            })
            .inc();
    }

    pub fn returned(&self, cluster: &str, endpoint: SocketAddr) {
        self.returns
            .get_or_create(&EndpointLabels {
                cluster: cluster.to_owned(),
                endpoint: endpoint.to_string(),
            })
            .inc();
    }

    pub fn not_ejected(&self, cluster: &str, reason: &'static str) {
        self.not_ejected
            .get_or_create(&ClusterReasonLabels {
                cluster: cluster.to_owned(),
                reason,
            })
            .inc();
    }

    /// Counts and logs a refused request or retry.
    pub fn overflow(&self, cluster: &str, limit: &'static str) {
        if let Some(dropped) = self.log.may_log() {
            tracing::warn!(cluster, limit, dropped, "circuit breaker overflow");
        }
        self.overflow
            .get_or_create(&ClusterReasonLabels {
                cluster: cluster.to_owned(),
                reason: limit,
            })
            .inc();
    }

    pub fn retry_skipped(&self, cluster: &str, reason: &'static str) {
        self.retries_skipped
            .get_or_create(&ClusterReasonLabels {
                cluster: cluster.to_owned(),
                reason,
            })
            .inc();
    }
}
