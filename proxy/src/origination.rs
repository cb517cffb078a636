//! TLS the proxy originates to servers outside the mesh: a DestinationRule's
//! `tls.mode: SIMPLE` or `MUTUAL`. The app speaks plaintext to the proxy;
//! the proxy speaks TLS to the server, sending `sni` (the destination's
//! host when unset) and verifying the server's chain against the CA
//! certificates of the rule's `credentialName` Secret, and its name against
//! `subjectAltNames` (the server name when none are given), unless
//! `insecureSkipVerify`. MUTUAL also presents the client certificate of
//! that Secret (`client_certs`: the proxy reads it itself, as its pod's
//! ServiceAccount).
//!
//! Without a CA there is nothing to verify against, and no connection is
//! made (Istio would fall back to the system's roots; a sidecar image has
//! none worth trusting). MUTUAL without a client certificate in force
//! makes no connection either. Either way the request fails with the
//! reason, and nothing goes out in plaintext.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::client_certs::ClientCertificates;
use plexus_config::{ClientTls, ClientTlsMode, Credential};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

/// How the proxy speaks TLS to one destination's servers.
pub struct Origination {
    /// What the settings hash to: connections are pooled by it.
    pub key: u64,
    /// The name in the ClientHello.
    pub server_name: ServerName<'static>,
    config: Result<ClientConfig, String>,
    /// MUTUAL: the Secret whose certificate is presented, and where it is.
    client: Option<(String, Arc<ClientCertificates>)>,
}

impl std::fmt::Debug for Origination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origination")
            .field("server_name", &self.server_name)
            .field("usable", &self.config.as_ref().map(|_| ()))
            .finish_non_exhaustive()
    }
}

impl PartialEq for Origination {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Origination {}

impl std::hash::Hash for Origination {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl Origination {
    /// The origination `tls` asks for to a destination named `host`, with
    /// the namespace's `credentials` (CAs) and the proxy's client
    /// `certificates`. Settings that cannot be acted on give an origination
    /// that refuses to connect, saying why.
    pub fn new(
        tls: &ClientTls,
        host: &str,
        credentials: &BTreeMap<String, Credential>,
        certificates: &Arc<ClientCertificates>,
    ) -> Self {
        let key = Self::key(tls, host, credentials);
        Self::with_key(key, tls, host, credentials, certificates)
    }

    /// [`Origination::new`], with its [`key`](Self::key) already known.
    fn with_key(
        key: u64,
        tls: &ClientTls,
        host: &str,
        credentials: &BTreeMap<String, Credential>,
        certificates: &Arc<ClientCertificates>,
    ) -> Self {
        let name = tls.sni.as_deref().unwrap_or(host);
        let credential = tls
            .credential_name
            .as_ref()
            .map(|n| (n, credentials.get(n)));
        let client = tls
            .credential_name
            .clone()
            .filter(|_| tls.mode == ClientTlsMode::Mutual)
            .map(|n| (n, certificates.clone()));
        let (server_name, config) = match ServerName::try_from(name.to_owned()) {
            Ok(server_name) => (server_name, config(tls, credential, client.as_ref())),
            // Never sent: the origination refuses to connect.
            Err(_) => (
                ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()),
                Err(format!("{name:?} is not a server name to send")),
            ),
        };
        Self {
            key,
            server_name,
            config,
            client,
        }
    }

    /// What [`Origination::new`] of these arguments hashes to: equal keys,
    /// equal originations.
    pub fn key(tls: &ClientTls, host: &str, credentials: &BTreeMap<String, Credential>) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let ca = tls
            .credential_name
            .as_ref()
            .and_then(|n| credentials.get(n))
            .map(|c| &c.ca_certificates);
        BuildHasherDefault::<DefaultHasher>::default().hash_one((
            tls.mode,
            &tls.credential_name,
            tls.sni.as_deref().unwrap_or(host),
            &tls.subject_alt_names,
            tls.insecure_skip_verify,
            ca,
        ))
    }

    /// The client configuration, offering `alpn`; why not when the
    /// settings cannot be acted on.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
        let mut config = self.config.clone()?;
        if let Some((name, certificates)) = &self.client {
            // No certificate in force: no handshake without one.
            certificates.get(name)?;
        }
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// The originations of one table: built once for all the clusters (ports,
/// subsets) that ask for the same.
pub struct Originations {
    built: std::collections::HashMap<u64, Arc<Origination>>,
    certificates: Arc<ClientCertificates>,
}

impl Originations {
    pub fn new(certificates: Arc<ClientCertificates>) -> Self {
        Self {
            built: Default::default(),
            certificates,
        }
    }

    /// The origination of `tls` to `host`.
    pub fn get(
        &mut self,
        tls: &ClientTls,
        host: &str,
        credentials: &BTreeMap<String, Credential>,
    ) -> Arc<Origination> {
        let key = Origination::key(tls, host, credentials);
        self.built
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Origination::with_key(
                    key,
                    tls,
                    host,
                    credentials,
                    &self.certificates,
                ))
            })
            .clone()
    }
}

fn config(
    tls: &ClientTls,
    credential: Option<(&String, Option<&Credential>)>,
    client: Option<&(String, Arc<ClientCertificates>)>,
) -> Result<ClientConfig, String> {
    if tls.mode == ClientTlsMode::Mutual && client.is_none() {
        return Err(
            "MUTUAL origination presents the certificate of a credentialName Secret; \
             there is none (clientCertificate files are not read)"
                .into(),
        );
    }
    let roots = match credential {
        _ if tls.insecure_skip_verify => None,
        Some((name, Some(credential))) => Some(roots(name, &credential.ca_certificates)?),
        Some((name, None)) => {
            return Err(format!(
                "credentialName Secret {name:?} holds no ca.crt in this namespace (or does not exist)"
            ));
        }
        None => {
            return Err(
                "SIMPLE origination verifies the server against a credentialName Secret's ca.crt; \
                 there is none (or set insecureSkipVerify)"
                    .into(),
            );
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Verifier::new(tls, roots, &provider);
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    Ok(match client {
        Some((name, certificates)) => {
            let mut config = builder.with_client_cert_resolver(certificates.resolver(name));
            // A resumed session carries the certificate of the one it
            // resumes: after a rotation the old one would still be shown.
            // Every connection presents the certificate in force instead.
            config.resumption = rustls::client::Resumption::disabled();
            config
        }
        None => builder.with_no_client_auth(),
    })
}

fn roots(name: &str, pem: &str) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("credentialName {name:?}: ca.crt: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("credentialName {name:?}: ca.crt: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "credentialName {name:?}: ca.crt holds no certificate"
        ));
    }
    Ok(Arc::new(roots))
}

/// A name the server's certificate must carry.
#[derive(Debug)]
enum Expected {
    /// A DNS name or an IP address.
    Name(ServerName<'static>),
    /// Anything else, compared with the certificate's URI SANs.
    Uri(String),
}

/// The server's chain must lead to `roots` (none: anything goes), and its
/// certificate carry one of `names` (none: the server name sent).
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    names: Vec<Expected>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    /// What `tls` asks of the server's certificate: a chain to `roots`, and
    /// one of its `subjectAltNames` (DNS names and IPs as such, anything
    /// else as a URI).
    fn new(
        tls: &ClientTls,
        roots: Option<Arc<RootCertStore>>,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Self {
        let names = tls
            .subject_alt_names
            .iter()
            .map(|n| match ServerName::try_from(n.clone()) {
                Ok(name) => Expected::Name(name),
                Err(_) => Expected::Uri(n.clone()),
            })
            .collect();
        Self {
            roots,
            names,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let general = |what: &str, e: &dyn std::fmt::Display| {
            rustls::Error::General(format!("the server's certificate {what}: {e}"))
        };
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|e| general("", &e))?;
        cert.verify_for_usage(
            self.algorithms.all,
            &roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| general("chain", &e))?;
        if self.names.is_empty() {
            return cert
                .verify_is_valid_for_subject_name(server_name)
                .map(|()| ServerCertVerified::assertion())
                .map_err(|e| general("name", &e));
        }
        let uris = uri_sans(end_entity);
        let carried = self.names.iter().any(|expected| match expected {
            Expected::Name(name) => cert.verify_is_valid_for_subject_name(name).is_ok(),
            Expected::Uri(uri) => uris.iter().any(|u| u == uri),
        });
        if carried {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate carries none of the subjectAltNames {:?}",
                self.names
            )))
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

fn uri_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_operator::ca::{SpiffeId, generate_root, issue_server, issue_workload};
    use std::time::{Duration, SystemTime};

    const DAY: Duration = Duration::from_secs(86_400);

    /// Whether a verifier made of `subject_alt_names` takes `cert` (issued
    /// by `root`) from a server named `server.test`.
    fn verifies(
        root: &plexus_operator::ca::CertifiedKey,
        cert: &plexus_operator::ca::CertifiedKey,
        subject_alt_names: &[&str],
    ) -> Result<(), String> {
        let tls = ClientTls {
            mode: ClientTlsMode::Simple,
            subject_alt_names: subject_alt_names.iter().map(|n| (*n).to_owned()).collect(),
            ..ClientTls::default()
        };
        let provider = rustls::crypto::ring::default_provider();
        let verifier = Verifier::new(&tls, Some(roots("ca", &root.cert_pem)?), &provider);
        let der =
            CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).map_err(|e| e.to_string())?;
        let server = ServerName::try_from("server.test").map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(&der, &[], &server, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn subject_alt_names_match_uris_and_dns_names() {
        let now = SystemTime::now();
        let root = generate_root("origination.test", now, DAY).expect("a CA");
        let id = SpiffeId {
            trust_domain: "far.test".into(),
            namespace: "payments".into(),
            service_account: "api".into(),
        };
        let workload = issue_workload(&root, &id, now, DAY).expect("a URI certificate");
        let server =
            issue_server(&root, &["server.test".into()], now, DAY).expect("a DNS certificate");
        let uri = "spiffe://far.test/ns/payments/sa/api";

        // A URI SAN: matched exactly, against the certificate's URIs only.
        verifies(&root, &workload, &[uri]).expect("the URI it carries");
        verifies(
            &root,
            &workload,
            &["spiffe://far.test/ns/payments/sa/other", uri],
        )
        .expect("one of the names is enough");
        for other in [
            "spiffe://far.test/ns/payments/sa/ap",
            "spiffe://far.test/ns/payments",
        ] {
            let why = verifies(&root, &workload, &[other]).expect_err(other);
            assert!(why.contains("carries none of the subjectAltNames"), "{why}");
        }
        verifies(&root, &server, &[uri]).expect_err("a certificate without URIs");

        // DNS names, as names.
        verifies(&root, &server, &["server.test"]).expect("its DNS name");
        verifies(&root, &server, &["other.test"]).expect_err("another name");
        verifies(&root, &workload, &["server.test"]).expect_err("a URI certificate");

        // No names: the server name sent, which the URI certificate lacks.
        verifies(&root, &server, &[]).expect("named as the server");
        verifies(&root, &workload, &[]).expect_err("not named as the server");

        // Names never stand in for the chain.
        let stranger = generate_root("stranger.test", now, DAY).expect("another CA");
        let forged = issue_workload(&stranger, &id, now, DAY).expect("a URI certificate");
        let why = verifies(&root, &forged, &[uri]).expect_err("another CA's");
        assert!(why.contains("chain"), "{why}");
    }
}
