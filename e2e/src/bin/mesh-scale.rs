//! Measures the operator at mesh scale on a cluster (a measuring script, not
//! a test): creates synthetic Services, VirtualServices and ready Pods, starts
//! the operator binary, and prints
//! - the cold reconcile time (start until every VirtualService is Programmed
//!   and every ConfigMap is written) and the operator's peak RSS;
//! - the largest ConfigMap;
//! - the latency from a VirtualService change to its ConfigMap update
//!   (p50/p90/p99/max over `--changes` changes, one at a time).
//!
//! Pods are bound to a Node object no kubelet serves (its Lease is renewed
//! here, so the node controller keeps it Ready) and their status is written
//! as Ready: the API server holds real objects, nothing runs, and no traffic
//! is sent anywhere. Everything is deleted at the end.
//!
//! Usage: `mesh-scale --operator target/release/plexus-operator`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Client, ResourceExt};
use plexus_crds::virtual_service::VirtualService;
use serde_json::json;

const NODE: &str = "plexus-scale-node";
const LABEL: &str = "plexus.dev/e2e";
const MANAGER: &str = "plexus-scale";
const CONCURRENCY: usize = 32;

struct Args {
    operator: String,
    namespaces: usize,
    services: usize,
    pods_per_service: usize,
    changes: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        operator: "target/release/plexus-operator".into(),
        namespaces: 10,
        services: 1000,
        pods_per_service: 5,
        changes: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--operator" => args.operator = value()?,
            "--namespaces" => args.namespaces = value()?.parse()?,
            "--services" => args.services = value()?.parse()?,
            "--pods-per-service" => args.pods_per_service = value()?.parse()?,
            "--changes" => args.changes = value()?.parse()?,
            other => bail!("unknown argument {other}; see the file's header"),
        }
    }
    Ok(args)
}

fn namespace(args: &Args, service: usize) -> String {
    format!("scale-{:02}", service % args.namespaces)
}

/// Synthetic pod IPs: 198.18.16.0 and up, inside the blackholed test range.
fn pod_ip(n: usize) -> String {
    format!("198.18.{}.{}", 16 + n / 250, 1 + n % 250)
}

async fn run_all<I, F>(items: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = F>,
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    stream::iter(items)
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn renew_lease(client: Client) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        );
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": NODE },
            "spec": { "holderIdentity": NODE, "leaseDurationSeconds": 40, "renewTime": now }
        });
        if let Err(error) = leases
            .patch(
                NODE,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&lease),
            )
            .await
        {
            eprintln!("renewing the node Lease: {error}");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn setup(client: &Client, args: &Args) -> anyhow::Result<()> {
    let params = PatchParams::apply(MANAGER).force();
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            NODE,
            &params,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": { "name": NODE, "labels": { LABEL: "scale" } },
                "spec": { "taints": [{ "key": "plexus.dev/synthetic", "effect": "NoSchedule" }] }
            })),
        )
        .await?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    nodes
        .patch_status(NODE, &params, &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "Node", "metadata": { "name": NODE },
            "status": { "conditions": [{ "type": "Ready", "status": "True", "reason": "Synthetic",
                "lastHeartbeatTime": now, "lastTransitionTime": now }] }
        })))
        .await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // The mesh's namespace: the operator's leader Lease lives there.
    namespaces
        .patch(
            plexus_crds::keys::DEFAULT_MESH_NAMESPACE,
            &params,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": plexus_crds::keys::DEFAULT_MESH_NAMESPACE }
            })),
        )
        .await?;
    for n in 0..args.namespaces {
        let name = format!("scale-{n:02}");
        namespaces
            .patch(&name, &params, &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": name, "labels": { LABEL: "scale", "plexus.dev/inject": "enabled" } }
            })))
            .await?;
    }
    let created = Instant::now();
    run_all((0..args.services).map(|i| {
        let client = client.clone();
        let ns = namespace(args, i);
        async move {
            let services: Api<Service> = Api::namespaced(client.clone(), &ns);
            let service: Service = serde_json::from_value(json!({
                "metadata": { "name": format!("svc-{i:04}") },
                "spec": { "selector": { "app": format!("svc-{i:04}") },
                          "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }] }
            }))?;
            services.create(&PostParams::default(), &service).await.with_context(|| format!("Service svc-{i:04}"))?;
            let vs: VirtualService = serde_json::from_value(json!({
                "apiVersion": "plexus.dev/v1alpha1", "kind": "VirtualService",
                "metadata": { "name": format!("svc-{i:04}"), "namespace": ns },
                "spec": {
                    "hosts": [format!("svc-{i:04}")],
                    "http": [
                        { "name": "api", "match": [{ "uri": { "prefix": "/api/" }, "headers": { "x-tenant": { "exact": "acme" } } }],
                          "retries": { "attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx,reset" },
                          "route": [{ "destination": { "host": format!("svc-{i:04}") } }] },
                        { "timeout": "10s",
                          "route": [
                            { "destination": { "host": format!("svc-{i:04}") }, "weight": 90 },
                            { "destination": { "host": format!("svc-{:04}", (i + args.namespaces) % args.services) }, "weight": 10 }
                          ] }
                    ]
                }
            }))?;
            Api::<VirtualService>::namespaced(client, &ns)
                .create(&PostParams::default(), &vs)
                .await
                .with_context(|| format!("VirtualService svc-{i:04}"))?;
            Ok(())
        }
    }))
    .await?;
    println!(
        "created {} Services and {} VirtualServices in {:.1?}",
        args.services,
        args.services,
        created.elapsed()
    );

    let created = Instant::now();
    let total = args.services * args.pods_per_service;
    run_all((0..total).map(|n| {
        let client = client.clone();
        let service = n / args.pods_per_service;
        let ns = namespace(args, service);
        async move {
            let pods: Api<Pod> = Api::namespaced(client, &ns);
            let name = format!("svc-{service:04}-{}", n % args.pods_per_service);
            let pod: Pod = serde_json::from_value(json!({
                "metadata": { "name": name, "labels": { "app": format!("svc-{service:04}"), "version": format!("v{}", n % 2 + 1) } },
                "spec": {
                    "nodeName": NODE,
                    "tolerations": [{ "key": "plexus.dev/synthetic", "operator": "Exists" }],
                    "containers": [
                        { "name": "app", "image": "plexus/synthetic:none", "ports": [{ "name": "http", "containerPort": 8080 }] },
                        { "name": "plexus-proxy", "image": "plexus/synthetic:none" }
                    ]
                }
            }))?;
            pods.create(&PostParams::default(), &pod).await.with_context(|| format!("Pod {name}"))?;
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let status = json!({ "status": {
                "phase": "Running", "podIP": pod_ip(n), "podIPs": [{ "ip": pod_ip(n) }],
                "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": now }]
            }});
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.with_context(|| format!("status of {name}"))?;
            Ok(())
        }
    }))
    .await?;
    println!("created {total} ready Pods in {:.1?}", created.elapsed());
    Ok(())
}

async fn cleanup(client: &Client, args: &Args) {
    let grace = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    for n in 0..args.namespaces {
        let ns = format!("scale-{n:02}");
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if let Err(error) = pods.delete_collection(&grace, &ListParams::default()).await {
            eprintln!("deleting the pods of {ns}: {error}");
        }
        let namespaces: Api<Namespace> = Api::all(client.clone());
        if let Err(error) = namespaces.delete(&ns, &DeleteParams::default()).await {
            eprintln!("deleting {ns}: {error}");
        }
    }
    let _ = Api::<Node>::all(client.clone())
        .delete(NODE, &DeleteParams::default())
        .await;
    let _ = Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .delete(NODE, &DeleteParams::default())
        .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let left = namespaces
            .list(&ListParams::default().labels(&format!("{LABEL}=scale")))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!("scale namespaces still terminating after 300 s");
}

/// Peak RSS of a process, in MiB.
fn peak_rss(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn rss(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn programmed(vs: &VirtualService) -> bool {
    vs.status.as_ref().is_some_and(|s| {
        s.observed_generation == vs.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Programmed" && c.status == "True")
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// The timeout of the catch-all route of `host` in a configuration.
fn route_timeout(cm: &ConfigMap, host: &str) -> Option<u64> {
    let bytes = cm.binary_data.as_ref()?.get(plexus_config::CONFIG_KEY)?;
    let config = plexus_config::ProxyConfig::from_gzip(&bytes.0).ok()?;
    let service = config.services.iter().find(|s| s.hosts[0] == host)?;
    service
        .http
        .iter()
        .find(|r| r.matches.is_empty())?
        .timeout_ms
}

async fn measure(client: &Client, args: &Args) -> anyhow::Result<()> {
    let log = std::fs::File::create("/tmp/plexus-scale-operator.log")?;
    let child = Command::new(&args.operator)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--lease-name",
            "plexus-operator-scale",
        ])
        .env("RUST_LOG", "info,kube=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", args.operator))?;
    let pid = child.id();
    let _operator = Operator(child);
    let started = Instant::now();
    let all_vs: Api<VirtualService> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::all(client.clone());
    let selector = ListParams::default().labels("plexus.dev/config=proxy");
    let mut peak_sampled: f64 = 0.0;
    loop {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("not reconciled after 600 s; see /tmp/plexus-scale-operator.log");
        }
        peak_sampled = peak_sampled.max(rss(pid).unwrap_or_default());
        let vs = all_vs.list(&ListParams::default()).await?;
        let done = vs
            .items
            .iter()
            .filter(|v| v.namespace().is_some_and(|n| n.starts_with("scale-")) && programmed(v))
            .count();
        let cms = config_maps.list(&selector).await?;
        let written = cms
            .items
            .iter()
            .filter(|c| c.namespace().is_some_and(|n| n.starts_with("scale-")))
            .count();
        if done == args.services && written == args.namespaces {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cold = started.elapsed();
    println!(
        "cold reconcile: {cold:.1?} until {} VirtualServices were Programmed and {} ConfigMaps written",
        args.services, args.namespaces
    );
    let cms = config_maps.list(&selector).await?;
    let sizes: BTreeMap<String, (usize, usize)> = cms
        .items
        .iter()
        .filter(|c| c.namespace().is_some_and(|n| n.starts_with("scale-")))
        .map(|c| {
            let bytes = c
                .binary_data
                .as_ref()
                .and_then(|d| d.get(plexus_config::CONFIG_KEY));
            let compressed = bytes.map_or(0, |b| b.0.len());
            let json = bytes
                .and_then(|b| plexus_config::ProxyConfig::from_gzip(&b.0).ok())
                .and_then(|c| serde_json::to_vec(&c).ok())
                .map_or(0, |j| j.len());
            (c.namespace().unwrap_or_default(), (compressed, json))
        })
        .collect();
    let (largest, json) = sizes.values().max().copied().unwrap_or_default();
    println!(
        "largest ConfigMap: {largest} bytes compressed ({:.1} % of the 1 MiB limit), {json} bytes of JSON; all {} together: {} bytes",
        largest as f64 * 100.0 / 1_048_576.0,
        sizes.len(),
        sizes.values().map(|s| s.0).sum::<usize>()
    );

    let mut latencies = Vec::new();
    for k in 0..args.changes {
        let i = (k * 7919) % args.services;
        let ns = namespace(args, i);
        let name = format!("svc-{i:04}");
        let host = format!("{name}.{ns}.svc.cluster.local");
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let current = api.get(plexus_config::CONFIGMAP_NAME).await?;
        let version = current.resource_version().context("resourceVersion")?;
        let timeout_s = 11 + k as u64;
        let mut events = api
            .watch(
                &WatchParams::default()
                    .fields(&format!("metadata.name={}", plexus_config::CONFIGMAP_NAME)),
                &version,
            )
            .await?
            .boxed();
        let vs: Api<VirtualService> = Api::namespaced(client.clone(), &ns);
        let sent = Instant::now();
        vs.patch(&name, &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(json!([
            { "op": "replace", "path": "/spec/http/1/timeout", "value": format!("{timeout_s}s") }
        ]))?))
        .await?;
        let latency = loop {
            let event = tokio::time::timeout(Duration::from_secs(30), events.try_next())
                .await
                .with_context(|| format!("no ConfigMap update 30 s after changing {ns}/{name}"))??
                .context("watch ended")?;
            if let WatchEvent::Modified(cm) = event
                && route_timeout(&cm, &host) == Some(timeout_s * 1000)
            {
                break sent.elapsed();
            }
        };
        latencies.push(latency);
    }
    latencies.sort();
    if !latencies.is_empty() {
        println!(
            "VirtualService change to ConfigMap update over {} changes: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            latencies.len(),
            percentile(&latencies, 0.50).as_millis(),
            percentile(&latencies, 0.90).as_millis(),
            percentile(&latencies, 0.99).as_millis(),
            latencies[latencies.len() - 1].as_millis()
        );
    }
    let peak = peak_rss(pid).unwrap_or(peak_sampled);
    println!(
        "operator RSS: peak {peak:.1} MiB, now {:.1} MiB",
        rss(pid).unwrap_or_default()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let client = Client::try_default()
        .await
        .context("connecting to the cluster")?;
    plexus_e2e::apply_crds(&client).await?;
    cleanup(&client, &args).await;
    let renewer = tokio::spawn(renew_lease(client.clone()));
    let outcome = match setup(&client, &args).await {
        Ok(()) => measure(&client, &args).await,
        Err(error) => Err(error),
    };
    renewer.abort();
    cleanup(&client, &args).await;
    outcome
}
