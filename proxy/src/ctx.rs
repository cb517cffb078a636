//! What every connection handler shares: the configuration and identity in
//! force (with the pod's labels), how original destinations are recovered,
//! and the upstream clients.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::client::Clients;
use crate::original_dst::OriginalDst;
use crate::state::ProxyState;
use crate::telemetry::Metrics;

/// Mirrored copies in flight at most, per proxy; beyond, copies are not
/// made (and counted as too-many).
pub const MIRRORS_IN_FLIGHT: usize = 1024;

pub struct Ctx {
    pub state: Arc<ProxyState>,
    pub original: Box<dyn OriginalDst>,
    /// HTTP connections to endpoints and to the app.
    pub clients: Clients,
    /// Mirrored copies of requests in flight (`outbound::mirror`).
    pub mirrors: Arc<tokio::sync::Semaphore>,
}

impl Ctx {
    pub fn new(state: Arc<ProxyState>, original: Box<dyn OriginalDst>) -> Self {
        let clients = Clients::new(state.clone());
        Self {
            state,
            original,
            clients,
            mirrors: Arc::new(tokio::sync::Semaphore::new(MIRRORS_IN_FLIGHT)),
        }
    }

    /// The pod's labels: policies and routes select workloads by them.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.state.labels()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }
}
