//! The webhook on a real cluster (`KUBECONFIG`; the local cluster of
//! e2e/cluster/cluster.sh): the operator and the webhook run on this machine,
//! the API server reaches the webhook through a Service whose endpoint is
//! the node's bridge address, with the serving certificate and caBundle the
//! operator issues. Pods in a labelled namespace get the proxy and run; pods
//! elsewhere are untouched; a Job completes. Two injected Deployments talk
//! HTTP through their sidecars over mTLS and a 90/10 VirtualService split
//! is observed. Run by e2e/run-tests.sh.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use plexus_e2e::{
    FIELD_MANAGER, in_namespace, is_ready, test_server_image, toolbox_image, wait_for_pod,
};
use serde_json::json;

const MESH_NAMESPACE: &str = "plexus-system";
const WEBHOOK: &str = "plexus-webhook";

/// The node's address on the pod bridge, where the API server (through the
/// Service) reaches the webhook on this machine.
fn host_ip() -> String {
    std::env::var("PLEXUS_NODE_IP").unwrap_or_else(|_| "198.18.0.1".into())
}

/// A child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &std::path::Path, args: &[&str], log: &str) -> anyhow::Result<Process> {
    let log = std::fs::File::create(log).with_context(|| format!("creating {log}"))?;
    let child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "info,kube=warn")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Process(child))
}

/// The operator binary, built beside this test (run-tests.sh tests the
/// operator's package in the same cargo invocation).
fn operator_binary() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("the test's directory")?;
    let operator = dir.join("plexus-operator");
    if !operator.exists() {
        bail!(
            "{} is missing: cargo build -p plexus-operator",
            operator.display()
        );
    }
    Ok(operator)
}

fn free_port(ip: &str) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}"))?;
    Ok(listener.local_addr()?.port())
}

/// What the Helm chart installs around the webhook, with a selectorless
/// Service pointing at this machine.
async fn install(client: &Client, port: u16) -> anyhow::Result<()> {
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            MESH_NAMESPACE,
            &apply,
            &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": MESH_NAMESPACE}})),
        )
        .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), MESH_NAMESPACE);
    services
        .patch(WEBHOOK, &apply, &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": WEBHOOK, "namespace": MESH_NAMESPACE},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port, "protocol": "TCP"}]}})))
        .await?;
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), MESH_NAMESPACE);
    endpoints
        .patch(
            WEBHOOK,
            &apply,
            &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": WEBHOOK, "namespace": MESH_NAMESPACE},
            "subsets": [{"addresses": [{"ip": host_ip()}],
                         "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]})),
        )
        .await?;
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    configurations
        .patch(WEBHOOK, &apply, &Patch::Apply(webhook_configuration()))
        .await?;
    Ok(())
}

/// The MutatingWebhookConfiguration, as the chart has it: labelled
/// namespaces (minus pods that opt out), and pods that opt in elsewhere.
fn webhook_configuration() -> serde_json::Value {
    let webhook = |name: &str,
                   namespace_selector: serde_json::Value,
                   object_selector: serde_json::Value| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"service": {"name": WEBHOOK, "namespace": MESH_NAMESPACE, "path": "/mutate", "port": 443}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": namespace_selector,
            "objectSelector": object_selector,
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
            "reinvocationPolicy": "IfNeeded",
        })
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK},
        "webhooks": [
            webhook("namespaces.inject.plexus.dev",
                json!({"matchLabels": {"plexus.dev/inject": "enabled"}}),
                json!({"matchExpressions": [{"key": "plexus.dev/inject", "operator": "NotIn", "values": ["disabled"]}]})),
            webhook("pods.inject.plexus.dev",
                json!({"matchExpressions": [{"key": "plexus.dev/inject", "operator": "DoesNotExist"}]}),
                json!({"matchLabels": {"plexus.dev/inject": "enabled"}})),
        ]
    })
}

async fn uninstall(client: &Client) {
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let _ = configurations
        .delete(WEBHOOK, &DeleteParams::default())
        .await;
    let services: Api<Service> = Api::namespaced(client.clone(), MESH_NAMESPACE);
    let _ = services.delete(WEBHOOK, &DeleteParams::default()).await;
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), MESH_NAMESPACE);
    let _ = endpoints.delete(WEBHOOK, &DeleteParams::default()).await;
}

fn container_names(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let spec = pod.spec.as_ref();
    let names = |list: Option<&Vec<k8s_openapi::api::core::v1::Container>>| {
        list.into_iter().flatten().map(|c| c.name.clone()).collect()
    };
    (
        names(spec.and_then(|s| s.init_containers.as_ref())),
        names(spec.map(|s| &s.containers)),
    )
}

fn probe_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": toolbox_image(), "args": ["sleep", "3600"]}],
                 "terminationGracePeriodSeconds": 1}
    }))
    .unwrap_or_default()
}

/// Waits until the API server's admission of a pod in `namespace` (a dry
/// run) comes back with the proxy: the webhook has its certificate, the
/// caBundle is in place and the Service reaches it.
async fn wait_for_injection(client: &Client, namespace: &str, opt_in: bool) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut probe = probe_pod("probe");
    if opt_in {
        probe.metadata.labels =
            Some([("plexus.dev/inject".to_owned(), "enabled".to_owned())].into());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let last = match pods
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &probe,
            )
            .await
        {
            Ok(pod)
                if container_names(&pod).1.first().map(String::as_str) == Some("plexus-proxy") =>
            {
                return Ok(());
            }
            Ok(_) => "admitted without the proxy".to_owned(),
            Err(error) => error.to_string(),
        };
        if std::time::Instant::now() > deadline {
            bail!("the webhook does not inject after 120s: {last}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until the operator's configuration for `namespace` lists the pod
/// at `ip` as a meshed endpoint.
async fn wait_for_meshed_endpoint(
    client: &Client,
    namespace: &str,
    ip: &str,
) -> anyhow::Result<()> {
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), namespace);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let map = maps.get_opt(plexus_config::CONFIGMAP_NAME).await?;
        let config = map
            .and_then(|m| m.binary_data)
            .and_then(|data| data.get(plexus_config::CONFIG_KEY).cloned())
            .and_then(|bytes| plexus_config::ProxyConfig::from_gzip(&bytes.0).ok());
        let meshed = config.is_some_and(|c| {
            c.services
                .iter()
                .any(|s| s.endpoints.iter().any(|e| e.ip == ip && e.meshed))
        });
        if meshed {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("the configuration of {namespace} has no meshed endpoint {ip} after 60s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The metrics of the proxy of the pod at `ip`, read from its admin port
/// (pod addresses are on this machine's bridge).
async fn proxy_metrics(ip: &str) -> anyhow::Result<String> {
    http_get(ip, 4191, "/metrics", Duration::from_secs(10)).await
}

/// A plain HTTP/1.0 GET to a pod; the whole response, head and body.
async fn http_get(ip: &str, port: u16, path: &str, timeout: Duration) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    tokio::time::timeout(timeout, stream.read_to_string(&mut response)).await??;
    Ok(response)
}

/// Waits until `namespace`'s proxy configuration satisfies `ready`.
async fn wait_for_config(
    client: &Client,
    namespace: &str,
    what: &str,
    ready: impl Fn(&plexus_config::ProxyConfig) -> bool,
) -> anyhow::Result<()> {
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), namespace);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let config = maps
            .get_opt(plexus_config::CONFIGMAP_NAME)
            .await?
            .and_then(|m| m.binary_data)
            .and_then(|data| data.get(plexus_config::CONFIG_KEY).cloned())
            .and_then(|bytes| plexus_config::ProxyConfig::from_gzip(&bytes.0).ok());
        if config.as_ref().is_some_and(&ready) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("the configuration of {namespace} has no {what} after 90s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Service `web` on port 8080, in front of pods labelled `app: web`.
fn web_service(ns: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]}})
}

/// VirtualService `web`: `v1` and `v2` (DestinationRule subsets) weighted.
fn web_split(ns: &str, v1: u32, v2: u32) -> serde_json::Value {
    json!({
        "apiVersion": "plexus.dev/v1alpha1", "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"hosts": ["web"], "http": [{"route": [
            {"destination": {"host": "web", "subset": "v1"}, "weight": v1},
            {"destination": {"host": "web", "subset": "v2"}, "weight": v2}]}]}})
}

/// A Deployment of one test-server pod, its container named `container`.
fn test_server(
    name: &str,
    container: &str,
    ns: &str,
    labels: serde_json::Value,
    version: &str,
) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 5, "containers": [{
                    "name": container, "image": test_server_image(),
                    "env": [{"name": "VERSION", "value": version}],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2}
                }]}
            }
        }
    })
}

/// Two versions of `web` behind a 90/10 VirtualService split over
/// DestinationRule subsets, and a client Deployment calling `web` 2,000
/// times: the split holds within 3 points and every request reached web
/// over mTLS as the client's identity.
async fn split_scenario(client: &Client) -> anyhow::Result<()> {
    in_namespace(client, "split", |ns| async move {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .patch(
                &ns,
                &PatchParams::default(),
                &Patch::Merge(json!({
                "metadata": {"labels": {"plexus.dev/inject": "enabled"}}})),
            )
            .await?;
        wait_for_injection(client, &ns, false).await?;
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        for version in ["v1", "v2"] {
            let name = format!("web-{version}");
            let labels = json!({"app": "web", "version": version});
            deployments
                .patch(
                    &name,
                    &apply,
                    &Patch::Apply(test_server(&name, "app", &ns, labels, version)),
                )
                .await?;
        }
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);
        services
            .patch("web", &apply, &Patch::Apply(web_service(&ns)))
            .await?;
        let rules: Api<plexus_crds::destination_rule::DestinationRule> =
            Api::namespaced(client.clone(), &ns);
        rules
            .patch(
                "web",
                &apply,
                &Patch::Apply(json!({
                "apiVersion": "plexus.dev/v1alpha1", "kind": "DestinationRule",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {"host": "web", "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}}]}})),
            )
            .await?;
        let routes: Api<plexus_crds::virtual_service::VirtualService> =
            Api::namespaced(client.clone(), &ns);
        routes
            .patch("web", &apply, &Patch::Apply(web_split(&ns, 90, 10)))
            .await?;

        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let mut web_ips = Vec::new();
        for version in ["v1", "v2"] {
            let pod = plexus_e2e::eventually_one(
                &pods,
                &format!("app=web,version={version}"),
                Duration::from_secs(60),
            )
            .await?;
            let pod = wait_for_pod(
                &pods,
                &pod.name_any(),
                "Ready",
                Duration::from_secs(180),
                is_ready(),
            )
            .await?;
            web_ips.push(pod.status.and_then(|s| s.pod_ip).unwrap_or_default());
        }
        // The client's proxy reads its configuration once at start (the
        // kubelet refreshes mounted ConfigMaps only every minute or so):
        // wait for both endpoints and the split before starting it.
        let host = format!("web.{ns}.svc.cluster.local");
        wait_for_config(client, &ns, "split with both web pods meshed", |config| {
            config.services.iter().any(|s| {
                s.hosts.first() == Some(&host)
                    && web_ips
                        .iter()
                        .all(|ip| s.endpoints.iter().any(|e| &e.ip == ip && e.meshed))
                    && s.http.iter().any(|r| {
                        r.backends.iter().map(|b| b.weight).collect::<Vec<_>>() == [90, 10]
                    })
            })
        })
        .await?;
        deployments
            .patch(
                "client",
                &apply,
                &Patch::Apply(test_server(
                    "client",
                    "app",
                    &ns,
                    json!({"app": "client"}),
                    "client",
                )),
            )
            .await?;
        let caller =
            plexus_e2e::eventually_one(&pods, "app=client", Duration::from_secs(60)).await?;
        let caller = wait_for_pod(
            &pods,
            &caller.name_any(),
            "Ready",
            Duration::from_secs(180),
            is_ready(),
        )
        .await?;
        let caller_ip = caller.status.and_then(|s| s.pod_ip).unwrap_or_default();

        let calls = 2_000;
        let response = http_get(
            &caller_ip,
            8080,
            &format!("/call?url=http://web:8080/&count={calls}"),
            Duration::from_secs(120),
        )
        .await?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_str(body)
            .with_context(|| format!("the client's answer: {response}"))?;
        let count = |v: &str| answer["versions"][v].as_u64().unwrap_or(0);
        anyhow::ensure!(
            count("v1") + count("v2") == calls && answer["statuses"]["200"] == calls,
            "not every call answered 200 by v1 or v2: {answer}"
        );
        let share = count("v2") as f64 / calls as f64;
        anyhow::ensure!(
            (0.07..=0.13).contains(&share),
            "v2 answered {:.1} % of the calls: {answer}",
            share * 100.0
        );
        eprintln!("split over {calls} calls: {}", answer["versions"]);

        // Every call arrived over mTLS as the client's identity.
        let identity = format!("spiffe://cluster.local/ns/{ns}/sa/default");
        let mut served = 0;
        for ip in &web_ips {
            let metrics = proxy_metrics(ip).await?;
            served += metrics
                .lines()
                .filter(|l| {
                    l.starts_with("plexus_proxy_requests_total{direction=\"inbound\"")
                        && l.contains(&format!("src_identity=\"{identity}\""))
                        && l.contains("status=\"200\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        anyhow::ensure!(
            served == calls,
            "web's proxies counted {served} requests from {identity}, not {calls}"
        );

        // A change of the split reaches the running client proxy through
        // its API watch, long before the kubelet would refresh the file.
        routes
            .patch("web", &apply, &Patch::Apply(web_split(&ns, 0, 100)))
            .await?;
        let changed = std::time::Instant::now();
        loop {
            let response = http_get(
                &caller_ip,
                8080,
                "/call?url=http://web:8080/&count=20",
                Duration::from_secs(30),
            )
            .await?;
            if response.contains(r#""versions":{"v2":20}"#) {
                break;
            }
            anyhow::ensure!(
                changed.elapsed() < Duration::from_secs(20),
                "the client still splits 20 s after the VirtualService changed: {response}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("the new split was in force after {:?}", changed.elapsed());
        Ok(())
    })
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: run by e2e/run-tests.sh"]
async fn pods_are_injected_run_and_complete() -> anyhow::Result<()> {
    let client = plexus_e2e::client().await?;
    plexus_e2e::apply_crds(&client).await?;
    let ip = host_ip();
    let port = free_port(&ip)?;
    let lease = format!("plexus-operator-webhook-test-{port}");
    let operator = spawn(
        &operator_binary()?,
        &[
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            "--lease-name",
            &lease,
        ],
        "/tmp/plexus-webhook-test-operator.log",
    )?;
    install(&client, port).await?;
    let listen = format!("{ip}:{port}");
    let webhook = spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_plexus-webhook")),
        &["--listen", &listen, "--log-format", "text"],
        "/tmp/plexus-webhook-test.log",
    )?;
    let mut outcome = scenario(&client).await;
    if outcome.is_ok() {
        outcome = split_scenario(&client).await;
    }
    uninstall(&client).await;
    drop(webhook);
    drop(operator);
    let cleaned = plexus_e2e::operator_cleanup(&operator_binary()?, &lease);
    outcome?;
    cleaned
}

async fn scenario(client: &Client) -> anyhow::Result<()> {
    // Unlabelled: untouched.
    in_namespace(client, "plain", |ns| async move {
        wait_for_injection(client, &ns, true).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod = pods
            .create(&PostParams::default(), &probe_pod("untouched"))
            .await?;
        let (init, containers) = container_names(&pod);
        anyhow::ensure!(
            init.is_empty() && containers == ["app"],
            "changed: {init:?} {containers:?}"
        );
        anyhow::ensure!(!pod.annotations().contains_key("plexus.dev/proxy-version"));

        // A pod that opts in: injected, and ready once the operator has
        // given its ServiceAccount an identity and the namespace a configuration.
        let mut opted_in = probe_pod("opted-in");
        opted_in.metadata.labels =
            Some([("plexus.dev/inject".to_owned(), "enabled".to_owned())].into());
        let pod = pods.create(&PostParams::default(), &opted_in).await?;
        let (init, containers) = container_names(&pod);
        anyhow::ensure!(
            init == ["plexus-init"] && containers == ["plexus-proxy", "app"],
            "the opted-in pod is not injected: {init:?} {containers:?}"
        );
        wait_for_pod(
            &pods,
            "opted-in",
            "Ready",
            Duration::from_secs(120),
            is_ready(),
        )
        .await?;
        Ok(())
    })
    .await?;

    in_namespace(client, "inject", |ns| async move {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .patch(&ns, &PatchParams::default(), &Patch::Merge(json!({
                "metadata": {"labels": {"plexus.dev/inject": "enabled"}}})))
            .await?;
        wait_for_injection(client, &ns, false).await?;

        let apply = PatchParams::apply(FIELD_MANAGER).force();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deployments
            .patch("web", &apply, &Patch::Apply(test_server("web", "web", &ns, json!({"app": "web"}), "v1")))
            .await?;
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);
        services.patch("web", &apply, &Patch::Apply(web_service(&ns))).await?;

        // The Deployment's pod: injected, every container running and ready.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let web = plexus_e2e::eventually_one(&pods, "app=web", Duration::from_secs(60)).await?;
        let (init, containers) = container_names(&web);
        anyhow::ensure!(init == ["plexus-init"], "init containers: {init:?}");
        anyhow::ensure!(containers == ["plexus-proxy", "web"], "containers: {containers:?}");
        let web = wait_for_pod(&pods, &web.name_any(), "Ready", Duration::from_secs(180), is_ready()).await?;
        let statuses = web.status.clone().and_then(|s| s.container_statuses).unwrap_or_default();
        anyhow::ensure!(
            statuses.len() == 2 && statuses.iter().all(|s| s.ready),
            "not every container is ready: {statuses:?}"
        );

        // The namespace's configuration has web's pod as a meshed endpoint
        // before the Job starts: its proxy reads it once at start (the
        // kubelet refreshes mounted ConfigMaps only every minute or so).
        let web_ip = web.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        wait_for_meshed_endpoint(client, &ns, &web_ip).await?;

        // A Job that calls the Deployment through both proxies completes.
        // busybox's wget needs NSS files the toolbox lacks; nc with -e
        // writes the request and reads the answer until the server closes.
        // Retried while the DNS server catches up with the new Service.
        let script = "get() { nc -w 5 web 8080 -e /bin/busybox sh -c \
            'printf \"GET /from-a-job HTTP/1.0\\r\\nHost: web\\r\\n\\r\\n\"; /bin/busybox cat >&2' 2>&1; }; \
            for i in $(seq 30); do out=$(get); case \"$out\" in *' 200 '*) echo \"$out\"; exit 0;; esac; sleep 1; done; \
            echo \"$out\"; exit 1";
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        jobs.patch("call-web", &apply, &Patch::Apply(json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "call-web", "namespace": ns},
                "spec": {"backoffLimit": 0, "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "call", "image": toolbox_image(), "args": ["sh", "-c", script]}]}}}})))
            .await?;
        let job_pod = plexus_e2e::eventually_one(&pods, "job-name=call-web", Duration::from_secs(60)).await?;
        anyhow::ensure!(container_names(&job_pod).1 == ["plexus-proxy", "call"], "the Job's pod is not injected");
        let finished = wait_for_pod(&pods, &job_pod.name_any(), "finished", Duration::from_secs(180),
            plexus_e2e::has_finished()).await?;
        let phase = finished.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        let log = pods
            .logs(&job_pod.name_any(), &kube::api::LogParams { container: Some("call".into()), ..Default::default() })
            .await
            .unwrap_or_default();
        anyhow::ensure!(phase == "Succeeded", "the Job's pod ended {phase}: {log}");
        // The proxy exited by itself once the app had, and cleanly.
        let proxy_exit = finished
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.name == "plexus-proxy")
            .and_then(|s| s.state?.terminated)
            .map(|t| t.exit_code);
        anyhow::ensure!(proxy_exit == Some(0), "the proxy's exit: {proxy_exit:?}");
        // The call went over mTLS: web's proxy saw the Job's identity.
        let metrics = proxy_metrics(&web_ip).await?;
        let caller = format!(
            r#"plexus_proxy_tcp_mtls_total{{direction="inbound",peer_identity="spiffe://cluster.local/ns/{ns}/sa/default"}} 1"#
        );
        anyhow::ensure!(metrics.contains(&caller), "no mTLS from the Job in web's proxy metrics:\n{metrics}");
        anyhow::ensure!(log.contains("/from-a-job"), "the call did not reach web: {log}");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let job = jobs.get("call-web").await?;
            if job.status.and_then(|s| s.succeeded).unwrap_or(0) == 1 {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("the Job is not complete 60s after its pod succeeded");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    })
    .await
}
