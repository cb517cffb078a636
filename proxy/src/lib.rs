//! The Plexus proxy. The init mode redirects the pod's TCP to it; it
//! recovers each connection's original destination (`original_dst`) and
//! forwards it (`forward`): outbound to the destination service's endpoints,
//! inbound to the app on localhost. Between meshed pods everything travels
//! over mTLS with SPIFFE identities (`tls`). Connections to known services
//! that speak HTTP are served as HTTP (`http`): routes, splits, retries,
//! timeouts and load balancing from the compiled configuration (`routes`),
//! carried as multiplexed HTTP/2 between proxies. The configuration and
//! certificate are reloaded live (`state`); the admin port answers health,
//! readiness, metrics, the configuration in force and the app's probes.
#![forbid(unsafe_code)]

pub mod admin;
pub mod forward;
pub mod h2_client;
pub mod http;
pub mod init;
pub mod lifecycle;
pub mod metrics;
pub mod original_dst;
pub mod routes;
pub mod state;
pub mod tls;
pub mod watch;
