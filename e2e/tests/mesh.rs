//! The whole mesh on a real cluster, installed the way users install it:
//! `helm install` of `helm/plexus` (operator and webhook in the cluster,
//! two replicas each), a labelled namespace, the demo application
//! (`demo/app.yaml`) and its Istio-style routing rules (`demo/routing/`).
//! Asserts injection, Ready pods, mTLS identities in the proxies' metrics,
//! the 90/10 canary, the `end-user: jason` header route, retries, timeouts,
//! CRD status as `kubectl get` prints it, security policy (`security`:
//! authorization, JWT with keys from an issuer pod, rate limits),
//! resilience (`resilience`: outlier detection, a connection pool's
//! overflow, a rolling restart under load without a failed request),
//! traffic management (`traffic`: mirrors, faults, TCP and TLS routes), and
//! that `helm uninstall` leaves nothing but the CRDs.
//!
//! Cluster-agnostic (`KUBECONFIG`; the images must be on the nodes); run by
//! e2e/run-tests.sh, which installs the pinned Helm (`PLEXUS_HELM`).

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use plexus_e2e::demo::{self, PRODUCTPAGE, percent};
use plexus_e2e::{apply_crds, client, in_namespace};

#[path = "mesh/capture.rs"]
mod capture;
#[path = "mesh/entries.rs"]
mod entries;
#[path = "mesh/origination.rs"]
mod origination;
#[path = "mesh/resilience.rs"]
mod resilience;
#[path = "mesh/security.rs"]
mod security;
#[path = "mesh/traffic.rs"]
mod traffic;

/// The install's settings: key sets are fetched every 5 s (a rotation at
/// the issuer pod is followed quickly), and only from in-cluster Services.
const INSTALL: [&str; 4] = [
    "--set",
    "operator.jwks.refreshSeconds=5",
    "--set",
    "operator.jwks.allowedHosts={*.svc.cluster.local}",
];

#[tokio::test]
#[ignore = "needs a cluster (KUBECONFIG) with the project's images: e2e/run-tests.sh"]
async fn the_chart_installs_a_working_mesh_and_uninstalls_cleanly() -> anyhow::Result<()> {
    let client = client().await?;
    apply_crds(&client).await?;
    rendered_chart_applies_server_side()?;
    let installed = demo::helm_install(&INSTALL).context("helm install");
    let outcome = match installed {
        Ok(_) => {
            in_namespace(&client, "e2e-mesh", |namespace| {
                let client = client.clone();
                async move { mesh_works(&client, &namespace).await }
            })
            .await
        }
        Err(error) => Err(error),
    };
    if outcome.is_err() {
        print_control_plane_state();
    }
    let uninstalled = demo::helm_uninstall().context("helm uninstall");
    outcome?;
    uninstalled?;
    only_the_crds_are_left(&client).await
}

/// `helm template` for this server's version, then `kubectl apply
/// --dry-run=server`: every object the chart renders is valid for it.
fn rendered_chart_applies_server_side() -> anyhow::Result<()> {
    let version = demo::kubectl(&["version", "-o", "json"])?;
    let version: serde_json::Value = serde_json::from_str(&version)?;
    let server = version["serverVersion"]["gitVersion"]
        .as_str()
        .context("the server's version")?
        .to_owned();
    let chart = demo::chart();
    let chart = chart.to_str().context("the chart's path")?;
    let lint = demo::run(
        &demo::helm_binary(),
        &["lint", "--strict", chart, "--kube-version", &server],
        None,
    )?;
    println!("helm lint --strict: {}", lint.trim().replace('\n', " | "));
    let rendered = demo::run(
        &demo::helm_binary(),
        &[
            "template",
            demo::RELEASE,
            chart,
            "--namespace",
            demo::MESH_NAMESPACE,
            "--kube-version",
            &server,
        ],
        None,
    )?;
    // Namespaced objects need their namespace to exist, even in a dry run.
    let _ = demo::kubectl(&["create", "namespace", demo::MESH_NAMESPACE]);
    let applied = demo::run(
        std::path::Path::new("kubectl"),
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&rendered),
    )?;
    println!(
        "kubectl apply --dry-run=server of the rendered chart ({server}):\n{}",
        applied.trim()
    );
    // Every object rendered was accepted (kubectl stops at the first error).
    let rendered_objects = rendered
        .split("\n---")
        .filter(|doc| doc.lines().any(|l| l.starts_with("kind: ")))
        .count();
    let accepted = applied
        .lines()
        .filter(|l| l.ends_with("(server dry run)"))
        .count();
    ensure!(
        rendered_objects > 0 && accepted == rendered_objects,
        "{accepted} of the {rendered_objects} objects the chart renders applied"
    );
    Ok(())
}

async fn mesh_works(client: &Client, namespace: &str) -> anyhow::Result<()> {
    control_plane_is_up(client).await?;
    demo::label_for_injection(client, namespace).await?;
    let pods = demo::deploy_app(client, namespace).await?;

    // Injection: every pod has the init container and the proxy, and is Ready.
    for pod in &pods {
        let names = |list: Option<&Vec<k8s_openapi::api::core::v1::Container>>| -> Vec<String> {
            list.into_iter().flatten().map(|c| c.name.clone()).collect()
        };
        let spec = pod.spec.as_ref();
        ensure!(
            demo::injected(pod),
            "pod {} is not injected: init containers {:?}, containers {:?}",
            pod.name_any(),
            names(spec.and_then(|s| s.init_containers.as_ref())),
            names(spec.map(|s| &s.containers))
        );
    }
    println!("{} demo pods injected and Ready", pods.len());

    demo::apply_routing(namespace)?;
    demo::wait_for_routing(client, namespace).await?;

    // Header-based routing: end-user jason always reaches reviews v2.
    let jason = demo::call(client, namespace, PRODUCTPAGE, 100, Some("jason")).await?;
    println!("end-user jason, 100 calls: {:?}", jason.services);
    ensure!(
        jason.status(200) == 100
            && jason.saw("reviews", "v2") == 100
            && jason.saw("ratings", "v1") == 100,
        "end-user: jason must reach reviews v2 (and ratings through it) every time: {jason:?}"
    );

    // The 90/10 canary for everyone else, within ±3 points over 2,000 calls.
    let everyone = demo::call(client, namespace, PRODUCTPAGE, 2000, None).await?;
    let (v1, v2, v3) = (
        everyone.saw("reviews", "v1"),
        everyone.saw("reviews", "v2"),
        everyone.saw("reviews", "v3"),
    );
    println!(
        "split over 2000 calls: reviews v1 {v1}, v2 {v2} ({:.1}%), v3 {v3}",
        percent(v2, 2000)
    );
    ensure!(
        everyone.status(200) == 2000 && v1 + v2 == 2000 && v3 == 0,
        "every call must succeed through v1 or v2: {everyone:?}"
    );
    ensure!(
        (7.0..=13.0).contains(&percent(v2, 2000)),
        "the canary got {:.1}% of 2000 calls, not 10% ± 3",
        percent(v2, 2000)
    );

    // Each step's name leads its error, so a failure says where it was.
    mtls_identities_in_metrics(client, namespace)
        .await
        .context("step: mTLS identities")?;
    retries_and_timeouts(client, namespace)
        .await
        .context("step: retries and timeouts")?;
    status_in_kubectl_get(namespace)
        .await
        .context("step: status in kubectl get")?;
    security::policies_are_enforced(client, namespace)
        .await
        .context("step: security policies")?;
    resilience::endpoints_fail_over_and_rollouts_drop_nothing(client, namespace)
        .await
        .context("step: resilience")?;
    traffic::routes_mirror_inject_and_split(client, namespace)
        .await
        .context("step: traffic routes")?;
    entries::service_entries_under_registry_only(client, namespace)
        .await
        .context("step: ServiceEntries")?;
    origination::simple_origination_verifies_the_server(client, namespace)
        .await
        .context("step: TLS origination")?;
    capture::disable_is_cleartext_and_istio_mutual_is_tls(client, namespace)
        .await
        .context("step: wire capture")?;
    Ok(())
}

async fn control_plane_is_up(client: &Client) -> anyhow::Result<()> {
    for replicas in demo::control_plane(client).await? {
        ensure!(
            replicas.holds() && replicas.desired == 2,
            "{} has {} Ready replicas, not 2",
            replicas.name,
            replicas.ready
        );
    }
    // The Mesh is Ready once the operator's leader has issued the root.
    let mesh = demo::wait_for_mesh_ready(Duration::from_secs(60)).await?;
    println!("kubectl get mesh:\n{}", mesh.trim());
    Ok(())
}

/// Each service's proxy saw its callers' SPIFFE identities (mTLS client
/// certificates), one ServiceAccount per demo service.
async fn mtls_identities_in_metrics(client: &Client, namespace: &str) -> anyhow::Result<()> {
    for seen in demo::seen_identities(client, namespace).await? {
        println!("{} received from: {:?}", seen.workload, seen.identities);
        ensure!(
            seen.holds(),
            "the proxy of {} must count requests from {} and none without a peer identity: {:?}",
            seen.workload,
            seen.expected,
            seen.identities
        );
    }
    Ok(())
}

/// ratings' VirtualService: 5xx retried twice, a 1s timeout.
async fn retries_and_timeouts(client: &Client, namespace: &str) -> anyhow::Result<()> {
    // ratings fails every other request: each failure is retried into a 200.
    let (retried, retries) = demo::call_flaky_ratings(client, namespace, 100).await?;
    println!(
        "100 calls to a ratings that fails every other request: {retried:?}, {retries} retries"
    );
    ensure!(
        retried.status(200) == 100,
        "retries must turn every 503 into a 200: {retried:?}"
    );
    ensure!(
        retries >= 50.0,
        "the client's proxy counted {retries} retries, expected at least 50"
    );

    // ratings answers after 3s: the caller's proxy answers 504 after 1s.
    let (slow, elapsed) = demo::call_slow_ratings(client, namespace, 3).await?;
    println!("3 calls to a ratings that takes 3s: {slow:?} in {elapsed:?}");
    ensure!(
        slow.status(504) == 3 && elapsed < Duration::from_secs(8),
        "the 1s timeout must answer 504 before ratings does: {slow:?} in {elapsed:?}"
    );
    Ok(())
}

/// `kubectl get` shows every rule Accepted and Programmed, and a rule with
/// an error Accepted=False with the reason in its condition.
async fn status_in_kubectl_get(namespace: &str) -> anyhow::Result<()> {
    let broken = serde_json::json!({
        "apiVersion": "plexus.dev/v1alpha1", "kind": "VirtualService",
        "metadata": {"name": "broken", "namespace": namespace},
        "spec": {"hosts": ["details"], "http": [{
            "match": [{"uri": {"regex": "(unclosed"}}],
            "route": [{"destination": {"host": "details", "subset": "v1"}}]}]}});
    demo::run(
        std::path::Path::new("kubectl"),
        &["apply", "-f", "-"],
        Some(&broken.to_string()),
    )?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let table = demo::kubectl(&[
            "get",
            "virtualservices,destinationrules",
            "--namespace",
            namespace,
        ])?;
        let rows: Vec<Vec<&str>> = table
            .lines()
            .filter(|l| !l.starts_with("NAME"))
            .map(|l| l.split_whitespace().collect())
            .filter(|r: &Vec<&str>| !r.is_empty())
            .collect();
        let row = |name: &str| rows.iter().find(|r| r[0] == name).cloned();
        let good = [
            "virtualservice.plexus.dev/reviews",
            "virtualservice.plexus.dev/ratings",
        ]
        .iter()
        .all(|name| row(name).is_some_and(|r| r.len() >= 4 && r[2] == "True" && r[3] == "True"));
        let bad = row("virtualservice.plexus.dev/broken")
            .is_some_and(|r| r.len() >= 3 && r[2] == "False");
        if good && bad {
            println!("kubectl get virtualservices,destinationrules:\n{table}");
            let reason = demo::kubectl(&[
                "get",
                "virtualservice",
                "broken",
                "--namespace",
                namespace,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Accepted\")].message}",
            ])?;
            println!("broken: Accepted=False: {reason}");
            ensure!(
                reason.contains("regex") || reason.contains("unclosed"),
                "the condition must say what is wrong: {reason:?}"
            );
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("kubectl get does not show the expected status after 60s:\n{table}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// After `helm uninstall`: the CRDs remain, and nothing else of Plexus in
/// any namespace (the release's namespace itself is Helm's: it stays, empty).
async fn only_the_crds_are_left(client: &Client) -> anyhow::Result<()> {
    // What the chart creates, what the operator creates, and the Mesh and
    // the leader Lease.
    let queries: [&[&str]; 3] = [
        &[
            "deployments,pods,services,serviceaccounts,poddisruptionbudgets,jobs,clusterroles,clusterrolebindings,roles,rolebindings,mutatingwebhookconfigurations",
            "--all-namespaces",
            "--selector",
            "app.kubernetes.io/part-of=plexus",
        ],
        &[
            "secrets,configmaps,roles,rolebindings",
            "--all-namespaces",
            "--selector",
            "app.kubernetes.io/managed-by=plexus-operator",
        ],
        &["meshes,leases", "--namespace", demo::MESH_NAMESPACE],
    ];
    let mut left = Vec::new();
    // Pods take their grace period to go; everything else goes at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        left.clear();
        for query in queries {
            let mut args = vec!["get"];
            args.extend_from_slice(query);
            args.extend_from_slice(&[
                "--ignore-not-found",
                "--no-headers",
                "--output",
                "custom-columns=KIND:.kind,NAMESPACE:.metadata.namespace,NAME:.metadata.name",
            ]);
            let listed = demo::kubectl(&args)?;
            left.extend(
                listed
                    .lines()
                    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")),
            );
        }
        if left.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    ensure!(left.is_empty(), "helm uninstall left: {left:?}");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let ours = crds
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|c| c.spec.group == "plexus.dev")
        .count();
    ensure!(
        ours == plexus_crds::crds().len(),
        "the CRDs must stay: {ours} left"
    );
    println!("helm uninstall left only the {ours} CRDs");
    Ok(())
}

/// On failure: what the control plane was doing.
fn print_control_plane_state() {
    for args in [
        vec![
            "get",
            "pods,deployments",
            "--namespace",
            demo::MESH_NAMESPACE,
            "-o",
            "wide",
        ],
        vec![
            "logs",
            "--namespace",
            demo::MESH_NAMESPACE,
            "deployment/plexus-operator",
            "--tail",
            "40",
        ],
        vec![
            "logs",
            "--namespace",
            demo::MESH_NAMESPACE,
            "deployment/plexus-webhook",
            "--tail",
            "20",
        ],
    ] {
        match demo::kubectl(&args) {
            Ok(output) => eprintln!("$ kubectl {}\n{output}", args.join(" ")),
            Err(error) => eprintln!("$ kubectl {}: {error:#}", args.join(" ")),
        }
    }
}
