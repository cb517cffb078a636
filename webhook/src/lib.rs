//! The Plexus admission webhook: injects the proxy into pods.
//!
//! [`inject`] is the pure injection function, shared with `plexus inject`;
//! the rest (feature `server`) is the HTTPS server around it.
#![forbid(unsafe_code)]

pub mod inject;

#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod state;
#[cfg(feature = "server")]
pub mod tls;
