//! mTLS between proxies with SPIFFE identities. A proxy presents its
//! workload certificate (from its identity Secret) both ways; a client
//! proxy accepts only the identity the configuration expects at that
//! endpoint, a server proxy any identity the mesh's roots vouch for, and
//! reads it off the client's certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

pub use plexus_config::sidecar::{ALPN_H2, ALPN_TCP};
use plexus_config::sidecar::{CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// A workload certificate: the leaf and its chain, its key, and the roots
/// it trusts.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: Vec<CertificateDer<'static>>,
}

/// Parses an identity Secret's files.
pub fn parse_identity(cert: &[u8], key: &[u8], ca: &[u8]) -> Result<Identity, String> {
    let certs = |pem: &[u8], what: &str| {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{what}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{what}: no certificate"));
        }
        Ok(certs)
    };
    Ok(Identity {
        chain: certs(cert, TLS_CERT_KEY)?,
        key: PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("{TLS_KEY_KEY}: {e}"))?,
        roots: certs(ca, CA_CERT_KEY)?,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the trust bundle: {0}")]
    Roots(String),
    #[error("the private key: {0}")]
    Key(String),
    #[error("the key does not belong to the certificate: {0}")]
    Mismatch(String),
    #[error("the certificate carries no SPIFFE ID")]
    NoSpiffeId,
    #[error("building the TLS configuration: {0}")]
    Config(String),
}

/// The SPIFFE ID (the `spiffe://` URI SAN) of a certificate.
pub fn spiffe_id(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
            Some((*uri).to_owned())
        }
        _ => None,
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The identity a client configuration accepts and the ALPN it offers.
type ClientKey = (String, &'static [u8]);

/// The TLS side of one identity: built when a certificate is loaded, so
/// that a certificate that cannot serve is rejected then.
pub struct Tls {
    /// This proxy's SPIFFE ID.
    pub id: String,
    roots: Arc<RootCertStore>,
    key: Arc<CertifiedKey>,
    server: Arc<ServerConfig>,
    /// Client configurations by the identity they accept and their ALPN.
    clients: Mutex<HashMap<ClientKey, Arc<ClientConfig>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Tls {
    pub fn new(identity: &Identity) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for root in &identity.roots {
            roots
                .add(root.clone())
                .map_err(|e| TlsError::Roots(e.to_string()))?;
        }
        let roots = Arc::new(roots);
        let provider = provider();
        let signer = provider
            .key_provider
            .load_private_key(identity.key.clone_key())
            .map_err(|e| TlsError::Key(e.to_string()))?;
        let key = CertifiedKey::new(identity.chain.clone(), signer);
        key.keys_match()
            .map_err(|e| TlsError::Mismatch(e.to_string()))?;
        let id = identity
            .chain
            .first()
            .and_then(spiffe_id)
            .ok_or(TlsError::NoSpiffeId)?;
        let key = Arc::new(key);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key.clone())));
        server.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_TCP.to_vec()];
        Ok(Self {
            id,
            roots,
            key,
            server: Arc::new(server),
            clients: Mutex::default(),
        })
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// A client configuration that accepts only a peer proving `expected`
    /// and offers `alpn` ([`ALPN_TCP`] or [`ALPN_H2`]).
    pub fn client_config(
        &self,
        expected: &str,
        alpn: &'static [u8],
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let key = (expected.to_owned(), alpn);
        if let Some(config) = clients.get(&key) {
            return Ok(config.clone());
        }
        let provider = provider();
        let verifier = SpiffeVerifier {
            roots: self.roots.clone(),
            expected: expected.to_owned(),
            algorithms: provider.signature_verification_algorithms,
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                self.key.clone(),
            )));
        config.alpn_protocols = vec![alpn.to_vec()];
        let config = Arc::new(config);
        clients.insert(key, config.clone());
        Ok(config)
    }
}

/// The name a client proxy gives in its ClientHello: SPIFFE certificates
/// carry no DNS name, and the verifier checks the SPIFFE ID instead.
pub fn server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls::pki_types::DnsName::try_from("plexus.mesh")
            .unwrap_or_else(|e| panic!("a valid DNS name: {e}"))
            .to_owned(),
    )
}

/// Verifies the server's chain against the mesh's roots (webpki, server
/// usage) and that its SPIFFE ID is the expected one.
#[derive(Debug)]
struct SpiffeVerifier {
    roots: Arc<RootCertStore>,
    expected: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("the peer's certificate: {e}")))?;
        cert.verify_for_usage(
            self.algorithms.all,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| rustls::Error::General(format!("the peer's certificate chain: {e}")))?;
        match spiffe_id(end_entity) {
            Some(id) if id == self.expected => Ok(ServerCertVerified::assertion()),
            Some(id) => Err(rustls::Error::General(format!(
                "the peer is {id}, not {}",
                self.expected
            ))),
            None => Err(rustls::Error::General(
                "the peer's certificate has no SPIFFE ID".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
