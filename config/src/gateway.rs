//! Gateways (Istio Gateway) and the virtual hosts bound to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::route::Origin;
use crate::{HttpRoute, Selector, is_false};
/// A Gateway and the routes bound to it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    /// Its origin.
    pub name: Origin,
    /// Gateway workloads it configures.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Selector,
    /// Listeners.
    pub servers: Vec<GatewayServer>,
    /// Virtual hosts: host patterns and their routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_hosts: Vec<VirtualHost>,
}

crate::one_of! {
    /// The protocol of a Gateway listener.
    #[derive(Default)]
    GatewayProtocol {
        #[default]
        Http = "HTTP",
        Https = "HTTPS",
        Http2 = "HTTP2",
        Grpc = "GRPC",
        Tcp = "TCP",
        Tls = "TLS",
    }
}

crate::one_of! {
    /// How a Gateway listener treats TLS.
    ServerTlsMode {
        /// Forwards the client's TLS by SNI, untouched.
        Passthrough = "PASSTHROUGH",
        /// Terminates TLS with the listener's certificate.
        Simple = "SIMPLE",
        /// Terminates TLS and requires a client certificate.
        Mutual = "MUTUAL",
        /// Passthrough with SNI-based routing to services.
        AutoPassthrough = "AUTO_PASSTHROUGH",
        /// The mesh's mTLS.
        IstioMutual = "ISTIO_MUTUAL",
        /// A client certificate is verified when given.
        OptionalMutual = "OPTIONAL_MUTUAL",
    }
}

/// A Gateway listener.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayServer {
    /// Port.
    pub port: u16,
    /// What the listener speaks.
    pub protocol: GatewayProtocol,
    /// Hosts served.
    pub hosts: Vec<String>,
    /// TLS mode, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_mode: Option<ServerTlsMode>,
    /// Secret with the serving certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Redirect plain HTTP to HTTPS.
    #[serde(default, skip_serializing_if = "is_false")]
    pub https_redirect: bool,
}

/// Host patterns and their routes, on a Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHost {
    /// Host patterns.
    pub hosts: Vec<String>,
    /// Routes in order.
    pub http: Vec<HttpRoute>,
}
