//! What the proxy reports about the traffic it carries: Prometheus metrics
//! (`metrics`), each subsystem's families with typed label sets.

pub mod metrics;

pub use metrics::{Direction, Metrics};
