//! What every connection handler shares: the configuration and identity in
//! force, the pod's labels, how original destinations are recovered, and
//! the upstream clients.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::client::Clients;
use crate::original_dst::OriginalDst;
use crate::state::ProxyState;
use crate::telemetry::Metrics;

pub struct Ctx {
    pub state: Arc<ProxyState>,
    /// The pod's labels: policies and routes select workloads by them.
    pub labels: BTreeMap<String, String>,
    pub original: Box<dyn OriginalDst>,
    /// HTTP connections to endpoints and to the app.
    pub clients: Clients,
}

impl Ctx {
    pub fn new(
        state: Arc<ProxyState>,
        labels: BTreeMap<String, String>,
        original: Box<dyn OriginalDst>,
    ) -> Self {
        let clients = Clients::new(state.clone());
        Self {
            state,
            labels,
            original,
            clients,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }
}
