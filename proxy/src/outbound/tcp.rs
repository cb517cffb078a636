//! Opaque TCP outbound: a service address picks one of its endpoints (by
//! the cluster's balancer), a pod address is that endpoint; a meshed
//! endpoint is reached over mTLS, an unmeshed one as addressed. Anything
//! else passes through, or is refused under the REGISTRY_ONLY policy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::balance::InFlight;
use crate::ctx::Ctx;
use crate::origination::Origination;
use crate::routing::l4::Connection;
use crate::routing::{Destination, Source};
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
    /// To a server outside the mesh over TLS the proxy originates
    /// (DestinationRule SIMPLE).
    Originate {
        addr: SocketAddr,
        origination: Arc<Origination>,
    },
    /// Not at all: an unknown destination under the Mesh's REGISTRY_ONLY
    /// outbound policy.
    Refuse,
    /// Not at all: the route's backend has no endpoint.
    NoEndpoints,
}

/// An opaque connection the app opened.
pub struct Opened<'a> {
    /// Where it was going.
    pub original: SocketAddr,
    /// The server name of its ClientHello, when it is read.
    pub sni: Option<&'a str>,
    /// The pod's labels (routes may match on them).
    pub labels: &'a BTreeMap<String, String>,
}

/// The plan for a connection (`random` draws below its argument), and the
/// endpoint's in-flight count while it is open. A service address takes
/// the first TLS or TCP route that matches, and a backend by weight; without
/// one, the service's own endpoints.
pub fn plan(
    snapshot: &Snapshot,
    opened: &Opened<'_>,
    mut random: impl FnMut(usize) -> usize,
) -> (Plan, Option<InFlight>) {
    let original = opened.original;
    let table = &snapshot.table;
    let destination = match table.destination(original) {
        Destination::Named { port } => match opened.sni.and_then(|n| table.named(n, port)) {
            Some(service) => Destination::Service { service, port },
            None => table.unknown(),
        },
        other => other,
    };
    let (target, in_flight) = match destination {
        Destination::Service { service, port } => {
            let source = Source {
                labels: opened.labels,
                namespace: &table.config.namespace,
            };
            let connection = Connection {
                ip: original.ip(),
                port,
                sni: opened.sni,
            };
            let route = table.l4_route(service, &connection, &source);
            let cluster = match route {
                Some(route) => {
                    let Some(backend) = route.backend(|n| random(n as usize) as u32) else {
                        return (Plan::NoEndpoints, None);
                    };
                    table.cluster(backend, port)
                }
                None => table.service_cluster(service, port),
            };
            let picked = cluster
                .and_then(|i| snapshot.cluster(i))
                .and_then(|c| c.pick(random, None, &[]).cloned());
            match picked {
                Some(endpoint) => (endpoint.spec.clone(), Some(endpoint.start())),
                None if route.is_some() => return (Plan::NoEndpoints, None),
                None => return (Plan::Plain(original), None),
            }
        }
        Destination::Pod(target) => (target, None),
        Destination::Passthrough | Destination::Named { .. } => {
            return (Plan::Plain(original), None);
        }
        Destination::Refuse => return (Plan::Refuse, None),
    };
    if let Some(origination) = target.origination {
        let addr = target.addr;
        return (Plan::Originate { addr, origination }, in_flight);
    }
    match target.identity {
        Some(identity) => (
            Plan::Mesh {
                addr: target.addr,
                identity,
            },
            in_flight,
        ),
        // To the endpoint the balancer picked (a ServiceEntry's address is
        // no ClusterIP: nothing else would take it).
        None => (Plan::Plain(target.addr), in_flight),
    }
}

/// Carries `client`'s stream to `original` by its plan.
pub async fn forward<S>(
    ctx: &Ctx,
    client: S,
    original: SocketAddr,
    sni: Option<&str>,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let metrics = ctx.metrics();
    let opened = Opened {
        original,
        sni,
        labels: ctx.labels(),
    };
    let (plan, _in_flight) = match ctx.state.snapshot() {
        Some(snapshot) => plan(&snapshot, &opened, |n| fastrand::usize(..n)),
        None => (Plan::Plain(original), None),
    };
    match plan {
        Plan::Refuse => {
            transport::refused(metrics, Direction::Outbound, "registry-only");
            let destination = sni.map_or_else(|| original.to_string(), str::to_owned);
            metrics.egress.refused(&destination, "tcp");
            Err(std::io::Error::other(format!(
                "{original} is not a known destination and the outbound policy is REGISTRY_ONLY"
            )))
        }
        Plan::NoEndpoints => {
            transport::refused(metrics, Direction::Outbound, "no-endpoints");
            Err(std::io::Error::other(format!(
                "the route of {original} leads to no endpoint"
            )))
        }
        Plan::Plain(addr) => {
            let server = transport::dial(metrics, Direction::Outbound, addr).await?;
            transport::relay(metrics, Direction::Outbound, client, server).await
        }
        Plan::Originate { addr, origination } => {
            let tcp = transport::dial(metrics, Direction::Outbound, addr).await?;
            let server = transport::originate_tls(metrics, &origination, tcp, &[]).await?;
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
