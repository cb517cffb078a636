//! The live state of the endpoints requests are balanced over: requests in
//! flight per endpoint, round-robin cursors per cluster. It outlives
//! configuration versions: [`Clusters::new`] builds a version's clusters
//! from the routing table's specs, keeping the state of every cluster (by
//! name) and endpoint (by address and identity) that remains.
//!
//! A request holds an [`InFlight`] guard while it is in flight: however it
//! ends (answered, timed out, dropped by its client), the count comes down.

pub mod endpoint;
pub mod hash;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::routing::{Balance, EndpointSpec, Table};

pub use endpoint::{Endpoint, InFlight};

/// The endpoints of a destination on one port (possibly one subset).
#[derive(Debug)]
pub struct Cluster {
    /// `<namespace>/<name>:<port>[/<subset>]`.
    pub name: String,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub balance: Balance,
    cursor: Arc<AtomicUsize>,
}

impl Cluster {
    /// Picks an endpoint; `random` gives numbers below its argument and
    /// `hash` the request's key (consistent hashing), if it has one.
    pub fn pick(
        &self,
        mut random: impl FnMut(usize) -> usize,
        hash: Option<u64>,
    ) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let index = match (&self.balance, hash) {
            _ if n == 1 => 0,
            (Balance::RoundRobin, _) => self.cursor.fetch_add(1, Ordering::Relaxed) % n,
            (Balance::Random, _) | (Balance::Hash(_), None) => random(n),
            (Balance::Hash(_), Some(key)) => hash::rendezvous(key, &self.endpoints),
            (Balance::LeastRequest, _) => {
                // Power of two choices: two distinct endpoints at random,
                // the one with fewer requests in flight.
                let a = random(n);
                let b = (a + 1 + random(n - 1)) % n;
                let load = |i: usize| self.endpoints[i].in_flight();
                if load(b) < load(a) { b } else { a }
            }
        };
        self.endpoints.get(index)
    }
}

/// A configuration version's clusters, indexed as the routing table's.
#[derive(Debug, Default)]
pub struct Clusters(Vec<Arc<Cluster>>);

impl Clusters {
    /// The clusters of `table`, keeping the state `previous` had for the
    /// clusters and endpoints that remain.
    pub fn new(table: &Table, previous: Option<&Clusters>) -> Self {
        let old: HashMap<&str, &Cluster> = previous
            .map(|p| p.0.iter().map(|c| (c.name.as_str(), &**c)).collect())
            .unwrap_or_default();
        let clusters = table
            .clusters()
            .iter()
            .map(|spec| {
                let before = old.get(spec.name.as_str());
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
                            None => Arc::new(Endpoint::new(e.clone())),
                        })
                        .collect(),
                    balance: spec.balance.clone(),
                    cursor: before.map(|c| c.cursor.clone()).unwrap_or_default(),
                })
            })
            .collect();
        Self(clusters)
    }

    /// The cluster at a routing table's index.
    pub fn get(&self, index: usize) -> Option<&Arc<Cluster>> {
        self.0.get(index)
    }
}

#[cfg(test)]
mod tests;
