//! Proxies on loopback for the integration tests: certificates from the
//! mesh's own CA code, volumes laid out as the kubelet mounts them, and a
//! fixed original destination in place of the redirection.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use plexus_config::{
    Endpoint, Inbound, MtlsMode, MtlsRule, ProxyConfig, SCHEMA, Service, ServicePort,
};
use plexus_operator::ca::{CertifiedKey, SpiffeId, issue_workload};
use plexus_proxy::forward::{self, Forwarder, OriginalDst};
use plexus_proxy::metrics::{Direction, Metrics};
use plexus_proxy::state::ProxyState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const DAY: Duration = Duration::from_secs(86_400);
/// The service address the client app dials; never connected to.
pub const SERVICE: &str = "198.19.0.10:80";

pub struct Fixed(pub SocketAddr);

impl OriginalDst for Fixed {
    fn original_dst(&self, _: &TcpStream) -> std::io::Result<SocketAddr> {
        Ok(self.0)
    }
}

pub fn workload(root: &CertifiedKey, sa: &str) -> CertifiedKey {
    let id = SpiffeId {
        trust_domain: "cluster.local".into(),
        namespace: "demo".into(),
        service_account: sa.into(),
    };
    issue_workload(root, &id, SystemTime::now(), DAY).expect("a workload certificate")
}

/// A proxy's mounted volumes, laid out as the kubelet does: each key is a
/// symlink into `..data`, itself a symlink to a timestamped directory, so
/// that [`update`] swaps all keys at once.
pub fn volumes(dir: &Path, config: &ProxyConfig, identity: &CertifiedKey, root: &CertifiedKey) {
    update(
        &dir.join("config"),
        &[(plexus_config::CONFIG_KEY, config.to_gzip())],
    );
    update(
        &dir.join("identity"),
        &[
            ("tls.crt", identity.cert_pem.clone().into_bytes()),
            ("tls.key", identity.key_pem.clone().into_bytes()),
            ("ca.crt", root.cert_pem.clone().into_bytes()),
        ],
    );
}

/// Writes a new version of a mounted volume and swaps it in atomically.
pub fn update(dir: &Path, files: &[(&str, Vec<u8>)]) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static VERSION: AtomicUsize = AtomicUsize::new(0);
    let version = format!("..v{}", VERSION.fetch_add(1, Ordering::Relaxed));
    std::fs::create_dir_all(dir.join(&version)).expect("dir");
    for (name, bytes) in files {
        std::fs::write(dir.join(&version).join(name), bytes).expect("write");
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).expect("symlink");
        }
    }
    let staged = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(&version, &staged).expect("symlink");
    std::fs::rename(&staged, dir.join("..data")).expect("swap");
}

/// Starts a proxy listener whose connections all "were going to" `original`.
pub async fn proxy(
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
pub async fn echo_app() -> SocketAddr {
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
pub async fn exchange(addr: SocketAddr, message: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(message).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    answer
}

pub fn server_config(mode: MtlsMode) -> ProxyConfig {
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
pub fn client_config(server_proxy: SocketAddr, expected_sa: &str) -> ProxyConfig {
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
pub fn count(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits (up to 5 s) until `series` reaches `expected`: the server side
/// counts a failed handshake once the client has gone.
pub async fn settles(state: &ProxyState, series: &str, expected: u64) {
    for _ in 0..50 {
        if count(&metrics(state), series) == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&metrics(state), series), expected, "{series}");
}

pub fn metrics(state: &ProxyState) -> String {
    state.metrics.encode()
}

pub fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("plexus-mtls-{}-{name}", std::process::id()))
}

/// A server proxy: inbound, in front of `app`, in `mode`, with the
/// identity of ServiceAccount `web` from `root`. Returns its listener, its
/// state and its volumes' directory.
pub async fn server_proxy(
    name: &str,
    root: &CertifiedKey,
    mode: MtlsMode,
    app: SocketAddr,
) -> (SocketAddr, Arc<ProxyState>, std::path::PathBuf) {
    let dir = temp(name);
    volumes(&dir, &server_config(mode), &workload(root, "web"), root);
    let (addr, state) = proxy(&dir, Direction::Inbound, app).await;
    (addr, state, dir)
}

/// A client proxy: outbound, its app dialling [`SERVICE`], expecting
/// `expected_sa` at `server`, with the identity of ServiceAccount `client`
/// issued by `issuer` and trusting `root`.
pub async fn client_proxy(
    name: &str,
    issuer: &CertifiedKey,
    root: &CertifiedKey,
    server: SocketAddr,
    expected_sa: &str,
) -> (SocketAddr, Arc<ProxyState>, std::path::PathBuf) {
    let dir = temp(name);
    volumes(
        &dir,
        &client_config(server, expected_sa),
        &workload(issuer, "client"),
        root,
    );
    let service = SERVICE.parse().unwrap_or_else(|e| panic!("{SERVICE}: {e}"));
    let (addr, state) = proxy(&dir, Direction::Outbound, service).await;
    (addr, state, dir)
}
