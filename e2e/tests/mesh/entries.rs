//! ServiceEntries on the cluster under REGISTRY_ONLY: two servers outside
//! the mesh (pods of a namespace not labelled for injection, with no
//! Service), named in the cluster DNS (`cluster-dns-hosts`, the local
//! cluster's equivalent of a CoreDNS `hosts` block). One is declared by a
//! hosts-only ServiceEntry resolved by DNS: the demo client reaches it by
//! HTTP and by TCP. The other is not: refused both ways, and the client's
//! proxy counts each refusal under the destination's name.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use kube::Client;
use plexus_e2e::demo::{self, call_with, client_get, kubectl, kubectl_apply};

const DNS_HOSTS: &str = "cluster-dns-hosts";

fn outside(image: &str) -> String {
    let server = |name: &str| {
        let spec = demo::test_server_spec(
            image,
            name,
            9080,
            "http",
            "- {name: TCP_ECHO_PORT, value: \"9090\"}",
            "- {name: tcp-echo, containerPort: 9090}",
        );
        demo::test_server_deployment(name, &spec)
    };
    [server("legacy"), server("stranger")].concat()
}

const ENTRY: &str = r#"
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {name: legacy}
spec:
  hosts: [legacy.plexus.test]
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 9090, name: tcp, protocol: TCP}
  location: MESH_EXTERNAL
  resolution: DNS
"#;

fn set_outbound_policy(mode: &str) -> anyhow::Result<()> {
    let patch = format!(r#"{{"spec":{{"outboundTrafficPolicy":{{"mode":"{mode}"}}}}}}"#);
    kubectl(&["patch", "mesh", "default", "--type", "merge", "-p", &patch]).map(|_| ())
}

async fn pod_ip(client: &Client, namespace: &str, app: &str) -> anyhow::Result<String> {
    let pod = demo::pod_of(client, namespace, app, None).await?;
    pod.status
        .and_then(|s| s.pod_ip)
        .with_context(|| format!("{app} has no IP"))
}

pub async fn service_entries_under_registry_only(
    client: &Client,
    namespace: &str,
) -> anyhow::Result<()> {
    let far = format!("{namespace}-outside");
    kubectl(&["create", "namespace", &far])?;
    let result = check(client, namespace, &far).await;
    set_outbound_policy("ALLOW_ANY")?;
    let _ = kubectl(&[
        "delete",
        "configmap",
        DNS_HOSTS,
        "--namespace",
        "kube-system",
    ]);
    let _ = kubectl(&["delete", "namespace", &far, "--wait=false"]);
    result
}

async fn check(client: &Client, namespace: &str, far: &str) -> anyhow::Result<()> {
    kubectl_apply(far, &outside(&plexus_e2e::test_server_image()))?;
    demo::rollouts_done(far, &["legacy", "stranger"])?;
    let (legacy, stranger) = (
        pod_ip(client, far, "legacy").await?,
        pod_ip(client, far, "stranger").await?,
    );
    let hosts = format!("{legacy} legacy.plexus.test\n{stranger} stranger.plexus.test\n");
    kubectl(&[
        "create",
        "configmap",
        DNS_HOSTS,
        "--namespace",
        "kube-system",
        &format!("--from-literal=hosts={hosts}"),
    ])?;
    kubectl_apply(namespace, ENTRY)?;
    set_outbound_policy("REGISTRY_ONLY")?;

    // In force once the declared name answers and the other is refused.
    let started = Instant::now();
    plexus_e2e::poll(
        "REGISTRY_ONLY with the ServiceEntry in force",
        Duration::from_secs(120),
        Duration::from_secs(2),
        || async {
            let declared = call_with(
                client,
                namespace,
                &[("url", "http://legacy.plexus.test:9080/"), ("count", "5")],
            )
            .await
            .map(|c| c.status(200))
            .unwrap_or(0);
            let undeclared = call_with(
                client,
                namespace,
                &[("url", "http://stranger.plexus.test:9080/"), ("count", "5")],
            )
            .await
            .map(|c| c.status(502))
            .unwrap_or(0);
            ensure!(
                declared == 5 && undeclared == 5,
                "{declared}/5 to legacy, {undeclared}/5 refused"
            );
            Ok(Some(()))
        },
    )
    .await?;
    println!(
        "REGISTRY_ONLY with the ServiceEntry in force after {:?}",
        started.elapsed()
    );

    let http = call_with(
        client,
        namespace,
        &[("url", "http://legacy.plexus.test:9080/"), ("count", "50")],
    )
    .await?;
    println!(
        "HTTP to the declared legacy.plexus.test: {:?}",
        http.statuses
    );
    ensure!(
        http.status(200) == 50
            && !http.services.is_empty()
            && http.services.keys().all(|k| k.starts_with("legacy")),
        "every call must reach legacy: {http:?}"
    );
    let refused = call_with(
        client,
        namespace,
        &[
            ("url", "http://stranger.plexus.test:9080/"),
            ("count", "10"),
        ],
    )
    .await?;
    println!(
        "HTTP to the undeclared stranger.plexus.test: {:?}",
        refused.statuses
    );
    ensure!(
        refused.status(502) == 10,
        "stranger must be refused: {refused:?}"
    );

    let tally = |text: String| -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&text).with_context(|| format!("/tcp: {text}"))
    };
    let tcp = tally(
        client_get(
            client,
            namespace,
            "/tcp",
            &[
                ("addr", "legacy.plexus.test:9090"),
                ("message", "who"),
                ("count", "20"),
            ],
        )
        .await?,
    )?;
    println!("TCP to the declared legacy.plexus.test:9090: {tcp}");
    ensure!(
        tcp["echoes"]["legacy"] == 20,
        "20 echoes from legacy expected: {tcp}"
    );
    let tcp = tally(
        client_get(
            client,
            namespace,
            "/tcp",
            &[
                ("addr", "stranger.plexus.test:9090"),
                ("message", "who"),
                ("count", "10"),
            ],
        )
        .await?,
    )?;
    println!("TCP to the undeclared stranger.plexus.test:9090: {tcp}");
    // A refused connection closes before any echo: counted as "".
    ensure!(
        tcp["echoes"].get("stranger").is_none(),
        "stranger must be refused: {tcp}"
    );

    let pod = demo::pod_of(client, namespace, "client", None).await?;
    let metrics =
        demo::proxy_metrics(client, namespace, &kube::ResourceExt::name_any(&pod)).await?;
    let refusals: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("plexus_proxy_registry_only_refused_total{"))
        .collect();
    println!("the client proxy's refusals: {refusals:#?}");
    let named = |destination: &str, protocol: &str| {
        refusals.iter().any(|l| {
            l.contains(&format!("destination=\"{destination}\""))
                && l.contains(&format!("protocol=\"{protocol}\""))
        })
    };
    ensure!(
        named("stranger.plexus.test:9080", "http") && named(&format!("{stranger}:9090"), "tcp"),
        "each refusal must be counted under its destination: {refusals:?}"
    );
    Ok(())
}
