//! What the proxy reports about the traffic it carries: Prometheus metrics
//! (`metrics`), each subsystem's families with typed label sets, and what
//! the inbound policies decided (`policy`), what outlier detection and the
//! circuit breakers did (`resilience`), what REGISTRY_ONLY refused and the
//! proxy's DNS lookups (`egress`).

pub mod budget;
pub mod egress;
pub mod metrics;
pub mod policy;
pub mod resilience;

pub use metrics::{Direction, Metrics};
