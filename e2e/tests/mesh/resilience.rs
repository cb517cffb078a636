//! Resilience on the cluster, under load counted by the test: outlier
//! detection in front of two endpoints of which one refuses connections,
//! a connection pool that overflows, and a rolling restart of a
//! three-replica Deployment while the demo's client sends 50 requests a
//! second through it. The callers are the demo's `client` pod (its
//! test-server `/call`, paced or concurrent), through its sidecar.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use kube::{Client, ResourceExt};
use plexus_e2e::demo::{self, PROXY_ADMIN_PORT, call_with as call, kubectl_apply};

/// Requests a second during the rolling restart, and for how long.
const RATE: u32 = 50;
const LOAD_SECONDS: u32 = 90;

fn workloads(image: &str) -> String {
    let deployment = |name: &str, app: &str, replicas: u32, listen: u16, probe: &str| {
        let spec = demo::test_server_spec(image, app, listen, probe, "", "");
        format!(
            r#"
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {app}, pod: {name}}}}}
  template:
    metadata: {{labels: {{app: {app}, pod: {name}}}}}
    spec:{spec}
"#
        )
    };
    let service = |name: &str| {
        format!(
            r#"
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 9080, targetPort: http}}]
"#
        )
    };
    [
        service("echo"),
        deployment("echo", "echo", 3, 9080, "http"),
        service("breaker"),
        deployment("breaker", "breaker", 1, 9080, "http"),
        service("outlier"),
        deployment("outlier-good", "outlier", 1, 9080, "http"),
        // Ready (its probe's port answers), but nothing listens on the
        // Service's port: connections to it are refused.
        deployment("outlier-bad", "outlier", 1, 9081, "9081"),
    ]
    .concat()
}

const RULES: &str = r#"
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: outlier}
spec:
  host: outlier
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: 10s, baseEjectionTime: 120s, maxEjectionPercent: 100}
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: outlier}
spec:
  hosts: [outlier]
  http: [{route: [{destination: {host: outlier}}], retries: {attempts: 0}}]
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: breaker}
spec:
  host: breaker
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}
"#;

/// Waits until the client's proxy has the rules and the endpoints: its
/// `/config_dump` lists the outlier and breaker clusters, outlier with two
/// endpoints, and three of echo.
async fn client_is_configured(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let pod = demo::pod_of(client, namespace, "client", None).await?;
        let dump = demo::pod_get(
            client,
            namespace,
            &pod.name_any(),
            PROXY_ADMIN_PORT,
            "/config_dump",
        )
        .await?;
        let dump: serde_json::Value = serde_json::from_str(&dump)?;
        let cluster = |name: &str| {
            dump["clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == format!("{namespace}/{name}:9080").as_str())
                .map(|c| c["endpoints"].as_array().map_or(0, Vec::len))
        };
        let echo = dump["config"]["services"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == "echo")
            .map(|s| s["endpoints"].as_array().map_or(0, Vec::len));
        if cluster("outlier") == Some(2) && cluster("breaker").is_some() && echo == Some(3) {
            println!(
                "the client's proxy has the rules and endpoints after {:?}",
                started.elapsed()
            );
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(150) {
            bail!(
                "the client's proxy is not configured after 150 s: outlier {:?}, breaker {:?}, echo {echo:?}",
                cluster("outlier"),
                cluster("breaker")
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

pub async fn endpoints_fail_over_and_rollouts_drop_nothing(
    client: &Client,
    namespace: &str,
) -> anyhow::Result<()> {
    kubectl_apply(namespace, RULES)?;
    kubectl_apply(namespace, &workloads(&plexus_e2e::test_server_image()))?;
    demo::rollouts_done(
        namespace,
        &["echo", "breaker", "outlier-good", "outlier-bad"],
    )?;
    client_is_configured(client, namespace).await?;

    // Outlier detection, retries off: the endpoint that refuses fails
    // three times in a row and is ejected; the rest succeed.
    let outlier = call(
        client,
        namespace,
        &[("url", "http://outlier:9080/"), ("count", "100")],
    )
    .await?;
    let ejections = demo::client_counter(
        client,
        namespace,
        "plexus_proxy_outlier_ejections_total",
        &[("cluster", &format!("{namespace}/outlier:9080"))],
    )
    .await?;
    println!(
        "100 calls to two endpoints, one refusing, retries off: {:?} {:?}, {ejections} ejection(s)",
        outlier.statuses, outlier.errors
    );
    ensure!(
        outlier.status(200) >= 95 && ejections >= 1,
        "outlier detection must eject the refusing endpoint: {outlier:?}, {ejections} ejections"
    );

    // maxConnections 1, http1MaxPendingRequests 1: of eight concurrent
    // one-second calls, one is served, one waits, the rest overflow at once.
    let breaker = call(
        client,
        namespace,
        &[
            ("url", "http://breaker:9080/?delay=1s"),
            ("count", "8"),
            ("concurrency", "8"),
        ],
    )
    .await?;
    let overflows = demo::client_counter(
        client,
        namespace,
        "plexus_proxy_overflow_total",
        &[("cluster", &format!("{namespace}/breaker:9080"))],
    )
    .await?;
    println!(
        "8 concurrent 1 s calls through maxConnections 1, 1 pending: {:?}, slowest {:?} ms, {overflows} overflows counted",
        breaker.statuses, breaker.slowest_ms
    );
    let slowest_overflow = breaker.slowest_ms.get("503").copied().unwrap_or(u64::MAX);
    ensure!(
        breaker.status(503) >= 5 && overflows >= 5 && slowest_overflow < 500,
        "at least 5 immediate 503 overflows expected: {breaker:?}, {overflows} counted"
    );

    rolling_restart(client, namespace).await
}

/// 50 requests a second to `echo` through a rolling restart of its three
/// replicas: every one answered 200.
async fn rolling_restart(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let total = RATE * LOAD_SECONDS;
    let load = {
        let (client, namespace) = (client.clone(), namespace.to_owned());
        tokio::spawn(async move {
            let (rate, total) = (RATE.to_string(), total.to_string());
            call(
                &client,
                &namespace,
                &[
                    ("url", "http://echo:9080/"),
                    ("count", &total),
                    ("rate", &rate),
                ],
            )
            .await
        })
    };
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    demo::kubectl(&[
        "rollout",
        "restart",
        "--namespace",
        namespace,
        "deployment/echo",
    ])?;
    demo::kubectl(&[
        "rollout",
        "status",
        "--namespace",
        namespace,
        "--timeout=150s",
        "deployment/echo",
    ])?;
    let rolled = started.elapsed();
    let calls = load.await.context("the load task")??;
    let retries =
        demo::client_counter(client, namespace, "plexus_proxy_retries_total", &[]).await?;
    println!(
        "rolling restart of echo (3 replicas) done {:?} into {total} calls at {RATE}/s: {:?} {:?}; the client's proxy retried {retries} times in all",
        rolled, calls.statuses, calls.errors
    );
    ensure!(
        rolled < Duration::from_secs(u64::from(LOAD_SECONDS) - 5),
        "the rollout took {rolled:?}: it must end while the load runs"
    );
    ensure!(
        calls.status(200) == total && calls.errors.is_empty(),
        "a rolling restart must not fail a request: {:?} {:?}",
        calls.statuses,
        calls.errors
    );
    Ok(())
}
