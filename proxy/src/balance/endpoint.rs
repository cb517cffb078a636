//! An endpoint's live state: its requests (or connections) in flight,
//! counted by a guard that is dropped however the request ends, and its
//! outlier standing (`outlier`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::ewma::Ewma;
use super::outlier::Health;
use crate::routing::EndpointSpec;

/// An endpoint, its requests in flight and its outlier state.
#[derive(Debug)]
pub struct Endpoint {
    pub spec: EndpointSpec,
    in_flight: AtomicUsize,
    pub health: Health,
    /// Its latency estimate (peak-EWMA balancing).
    pub latency: Ewma,
    /// When it joined a cluster that had endpoints before (slow start);
    /// None for those there from the start.
    pub joined: Option<Instant>,
}

impl Endpoint {
    pub fn new(spec: EndpointSpec) -> Self {
        Self {
            spec,
            in_flight: AtomicUsize::new(0),
            health: Health::default(),
            latency: Ewma::default(),
            joined: None,
        }
    }

    /// An endpoint that joins a cluster now.
    pub fn joining(spec: EndpointSpec) -> Self {
        Self {
            joined: Some(Instant::now()),
            ..Self::new(spec)
        }
    }

    /// Its weight under slow start over `warmup`: from a tenth (Envoy's
    /// minimum) up to whole, in proportion to the time since it joined.
    pub fn weight(&self, warmup: Option<std::time::Duration>) -> f64 {
        match (self.joined, warmup) {
            (Some(joined), Some(warmup)) if !warmup.is_zero() => {
                (joined.elapsed().as_secs_f64() / warmup.as_secs_f64()).clamp(0.1, 1.0)
            }
            _ => 1.0,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.spec.addr
    }

    /// The SPIFFE ID it must prove, when a sidecar runs there.
    pub fn identity(&self) -> Option<&str> {
        self.spec.identity.as_deref()
    }

    /// Requests (or connections) in flight to it now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one more in flight until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One request or connection in flight to an endpoint.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
