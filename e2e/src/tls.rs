//! The test-server's TLS: a server answering each connection with its
//! service's name (a self-signed certificate, whatever the SNI asked), and
//! `/tls`, a client that connects with a given SNI and does not verify the
//! server (the test is about where connections go, not whom to trust).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::response::{IntoResponse, Json, Response};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one `/tls` connection may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Connections one `/tls` may make, one after the other.
const MAX_CONNECTIONS: u32 = 2_000;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A listener on every address's `port`; the process ends, naming the
/// setting `what`, when it cannot bind.
pub async fn listen_or_exit(port: u16, what: &str) -> tokio::net::TcpListener {
    match tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("{what} {port}: {error}");
            std::process::exit(1);
        }
    }
}

/// Serves TLS on `port`, answering every connection with `service`.
pub async fn serve(port: u16, service: String) {
    let acceptor = match acceptor() {
        Ok(acceptor) => acceptor,
        Err(error) => {
            eprintln!("TLS_PORT {port}: {error}");
            std::process::exit(1);
        }
    };
    let listener = listen_or_exit(port, "TLS_PORT").await;
    eprintln!("test-server serving TLS on :{port}");
    while let Ok((stream, _)) = listener.accept().await {
        let (acceptor, service) = (acceptor.clone(), service.clone());
        tokio::spawn(async move {
            if let Ok(Ok(mut tls)) = tokio::time::timeout(TIMEOUT, acceptor.accept(stream)).await {
                let _ = tls.write_all(service.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        });
    }
}

/// HTTPS: a listener handing out TLS connections, for `axum::serve`, with
/// the certificate and key of `dir` (`tls.crt`, `tls.key`: a mounted TLS
/// Secret). A failed handshake is dropped.
pub struct HttpsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl HttpsListener {
    /// Listens on `port`; the process ends when it cannot, or when `dir`
    /// holds no usable certificate.
    pub async fn bind_or_exit(port: u16, dir: &str) -> Self {
        let acceptor = match acceptor_from(dir) {
            Ok(acceptor) => acceptor,
            Err(error) => {
                eprintln!("HTTPS_CERT_DIR {dir}: {error:#}");
                std::process::exit(1);
            }
        };
        let tcp = listen_or_exit(port, "HTTPS_PORT").await;
        eprintln!("test-server serving HTTPS on :{port}");
        Self { tcp, acceptor }
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, peer) = axum::serve::Listener::accept(&mut self.tcp).await;
            match tokio::time::timeout(TIMEOUT, self.acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    if let Some(chain) = tls.get_ref().1.peer_certificates() {
                        eprintln!(
                            "HTTPS client certificate from {peer}: {}",
                            subject(&chain[0])
                        );
                    }
                    return (tls, peer);
                }
                Ok(Err(error)) => eprintln!("HTTPS handshake from {peer}: {error}"),
                Err(_) => eprintln!("HTTPS handshake from {peer}: timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A certificate's subject (`CN=...`), or why it has none to show.
fn subject(der: &CertificateDer<'_>) -> String {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert.subject().to_string())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

/// The address of an HTTPS connection's peer, for `ConnectInfo`.
#[derive(Clone, Copy, Debug)]
pub struct HttpsPeer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpsListener>>
    for HttpsPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HttpsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

fn acceptor_from(dir: &str) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    let read = |file: &str| {
        std::fs::read(std::path::Path::new(dir).join(file)).with_context(|| format!("{dir}/{file}"))
    };
    let chain = CertificateDer::pem_slice_iter(&read("tls.crt")?)
        .collect::<Result<Vec<_>, _>>()
        .context("tls.crt")?;
    let key = PrivateKeyDer::from_pem_slice(&read("tls.key")?).context("tls.key")?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    // With a `ca.crt`, only clients with a certificate it issued are served.
    let builder = match read("ca.crt") {
        Ok(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&ca) {
                roots.add(cert.context("ca.crt")?).context("ca.crt")?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .context("ca.crt")?;
            builder.with_client_cert_verifier(verifier)
        }
        Err(_) => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn acceptor() -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certified = rcgen::generate_simple_self_signed(vec!["test-server".to_owned()])?;
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .map_err(anyhow::Error::msg)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts any server certificate; signatures are still checked.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `/tls?addr=host:port&sni=NAME[&count=N]`: the answers of N connections.
pub async fn call(Query(query): Query<BTreeMap<String, String>>) -> Response {
    let bad = |message: String| {
        (axum::http::StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
    };
    let (Some(addr), Some(sni)) = (query.get("addr"), query.get("sni")) else {
        return bad("addr= and sni= are required".into());
    };
    let Ok(name) = ServerName::try_from(sni.clone()) else {
        return bad(format!("sni={sni:?} is not a server name"));
    };
    let count = match query.get("count").map(|c| c.parse::<u32>()) {
        None => 1,
        Some(Ok(n)) if (1..=MAX_CONNECTIONS).contains(&n) => n,
        Some(_) => return bad(format!("count: expected 1 to {MAX_CONNECTIONS}")),
    };
    let config = match rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
            .with_no_client_auth(),
        Err(error) => return bad(error.to_string()),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut answers = BTreeMap::<String, u32>::new();
    let mut errors = BTreeMap::<String, u32>::new();
    for _ in 0..count {
        let once = async {
            let tcp = tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let mut tls = connector
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let mut answer = String::new();
            tls.read_to_string(&mut answer)
                .await
                .map_err(|e| format!("read: {e}"))?;
            Ok::<_, String>(answer)
        };
        match tokio::time::timeout(TIMEOUT, once).await {
            Ok(Ok(answer)) => *answers.entry(answer).or_default() += 1,
            Ok(Err(error)) => *errors.entry(error).or_default() += 1,
            Err(_) => {
                *errors
                    .entry(format!("no answer within {TIMEOUT:?}"))
                    .or_default() += 1
            }
        }
    }
    Json(json!({"answers": answers, "errors": errors})).into_response()
}
