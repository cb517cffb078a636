//! What the proxy reports about the traffic it carries: Prometheus metrics
//! (`metrics`), each subsystem's families with typed label sets, and what
//! the inbound policies decided (`policy`).

pub mod metrics;
pub mod policy;

pub use metrics::{Direction, Metrics};
