//! The serving certificate: read from the Secret the operator issues,
//! swapped in when the Secret changes; a bad update is rejected and the last
//! good certificate stays in force.

use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use plexus_crds::keys::{TLS_CERT_KEY, TLS_KEY_KEY};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("the Secret has no {0}")]
    Missing(&'static str),
    #[error("{TLS_CERT_KEY} holds no PEM certificate: {0}")]
    Certificate(String),
    #[error("{TLS_KEY_KEY} holds no usable PEM private key: {0}")]
    Key(String),
    #[error("the private key does not belong to the certificate: {0}")]
    Mismatch(String),
}

/// Builds a certificate and key pair from PEM, checking that they belong together.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::Certificate("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Key(e.to_string()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| CertError::Mismatch(e.to_string()))?;
    Ok(certified)
}

/// The certificate in force, shared by every handshake.
#[derive(Debug, Default)]
pub struct CertStore(RwLock<Option<Arc<CertifiedKey>>>);

impl CertStore {
    pub fn set(&self, key: CertifiedKey) {
        if let Ok(mut current) = self.0.write() {
            *current = Some(Arc::new(key));
        }
    }

    pub fn loaded(&self) -> bool {
        self.0.read().map(|c| c.is_some()).unwrap_or(false)
    }

    /// Reads a Secret's certificate into the store, or leaves the store as it is.
    pub fn load_secret(&self, secret: &Secret) -> Result<(), CertError> {
        let data = secret.data.as_ref();
        let get = |key: &'static str| {
            data.and_then(|d| d.get(key))
                .map(|b| b.0.as_slice())
                .ok_or(CertError::Missing(key))
        };
        let key = certified_key(get(TLS_CERT_KEY)?, get(TLS_KEY_KEY)?)?;
        self.set(key);
        Ok(())
    }

    /// A rustls server configuration that serves whatever the store holds.
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("ring supports the default TLS versions: {e}"))
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.0.read().ok().and_then(|c| c.clone())
    }
}

/// Watches Secret `namespace/name` and loads each version of it; runs until
/// the watch stream ends (it retries on errors).
pub async fn watch_secret(
    client: Client,
    namespace: &str,
    name: &str,
    store: Arc<CertStore>,
    metrics: Arc<Metrics>,
) {
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(secrets, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let secret = match event {
            Ok(Event::Apply(secret) | Event::InitApply(secret)) => secret,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "watching the TLS Secret");
                continue;
            }
        };
        match store.load_secret(&secret) {
            Ok(()) => {
                metrics.reload("loaded");
                tracing::info!(secret = %format!("{namespace}/{name}"), "serving certificate loaded");
            }
            Err(error) => {
                metrics.reload("rejected");
                tracing::error!(%error, secret = %format!("{namespace}/{name}"),
                    "serving certificate rejected; the last good one stays in force");
            }
        }
    }
}
