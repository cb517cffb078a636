//! The webhook's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// injected, skipped, failed (admitted unchanged) or invalid (HTTP 400).
    pub result: &'static str,
    /// Why: the skip reason, the failure's kind, or empty.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// loaded or rejected.
    pub result: &'static str,
}

pub struct Metrics {
    pub admissions: Family<AdmissionLabels, Counter>,
    pub duration: Histogram,
    pub certificate_reloads: Family<ReloadLabels, Counter>,
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let admissions = Family::<AdmissionLabels, Counter>::default();
        // 0.25 ms to about 1 s.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.000_25, 2.0, 13,
        ));
        let certificate_reloads = Family::<ReloadLabels, Counter>::default();
        let mut registry = Registry::with_prefix("plexus_webhook");
        registry.register(
            "admissions",
            "Admission reviews answered, by result and reason",
            admissions.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission review, from its body to the response",
            duration.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Serving certificates read from the TLS Secret, by result",
            certificate_reloads.clone(),
        );
        Self {
            admissions,
            duration,
            certificate_reloads,
            registry,
        }
    }
}

impl Metrics {
    pub fn admission(&self, result: &'static str, reason: &'static str) {
        self.admissions
            .get_or_create(&AdmissionLabels { result, reason })
            .inc();
    }

    pub fn reload(&self, result: &'static str) {
        self.certificate_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%error, "encoding metrics");
        }
        out
    }
}
