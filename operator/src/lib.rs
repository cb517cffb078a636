//! The Plexus operator: the mesh's certificate authority (root, workload
//! identities, webhook certificate, rotation) and, to come, the compiler of
//! mesh resources into proxy configuration.
#![forbid(unsafe_code)]

pub mod authority;
pub mod authority_task;
pub mod ca;
pub mod context;
pub mod identities;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod server;
pub mod settings;
pub mod timing;
