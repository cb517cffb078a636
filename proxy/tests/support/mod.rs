//! Proxies on loopback for the integration tests: certificates from the
//! mesh's own CA code, volumes laid out as the kubelet mounts them, and a
//! fixed original destination in place of the redirection.
#![allow(dead_code)]

pub mod dns;
pub mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use plexus_config::{
    Backend, Endpoint, HttpMatch, HttpRoute, Inbound, MtlsMode, MtlsRule, Protocol, ProxyConfig,
    Retry, SCHEMA, Service, ServicePort, StringMatch, Subset,
};
use plexus_operator::ca::{CertifiedKey, SpiffeId, generate_root, issue_workload};
use plexus_proxy::ctx::Ctx;
use plexus_proxy::original_dst::OriginalDst;
use plexus_proxy::state::ProxyState;
use plexus_proxy::telemetry::{Direction, Metrics};
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
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    serve(listener, dir, direction, original, BTreeMap::new())
}

/// Runs a proxy on `listener` with the volumes of `dir`, in a pod with
/// `labels`, its connections all "going to" `original`.
pub fn serve(
    listener: TcpListener,
    dir: &Path,
    direction: Direction,
    original: SocketAddr,
    labels: BTreeMap<String, String>,
) -> (SocketAddr, Arc<ProxyState>) {
    let state = Arc::new(
        ProxyState::new(
            dir.join("config"),
            dir.join("identity"),
            Arc::new(Metrics::default()),
        )
        .with_labels(labels),
    );
    state.reload();
    assert!(state.not_ready().is_none(), "{:?}", state.not_ready());
    let ctx = Arc::new(Ctx::new(state.clone(), Box::new(Fixed(original))));
    let addr = listener.local_addr().expect("address");
    let (_stop, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = _stop;
        plexus_proxy::listen::serve(listener, direction, ctx, stop).await;
    });
    (addr, state)
}

/// An app that echoes what it reads.
pub async fn echo_app() -> SocketAddr {
    echo_app_on("127.0.0.1", 0).await
}

/// [`echo_app`] on `ip` and `port` (any port when 0).
pub async fn echo_app_on(ip: &str, port: u16) -> SocketAddr {
    let listener = TcpListener::bind((ip, port)).await.expect("bind");
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

/// The first flight of a TLS client asking for `name`.
pub fn client_hello(name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(name.to_owned()).expect("a name");
    let mut client = rustls::ClientConnection::new(Arc::new(config), name).expect("a client");
    let mut hello = Vec::new();
    client.write_tls(&mut hello).expect("a ClientHello");
    hello
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

/// Sends an HTTP/1.1 `message` with `connection: close` and returns all
/// it reads until the other side closes, without half-closing first (an
/// HTTP server may take a half-close for a client that is gone).
pub async fn converse(addr: SocketAddr, message: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(message).await;
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

/// What an HTTP test app saw.
#[derive(Default)]
pub struct AppLog {
    /// Requests served, by path.
    pub requests: std::sync::Mutex<BTreeMap<String, u64>>,
    /// `x-request-id`s already failed (or slowed) once.
    flaked: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The protocol versions requests arrived in.
    pub versions: std::sync::Mutex<Vec<http::Version>>,
    /// The length of each request's body, in order.
    pub bodies: std::sync::Mutex<Vec<usize>>,
    /// Each request's Host (or :authority), in order.
    pub hosts: std::sync::Mutex<Vec<String>>,
}

impl AppLog {
    /// Requests served, whatever their path.
    pub fn total(&self) -> u64 {
        self.requests.lock().expect("log").values().sum()
    }

    pub fn served(&self, path: &str) -> u64 {
        self.requests
            .lock()
            .expect("log")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

/// An HTTP app (HTTP/1.1 and HTTP/2) answering with its `name` (and an
/// `x-app: <name>` header), after reading the request's body whole (its
/// length is logged): `…/flaky` answers 503 to the first request of
/// each `x-request-id` and 200 to the next (`?fail=<status>`: that status
/// instead), `?slow-once` makes the first request of each `x-request-id`
/// take two seconds, `/slow` answers after two seconds, `/headers` (or a
/// request with `x-echo`) echoes the request's method, authority, path and
/// headers, anything else 200 with the name. Also once per `x-request-id`:
/// `?mark=<header>` adds that header (value `1`), `?limited` answers 429
/// with `x-envoy-ratelimited`, `?grpc=<code>` answers as gRPC with that
/// `grpc-status` in the trailers (`?grpc-only=<code>`: in a trailers-only
/// answer); gRPC answers after that carry `grpc-status: 0`.
pub async fn http_app(name: &'static str) -> (SocketAddr, Arc<AppLog>) {
    http_app_on("127.0.0.1", name).await
}

/// [`http_app`] on a loopback address of its own. It also sleeps for the
/// milliseconds a request's `x-delay-<name>` header says.
pub async fn http_app_on(ip: &str, name: &'static str) -> (SocketAddr, Arc<AppLog>) {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    http_app_listening(listener, name)
}

/// [`http_app`] on `listener`.
pub fn http_app_listening(listener: TcpListener, name: &'static str) -> (SocketAddr, Arc<AppLog>) {
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::body::Frame;
    use hyper::{Request, Response, StatusCode};
    type AppBody =
        http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::convert::Infallible>;
    let addr = listener.local_addr().expect("address");
    let log = Arc::new(AppLog::default());
    let served = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = served.clone();
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        *log.requests
                            .lock()
                            .expect("log")
                            .entry(path.clone())
                            .or_default() += 1;
                        log.versions.lock().expect("log").push(request.version());
                        let authority = request
                            .uri()
                            .authority()
                            .map(|a| a.to_string())
                            .or_else(|| {
                                let host = request.headers().get("host")?;
                                Some(host.to_str().ok()?.to_owned())
                            })
                            .unwrap_or_default();
                        log.hosts.lock().expect("log").push(authority.clone());
                        let (request, body) = request.into_parts();
                        let request = Request::from_parts(request, ());
                        let length = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes().len())
                            .unwrap_or(0);
                        log.bodies.lock().expect("log").push(length);
                        let mut status = StatusCode::OK;
                        let mut body = name.to_owned();
                        let query = request.uri().query().unwrap_or_default().to_owned();
                        let id = request
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let first = |log: &AppLog, tag: &str| {
                            log.flaked.lock().expect("log").insert(format!("{tag}{id}"))
                        };
                        let delay = request
                            .headers()
                            .get(format!("x-delay-{name}"))
                            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                        if let Some(ms) = delay {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        if query.split('&').any(|q| q == "slow-once") && first(&log, "slow:") {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        let fail = query
                            .split('&')
                            .find_map(|q| q.strip_prefix("fail="))
                            .and_then(|code| code.parse::<u16>().ok());
                        if let Some(code) = fail.filter(|_| first(&log, "fail:")) {
                            status = StatusCode::from_u16(code).expect("status");
                        }
                        let echo = request.headers().contains_key("x-echo");
                        match path.as_str() {
                            p if p.ends_with("/flaky") && first(&log, "") => {
                                status = StatusCode::SERVICE_UNAVAILABLE;
                            }
                            p if p.ends_with("/flaky") => {}
                            "/slow" => tokio::time::sleep(Duration::from_secs(2)).await,
                            p if p == "/headers" || echo => {
                                let target = request
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default();
                                body = format!("{} {authority} {target}\n", request.method());
                                body.extend(
                                    request.headers().iter().map(|(k, v)| {
                                        format!("{k}: {}\n", v.to_str().unwrap_or("?"))
                                    }),
                                );
                            }
                            _ => {}
                        }
                        let once = |key: &str| {
                            query
                                .split('&')
                                .find_map(|q| q.strip_prefix(key))
                                .filter(|_| first(&log, key))
                                .map(str::to_owned)
                        };
                        let mark = once("mark=");
                        if once("limited").is_some() {
                            status = StatusCode::TOO_MANY_REQUESTS;
                        }
                        let grpc_only = once("grpc-only=");
                        let grpc = once("grpc=")
                            .or_else(|| query.contains("grpc").then(|| "0".to_owned()));
                        let body: AppBody = match (&grpc_only, &grpc) {
                            (None, Some(code)) => {
                                let mut trailers = hyper::HeaderMap::new();
                                trailers.insert("grpc-status", code.parse().expect("a code"));
                                let frames = [
                                    Frame::data(bytes::Bytes::from(body)),
                                    Frame::trailers(trailers),
                                ];
                                StreamBody::new(futures::stream::iter(
                                    frames.map(Ok::<_, std::convert::Infallible>),
                                ))
                                .boxed_unsync()
                            }
                            _ => Full::new(bytes::Bytes::from(body)).boxed_unsync(),
                        };
                        let mut response = Response::new(body);
                        *response.status_mut() = status;
                        let headers = response.headers_mut();
                        headers.insert("x-app", hyper::header::HeaderValue::from_static(name));
                        if let Some(mark) = mark {
                            headers.insert(
                                hyper::header::HeaderName::try_from(mark).expect("a name"),
                                hyper::header::HeaderValue::from_static("1"),
                            );
                        }
                        if status == StatusCode::TOO_MANY_REQUESTS {
                            headers.insert(
                                "x-envoy-ratelimited",
                                hyper::header::HeaderValue::from_static("true"),
                            );
                        }
                        if grpc.is_some() || grpc_only.is_some() {
                            headers.insert(
                                "content-type",
                                hyper::header::HeaderValue::from_static("application/grpc"),
                            );
                        }
                        if let Some(code) = grpc_only {
                            headers.insert("grpc-status", code.parse().expect("a code"));
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    (addr, log)
}

/// An HTTP/1.1 client with a connection pool.
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

pub fn http_client(http2: bool) -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(http2)
        .build_http()
}

/// A GET through `proxy` to `path` of service `web`, with extra headers;
/// the status and body, or the error.
pub async fn get(
    client: &HttpClient,
    proxy: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let mut request = hyper::Request::get(format!("http://{proxy}{path}"))
        .header("host", "web.demo.svc.cluster.local");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

pub const WEB: &str = "web.demo.svc.cluster.local";

fn backend(subset: &str, weight: u32) -> Backend {
    Backend {
        host: WEB.into(),
        subset: Some(subset.into()),
        weight,
        ..Default::default()
    }
}

fn prefix(path: &str) -> Vec<HttpMatch> {
    vec![HttpMatch {
        uri: Some(StringMatch::Prefix(path.into())),
        ..Default::default()
    }]
}

/// Service `web` with endpoints `v1` and `v2` (the two server proxies) and
/// the routes a VirtualService would compile to.
pub fn routed_config(v1: SocketAddr, v2: SocketAddr) -> ProxyConfig {
    let endpoint = |addr: SocketAddr, subset: &str| Endpoint {
        ip: addr.ip().to_string(),
        sa: Some("web".into()),
        meshed: true,
        subsets: vec![subset.into()],
        ports: [(80, addr.port())].into(),
        ..Default::default()
    };
    let routes = vec![
        HttpRoute {
            name: "VirtualService/demo/web/jason".into(),
            matches: vec![HttpMatch {
                headers: [("end-user".into(), StringMatch::Exact("jason".into()))].into(),
                ..Default::default()
            }],
            backends: vec![backend("v2", 100)],
            ..Default::default()
        },
        HttpRoute {
            name: "VirtualService/demo/web/retried".into(),
            matches: prefix("/flaky"),
            backends: vec![backend("v1", 100)],
            retries: Some(Retry {
                attempts: 2,
                per_try_timeout_ms: Some(1_000),
                retry_on: vec!["5xx".parse().expect("retryOn")],
                backoff_ms: Some(5),
            }),
            ..Default::default()
        },
        HttpRoute {
            name: "VirtualService/demo/web/not-retried".into(),
            matches: prefix("/once/flaky"),
            backends: vec![backend("v1", 100)],
            ..Default::default()
        },
        HttpRoute {
            name: "VirtualService/demo/web/slow".into(),
            matches: prefix("/slow"),
            backends: vec![backend("v1", 100)],
            timeout_ms: Some(300),
            ..Default::default()
        },
        HttpRoute {
            name: "VirtualService/demo/web".into(),
            backends: vec![backend("v1", 90), backend("v2", 10)],
            ..Default::default()
        },
    ];
    ProxyConfig {
        schema: SCHEMA.into(),
        namespace: "demo".into(),
        trust_domain: "cluster.local".into(),
        services: Arc::new(vec![Service {
            namespace: "demo".into(),
            name: "web".into(),
            hosts: vec![WEB.into()],
            addresses: vec!["198.19.0.10".into()],
            ports: vec![ServicePort {
                port: 80,
                name: Some("http".into()),
                protocol: Protocol::Http,
                target_port: Some(8080),
            }],
            http: routes,
            subsets: ["v1", "v2"]
                .map(|name| Subset {
                    name: name.into(),
                    policy: None,
                })
                .into(),
            endpoints: vec![endpoint(v1, "v1"), endpoint(v2, "v2")],
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// A client proxy and two server proxies (subsets `v1` and `v2` of `web`,
/// each in front of an [`http_app`] of that name) over STRICT mTLS.
pub struct Mesh {
    pub root: CertifiedKey,
    pub client: SocketAddr,
    pub client_state: Arc<ProxyState>,
    pub server_states: Vec<Arc<ProxyState>>,
    pub server_addrs: Vec<SocketAddr>,
    pub apps: Vec<Arc<AppLog>>,
    /// The client's volumes, then the servers'.
    pub dirs: Vec<std::path::PathBuf>,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub async fn mesh(name: &str) -> Mesh {
    let root = generate_root("cluster.local", SystemTime::now(), DAY).expect("root");
    let (app1, log1) = http_app("v1").await;
    let (app2, log2) = http_app("v2").await;
    let (v1, state1, dir1) =
        server_proxy(&format!("{name}-v1"), &root, MtlsMode::Strict, app1).await;
    let (v2, state2, dir2) =
        server_proxy(&format!("{name}-v2"), &root, MtlsMode::Strict, app2).await;
    let dir = temp(&format!("{name}-client"));
    volumes(
        &dir,
        &routed_config(v1, v2),
        &workload(&root, "client"),
        &root,
    );
    let service = SERVICE.parse().expect("address");
    let (client, client_state) = proxy(&dir, Direction::Outbound, service).await;
    Mesh {
        root,
        client,
        client_state,
        server_states: vec![state1, state2],
        server_addrs: vec![v1, v2],
        apps: vec![log1, log2],
        dirs: vec![dir, dir1, dir2],
    }
}
