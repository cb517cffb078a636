//! Plexus installed with its Helm chart and the demo application
//! (`demo/`), driven the way a user would: `helm`, `kubectl apply`, and
//! traffic started from the demo's `client` pod. Shared by the e2e suite
//! (`tests/mesh.rs`) and the demo command (`src/bin/demo.rs`), so that the
//! demo shows exactly what the suite asserts.
//!
//! Everything goes through the API server (pod proxy subresource for the
//! client's `/call` and the proxies' `/metrics`), so it works on any
//! cluster `KUBECONFIG` names: kind, or the local one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::json;

use plexus_crds::keys::{
    DEFAULT_MESH_NAMESPACE, INIT_CONTAINER, INJECT_ENABLED, INJECT_LABEL, PROXY_CONTAINER,
};

use crate::FIELD_MANAGER;

/// The repository's root (the chart and the demo's manifests live there).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The chart, `helm/plexus`.
pub fn chart() -> PathBuf {
    repository().join("helm/plexus")
}

/// The demo application's manifests.
pub fn demo_app() -> PathBuf {
    repository().join("demo/app.yaml")
}

/// The demo's routing rules (DestinationRules and VirtualServices).
pub fn demo_routing() -> PathBuf {
    repository().join("demo/routing")
}

/// The release name and namespace the chart is installed with.
pub const RELEASE: &str = "plexus";
pub const MESH_NAMESPACE: &str = DEFAULT_MESH_NAMESPACE;
/// Port of every demo service, and of the proxy's admin server.
pub const APP_PORT: u16 = 9080;
pub const PROXY_ADMIN_PORT: u16 = 4191;

/// The helm binary: `PLEXUS_HELM` (scripts/install-helm.sh prints it), or
/// `helm` on PATH.
pub fn helm_binary() -> PathBuf {
    std::env::var_os("PLEXUS_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "helm".into())
}

/// Runs a command; its stdout, or an error with its stderr.
pub fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if stdin.is_some() {
        command.stdin(std::process::Stdio::piped());
    }
    let shown = format!("{} {}", program.display(), args.join(" "));
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn kubectl(args: &[&str]) -> anyhow::Result<String> {
    run(Path::new("kubectl"), args, None)
}

/// `helm upgrade --install` of the chart into `plexus-system`, waiting until
/// the operator and the webhook are Ready.
pub fn helm_install(extra: &[&str]) -> anyhow::Result<String> {
    let chart = chart();
    let mut args = vec![
        "upgrade",
        "--install",
        RELEASE,
        chart.to_str().context("the chart's path")?,
        "--namespace",
        MESH_NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout",
        "5m",
    ];
    args.extend_from_slice(extra);
    run(&helm_binary(), &args, None)
}

pub fn helm_uninstall() -> anyhow::Result<String> {
    run(
        &helm_binary(),
        &[
            "uninstall",
            RELEASE,
            "--namespace",
            MESH_NAMESPACE,
            "--wait",
            "--timeout",
            "5m",
        ],
        None,
    )
}

/// Labels `namespace` for injection (server-side apply of the label only).
pub async fn label_for_injection(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            namespace,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {INJECT_LABEL: INJECT_ENABLED}}})),
        )
        .await
        .with_context(|| format!("labelling namespace {namespace}"))?;
    Ok(())
}

/// The demo's Deployments, one pod each.
pub const DEPLOYMENTS: [&str; 7] = [
    "productpage-v1",
    "details-v1",
    "reviews-v1",
    "reviews-v2",
    "reviews-v3",
    "ratings-v1",
    "client",
];

/// The pod has the webhook's init container and the proxy: a container, or
/// a native sidecar (an init container that keeps running) on Kubernetes
/// 1.29 and later.
pub fn injected(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let init = spec.init_containers.iter().flatten();
    init.clone().any(|c| c.name == INIT_CONTAINER)
        && init
            .chain(&spec.containers)
            .any(|c| c.name == PROXY_CONTAINER)
}

/// Applies the demo application in `namespace` and waits until each of its
/// Deployments has a Ready pod (and no other pods are left from a rollout).
pub async fn deploy_app(client: &Client, namespace: &str) -> anyhow::Result<Vec<Pod>> {
    let app = demo_app();
    kubectl(&[
        "apply",
        "--namespace",
        namespace,
        "-f",
        app.to_str().context("the demo's path")?,
    ])?;
    ready_pods(client, namespace, Duration::from_secs(180)).await
}

/// Waits until every demo Deployment has exactly one pod and it is Ready.
pub async fn ready_pods(
    client: &Client,
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let list = pods.list(&ListParams::default()).await?.items;
        let live: Vec<Pod> = list
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let ready = live.iter().filter(|p| crate::pod_is_ready(p)).count();
        if live.len() == DEPLOYMENTS.len() && ready == live.len() {
            return Ok(live);
        }
        if std::time::Instant::now() > deadline {
            let states: Vec<String> = live
                .iter()
                .map(|p| {
                    format!(
                        "{} ready={} phase={}",
                        p.name_any(),
                        crate::pod_is_ready(p),
                        p.status
                            .as_ref()
                            .and_then(|s| s.phase.clone())
                            .unwrap_or_default()
                    )
                })
                .collect();
            bail!(
                "the demo's pods are not all Ready after {timeout:?}: {}",
                states.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Applies the demo's routing rules (`demo/routing/`) in `namespace`.
pub fn apply_routing(namespace: &str) -> anyhow::Result<()> {
    let path = demo_routing();
    kubectl(&[
        "apply",
        "--namespace",
        namespace,
        "-f",
        path.to_str().context("the routing's path")?,
    ])?;
    Ok(())
}

/// The first pod of a demo Deployment (by its `app` and `version` labels;
/// the client has only `app`).
pub async fn pod_of(
    client: &Client,
    namespace: &str,
    app: &str,
    version: Option<&str>,
) -> anyhow::Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = match version {
        Some(version) => format!("app={app},version={version}"),
        None => format!("app={app}"),
    };
    pods.list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .with_context(|| format!("no pod {selector} in {namespace}"))
}

/// What the client's `/call` answers: counts by status, by the answering
/// version, by error, and by every `service:version` in the answers' trees.
#[derive(Debug, Default, Deserialize)]
pub struct Calls {
    pub count: u32,
    #[serde(default)]
    pub statuses: BTreeMap<String, u32>,
    #[serde(default)]
    pub versions: BTreeMap<String, u32>,
    #[serde(default)]
    pub errors: BTreeMap<String, u32>,
    #[serde(default)]
    pub services: BTreeMap<String, u32>,
    /// The slowest call by status, milliseconds.
    #[serde(default)]
    pub slowest_ms: BTreeMap<String, u64>,
    /// The fastest call by status, milliseconds.
    #[serde(default)]
    pub fastest_ms: BTreeMap<String, u64>,
    /// Percentiles of the answered calls' durations, milliseconds.
    #[serde(default)]
    pub p50_ms: f64,
    #[serde(default)]
    pub p99_ms: f64,
}

impl Calls {
    /// How many answers included `service:version`.
    pub fn saw(&self, service: &str, version: &str) -> u32 {
        self.services
            .get(&format!("{service}:{version}"))
            .copied()
            .unwrap_or(0)
    }

    pub fn status(&self, status: u16) -> u32 {
        self.statuses.get(&status.to_string()).copied().unwrap_or(0)
    }
}

/// GETs `path` from port `port` of `pod`, through the API server.
pub async fn pod_get(
    client: &Client,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> anyhow::Result<String> {
    let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}");
    let request = http::Request::get(&uri).body(Vec::new())?;
    client
        .request_text(request)
        .await
        .with_context(|| format!("GET {uri}"))
}

/// Makes the demo's client pod call `url` `count` times (as `user`, when
/// given), through its sidecar.
pub async fn call(
    client: &Client,
    namespace: &str,
    url: &str,
    count: u32,
    user: Option<&str>,
) -> anyhow::Result<Calls> {
    let count = count.to_string();
    let mut params = vec![("url", url), ("count", count.as_str())];
    if let Some(user) = user {
        params.push(("user", user));
    }
    call_with(client, namespace, &params).await
}

/// The demo client's `/call` with `params` (url, count, rate, ...).
pub async fn call_with(
    client: &Client,
    namespace: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<Calls> {
    let text = client_get(client, namespace, "/call", params).await?;
    serde_json::from_str(&text).with_context(|| format!("the client's answer: {text}"))
}

/// The answer of the demo client's test-server to `GET endpoint?params`
/// (`/call`, `/tcp`, `/tls`).
pub async fn client_get(
    client: &Client,
    namespace: &str,
    endpoint: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<String> {
    let path = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in params {
            query.append_pair(key, value);
        }
        format!("{endpoint}?{}", query.finish())
    };
    let pod = pod_of(client, namespace, "client", None).await?;
    pod_get(client, namespace, &pod.name_any(), APP_PORT, &path).await
}

/// The Prometheus text of the proxy of `pod`.
pub async fn proxy_metrics(client: &Client, namespace: &str, pod: &str) -> anyhow::Result<String> {
    pod_get(client, namespace, pod, PROXY_ADMIN_PORT, "/metrics").await
}

/// From a proxy's metrics: requests it received, by the peer's SPIFFE
/// identity (the mTLS client certificate's), summed over routes and statuses.
pub fn inbound_identities(metrics: &str) -> BTreeMap<String, u64> {
    let mut identities = BTreeMap::new();
    for (labels, value) in samples(metrics, "plexus_proxy_requests_total") {
        if label(labels, "direction") == Some("inbound") {
            let identity = label(labels, "src_identity").unwrap_or_default();
            *identities.entry(identity.to_owned()).or_default() += value as u64;
        }
    }
    identities
}

/// The samples of metric `name` in Prometheus text: each one's labels
/// (`a="x",b="y"`) and value.
fn samples<'a>(metrics: &'a str, name: &str) -> impl Iterator<Item = (&'a str, f64)> {
    let prefix = format!("{name}{{");
    metrics.lines().filter_map(move |line| {
        let (labels, value) = line.strip_prefix(prefix.as_str())?.rsplit_once("} ")?;
        Some((labels, value.trim().parse().ok()?))
    })
}

/// The value of label `name` in a sample's labels.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = labels;
    while let Some((key, after)) = rest.split_once("=\"") {
        let (value, next) = after.split_once('"')?;
        if key.trim_start_matches(',') == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// The SPIFFE identity of the demo's ServiceAccount `account`.
pub fn spiffe_id(namespace: &str, account: &str) -> String {
    format!("spiffe://cluster.local/ns/{namespace}/sa/{account}")
}

/// Waits until the routing rules are in force on the client's path: a
/// request of `end-user: jason` reaches reviews v2 ten times in a row.
pub async fn wait_for_routing(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let calls = call(client, namespace, PRODUCTPAGE, 10, Some("jason")).await?;
        if calls.saw("reviews", "v2") == 10 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("the routing rules are not in force after 90s: {calls:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// productpage's URL as the client calls it.
pub const PRODUCTPAGE: &str = "http://productpage:9080/productpage";

/// The share of `part` in `total`, in percent.
pub fn percent(part: u32, total: u32) -> f64 {
    if total == 0 {
        0.0
    } else {
        f64::from(part) * 100.0 / f64::from(total)
    }
}

/// Who calls whom in the demo: (app, version, the caller's ServiceAccount).
pub const CALLERS: [(&str, Option<&str>, &str); 5] = [
    ("productpage", Some("v1"), "client"),
    ("details", Some("v1"), "productpage"),
    ("reviews", Some("v1"), "productpage"),
    ("reviews", Some("v2"), "productpage"),
    ("ratings", Some("v1"), "reviews"),
];

/// What one proxy of the demo saw: requests by peer identity, and the
/// identity its caller must have presented.
pub struct Seen {
    pub workload: String,
    pub expected: String,
    pub identities: BTreeMap<String, u64>,
}

impl Seen {
    /// Requests came from the expected identity, and none without one.
    pub fn holds(&self) -> bool {
        self.identities.get(&self.expected).copied().unwrap_or(0) > 0
            && !self.identities.contains_key("")
    }
}

/// Reads the inbound identities of every demo proxy that has a caller.
pub async fn seen_identities(client: &Client, namespace: &str) -> anyhow::Result<Vec<Seen>> {
    let mut seen = Vec::new();
    for (app, version, caller) in CALLERS {
        let pod = pod_of(client, namespace, app, version).await?;
        let metrics = proxy_metrics(client, namespace, &pod.name_any()).await?;
        seen.push(Seen {
            workload: format!("{app} {}", version.unwrap_or_default()),
            expected: spiffe_id(namespace, caller),
            identities: inbound_identities(&metrics),
        });
    }
    Ok(seen)
}

/// A control-plane Deployment's Ready replicas against the ones it wants.
#[derive(Debug)]
pub struct Replicas {
    pub name: &'static str,
    pub ready: i32,
    pub desired: i32,
}

impl Replicas {
    pub fn holds(&self) -> bool {
        self.desired > 0 && self.ready == self.desired
    }
}

/// The operator's and the webhook's Deployments in the mesh namespace.
pub async fn control_plane(client: &Client) -> anyhow::Result<Vec<Replicas>> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), MESH_NAMESPACE);
    let mut replicas = Vec::new();
    for name in ["plexus-operator", "plexus-webhook"] {
        let deployment = deployments
            .get(name)
            .await
            .with_context(|| format!("reading Deployment {MESH_NAMESPACE}/{name}"))?;
        replicas.push(Replicas {
            name,
            ready: deployment
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
            desired: deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1),
        });
    }
    Ok(replicas)
}

/// The sum of the samples of counter `name` whose labels include every
/// one of `labels` (name, value).
pub fn counter(metrics: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    samples(metrics, name)
        .filter(|(found, _)| labels.iter().all(|(k, v)| label(found, k) == Some(*v)))
        .map(|(_, value)| value)
        .sum::<f64>() as u64
}

/// [`counter`] of the demo client's proxy.
pub async fn client_counter(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> anyhow::Result<u64> {
    let pod = pod_of(client, namespace, "client", None).await?.name_any();
    Ok(counter(
        &proxy_metrics(client, namespace, &pod).await?,
        name,
        labels,
    ))
}

/// The sum of `plexus_proxy_retries_total` in a proxy's metrics.
pub fn retries(metrics: &str) -> f64 {
    samples(metrics, "plexus_proxy_retries_total")
        .map(|(_, value)| value)
        .sum()
}

/// `count` calls from the client to a ratings that fails every other
/// request with a 503 (`?status=503&every=2`); ratings' VirtualService
/// retries 5xx. What came back, and how many retries the client's proxy
/// made meanwhile.
pub async fn call_flaky_ratings(
    client: &Client,
    namespace: &str,
    count: u32,
) -> anyhow::Result<(Calls, f64)> {
    let pod = pod_of(client, namespace, "client", None).await?.name_any();
    let before = retries(&proxy_metrics(client, namespace, &pod).await?);
    let calls = call(client, namespace, FLAKY_RATINGS, count, None).await?;
    let after = retries(&proxy_metrics(client, namespace, &pod).await?);
    Ok((calls, after - before))
}

/// ratings, failing every other request.
pub const FLAKY_RATINGS: &str = "http://ratings:9080/ratings?status=503&every=2";
/// ratings, answering after 3 s; its VirtualService's timeout is 1 s.
pub const SLOW_RATINGS: &str = "http://ratings:9080/ratings?delay=3s";

/// `count` calls from the client to a ratings that answers after 3 s: what
/// came back and how long they took in all.
pub async fn call_slow_ratings(
    client: &Client,
    namespace: &str,
    count: u32,
) -> anyhow::Result<(Calls, Duration)> {
    let started = std::time::Instant::now();
    let calls = call(client, namespace, SLOW_RATINGS, count, None).await?;
    Ok((calls, started.elapsed()))
}

/// Waits until `kubectl get mesh default` shows Ready True (the operator's
/// leader has the root); returns that line.
pub async fn wait_for_mesh_ready(timeout: Duration) -> anyhow::Result<String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let ready = kubectl(&[
            "get",
            "mesh",
            "default",
            "--output",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ])?;
        if ready == "True" || std::time::Instant::now() > deadline {
            let mesh = kubectl(&["get", "mesh", "default"])?;
            ensure!(
                ready == "True",
                "the Mesh is not Ready after {timeout:?}:\n{mesh}"
            );
            return Ok(mesh);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `kubectl apply` of `yaml` in `namespace`.
pub fn kubectl_apply(namespace: &str, yaml: &str) -> anyhow::Result<()> {
    run(
        Path::new("kubectl"),
        &["apply", "--namespace", namespace, "-f", "-"],
        Some(yaml),
    )?;
    Ok(())
}

/// Waits (up to 180 s each) until the rollouts of `deployments` are done.
pub fn rollouts_done(namespace: &str, deployments: &[&str]) -> anyhow::Result<()> {
    for deployment in deployments {
        kubectl(&[
            "rollout",
            "status",
            "--namespace",
            namespace,
            "--timeout=180s",
            &format!("deployment/{deployment}"),
        ])?;
    }
    Ok(())
}

/// A ServiceAccount `name` and a one-replica Deployment `name` (pods
/// labelled `app: name`) whose pod spec is `spec`, as
/// [`test_server_spec`] writes it: YAML documents, each after a `---`.
pub fn test_server_deployment(name: &str, spec: &str) -> String {
    format!(
        r#"
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:{spec}
"#
    )
}

/// A pod template's spec (YAML, indented for `spec:` of a template) for
/// the test server as `name` (its ServiceAccount and SERVICE), listening
/// on `listen`, its container port `http` 9080, Ready when `/healthz`
/// answers on `probe` (a port name or number); `extra_env` and
/// `extra_ports` are more YAML list items.
pub fn test_server_spec(
    image: &str,
    name: &str,
    listen: u16,
    probe: &str,
    extra_env: &str,
    extra_ports: &str,
) -> String {
    format!(
        r#"
      serviceAccountName: {name}
      containers:
      - name: {name}
        image: {image}
        imagePullPolicy: IfNotPresent
        env:
        - {{name: SERVICE, value: {name}}}
        - {{name: PORT, value: "{listen}"}}
        {extra_env}
        ports:
        - {{name: http, containerPort: 9080}}
        {extra_ports}
        readinessProbe:
          httpGet: {{path: /healthz, port: {probe}}}
          periodSeconds: 2
        resources:
          requests: {{cpu: 10m, memory: 16Mi}}
          limits: {{memory: 64Mi}}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          runAsUser: 65532
          capabilities: {{drop: [ALL]}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# TYPE plexus_proxy_requests_total counter
plexus_proxy_requests_total{direction="inbound",src_identity="spiffe://cluster.local/ns/d/sa/client",dst_identity="spiffe://cluster.local/ns/d/sa/productpage",route="",dst_service="",status="200"} 7
plexus_proxy_requests_total{direction="inbound",src_identity="",dst_identity="spiffe://cluster.local/ns/d/sa/productpage",route="",dst_service="",status="200"} 2
plexus_proxy_requests_total{direction="outbound",src_identity="spiffe://cluster.local/ns/d/sa/productpage",dst_identity="spiffe://cluster.local/ns/d/sa/details",route="r",dst_service="details",status="200"} 9
plexus_proxy_retries_total{route="VirtualService/d/ratings"} 3
plexus_proxy_retries_total{route="VirtualService/d/other"} 2
"#;

    #[test]
    fn inbound_requests_are_counted_by_peer_identity() {
        assert_eq!(
            inbound_identities(METRICS),
            BTreeMap::from([
                ("".to_owned(), 2),
                ("spiffe://cluster.local/ns/d/sa/client".to_owned(), 7),
            ])
        );
    }

    #[test]
    fn retries_are_summed_over_routes() {
        assert_eq!(retries(METRICS), 5.0);
        assert_eq!(retries("# nothing\n"), 0.0);
    }

    #[test]
    fn a_label_is_found_by_its_whole_name() {
        let labels = r#"src_identity="a",dst_identity="b",direction="inbound""#;
        assert_eq!(label(labels, "src_identity"), Some("a"));
        assert_eq!(label(labels, "dst_identity"), Some("b"));
        assert_eq!(label(labels, "identity"), None);
        assert_eq!(label(labels, "direction"), Some("inbound"));
    }
}
