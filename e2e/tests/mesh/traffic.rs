//! Traffic management on the cluster, through the demo client's sidecar:
//! a mirror at 10 % (counted in the mirror's own log), a mirror that
//! answers in 2 s (the callers' p99 with and without it), fault aborts and
//! delays, an 80/20 TCP route over 500 connections, and a TLS route that
//! sends two SNI names to two services.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use kube::{Client, ResourceExt};
use plexus_e2e::demo::{self, Calls, call_with, client_get, kubectl_apply};

fn workloads(image: &str) -> String {
    let deployment = |name: &str, env: &str, ports: &str| {
        let spec = demo::test_server_spec(image, name, 9080, "http", env, ports);
        demo::test_server_deployment(name, &spec)
    };
    let http = |name: &str, app: &str| {
        format!(
            r#"
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {app}}}
  ports: [{{name: http, port: 9080, targetPort: http}}]
"#
        )
    };
    let opaque = |name: &str, app: &str| {
        format!(
            r#"
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {app}}}
  ports:
  - {{name: tcp-echo, port: 9090, targetPort: 9090}}
  - {{name: tls, port: 9443, targetPort: 9443}}
"#
        )
    };
    let logged = "- {name: LOG_REQUESTS, value: \"1\"}";
    let slow = "- {name: LOG_REQUESTS, value: \"1\"}\n        - {name: DELAY, value: 2s}";
    let l4 =
        "- {name: TCP_ECHO_PORT, value: \"9090\"}\n        - {name: TLS_PORT, value: \"9443\"}";
    let l4_ports =
        "- {name: tcp-echo, containerPort: 9090}\n        - {name: tls, containerPort: 9443}";
    [
        deployment("web", "", ""),
        http("web", "web"),
        deployment("shadow", logged, ""),
        http("shadow", "shadow"),
        deployment("slow-shadow", slow, ""),
        http("slow-shadow", "slow-shadow"),
        deployment("tcp-a", l4, l4_ports),
        opaque("tcp-a", "tcp-a"),
        deployment("tcp-b", l4, l4_ports),
        opaque("tcp-b", "tcp-b"),
        // The name the routes are for; its own endpoints are tcp-a's.
        opaque("front", "tcp-a"),
    ]
    .concat()
}

const ROUTES: &str = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - name: abort
    match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
    route: [{destination: {host: web}}]
  - name: delay
    match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}
    route: [{destination: {host: web}}]
  - name: mirrored
    match: [{uri: {prefix: /mirrored}}]
    mirror: {host: shadow}
    mirrorPercentage: {value: 10}
    route: [{destination: {host: web}}]
  - name: slow-mirror
    match: [{uri: {prefix: /slow-mirror}}]
    mirror: {host: slow-shadow}
    route: [{destination: {host: web}}]
  - route: [{destination: {host: web}}]
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: [front]
  tls:
  - match: [{sniHosts: [a.front.test], port: 9443}]
    route: [{destination: {host: tcp-a, port: {number: 9443}}}]
  - match: [{sniHosts: ["*.b.front.test"]}]
    route: [{destination: {host: tcp-b, port: {number: 9443}}}]
  tcp:
  - match: [{port: 9090}]
    route:
    - {destination: {host: tcp-a, port: {number: 9090}}, weight: 80}
    - {destination: {host: tcp-b, port: {number: 9090}}, weight: 20}
"#;

/// Tallies of `/tcp` and `/tls` answers.
#[derive(Debug, Default, serde::Deserialize)]
struct Tally {
    #[serde(default, alias = "answers")]
    echoes: std::collections::BTreeMap<String, u32>,
    #[serde(default)]
    errors: std::collections::BTreeMap<String, u32>,
}

impl Tally {
    fn of(&self, name: &str) -> u32 {
        self.echoes.get(name).copied().unwrap_or(0)
    }
}

async fn tally(
    client: &Client,
    namespace: &str,
    endpoint: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<Tally> {
    let text = client_get(client, namespace, endpoint, params).await?;
    serde_json::from_str(&text).with_context(|| format!("{endpoint}: {text}"))
}

/// Waits (up to 150 s) until the client's proxy runs both VirtualServices:
/// the abort route fails some calls, and the TCP route reaches tcp-b.
async fn routes_are_in_force(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    plexus_e2e::poll(
        "the routes in force",
        Duration::from_secs(150),
        Duration::from_secs(2),
        || async {
            let aborts = call_with(
                client,
                namespace,
                &[("url", "http://web:9080/abort"), ("count", "20")],
            )
            .await
            .map(|c| c.status(503))
            .unwrap_or(0);
            let split = tally(
                client,
                namespace,
                "/tcp",
                &[("addr", "front:9090"), ("message", "who"), ("count", "20")],
            )
            .await
            .map(|t| t.of("tcp-b"))
            .unwrap_or(0);
            ensure!(aborts > 0 && split > 0, "{aborts} aborts, {split} to tcp-b");
            Ok(Some(()))
        },
    )
    .await?;
    println!("the routes are in force after {:?}", started.elapsed());
    Ok(())
}

/// Requests the pod of `app` logged whose target starts with `prefix` and
/// whose Host is `host`.
fn logged(log: &str, prefix: &str, host: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.starts_with("request ")
                && l.split_whitespace()
                    .nth(2)
                    .is_some_and(|t| t.starts_with(prefix))
                && l.ends_with(&format!(" host {host}"))
        })
        .count()
}

async fn app_log(client: &Client, namespace: &str, app: &str) -> anyhow::Result<String> {
    let pod = demo::pod_of(client, namespace, app, None).await?.name_any();
    demo::kubectl(&["logs", "--namespace", namespace, &pod, "-c", app])
}

pub async fn routes_mirror_inject_and_split(
    client: &Client,
    namespace: &str,
) -> anyhow::Result<()> {
    kubectl_apply(namespace, &workloads(&plexus_e2e::test_server_image()))?;
    kubectl_apply(namespace, ROUTES)?;
    demo::rollouts_done(
        namespace,
        &["web", "shadow", "slow-shadow", "tcp-a", "tcp-b"],
    )?;
    routes_are_in_force(client, namespace).await?;

    // Mirror 10 % of 1,000 requests: the callers see the primary only.
    let before = logged(
        &app_log(client, namespace, "shadow").await?,
        "/mirrored",
        "web-shadow:9080",
    );
    let mirrored = call_with(
        client,
        namespace,
        &[("url", "http://web:9080/mirrored"), ("count", "1000")],
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let copies = logged(
        &app_log(client, namespace, "shadow").await?,
        "/mirrored",
        "web-shadow:9080",
    ) - before;
    println!(
        "mirror at 10 % over 1,000 requests: the mirror received {copies}; the callers saw {:?} from {:?}",
        mirrored.statuses, mirrored.services
    );
    ensure!(
        mirrored.status(200) == 1000 && mirrored.saw("web", "v1") == 1000,
        "the callers must see the primary's answers only: {mirrored:?}"
    );
    ensure!(
        (70..=130).contains(&copies),
        "{copies} copies of 1,000 at 10 %"
    );

    // A mirror answering in 2 s: the callers' p99 with it and without.
    let without = call_with(
        client,
        namespace,
        &[("url", "http://web:9080/plain"), ("count", "300")],
    )
    .await?;
    let with = call_with(
        client,
        namespace,
        &[("url", "http://web:9080/slow-mirror"), ("count", "300")],
    )
    .await?;
    println!(
        "300 calls each: p50/p99 without a mirror {:.1}/{:.1} ms, with a mirror answering in 2 s {:.1}/{:.1} ms",
        without.p50_ms, without.p99_ms, with.p50_ms, with.p99_ms
    );
    ensure!(
        with.status(200) == 300 && without.status(200) == 300,
        "every call answered: {with:?} {without:?}"
    );
    ensure!(
        with.p99_ms < without.p99_ms + 50.0 && with.p99_ms < 500.0,
        "a slow mirror must not slow the callers: p99 {:.1} ms with it, {:.1} ms without",
        with.p99_ms,
        without.p99_ms
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let slow_copies = logged(
        &app_log(client, namespace, "slow-shadow").await?,
        "/slow-mirror",
        "web-shadow:9080",
    );
    ensure!(
        slow_copies == 300,
        "the slow mirror received {slow_copies} of 300 copies"
    );

    faults(client, namespace).await?;
    opaque_routes(client, namespace).await
}

async fn faults(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let aborted: Calls = call_with(
        client,
        namespace,
        &[("url", "http://web:9080/abort"), ("count", "200")],
    )
    .await?;
    println!("fault abort 50 % over 200 requests: {:?}", aborted.statuses);
    ensure!(
        (84..=116).contains(&aborted.status(503))
            && aborted.status(503) + aborted.status(200) == 200,
        "50 ± 8 % must be aborted: {:?}",
        aborted.statuses
    );
    let delayed = call_with(
        client,
        namespace,
        &[("url", "http://web:9080/delay"), ("count", "20")],
    )
    .await?;
    let fastest = delayed.fastest_ms.get("200").copied().unwrap_or(0);
    println!(
        "fault delay 300 ms at 100 % over 20 requests: fastest {fastest} ms, slowest {:?} ms",
        delayed.slowest_ms.get("200")
    );
    ensure!(
        delayed.status(200) == 20 && fastest >= 300,
        "every request must be delayed 300 ms: {delayed:?}"
    );
    Ok(())
}

async fn opaque_routes(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let split = tally(
        client,
        namespace,
        "/tcp",
        &[("addr", "front:9090"), ("message", "who"), ("count", "500")],
    )
    .await?;
    println!("an 80/20 TCP route over 500 connections: {split:?}");
    let a = split.of("tcp-a");
    ensure!(
        a + split.of("tcp-b") == 500 && (375..=425).contains(&a),
        "80 ± 5 % to tcp-a expected: {split:?}"
    );
    for (sni, expected) in [("a.front.test", "tcp-a"), ("x.b.front.test", "tcp-b")] {
        let answers = tally(
            client,
            namespace,
            "/tls",
            &[("addr", "front:9443"), ("sni", sni), ("count", "10")],
        )
        .await?;
        println!("TLS to front:9443 with SNI {sni}: {answers:?}");
        ensure!(
            answers.of(expected) == 10 && answers.errors.is_empty(),
            "SNI {sni} must reach {expected}: {answers:?}"
        );
    }
    Ok(())
}
