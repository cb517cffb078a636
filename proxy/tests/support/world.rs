//! A mesh on loopback, configured from resources as users write them: the
//! test gives workloads, Services and mesh resources (YAML, `apiVersion:
//! plexus.dev/v1alpha1`); the operator's own compiler turns them, with the
//! Pods and Namespaces this builds, into each namespace's proxy
//! configuration; real proxies run with it, a server proxy in front of an
//! [`http_app`] per workload and client proxies for the test's callers.
//! Resource in, operator's compiler, proxy, observed effect: the tests the
//! capability list names are of this kind.
//!
//! Every address is on loopback: pods on `127.0.0.x`, Service ClusterIPs on
//! `127.0.10.x` (never listened on: the client proxy routes them).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use plexus_config::ProxyConfig;
use plexus_operator::ca::{CertifiedKey, SpiffeId, generate_root, issue_workload};
use plexus_operator::compile::FetchedJwks;
use plexus_proxy::state::ProxyState;
use plexus_proxy::telemetry::Direction;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{AppLog, DAY, HttpClient, http_app_on, serve, temp, volumes};

/// The namespace of everything unless a workload says otherwise.
pub const NS: &str = "demo";

/// A meshed pod: a server proxy in front of an app answering `name`.
#[derive(Clone)]
pub struct Workload {
    /// The pod's name, and what its app answers.
    pub name: &'static str,
    pub namespace: &'static str,
    /// Its address, on loopback (`127.0.0.x`).
    pub ip: &'static str,
    pub service_account: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
    /// Its app refuses connections (nothing listens on its port).
    pub dead: bool,
    /// Its proxy is not running: connections to the pod are refused.
    pub down: bool,
    /// Its pod is not Ready (not an endpoint) until [`World::set_ready`].
    pub unready: bool,
}

/// A pod of Service `app` (label `app`) with `version`, in [`NS`].
pub fn workload(
    name: &'static str,
    ip: &'static str,
    labels: &'static [(&'static str, &'static str)],
) -> Workload {
    Workload {
        name,
        namespace: NS,
        ip,
        service_account: "web",
        labels,
        dead: false,
        down: false,
        unready: false,
    }
}

/// The app ports of the workloads, by name: what a PeerAuthentication's
/// port-level modes name.
pub type Ports = BTreeMap<&'static str, u16>;

/// A running workload.
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<ProxyState>,
    pub app: Arc<AppLog>,
}

/// The mesh: its servers by workload name, the compiled configurations by
/// namespace, and what is needed to add clients.
pub struct World {
    pub root: CertifiedKey,
    pub trust_domain: String,
    pub servers: BTreeMap<&'static str, Server>,
    pub configs: BTreeMap<String, ProxyConfig>,
    /// The verdicts the operator gave, by `Kind/namespace/name`.
    pub verdicts: BTreeMap<String, (bool, String)>,
    /// The Programmed conditions: status, reason, message.
    pub programmed: BTreeMap<String, (bool, String, String)>,
    /// The Pods, Namespaces and Services, for recompiling.
    objects: Vec<Value>,
    /// What the operator fetched from `jwksUri`s.
    jwks: BTreeMap<String, FetchedJwks>,
    /// Every proxy's state and namespace, for new configurations.
    proxies: Vec<(String, Arc<ProxyState>)>,
    name: String,
    dirs: Vec<std::path::PathBuf>,
    /// The DNS server the client proxies ask (`World::resolve_with`).
    dns: Option<SocketAddr>,
}

impl Drop for World {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn identity(
    root: &CertifiedKey,
    trust_domain: &str,
    namespace: &str,
    account: &str,
) -> CertifiedKey {
    let id = SpiffeId {
        trust_domain: trust_domain.into(),
        namespace: namespace.into(),
        service_account: account.into(),
    };
    issue_workload(root, &id, SystemTime::now(), DAY).expect("a workload certificate")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A meshed, ready Pod whose port `http` is `port`.
fn pod(w: &Workload, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": w.name, "namespace": w.namespace, "labels": labels(w.labels)},
        "spec": {
            "serviceAccountName": w.service_account,
            "containers": [
                {"name": "app", "ports": [{"name": "http", "containerPort": port}]},
                {"name": plexus_crds::keys::PROXY_CONTAINER}
            ]
        },
        "status": {"podIP": w.ip, "conditions": [{"type": "Ready", "status": if w.unready { "False" } else { "True" }}]}
    })
}

/// A Service of `namespace` on port 80 at `cluster_ip`, to the pods with
/// `selector` on their port `http`.
pub fn service(name: &str, cluster_ip: &str, selector: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "clusterIP": cluster_ip,
            "selector": labels(selector),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
        }
    })
}

/// The documents of a YAML text.
pub fn yaml(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("YAML"))
        .filter(|v| !v.is_null())
        .map(|mut v| {
            if v["metadata"]["namespace"].is_null() && v["kind"] != "Namespace" {
                v["metadata"]["namespace"] = NS.into();
            }
            v
        })
        .collect()
}

impl World {
    /// Starts the workloads behind `services`, configured by the resources
    /// (YAML) `resources` gives for the workloads' app ports. Namespaces
    /// [`NS`] and `other` exist, labelled for injection.
    pub async fn start(
        name: &str,
        workloads: &[Workload],
        services: Vec<Value>,
        resources: impl FnOnce(&Ports) -> String,
    ) -> World {
        Self::start_with_jwks(name, workloads, services, resources, BTreeMap::new()).await
    }

    /// [`World::start`], with what the operator fetched from `jwksUri`s.
    pub async fn start_with_jwks(
        name: &str,
        workloads: &[Workload],
        services: Vec<Value>,
        resources: impl FnOnce(&Ports) -> String,
        jwks: BTreeMap<String, FetchedJwks>,
    ) -> World {
        let mut objects: Vec<Value> = ["demo", "other"]
            .iter()
            .map(|ns| {
                json!({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": ns, "labels": {"plexus.dev/inject": "enabled"}}})
            })
            .collect();
        let mut started = Vec::new();
        let mut ports = Ports::new();
        for w in workloads {
            let (app, log) = http_app_on("127.0.0.1", w.name).await;
            let app = if w.dead { closed_port().await } else { app };
            ports.insert(w.name, app.port());
            let listener = TcpListener::bind((w.ip, 0))
                .await
                .expect("bind on loopback");
            let port = listener.local_addr().expect("address").port();
            objects.push(pod(w, port));
            started.push((w, listener, app, log));
        }
        objects.extend(services);
        let base = objects.clone();
        objects.extend(yaml(&resources(&ports)));
        let (input, output) = compile(objects, &jwks);
        // The Mesh's trust domain (cluster.local unless a Mesh says otherwise).
        let trust_domain = input.mesh.trust_domain.clone();
        let root = generate_root(&trust_domain, SystemTime::now(), DAY).expect("root");
        let verdicts = verdicts(&output);
        let programmed = programmed(&input, &output);
        let mut world = World {
            root,
            trust_domain,
            servers: BTreeMap::new(),
            configs: output.configs,
            verdicts,
            programmed,
            objects: base,
            jwks,
            proxies: Vec::new(),
            name: name.to_owned(),
            dirs: Vec::new(),
            dns: None,
        };
        for (w, listener, app, log) in started {
            if w.down {
                drop(listener);
                continue;
            }
            let dir = world.volumes(
                &format!("server-{}", w.name),
                w.namespace,
                w.service_account,
            );
            let (addr, state) = serve(listener, &dir, Direction::Inbound, app, labels(w.labels));
            world.proxies.push((w.namespace.to_owned(), state.clone()));
            world.servers.insert(
                w.name,
                Server {
                    addr,
                    state,
                    app: log,
                },
            );
        }
        world
    }

    /// Writes the volumes of a proxy of `namespace` running as `account`.
    fn volumes(&mut self, what: &str, namespace: &str, account: &str) -> std::path::PathBuf {
        let dir = temp(&format!("{}-{what}", self.name));
        let config = self
            .configs
            .get(namespace)
            .unwrap_or_else(|| panic!("no configuration for {namespace}"));
        volumes(
            &dir,
            config,
            &identity(&self.root, &self.trust_domain, namespace, account),
            &self.root,
        );
        self.dirs.push(dir.clone());
        dir
    }

    /// A client proxy of a pod of `namespace` with `labels`, running as
    /// ServiceAccount `client`, whose app dials `original` (a Service's
    /// ClusterIP and port). Its listener's address, and its state.
    pub async fn client(
        &mut self,
        namespace: &str,
        pod_labels: &[(&str, &str)],
        original: &str,
    ) -> (SocketAddr, Arc<ProxyState>) {
        self.client_as(namespace, "client", pod_labels, original)
            .await
    }

    /// [`World::client`] running as ServiceAccount `account`.
    pub async fn client_as(
        &mut self,
        namespace: &str,
        account: &str,
        pod_labels: &[(&str, &str)],
        original: &str,
    ) -> (SocketAddr, Arc<ProxyState>) {
        let dir = self.volumes(&format!("client-{}", self.dirs.len()), namespace, account);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let original: SocketAddr = original.parse().expect("an address");
        assert!(original.ip().is_loopback(), "tests dial loopback only");
        let (addr, state) = serve(
            listener,
            &dir,
            Direction::Outbound,
            original,
            labels(pod_labels),
        );
        self.proxies.push((namespace.to_owned(), state.clone()));
        if let Some(dns) = self.dns {
            let resolver = plexus_proxy::dns::resolver(Some(dns)).expect("a resolver");
            tokio::spawn(plexus_proxy::dns::run(state.clone(), resolver));
        }
        (addr, state)
    }

    /// Client proxies started from now on run their DNS lookups against
    /// `server`.
    pub fn resolve_with(&mut self, server: SocketAddr) {
        self.dns = Some(server);
    }

    /// Compiles the workloads and Services with `resources` instead of
    /// those the world started with, and gives every running proxy its
    /// namespace's new configuration, as the API watch would.
    pub fn apply(&mut self, resources: &str) {
        let mut objects = self.objects.clone();
        objects.extend(yaml(resources));
        let (input, output) = compile(objects, &self.jwks);
        self.verdicts = verdicts(&output);
        self.programmed = programmed(&input, &output);
        self.configs = output.configs;
        for (namespace, state) in &self.proxies {
            state.apply_config(self.configs[namespace].to_gzip(), "the test");
        }
    }

    /// Marks the pod of workload `name` Ready, and compiles as
    /// [`World::apply`] does with `resources`: it joins its Services'
    /// endpoints.
    pub fn set_ready(&mut self, name: &str, resources: &str) {
        for object in &mut self.objects {
            if object["kind"] == "Pod" && object["metadata"]["name"] == name {
                object["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
            }
        }
        self.apply(resources);
    }

    /// What the operator fetched from `jwksUri`s, for the next [`World::apply`].
    pub fn set_jwks(&mut self, jwks: BTreeMap<String, FetchedJwks>) {
        self.jwks = jwks;
    }

    /// Fails unless the operator accepted `Kind/namespace/name` and the
    /// proxy enforces every field of it (the capability list says so).
    pub fn assert_enforced(&self, origin: &str) {
        assert_eq!(
            self.accepted(origin),
            (
                true,
                "Valid; the proxy enforces every field it sets.".into()
            ),
            "{origin}"
        );
    }

    /// The Accepted condition of `Kind/namespace/name`: its status and message.
    pub fn accepted(&self, origin: &str) -> (bool, String) {
        self.verdicts
            .get(origin)
            .cloned()
            .unwrap_or_else(|| panic!("no verdict for {origin}: {:?}", self.verdicts.keys()))
    }
}

/// The operator's compiler over `objects`.
fn compile(
    objects: Vec<Value>,
    jwks: &BTreeMap<String, FetchedJwks>,
) -> (
    plexus_operator::compile::Input,
    plexus_operator::compile::Output,
) {
    let mut input =
        plexus_operator::snapshot::input_from_objects(objects, "plexus-system", "cluster.local")
            .expect("the objects convert");
    input.jwks = jwks.clone();
    let output = plexus_operator::compile::compile(&input);
    (input, output)
}

/// The Accepted condition of every resource, by `Kind/namespace/name`.
fn verdicts(output: &plexus_operator::compile::Output) -> BTreeMap<String, (bool, String)> {
    output
        .verdicts
        .iter()
        .map(|(key, verdict)| {
            let accepted = verdict.accepted();
            (key.origin(), (accepted.status, accepted.message))
        })
        .collect()
}

/// The Programmed condition of every resource, by `Kind/namespace/name`.
fn programmed(
    input: &plexus_operator::compile::Input,
    output: &plexus_operator::compile::Output,
) -> BTreeMap<String, (bool, String, String)> {
    output
        .verdicts
        .iter()
        .map(|(key, verdict)| {
            let p = verdict.programmed(&input.injected);
            (key.origin(), (p.status, p.reason, p.message))
        })
        .collect()
}

/// An address on loopback nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address")
}

/// What a call answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    /// Header `name` of the answer, when it is there and readable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request through the client proxy at `proxy` (`host` in its Host
/// header), with extra headers.
pub async fn send(
    client: &HttpClient,
    proxy: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Answer {
    use http_body_util::BodyExt;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{proxy}{path}"))
        .header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("a request");
    let response = client.request(request).await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A request through the client proxy at `proxy` to Service `service` of
/// [`NS`] (its host in the Host header).
pub async fn send_to(
    client: &HttpClient,
    proxy: SocketAddr,
    method: &str,
    path: &str,
    service: &str,
    headers: &[(&str, &str)],
) -> Answer {
    send(client, proxy, method, path, &host(service), headers).await
}

/// A POST of `size` bytes streamed in 8 KiB chunks (no length given).
pub async fn post_streamed(proxy: SocketAddr, path: &str, id: &str, size: usize) -> u16 {
    use futures::StreamExt;
    use http_body_util::StreamBody;
    type Chunks = StreamBody<
        futures::stream::BoxStream<
            'static,
            Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
        >,
    >;
    let client: hyper_util::client::legacy::Client<_, Chunks> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let chunks = (0..size.div_ceil(8192)).map(move |i| {
        let n = 8192.min(size - i * 8192);
        Ok(hyper::body::Frame::data(bytes::Bytes::from(vec![b'x'; n])))
    });
    let body = StreamBody::new(futures::stream::iter(chunks).boxed());
    let request = hyper::Request::builder()
        .method("POST")
        .uri(format!("http://{proxy}{path}"))
        .header("host", host("web"))
        .header("x-request-id", id)
        .body(body)
        .expect("a request");
    client
        .request(request)
        .await
        .expect("an answer")
        .status()
        .as_u16()
}

/// The host of Service `name` of [`NS`].
pub fn host(name: &str) -> String {
    format!("{name}.{NS}.svc.cluster.local")
}
