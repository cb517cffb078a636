//! What authorization (and rate limits) see of a request or of an opaque
//! connection: the peer's proven identity, addresses, and the HTTP side.

use std::net::IpAddr;

use http::HeaderMap;

use super::jwt::Claims;

/// The peer identity a connection proved (mTLS), in Istio's principal form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// `<trust domain>/ns/<namespace>/sa/<account>`.
    pub principal: String,
    pub namespace: String,
    /// `<namespace>/<account>`.
    pub service_account: String,
}

impl Peer {
    /// The peer of a SPIFFE ID (`spiffe://<td>/ns/<ns>/sa/<sa>`); None for
    /// another shape.
    pub fn from_spiffe(id: &str) -> Option<Self> {
        let principal = id.strip_prefix("spiffe://")?;
        let mut parts = principal.split('/');
        let (_, ns_key, namespace, sa_key, account) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if ns_key != "ns" || sa_key != "sa" || parts.next().is_some() {
            return None;
        }
        Some(Self {
            principal: principal.to_owned(),
            namespace: namespace.to_owned(),
            service_account: format!("{namespace}/{account}"),
        })
    }
}

/// What policies see of a request or an opaque connection.
pub struct Attributes<'a> {
    /// The mTLS peer; None for plaintext.
    pub peer: Option<&'a Peer>,
    /// The connection's source address.
    pub source_ip: IpAddr,
    /// The original client's address (see [`remote_ip`]).
    pub remote_ip: IpAddr,
    /// The pod's address and port the connection is for.
    pub destination_ip: IpAddr,
    pub destination_port: u16,
    /// The mTLS server name.
    pub sni: Option<&'a str>,
    /// None for an opaque connection.
    pub http: Option<HttpAttributes<'a>>,
}

/// The HTTP side of a request.
pub struct HttpAttributes<'a> {
    /// Host header (or `:authority`).
    pub host: &'a str,
    pub method: &'a str,
    /// Normalized, without the query.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// The verified JWT, if any.
    pub auth: Option<&'a Claims>,
}

/// The original client's address: with `trusted` proxies in front, the
/// X-Forwarded-For entry that many places from its end; else (or when the
/// header has too few valid entries) the peer's.
pub fn remote_ip(headers: &HeaderMap, peer: IpAddr, trusted: u32) -> IpAddr {
    if trusted == 0 {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let trusted = usize::try_from(trusted).unwrap_or(usize::MAX);
    entries
        .len()
        .checked_sub(trusted)
        .and_then(|i| entries[i].parse().ok())
        .unwrap_or(peer)
}
