//! The Plexus proxy. This first part carries the pod's TCP transparently:
//! the init mode redirects it, the proxy recovers each connection's original
//! destination and forwards it (outbound to where the app meant, inbound to
//! the app on localhost); the admin port answers health, readiness (its
//! configuration and certificate are loaded), metrics and the app's probes.
//! Between meshed pods the TCP stream travels over mTLS with SPIFFE
//! identities (`tls`); HTTP routing builds on this.
#![forbid(unsafe_code)]

pub mod admin;
pub mod forward;
pub mod init;
pub mod lifecycle;
pub mod metrics;
pub mod original_dst;
pub mod state;
pub mod tls;
