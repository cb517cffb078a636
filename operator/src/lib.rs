//! The Plexus operator: the mesh's certificate authority (root, workload
//! identities, webhook certificate, rotation) and the compiler of mesh
//! resources into proxy configuration (`compile`, `snapshot`, `mesh_config`).
#![forbid(unsafe_code)]

pub mod authority;
pub mod authority_task;
pub mod ca;
pub mod cleanup;
pub mod compile;
pub mod context;
pub mod identities;
pub mod identity;
pub mod jwks;
pub mod kinds;
pub mod leader;
pub mod mesh_config;
pub mod metrics;
pub mod server;
pub mod settings;
pub mod snapshot;
pub mod timing;

#[cfg(test)]
mod fixtures;
