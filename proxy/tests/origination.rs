//! TLS origination (DestinationRule `tls.mode: SIMPLE` and `MUTUAL`)
//! through the operator's compiler and real proxies on loopback: the app
//! speaks plaintext HTTP (or opaque TCP) to a ServiceEntry's host; its
//! proxy speaks TLS to an HTTPS server outside the mesh whose certificate
//! a private CA issued, verifying it with the CA certificate of the rule's
//! `credentialName` Secret. The wrong CA, a name the certificate does not
//! carry and a missing Secret fail, and nothing reaches the server in
//! plaintext: it speaks only TLS. MUTUAL presents the client certificate
//! of that Secret, which the proxy reads through the API (here it is
//! handed the Secret's data as its watch would: the cluster test,
//! `e2e/tests/mesh/origination.rs`, runs the watch and its RBAC).

mod support;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use plexus_operator::ca::{CertifiedKey, generate_root, issue_server};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use support::world::{NS, World, send};
use support::{DAY, converse, count, http_client, metrics};
use tokio::net::TcpListener;

const CLIENT: &[(&str, &str)] = &[("app", "client")];
const NAME: &str = "secure.plexus.test";

/// What the HTTPS server saw: the server name of each handshake, and the
/// client certificates presented.
#[derive(Default)]
struct Seen {
    names: Mutex<Vec<Option<String>>>,
    clients: Mutex<Vec<CertificateDer<'static>>>,
}

/// An HTTPS server (HTTP/1.1 over TLS only) on `ip` with `cert`, answering
/// `secure <path>`; with `clients`, it requires a client certificate that
/// CA issued.
async fn https_app(
    ip: &str,
    cert: &CertifiedKey,
    clients: Option<&CertifiedKey>,
) -> (std::net::SocketAddr, Arc<Seen>) {
    let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("the server's chain");
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("the server's key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match clients {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).expect("the CA"))
                .expect("a root");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .expect("a server configuration");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let seen = Arc::new(Seen::default());
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let name = tls.get_ref().1.server_name().map(str::to_owned);
                log.names.lock().expect("log").push(name);
                if let Some(chain) = tls.get_ref().1.peer_certificates() {
                    log.clients
                        .lock()
                        .expect("log")
                        .push(chain[0].clone().into_owned());
                }
                let service = hyper::service::service_fn(|request: hyper::Request<_>| async move {
                    let body = format!("secure {}", request.uri().path());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(body)),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn secret(name: &str, key: &str, root: &CertifiedKey) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(&root.cert_pem);
    // In both client namespaces: the rules apply to both, and a proxy
    // takes its CA from its own namespace's Secret.
    ["demo", "other"]
        .map(|namespace| {
            format!(
                r#"
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {namespace}}}
data: {{{key}: {ca}}}
"#
            )
        })
        .concat()
}

/// A ServiceEntry for `host` on `address`, to the server at `server`, and
/// a DestinationRule with `tls`.
fn entry(
    name: &str,
    address: &str,
    protocol: &str,
    server: std::net::SocketAddr,
    tls: &str,
) -> String {
    let (port, ip) = (server.port(), server.ip());
    format!(
        r#"
---
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{name}.plexus.test]
  addresses: [{address}]
  ports: [{{number: 80, name: {protocol}, protocol: {protocol}, targetPort: {port}}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: {ip}}}]
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: {name}.plexus.test
  trafficPolicy: {{tls: {tls}}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_tls_origination_verifies_the_server() {
    let now = SystemTime::now();
    let private = generate_root("private.test", now, DAY).expect("a private CA");
    let other = generate_root("other.test", now, DAY).expect("another CA");
    let cert = issue_server(&private, &[NAME.to_owned()], now, DAY).expect("a server certificate");
    let (server, seen) = https_app("127.0.0.191", &cert, None).await;
    let resources = [
        secret("private-ca", "ca.crt", &private),
        secret("generic-ca", "cacert", &private),
        secret("other-ca", "ca.crt", &other),
        // The server's own name, verified by the right CA.
        entry("secure", "127.0.10.191", "HTTP", server, "{mode: SIMPLE, credentialName: private-ca}"),
        // Another host: the server name and the names it must carry given.
        entry(
            "alias",
            "127.0.10.192",
            "HTTP",
            server,
            &format!("{{mode: SIMPLE, credentialName: generic-ca, sni: {NAME}, subjectAltNames: [{NAME}]}}"),
        ),
        entry("wrong-ca", "127.0.10.193", "HTTP", server, &format!("{{mode: SIMPLE, credentialName: other-ca, sni: {NAME}}}")),
        entry(
            "wrong-name",
            "127.0.10.194",
            "HTTP",
            server,
            &format!("{{mode: SIMPLE, credentialName: private-ca, sni: {NAME}, subjectAltNames: [other.plexus.test]}}"),
        ),
        entry("unverified", "127.0.10.195", "HTTP", server, "{mode: SIMPLE, credentialName: other-ca, insecureSkipVerify: true}"),
        entry("no-secret", "127.0.10.196", "HTTP", server, &format!("{{mode: SIMPLE, credentialName: absent, sni: {NAME}}}")),
        entry("opaque", "127.0.10.197", "TCP", server, &format!("{{mode: SIMPLE, credentialName: private-ca, sni: {NAME}}}")),
    ]
    .concat();
    let mut world = World::start("origination", &[], Vec::new(), |_| resources).await;
    for name in [
        "secure",
        "alias",
        "wrong-ca",
        "wrong-name",
        "unverified",
        "opaque",
    ] {
        world.assert_enforced(&format!("DestinationRule/{NS}/{name}"));
    }
    // In force, and its status says the Secret it names is missing.
    let (accepted, message) = world.accepted(&format!("DestinationRule/{NS}/no-secret"));
    assert!(accepted, "{message}");
    assert!(
        message.contains(&format!(
            "spec.trafficPolicy.tls.credentialName: no Secret \"absent\" with a CA certificate \
             (ca.crt or cacert) in namespaces {NS}, other, where it applies"
        )),
        "{message}"
    );

    let client = http_client(false);
    let mut get = async |address: &str, host: &str, path: &str| {
        let (proxy, state) = world.client(NS, CLIENT, address).await;
        let answer = send(
            &client,
            proxy,
            "GET",
            path,
            &format!("{host}.plexus.test"),
            &[],
        )
        .await;
        let detail = answer
            .header("plexus-proxy-error-detail")
            .unwrap_or_default()
            .to_owned();
        (answer.status, answer.body, detail, state)
    };
    for (address, host) in [
        ("127.0.10.191:80", "secure"),
        ("127.0.10.192:80", "alias"),
        ("127.0.10.195:80", "unverified"),
    ] {
        let (status, body, _, _) = get(address, host, &format!("/{host}")).await;
        assert_eq!(
            (status, body.as_str()),
            (200, format!("secure /{host}").as_str()),
            "{host}"
        );
    }
    let names = seen.names.lock().expect("log").clone();
    // SNI: the host, then the rule's `sni`; the unverified one sends its host.
    for name in [NAME, "unverified.plexus.test"] {
        assert!(
            names.contains(&Some(name.to_owned())),
            "server names {names:?}"
        );
    }
    let before = names.len();
    for (address, host, why) in [
        ("127.0.10.193:80", "wrong-ca", "UnknownIssuer"),
        (
            "127.0.10.194:80",
            "wrong-name",
            "none of the subjectAltNames",
        ),
        ("127.0.10.196:80", "no-secret", "\"absent\""),
    ] {
        let (status, body, detail, state) = get(address, host, "/refused").await;
        assert_eq!((status, body.trim()), (503, "connect-failure"), "{host}");
        assert!(detail.contains(why), "{host}: {detail}");
        let refused = count(
            &metrics(&state),
            r#"plexus_proxy_tcp_refused_total{direction="outbound",reason="origination"}"#,
        );
        assert!(refused >= 1, "{host}: the refusal is counted");
    }
    // A rejected server certificate ends the handshake on the client's
    // side; the others never reach the server at all.
    let after = seen.names.lock().expect("log").len();
    assert!(after - before <= 2, "handshakes {before} → {after}");

    // Opaque TCP: plaintext in, TLS out.
    let (proxy, _) = world.client(NS, CLIENT, "127.0.10.197:80").await;
    let answer = converse(
        proxy,
        b"GET /opaque HTTP/1.1\r\nhost: secure.plexus.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("secure /opaque"),
        "{answer}"
    );
}

/// A Secret's data as the API gives it, decoded.
fn pair(cert: &CertifiedKey) -> std::collections::BTreeMap<String, Vec<u8>> {
    [
        ("tls.crt", cert.cert_pem.as_bytes()),
        ("tls.key", cert.key_pem.as_bytes()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_vec()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_origination_presents_the_client_certificate() {
    let now = SystemTime::now();
    let private = generate_root("private.test", now, DAY).expect("a private CA");
    let clients = generate_root("clients.test", now, DAY).expect("the clients' CA");
    let strangers = generate_root("strangers.test", now, DAY).expect("another CA");
    let cert = issue_server(&private, &[NAME.to_owned()], now, DAY).expect("a server certificate");
    let client_cert = issue_server(&clients, &["client.plexus.test".to_owned()], now, DAY)
        .expect("a client certificate");
    let rotated = issue_server(&clients, &["rotated.plexus.test".to_owned()], now, DAY)
        .expect("a client certificate");
    let stranger = issue_server(&strangers, &["stranger.plexus.test".to_owned()], now, DAY)
        .expect("a client certificate");
    let (server, seen) = https_app("127.0.0.192", &cert, Some(&clients)).await;
    let resources = [
        secret("client-tls", "ca.crt", &private),
        entry(
            "mutual",
            "127.0.10.181",
            "HTTP",
            server,
            &format!("{{mode: MUTUAL, credentialName: client-tls, sni: {NAME}}}"),
        ),
        entry(
            "opaque-mutual",
            "127.0.10.183",
            "TCP",
            server,
            &format!("{{mode: MUTUAL, credentialName: client-tls, sni: {NAME}}}"),
        ),
        // The server requires a client certificate: SIMPLE has none to give.
        entry(
            "simple",
            "127.0.10.182",
            "HTTP",
            server,
            &format!("{{mode: SIMPLE, credentialName: client-tls, sni: {NAME}}}"),
        ),
    ]
    .concat();
    let mut world = World::start("mutual", &[], Vec::new(), |_| resources).await;
    for name in ["mutual", "opaque-mutual", "simple"] {
        world.assert_enforced(&format!("DestinationRule/{NS}/{name}"));
    }
    let client = http_client(false);
    let (proxy, state) = world.client(NS, CLIENT, "127.0.10.181:80").await;
    let get = async || {
        let answer = send(&client, proxy, "GET", "/mutual", "mutual.plexus.test", &[]).await;
        let detail = answer
            .header("plexus-proxy-error-detail")
            .unwrap_or_default()
            .to_owned();
        (answer.status, answer.body, detail)
    };
    let presented = || {
        let clients = seen.clients.lock().expect("log");
        clients.last().map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der).expect("a certificate");
            cert.subject().to_string()
        })
    };

    // No certificate read yet: no connection at all.
    let (status, _, detail) = get().await;
    assert_eq!(status, 503);
    assert!(detail.contains("not loaded"), "{detail}");
    assert!(
        seen.names.lock().expect("log").is_empty(),
        "nothing reached the server"
    );

    // The Secret as the proxy's API watch reads it: presented, accepted.
    let certificates = &state.client_certificates;
    certificates.apply("client-tls", &pair(&client_cert), "test");
    let (status, body, detail) = get().await;
    assert_eq!((status, body.as_str()), (200, "secure /mutual"), "{detail}");
    assert_eq!(presented().as_deref(), Some("CN=client.plexus.test"));

    // A corrupt update is rejected: the certificate in force stays.
    certificates.apply(
        "client-tls",
        &[("tls.crt".to_owned(), b"garbage".to_vec())].into(),
        "test",
    );
    let (status, _, detail) = get().await;
    assert_eq!(status, 200, "{detail}");

    // A rotated Secret: its certificate from the next connection on. Opaque
    // TCP dials the server for each connection of the app.
    let (opaque, opaque_state) = world.client(NS, CLIENT, "127.0.10.183:80").await;
    let request = b"GET /opaque HTTP/1.1\r\nhost: mutual.plexus.test\r\nconnection: close\r\n\r\n";
    for cert in [&client_cert, &rotated] {
        opaque_state
            .client_certificates
            .apply("client-tls", &pair(cert), "test");
        let answer = converse(opaque, request).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let subject = presented().expect("a client certificate");
        assert!(
            cert_names(cert).iter().any(|n| subject.ends_with(n)),
            "{subject}"
        );
    }

    // A certificate the server does not trust: its handshake fails.
    let (other, other_state) = world.client(NS, CLIENT, "127.0.10.181:80").await;
    other_state
        .client_certificates
        .apply("client-tls", &pair(&stranger), "test");
    let answer = send(&client, other, "GET", "/mutual", "mutual.plexus.test", &[]).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);

    // The Secret deleted: refused, saying so.
    certificates.gone("client-tls", "Secret \"client-tls\" was deleted".into());
    let fresh_detail = {
        let (proxy, state) = world.client(NS, CLIENT, "127.0.10.181:80").await;
        state
            .client_certificates
            .gone("client-tls", "Secret \"client-tls\" was deleted".into());
        let answer = send(&client, proxy, "GET", "/mutual", "mutual.plexus.test", &[]).await;
        assert_eq!(answer.status, 503);
        answer
            .header("plexus-proxy-error-detail")
            .unwrap_or_default()
            .to_owned()
    };
    assert!(fresh_detail.contains("was deleted"), "{fresh_detail}");

    // SIMPLE to the same server: no client certificate, refused by it.
    let (proxy, _) = world.client(NS, CLIENT, "127.0.10.182:80").await;
    let answer = send(&client, proxy, "GET", "/simple", "simple.plexus.test", &[]).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
}

/// The subject CN of `cert`, as `CN=<name>`.
fn cert_names(cert: &CertifiedKey) -> Vec<String> {
    let der = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("a certificate");
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("a certificate");
    vec![parsed.subject().to_string()]
}
