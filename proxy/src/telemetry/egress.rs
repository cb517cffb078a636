//! Traffic leaving for destinations the mesh does not run: connections and
//! requests the REGISTRY_ONLY outbound policy refused, each counted and
//! logged with the destination it named (a bounded set of them: beyond
//! [`MAX_DESTINATIONS`] distinct ones the label says `other`), and the
//! proxy's own DNS lookups of ServiceEntry names.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::budget::LogBudget;

/// Distinct refused destinations given their own series.
pub const MAX_DESTINATIONS: usize = 256;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// The Host or server name asked for, else the address dialled.
    pub destination: String,
    /// http or tcp.
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// resolved, changed (resolved to other addresses than before) or
    /// failed.
    pub result: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct EgressMetrics {
    pub refused: Family<RefusedLabels, Counter>,
    pub lookups: Family<LookupLabels, Counter>,
    named: Arc<Mutex<HashSet<String>>>,
    log: LogBudget,
}

impl EgressMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "registry_only_refused",
            "Connections and requests to destinations outside the registry, refused under REGISTRY_ONLY",
            self.refused.clone(),
        );
        registry.register(
            "dns_lookups",
            "The proxy's DNS lookups of ServiceEntry names, by result",
            self.lookups.clone(),
        );
    }

    /// Counts and logs a destination REGISTRY_ONLY refused.
    pub fn refused(&self, destination: &str, protocol: &'static str) {
        if let Some(dropped) = self.log.may_log() {
            tracing::warn!(
                destination,
                protocol,
                dropped,
                "refused: not in the registry and the outbound policy is REGISTRY_ONLY"
            );
        }
        let label = match self.named.lock() {
            Ok(named) if named.contains(destination) => destination.to_owned(),
            Ok(mut named) if named.len() < MAX_DESTINATIONS => {
                named.insert(destination.to_owned());
                destination.to_owned()
            }
            _ => "other".to_owned(),
        };
        self.refused
            .get_or_create(&RefusedLabels {
                destination: label,
                protocol,
            })
            .inc();
    }

    pub fn looked_up(&self, result: &'static str) {
        self.lookups.get_or_create(&LookupLabels { result }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_beyond_the_bound_share_a_series() {
        let metrics = EgressMetrics::default();
        for i in 0..MAX_DESTINATIONS + 10 {
            metrics.refused(&format!("host-{i}.example.com"), "http");
        }
        metrics.refused("host-0.example.com", "http");
        let get = |d: &str| {
            metrics
                .refused
                .get_or_create(&RefusedLabels {
                    destination: d.into(),
                    protocol: "http",
                })
                .get()
        };
        assert_eq!(get("host-0.example.com"), 2);
        assert_eq!(get("other"), 10);
    }
}
