//! The Plexus proxy. The init mode (`init`) redirects the pod's TCP to it;
//! `app` runs it. Modules only import modules below them; from the top:
//!
//! - `app`: the composition root; `admin`, `watch`: the admin port and the
//!   live configuration and certificate;
//! - `listen`: the accept loops, a task per connection;
//! - `inbound` (a connection from a peer proxy or a plaintext caller, then
//!   `inbound::http`) and `outbound` (a connection the app opened: detection,
//!   then `outbound::http`, the request pipeline with `outbound::retry`, or
//!   `outbound::tcp`);
//! - `ctx`: what the handlers share; `client`: HTTP/1.1 and HTTP/2 clients
//!   to endpoints and the app;
//! - `dns`: the proxy's own lookups of ServiceEntry names, given to
//!   `state`;
//! - `state`: the configuration and certificate in force;
//! - `policy`: the pod's inbound policy (mTLS mode, authorization);
//! - `balance`: live endpoint state that outlives configuration versions;
//! - `routing`: the pure routing table, rebuilt per version (routes,
//!   matches, filters, faults, cluster specs);
//! - `transport`: the one place that dials TCP and mTLS and accepts mTLS;
//! - `server`: serving an HTTP/1.1 or HTTP/2 connection with graceful
//!   shutdown; `classify`: one verdict per attempt;
//! - `http`: bodies, failures, hop-by-hop headers; `telemetry`: metrics;
//! - `tls`, `detect`, `original_dst`, `lifecycle`, `init`: the ground floor.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod balance;
pub mod classify;
pub mod client;
pub mod client_certs;
pub mod ctx;
pub mod detect;
pub mod dns;
pub mod http;
pub mod inbound;
pub mod init;
pub mod lifecycle;
pub mod listen;
pub mod original_dst;
pub mod origination;
pub mod outbound;
pub mod policy;
pub mod routing;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod watch;

#[cfg(test)]
mod testing;
