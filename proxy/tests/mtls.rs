//! Two proxies on loopback with certificates from the mesh's own CA code:
//! the client proxy carries an app's TCP to the server proxy over mTLS, each
//! side checks the other's SPIFFE identity, and the server proxy's mTLS
//! mode decides about plaintext. The redirection (nftables) is replaced by a
//! fixed original destination per listener.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use plexus_config::{
    Endpoint, Inbound, MtlsMode, MtlsRule, ProxyConfig, SCHEMA, Service, ServicePort,
};
use plexus_operator::ca::{CertifiedKey, SpiffeId, generate_root, issue_workload};
use plexus_proxy::forward::{self, Forwarder, OriginalDst};
use plexus_proxy::metrics::{Direction, Metrics};
use plexus_proxy::state::ProxyState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DAY: Duration = Duration::from_secs(86_400);
/// The service address the client app dials; never connected to.
const SERVICE: &str = "198.19.0.10:80";

struct Fixed(SocketAddr);

impl OriginalDst for Fixed {
    fn original_dst(&self, _: &TcpStream) -> std::io::Result<SocketAddr> {
        Ok(self.0)
    }
}

fn workload(root: &CertifiedKey, sa: &str) -> CertifiedKey {
    let id = SpiffeId {
        trust_domain: "cluster.local".into(),
        namespace: "demo".into(),
        service_account: sa.into(),
    };
    issue_workload(root, &id, SystemTime::now(), DAY).expect("a workload certificate")
}

/// A proxy's mounted volumes: its configuration and identity.
fn volumes(dir: &Path, config: &ProxyConfig, identity: &CertifiedKey, root: &CertifiedKey) {
    std::fs::create_dir_all(dir.join("config")).expect("dir");
    std::fs::create_dir_all(dir.join("identity")).expect("dir");
    std::fs::write(
        dir.join("config").join(plexus_config::CONFIG_KEY),
        config.to_gzip(),
    )
    .expect("config");
    std::fs::write(dir.join("identity/tls.crt"), &identity.cert_pem).expect("cert");
    std::fs::write(dir.join("identity/tls.key"), &identity.key_pem).expect("key");
    std::fs::write(dir.join("identity/ca.crt"), &root.cert_pem).expect("bundle");
}

/// Starts a proxy listener whose connections all "were going to" `original`.
async fn proxy(
    dir: &Path,
    direction: Direction,
    original: SocketAddr,
) -> (SocketAddr, Arc<ProxyState>) {
    let state = Arc::new(ProxyState::new(
        dir.join("config"),
        dir.join("identity"),
        Arc::new(Metrics::default()),
    ));
    state.reload();
    assert!(state.not_ready().is_none(), "{:?}", state.not_ready());
    let forwarder = Arc::new(Forwarder::new(
        state.clone(),
        BTreeMap::new(),
        Box::new(Fixed(original)),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (_stop, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = _stop;
        forward::serve(listener, direction, forwarder, stop).await;
    });
    (addr, state)
}

/// An app that echoes what it reads.
async fn echo_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// Sends `message`, closes the writing side and returns all it reads.
async fn exchange(addr: SocketAddr, message: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(message).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    answer
}

fn server_config(mode: MtlsMode) -> ProxyConfig {
    ProxyConfig {
        schema: SCHEMA.into(),
        namespace: "demo".into(),
        trust_domain: "cluster.local".into(),
        inbound: Inbound {
            mtls: vec![MtlsRule {
                name: "Mesh/default".into(),
                selector: BTreeMap::new(),
                mode,
                ports: BTreeMap::new(),
            }],
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The client's view: service `web` at [`SERVICE`], one meshed endpoint
/// (the server proxy's listener) whose ServiceAccount is `expected_sa`.
fn client_config(server_proxy: SocketAddr, expected_sa: &str) -> ProxyConfig {
    ProxyConfig {
        schema: SCHEMA.into(),
        namespace: "demo".into(),
        trust_domain: "cluster.local".into(),
        services: Arc::new(vec![Service {
            namespace: "demo".into(),
            name: "web".into(),
            addresses: vec!["198.19.0.10".into()],
            ports: vec![ServicePort {
                port: 80,
                name: None,
                protocol: Default::default(),
                target_port: Some(8080),
            }],
            endpoints: vec![Endpoint {
                ip: server_proxy.ip().to_string(),
                sa: Some(expected_sa.into()),
                meshed: true,
                ports: [(80, server_proxy.port())].into(),
                ..Default::default()
            }],
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// The value of the sample named (with its labels) `series`, 0 if absent.
fn count(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits (up to 5 s) until `series` reaches `expected`: the server side
/// counts a failed handshake once the client has gone.
async fn settles(state: &ProxyState, series: &str, expected: u64) {
    for _ in 0..50 {
        if count(&metrics(state), series) == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&metrics(state), series), expected, "{series}");
}

fn metrics(state: &ProxyState) -> String {
    state.metrics.encode()
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("plexus-mtls-{}-{name}", std::process::id()))
}

#[tokio::test]
async fn tcp_between_two_proxies_goes_over_mtls_with_checked_identities() {
    let root = generate_root("cluster.local", SystemTime::now(), DAY).expect("root");
    let app = echo_app().await;

    let server_dir = temp("server");
    volumes(
        &server_dir,
        &server_config(MtlsMode::Strict),
        &workload(&root, "web"),
        &root,
    );
    let (server, server_state) = proxy(&server_dir, Direction::Inbound, app).await;

    let client_dir = temp("client");
    volumes(
        &client_dir,
        &client_config(server, "web"),
        &workload(&root, "client"),
        &root,
    );
    let (client, client_state) = proxy(
        &client_dir,
        Direction::Outbound,
        SERVICE.parse().expect("address"),
    )
    .await;

    assert_eq!(
        exchange(client, b"hello through the mesh").await,
        b"hello through the mesh"
    );
    let server_metrics = metrics(&server_state);
    assert!(
        server_metrics.contains(
            r#"plexus_proxy_tcp_mtls_total{direction="inbound",peer_identity="spiffe://cluster.local/ns/demo/sa/client"} 1"#
        ),
        "{server_metrics}"
    );
    assert!(metrics(&client_state).contains(
        r#"plexus_proxy_tcp_mtls_total{direction="outbound",peer_identity="spiffe://cluster.local/ns/demo/sa/web"} 1"#
    ));

    // Plaintext straight to the server proxy: refused under STRICT.
    assert_eq!(exchange(server, b"plaintext").await, b"");
    assert!(
        metrics(&server_state).contains(
            r#"plexus_proxy_tcp_refused_total{direction="inbound",reason="plaintext"} 1"#
        )
    );

    // A client proxy that expects another identity at that endpoint.
    let wrong_dir = temp("wrong");
    volumes(
        &wrong_dir,
        &client_config(server, "billing"),
        &workload(&root, "client"),
        &root,
    );
    let (wrong, wrong_state) = proxy(
        &wrong_dir,
        Direction::Outbound,
        SERVICE.parse().expect("address"),
    )
    .await;
    assert_eq!(exchange(wrong, b"hello").await, b"");
    assert!(
        metrics(&wrong_state).contains(
            r#"plexus_proxy_tcp_refused_total{direction="outbound",reason="handshake"} 1"#
        )
    );

    settles(
        &server_state,
        r#"plexus_proxy_tcp_refused_total{direction="inbound",reason="handshake"}"#,
        1,
    )
    .await;

    // A client whose certificate another root signed: the server refuses it.
    let other_root = generate_root("cluster.local", SystemTime::now(), DAY).expect("root");
    let stranger_dir = temp("stranger");
    volumes(
        &stranger_dir,
        &client_config(server, "web"),
        &workload(&other_root, "client"),
        &root,
    );
    let (stranger, _) = proxy(
        &stranger_dir,
        Direction::Outbound,
        SERVICE.parse().expect("address"),
    )
    .await;
    assert_eq!(exchange(stranger, b"hello").await, b"");
    let handshakes = r#"plexus_proxy_tcp_refused_total{direction="inbound",reason="handshake"}"#;
    // The wrong-identity client gave up its handshake, the stranger's was refused.
    settles(&server_state, handshakes, 2).await;
    let accepted = r#"plexus_proxy_tcp_mtls_total{direction="inbound",peer_identity="spiffe://cluster.local/ns/demo/sa/client"}"#;
    assert_eq!(
        count(&metrics(&server_state), accepted),
        1,
        "only the first client got through"
    );

    for dir in [server_dir, client_dir, wrong_dir, stranger_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn permissive_accepts_plaintext_and_mtls() {
    let root = generate_root("cluster.local", SystemTime::now(), DAY).expect("root");
    let app = echo_app().await;
    let server_dir = temp("permissive");
    volumes(
        &server_dir,
        &server_config(MtlsMode::Permissive),
        &workload(&root, "web"),
        &root,
    );
    let (server, _) = proxy(&server_dir, Direction::Inbound, app).await;
    assert_eq!(exchange(server, b"plaintext").await, b"plaintext");

    let client_dir = temp("permissive-client");
    volumes(
        &client_dir,
        &client_config(server, "web"),
        &workload(&root, "client"),
        &root,
    );
    let (client, _) = proxy(
        &client_dir,
        Direction::Outbound,
        SERVICE.parse().expect("address"),
    )
    .await;
    assert_eq!(exchange(client, b"over mtls").await, b"over mtls");
    for dir in [server_dir, client_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
