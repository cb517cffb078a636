//! Opaque TCP outbound: a service address picks one of its endpoints (by
//! the cluster's balancer), a pod address is that endpoint; a meshed
//! endpoint is reached over mTLS, an unmeshed one as addressed. Anything
//! else passes through, or is refused under the REGISTRY_ONLY policy.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::balance::InFlight;
use crate::ctx::Ctx;
use crate::routing::Destination;
use crate::state::Snapshot;
use crate::telemetry::Direction;
use crate::tls::ALPN_TCP;
use crate::transport;

/// How an outbound connection is carried.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// To a meshed endpoint over mTLS, which must prove `identity`.
    Mesh { addr: SocketAddr, identity: String },
    /// As addressed, in plaintext (unmeshed or unknown destinations).
    Plain(SocketAddr),
    /// Not at all: an unknown destination under the Mesh's REGISTRY_ONLY
    /// outbound policy.
    Refuse,
}

/// The plan for a connection to `original` (`random` draws below its
/// argument), and the endpoint's in-flight count while it is open.
pub fn plan(
    snapshot: &Snapshot,
    original: SocketAddr,
    random: impl FnMut(usize) -> usize,
) -> (Plan, Option<InFlight>) {
    let (target, in_flight) = match snapshot.table.destination(original) {
        Destination::Service { service, port } => {
            let picked = snapshot
                .table
                .service_cluster(service, port)
                .and_then(|i| snapshot.cluster(i))
                .and_then(|c| c.pick(random, None, &[]).cloned());
            match picked {
                Some(endpoint) => (endpoint.spec.clone(), Some(endpoint.start())),
                None => return (Plan::Plain(original), None),
            }
        }
        Destination::Pod(target) => (target, None),
        Destination::Passthrough => return (Plan::Plain(original), None),
        Destination::Refuse => return (Plan::Refuse, None),
    };
    match target.identity {
        Some(identity) => (
            Plan::Mesh {
                addr: target.addr,
                identity,
            },
            in_flight,
        ),
        None => (Plan::Plain(original), in_flight),
    }
}

/// Carries `client`'s stream to `original` by its plan.
pub async fn forward<S>(ctx: &Ctx, client: S, original: SocketAddr) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let metrics = ctx.metrics();
    let (plan, _in_flight) = match ctx.state.snapshot() {
        Some(snapshot) => plan(&snapshot, original, |n| fastrand::usize(..n)),
        None => (Plan::Plain(original), None),
    };
    match plan {
        Plan::Refuse => {
            transport::refused(metrics, Direction::Outbound, "registry-only");
            Err(std::io::Error::other(format!(
                "{original} is not a known destination and the outbound policy is REGISTRY_ONLY"
            )))
        }
        Plan::Plain(addr) => {
            let server = transport::dial(metrics, Direction::Outbound, addr).await?;
            transport::relay(metrics, Direction::Outbound, client, server).await
        }
        Plan::Mesh { addr, identity } => {
            let tls = ctx.state.tls().ok_or_else(|| {
                std::io::Error::other("no certificate yet: cannot reach a meshed endpoint")
            })?;
            let tcp = transport::dial(metrics, Direction::Outbound, addr).await?;
            let server = transport::connect_mtls(metrics, &tls, tcp, &identity, ALPN_TCP).await?;
            transport::relay(metrics, Direction::Outbound, client, server).await
        }
    }
}

#[cfg(test)]
mod tests;
