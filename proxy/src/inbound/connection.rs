//! What the policies read of an inbound connection: who it is from (the
//! mTLS peer, the source address) and what it is for.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::policy::{Attributes, Peer};

/// Who an inbound connection is from and what it is for: what policies
/// read of it.
#[derive(Clone, Debug)]
pub struct Connection {
    /// The peer's SPIFFE ID (mTLS); None for plaintext.
    pub peer_id: Option<Arc<str>>,
    /// The same, as policies name it.
    pub peer: Option<Peer>,
    /// Where it comes from.
    pub source: SocketAddr,
    /// The pod's address and the app's port it is for.
    pub destination: SocketAddr,
    /// The mTLS server name.
    pub sni: Option<String>,
}

impl Connection {
    /// The policies' view of it, without HTTP (an opaque stream).
    pub fn attributes(&self) -> Attributes<'_> {
        Attributes {
            peer: self.peer.as_ref(),
            source_ip: self.source.ip(),
            remote_ip: self.source.ip(),
            destination_ip: self.destination.ip(),
            destination_port: self.destination.port(),
            sni: self.sni.as_deref(),
            http: None,
        }
    }

    /// The peer's identity for logs and metrics ("" for plaintext).
    pub fn peer_label(&self) -> &str {
        self.peer_id.as_deref().unwrap_or("")
    }
}
