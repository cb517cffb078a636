//! The Plexus demo, on the cluster `KUBECONFIG` names (scripts/demo.sh
//! brings up the local one first): installs the chart with Helm, labels a
//! namespace, deploys the Bookinfo-style demo application, applies the
//! routing rules (a 90/10 canary of reviews and `end-user: jason` → v2),
//! sends traffic from the demo's client pod, and prints what to look at.
//! Each check is printed as true or false; the exit status is non-zero when
//! one is false. The demo keeps running afterwards.

use std::time::Duration;

use clap::Parser;
use kube::ResourceExt;
use plexus_e2e::demo::{self, PRODUCTPAGE, percent};

#[derive(Parser)]
#[command(about = "Install Plexus and run the demo application on the current cluster")]
struct Args {
    /// Namespace of the demo application (created and labelled for injection).
    #[arg(long, default_value = "plexus-demo")]
    namespace: String,
    /// Calls to productpage without a user (the canary split).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(100..=20000))]
    calls: u32,
}

struct Checks(Vec<(String, bool)>);

impl Checks {
    fn check(&mut self, what: String, holds: bool) {
        println!("  [{}] {what}", if holds { "true " } else { "FALSE" });
        self.0.push((what, holds));
    }
}

fn section(title: &str) {
    println!("\n== {title}");
}

fn show(args: &[&str]) -> anyhow::Result<()> {
    println!("$ kubectl {}", args.join(" "));
    print!("{}", demo::kubectl(args)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ns = args.namespace.as_str();
    let client = plexus_e2e::client().await?;
    let mut checks = Checks(Vec::new());

    section("Installing Plexus with Helm (helm/plexus into plexus-system)");
    demo::helm_install(&[])?;
    let mesh = demo::wait_for_mesh_ready(Duration::from_secs(120)).await;
    show(&["get", "pods", "--namespace", demo::MESH_NAMESPACE])?;
    match &mesh {
        Ok(table) => print!("$ kubectl get mesh\n{table}"),
        Err(error) => println!("{error:#}"),
    }
    for replicas in demo::control_plane(&client).await? {
        checks.check(
            format!(
                "{}: {} of {} replicas Ready",
                replicas.name, replicas.ready, replicas.desired
            ),
            replicas.holds(),
        );
    }
    checks.check(
        "the Mesh is Ready (the operator has issued the root)".into(),
        mesh.is_ok(),
    );

    section(&format!(
        "Deploying the demo application in namespace {ns} (labelled plexus.dev/inject=enabled)"
    ));
    if demo::kubectl(&["get", "namespace", ns]).is_err() {
        demo::kubectl(&["create", "namespace", ns])?;
    }
    demo::label_for_injection(&client, ns).await?;
    let pods = demo::deploy_app(&client, ns).await?;
    let injected = pods.iter().all(demo::injected);
    show(&["get", "pods", "--namespace", ns])?;
    checks.check(
        format!(
            "all {} demo pods are Running and Ready with the plexus-proxy sidecar",
            pods.len()
        ),
        injected,
    );

    section(
        "Applying routing rules (demo/routing/): subsets, a 90/10 canary, a header match, a timeout",
    );
    demo::apply_routing(ns)?;
    demo::wait_for_routing(&client, ns).await?;
    show(&["get", "virtualservices,destinationrules", "--namespace", ns])?;

    section(&format!(
        "Sending traffic from the client pod: {} calls to productpage, then 50 as end-user jason",
        args.calls
    ));
    let everyone = demo::call(&client, ns, PRODUCTPAGE, args.calls, None).await?;
    let (v1, v2) = (everyone.saw("reviews", "v1"), everyone.saw("reviews", "v2"));
    let share = percent(v2, args.calls);
    checks.check(
        format!(
            "canary split: reviews v1 {v1}, v2 {v2} of {} calls ({share:.1}% to v2; 10% ± 3 expected), all {} answered 200",
            args.calls,
            everyone.status(200)
        ),
        (7.0..=13.0).contains(&share) && everyone.status(200) == args.calls,
    );
    let jason = demo::call(&client, ns, PRODUCTPAGE, 50, Some("jason")).await?;
    checks.check(
        format!(
            "header match: end-user jason reached reviews v2 {} of 50 times (and ratings through it {} times)",
            jason.saw("reviews", "v2"),
            jason.saw("ratings", "v1")
        ),
        jason.saw("reviews", "v2") == 50,
    );

    section("Resilience on ratings (demo/routing/ratings.yaml): retries of 5xx, a 1s timeout");
    let (flaky, retries) = demo::call_flaky_ratings(&client, ns, 20).await?;
    checks.check(
        format!(
            "a ratings failing every other request ({}): {} of 20 calls answered 200 after the client's proxy retried {retries} times",
            demo::FLAKY_RATINGS,
            flaky.status(200)
        ),
        flaky.status(200) == 20 && retries >= 10.0,
    );
    let (slow, elapsed) = demo::call_slow_ratings(&client, ns, 2).await?;
    checks.check(
        format!(
            "a ratings answering after 3s ({}): {} of 2 calls answered 504 by the caller's proxy, in {:.1}s",
            demo::SLOW_RATINGS,
            slow.status(504),
            elapsed.as_secs_f64()
        ),
        slow.status(504) == 2 && elapsed < Duration::from_secs(5),
    );

    section("mTLS: the peer identities each proxy saw (plexus_proxy_requests_total, inbound)");
    for seen in demo::seen_identities(&client, ns).await? {
        let list: Vec<String> = seen
            .identities
            .iter()
            .map(|(id, n)| format!("{id} ({n})"))
            .collect();
        checks.check(
            format!(
                "{} received over mTLS from {}",
                seen.workload,
                list.join(", ")
            ),
            seen.holds(),
        );
    }

    section("What to look at");
    let reviews = demo::pod_of(&client, ns, "reviews", Some("v1"))
        .await?
        .name_any();
    let caller = demo::pod_of(&client, ns, "client", None).await?.name_any();
    println!(
        "  kubectl get mesh
  kubectl get pods -n {mesh_ns}
  kubectl get plexus -n {ns}
  kubectl get --raw /api/v1/namespaces/{ns}/pods/{reviews}:{admin}/proxy/metrics | grep plexus_proxy_requests_total
  kubectl get --raw '/api/v1/namespaces/{ns}/pods/{caller}:{port}/proxy/call?url=http://productpage:{port}/productpage&count=100'
The demo keeps running. Remove it with: kubectl delete namespace {ns}; helm uninstall {release} -n {mesh_ns}",
        mesh_ns = demo::MESH_NAMESPACE,
        admin = demo::PROXY_ADMIN_PORT,
        port = demo::APP_PORT,
        release = demo::RELEASE,
    );

    let failed: Vec<&String> = checks
        .0
        .iter()
        .filter(|(_, holds)| !holds)
        .map(|(what, _)| what)
        .collect();
    if failed.is_empty() {
        println!("\nAll {} checks are true.", checks.0.len());
        Ok(())
    } else {
        anyhow::bail!("{} check(s) are false: {failed:?}", failed.len())
    }
}
