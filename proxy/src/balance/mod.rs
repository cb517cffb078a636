//! The live state of the endpoints requests are balanced over: requests in
//! flight per endpoint, round-robin cursors, latency estimates (`ewma`),
//! outlier standing (`outlier`), retry budgets (`budget`)
//! and circuit-breaker counts (`pool`). It outlives configuration versions:
//! [`Clusters::new`] builds a version's clusters from the routing table's
//! specs, keeping the state of every cluster (by name) and endpoint (by
//! address and identity) that remains.
//!
//! A request holds an [`InFlight`] guard while it is in flight: however it
//! ends (answered, timed out, dropped by its client), the count comes down.

pub mod budget;
pub mod endpoint;
pub mod ewma;
pub mod hash;
pub mod outlier;
pub mod pool;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use plexus_config::OutlierDetection;

use crate::classify::Class;
use crate::routing::{Balance, EndpointSpec, Table};
use crate::telemetry::resilience::ResilienceMetrics;

pub use endpoint::{Endpoint, InFlight};
pub use pool::{Limits, Overflow};

/// The endpoints of a destination on one port (possibly one subset).
#[derive(Debug)]
pub struct Cluster {
    /// `<namespace>/<name>:<port>[/<subset>]`.
    pub name: String,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Resolution NONE: requests go as the app addressed them.
    pub passthrough: bool,
    pub balance: Balance,
    /// Slow start of endpoints that joined.
    pub warmup: Option<Duration>,
    pub outlier: Option<OutlierDetection>,
    /// Circuit breakers.
    pub limits: Limits,
    /// The ServiceProfile's retry budget, when the service has a profile.
    pub retry_budget: Option<budget::Budget>,
    cursor: Arc<AtomicUsize>,
    metrics: ResilienceMetrics,
}

impl Cluster {
    /// Picks an endpoint; `random` gives numbers below its argument and
    /// `hash` the request's key (consistent hashing), if it has one.
    /// Ejected endpoints are left out (all are candidates again when fewer
    /// than `minHealthPercent` remain), and so are those in `tried` (the
    /// request's earlier attempts) while others remain.
    pub fn pick(
        &self,
        mut random: impl FnMut(usize) -> usize,
        hash: Option<u64>,
        tried: &[Arc<Endpoint>],
    ) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        if self.outlier.is_none() && tried.is_empty() {
            let index = self.choose(n, |i| &self.endpoints[i], &mut random, hash)?;
            return self.endpoints.get(index);
        }
        let mut candidates: Vec<&Arc<Endpoint>> = self.endpoints.iter().collect();
        if let Some(outlier) = &self.outlier {
            let now = Instant::now();
            candidates.retain(|e| !self.ejected(e, now));
            if candidates.len() * 100 < n * outlier.min_health_percent as usize {
                candidates = self.endpoints.iter().collect();
            }
        }
        let fresh: Vec<&Arc<Endpoint>> = candidates
            .iter()
            .filter(|e| !tried.iter().any(|t| Arc::ptr_eq(t, e)))
            .copied()
            .collect();
        if !fresh.is_empty() {
            candidates = fresh;
        }
        let index = self.choose(candidates.len(), |i| candidates[i], &mut random, hash)?;
        candidates.get(index).copied()
    }

    /// The index (below `n`) of the endpoint the balancer picks among
    /// `n` candidates, `at` giving each.
    fn choose<'a>(
        &self,
        n: usize,
        at: impl Fn(usize) -> &'a Arc<Endpoint>,
        random: &mut impl FnMut(usize) -> usize,
        hash: Option<u64>,
    ) -> Option<usize> {
        let mut index = self.choose_once(n, &at, random, hash)?;
        // Slow start: an endpoint warming up keeps its pick with a
        // probability of its weight; otherwise the balancer picks again
        // (a few times at most). Hashing is left alone: a key stays put.
        if self.warmup.is_some() && !matches!(self.balance, Balance::Hash(_)) {
            for _ in 0..4 {
                let weight = at(index).weight(self.warmup);
                if weight >= 1.0 || (random(1000) as f64) < weight * 1000.0 {
                    break;
                }
                index = self.choose_once(n, &at, random, hash)?;
            }
        }
        Some(index)
    }

    /// One pick of the balancer's.
    fn choose_once<'a>(
        &self,
        n: usize,
        at: &impl Fn(usize) -> &'a Arc<Endpoint>,
        random: &mut impl FnMut(usize) -> usize,
        hash: Option<u64>,
    ) -> Option<usize> {
        Some(match (&self.balance, hash) {
            _ if n == 0 => return None,
            _ if n == 1 => 0,
            (Balance::RoundRobin, _) => self.cursor.fetch_add(1, Ordering::Relaxed) % n,
            (Balance::Random, _) | (Balance::Hash(_), None) => random(n),
            (Balance::Hash(_), Some(key)) => hash::rendezvous(key, (0..n).map(|i| &**at(i))),
            (Balance::LeastRequest, _) => {
                // Power of two choices: two distinct endpoints at random,
                // the one with fewer requests in flight.
                let a = random(n);
                let b = (a + 1 + random(n - 1)) % n;
                if at(b).in_flight() < at(a).in_flight() {
                    b
                } else {
                    a
                }
            }
            (Balance::PeakEwma, _) => {
                // The same two choices, by latency times load.
                let a = random(n);
                let b = (a + 1 + random(n - 1)) % n;
                let now = Instant::now();
                let cost = |i: usize| {
                    let e = at(i);
                    e.latency.rtt(now) * (e.in_flight() + 1) as f64
                };
                if cost(b) < cost(a) { b } else { a }
            }
        })
    }

    /// Whether `endpoint` is ejected at `now`; counts its return when its
    /// time was up.
    fn ejected(&self, endpoint: &Endpoint, now: Instant) -> bool {
        let mut returned = false;
        let ejected = endpoint.health.ejected(now, &mut returned);
        if returned {
            tracing::info!(cluster = %self.name, endpoint = %endpoint.addr(), "endpoint returned from ejection");
            self.metrics.returned(&self.name, endpoint.addr());
        }
        ejected
    }

    /// Feeds an attempt's outcome (and how long its answer took) to the
    /// latency estimate and to outlier detection, ejecting the endpoint
    /// when a count reached its threshold and the cluster may lose one
    /// more.
    pub fn observe(&self, endpoint: &Endpoint, class: Class, took: Duration) {
        if self.balance == Balance::PeakEwma && !class.no_response() {
            endpoint.latency.observe(took, Instant::now());
        }
        let Some(outlier) = &self.outlier else {
            return;
        };
        let outlier::Verdict::Eject { why } = endpoint.health.observe(class, outlier) else {
            return;
        };
        let now = Instant::now();
        if self.ejected(endpoint, now) {
            return;
        }
        let ejected = self
            .endpoints
            .iter()
            .filter(|e| self.ejected(e, now))
            .count();
        if !outlier::may_eject(ejected, self.endpoints.len(), outlier.max_ejection_percent) {
            self.metrics.not_ejected(&self.name, "max-ejection-percent");
            return;
        }
        let out = endpoint.health.eject(now, outlier);
        tracing::warn!(cluster = %self.name, endpoint = %endpoint.addr(), reason = why, seconds = out.as_secs_f64(), "endpoint ejected");
        self.metrics.ejected(&self.name, endpoint.addr(), why);
    }

    /// Counts a request the circuit breakers refused.
    pub fn overflowed(&self, overflow: Overflow) {
        self.metrics.overflow(&self.name, overflow.as_str());
    }

    /// Its live state, for `/config_dump`.
    pub fn dump(&self) -> serde_json::Value {
        let now = Instant::now();
        let endpoints: Vec<_> = self
            .endpoints
            .iter()
            .map(|e| {
                let (left, ejections) = e.health.standing(now);
                serde_json::json!({
                    "address": e.addr().to_string(),
                    "inFlight": e.in_flight(),
                    "ejectedForMs": left.map(|d| d.as_millis() as u64),
                    "ejections": ejections,
                })
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "requestsInFlight": self.limits.in_flight(),
            "endpoints": endpoints,
        })
    }
}

/// A configuration version's clusters, indexed as the routing table's.
#[derive(Debug, Default)]
pub struct Clusters(Vec<Arc<Cluster>>);

impl Clusters {
    /// The clusters of `table`, keeping the state `previous` had for the
    /// clusters and endpoints that remain.
    pub fn new(table: &Table, previous: Option<&Clusters>, metrics: &ResilienceMetrics) -> Self {
        let old: HashMap<&str, &Cluster> = previous
            .map(|p| p.0.iter().map(|c| (c.name.as_str(), &**c)).collect())
            .unwrap_or_default();
        let clusters = table
            .clusters()
            .iter()
            .map(|spec| {
                let before = old.get(spec.name.as_str());
                // An origination's TLS state (its session cache) is not
                // part of its identity: it hashes and compares by its key.
                #[allow(clippy::mutable_key_type)]
                let endpoints: HashMap<&EndpointSpec, &Arc<Endpoint>> = before
                    .map(|c| c.endpoints.iter().map(|e| (&e.spec, e)).collect())
                    .unwrap_or_default();
                Arc::new(Cluster {
                    name: spec.name.clone(),
                    endpoints: spec
                        .endpoints
                        .iter()
                        .map(|e| match endpoints.get(e) {
                            Some(kept) => Arc::clone(kept),
                            // Joining a cluster that was there: slow start.
                            None if before.is_some() => Arc::new(Endpoint::joining(e.clone())),
                            None => Arc::new(Endpoint::new(e.clone())),
                        })
                        .collect(),
                    passthrough: spec.passthrough,
                    balance: spec.balance.clone(),
                    warmup: spec.warmup,
                    outlier: spec.outlier.clone(),
                    limits: Limits {
                        counts: before.map(|c| c.limits.counts.clone()).unwrap_or_default(),
                        config: spec.pool.clone(),
                        retry_budget: spec.retry_concurrency.clone(),
                    },
                    retry_budget: spec.retry_budget.clone().map(|config| budget::Budget {
                        window: before
                            .and_then(|c| c.retry_budget.as_ref())
                            .map(|b| b.window.clone())
                            .unwrap_or_default(),
                        config,
                    }),
                    cursor: before.map(|c| c.cursor.clone()).unwrap_or_default(),
                    metrics: metrics.clone(),
                })
            })
            .collect();
        Self(clusters)
    }

    /// The cluster at a routing table's index.
    pub fn get(&self, index: usize) -> Option<&Arc<Cluster>> {
        self.0.get(index)
    }

    /// The live state of the clusters with outlier detection or limits.
    pub fn dump(&self) -> Vec<serde_json::Value> {
        self.0
            .iter()
            .filter(|c| c.outlier.is_some() || c.limits.config.is_some())
            .map(|c| c.dump())
            .collect()
    }
}

#[cfg(test)]
mod tests;
