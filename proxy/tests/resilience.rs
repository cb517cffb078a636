//! Resilience as DestinationRules and VirtualServices configure it, end to
//! end (resource, the operator's compiler, proxies on loopback, counted at
//! the apps and in the answers): circuit breakers that refuse what
//! overflows, outlier detection that ejects and readmits endpoints, every
//! `retryOn` condition, and request bodies retried within the limit.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_proxy::state::ProxyState;
use support::world::{NS, Workload, World, host, post_streamed, send, service, workload};
use support::{count, http_client, metrics};

const CLIENT: &[(&str, &str)] = &[("app", "client")];

/// Answers of `n` concurrent GETs of `path` (each with its own
/// `x-request-id`): status, `plexus-proxy-error`, and how long each took.
async fn concurrently(
    proxy: SocketAddr,
    service: &str,
    path: &str,
    headers: &'static [(&'static str, &'static str)],
    n: usize,
) -> Vec<(u16, String, Duration)> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (path, host) = (path.to_owned(), host(service));
            tokio::spawn(async move {
                let client = http_client(false);
                let id = format!("{path}-{i}");
                let mut with: Vec<(&str, &str)> = headers.to_vec();
                with.push(("x-request-id", &id));
                let started = Instant::now();
                let answer = send(&client, proxy, "GET", &path, &host, &with).await;
                let why = answer
                    .header("plexus-proxy-error")
                    .unwrap_or_default()
                    .to_owned();
                (answer.status, why, started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("a caller"));
    }
    answers
}

/// How many answers had each (status, why).
fn tally(answers: &[(u16, String, Duration)]) -> BTreeMap<(u16, String), usize> {
    let mut tally = BTreeMap::new();
    for (status, why, _) in answers {
        *tally.entry((*status, why.clone())).or_default() += 1;
    }
    tally
}

fn series(state: &ProxyState, name: &str, cluster: &str, reason: &str) -> u64 {
    count(
        &metrics(state),
        &format!(r#"plexus_proxy_{name}_total{{cluster="demo/{cluster}",reason="{reason}"}}"#),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_pools_refuse_what_overflows() {
    let resources = r#"
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: pending}
spec:
  host: pending
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: requests}
spec:
  host: requests
  trafficPolicy:
    portLevelSettings:
      - port: {number: 80}
        connectionPool: {http: {http2MaxRequests: 3}}
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: retries}
spec:
  host: retries
  subsets:
    - name: all
      labels: {app: web}
      trafficPolicy: {connectionPool: {http: {maxRetries: 1}}}
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: retries}
spec:
  hosts: [retries]
  http:
    - route: [{destination: {host: retries, subset: all}}]
      retries: {attempts: 2, retryOn: 5xx, backoff: 1ms}
"#;
    let resources = format!(
        "{resources}---\n{}",
        r#"apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: budget}
spec:
  host: budget
  trafficPolicy: {retryBudget: {percent: 0, minRetryConcurrency: 1}}
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: budget}
spec:
  hosts: [budget]
  http: [{route: [{destination: {host: budget}}], retries: {attempts: 2, retryOn: 5xx, backoff: 1ms}}]
"#
    );
    let workloads = [workload("a", "127.0.0.31", &[("app", "web")])];
    let names = ["pending", "requests", "retries", "budget"];
    let services = names
        .iter()
        .enumerate()
        .map(|(i, name)| service(name, &format!("127.0.10.{}", 30 + i), &[("app", "web")]))
        .collect();
    let mut world = World::start("pools", &workloads, services, |_| resources).await;
    for name in names {
        world.assert_enforced(&format!("DestinationRule/demo/{name}"));
    }
    let (pending, state) = world.client(NS, CLIENT, "127.0.10.30:80").await;
    let (requests, _) = world.client(NS, CLIENT, "127.0.10.31:80").await;
    let (retries, retries_state) = world.client(NS, CLIENT, "127.0.10.32:80").await;
    let slow: &[(&str, &str)] = &[("x-delay-a", "1000")];

    // One HTTP/1.1 request in flight, one waiting: six of eight overflow,
    // at once.
    let answers = concurrently(pending, "pending", "/", slow, 8).await;
    assert_eq!(
        tally(&answers),
        BTreeMap::from([((200, String::new()), 2), ((503, "overflow".into()), 6)]),
        "{answers:?}"
    );
    for (status, _, took) in &answers {
        if *status == 503 {
            assert!(
                *took < Duration::from_millis(500),
                "an overflow waited {took:?}"
            );
        }
    }
    let waited = answers.iter().filter(|a| a.0 == 200).map(|a| a.2).max();
    assert!(
        waited >= Some(Duration::from_millis(1_900)),
        "the pending one waited for the first: {waited:?}"
    );
    assert_eq!(
        series(&state, "overflow", "pending:80", "max-pending-requests"),
        6
    );

    // Three requests in flight at most, whatever the protocol.
    let answers = concurrently(requests, "requests", "/", slow, 8).await;
    assert_eq!(
        tally(&answers),
        BTreeMap::from([((200, String::new()), 3), ((503, "overflow".into()), 5)]),
        "{answers:?}"
    );
    let client = http_client(false);
    let overflow = send(&client, pending, "GET", "/", &host("pending"), &[]).await;
    assert_eq!(
        overflow.status, 200,
        "nothing in flight any more: {overflow:?}"
    );

    // Four requests fail at once; one retry may be in flight: one caller
    // gets the retry's 200, three the first attempt's 503.
    let answers = concurrently(retries, "retries", "/?fail=503", &[("x-delay-a", "300")], 4).await;
    assert_eq!(
        tally(&answers),
        BTreeMap::from([((200, String::new()), 1), ((503, String::new()), 3)]),
        "{answers:?}"
    );
    assert_eq!(
        series(&retries_state, "overflow", "retries:80/all", "max-retries"),
        3
    );
    assert_eq!(
        series(
            &retries_state,
            "retries_skipped",
            "retries:80/all",
            "max-retries"
        ),
        3
    );
    // The retry budget: no share of the requests, one retry in flight.
    let (budget, budget_state) = world.client(NS, CLIENT, "127.0.10.33:80").await;
    let answers = concurrently(budget, "budget", "/b?fail=503", &[("x-delay-a", "300")], 4).await;
    assert_eq!(
        tally(&answers),
        BTreeMap::from([((200, String::new()), 1), ((503, String::new()), 3)]),
        "{answers:?}"
    );
    assert_eq!(
        series(&budget_state, "overflow", "budget:80", "retry-budget"),
        3
    );
    assert_eq!(world.servers["a"].app.served("/"), 2 + 3 + 1 + 4 + 1);
    assert_eq!(world.servers["a"].app.served("/b"), 4 + 1);
}

/// Sends `n` GETs through `proxy` to `service`; their statuses.
async fn statuses(proxy: SocketAddr, service: &str, n: usize) -> Vec<u16> {
    let client = http_client(false);
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(
            send(&client, proxy, "GET", "/", &host(service), &[])
                .await
                .status,
        );
    }
    seen
}

fn failures(statuses: &[u16]) -> usize {
    statuses.iter().filter(|s| **s != 200).count()
}

/// Sends GETs until `failed` of them failed (at most `limit`): how many
/// were sent.
async fn until_failed(proxy: SocketAddr, service: &str, failed: usize, limit: usize) -> usize {
    let client = http_client(false);
    let mut seen = 0;
    for sent in 1..=limit {
        if send(&client, proxy, "GET", "/", &host(service), &[])
            .await
            .status
            != 200
        {
            seen += 1;
            if seen == failed {
                return sent;
            }
        }
    }
    panic!("{seen} of {limit} failed, not {failed}");
}

/// VirtualServices turning retries off for `hosts`: those of requests that
/// never reached an app too, so that every failure reaches the caller.
fn retries_off(hosts: &[&str]) -> String {
    hosts
        .iter()
        .map(|h| {
            format!(
                "---\napiVersion: plexus.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: {h}}}\nspec: {{hosts: [{h}], http: [{{route: [{{destination: {{host: {h}}}}}], retries: {{attempts: 0}}}}]}}\n"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_and_readmits() {
    let resources = r#"
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: ejects}
spec:
  host: ejects
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 3, interval: 10s, baseEjectionTime: 1s, maxEjectionPercent: 100}
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: at-most-one}
spec:
  host: at-most-one
  subsets:
    - name: all
      labels: {set: three}
      trafficPolicy:
        loadBalancer: {simple: ROUND_ROBIN}
        outlierDetection: {consecutiveGatewayErrors: 1, consecutive5xxErrors: 0, baseEjectionTime: 60s, maxEjectionPercent: 50}
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: at-most-one}
spec:
  hosts: [at-most-one]
  http: [{route: [{destination: {host: at-most-one, subset: all}}], retries: {attempts: 0}}]
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: min-health}
spec:
  host: min-health
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    portLevelSettings:
      - port: {number: 80}
        outlierDetection: {consecutive5xxErrors: 1, baseEjectionTime: 60s, maxEjectionPercent: 100, minHealthPercent: 50}
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: deprecated}
spec:
  host: deprecated
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutiveErrors: 2, consecutive5xxErrors: 0, baseEjectionTime: 60s, maxEjectionPercent: 100}
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: all-out}
spec:
  host: all-out
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 1, baseEjectionTime: 60s, maxEjectionPercent: 100}
"#
    .to_owned()
        + &retries_off(&["ejects", "min-health", "all-out", "deprecated"]);
    let dead = |name, ip, labels| Workload {
        dead: true,
        ..workload(name, ip, labels)
    };
    let workloads = [
        workload("a", "127.0.0.41", &[("app", "web"), ("set", "two")]),
        dead("b", "127.0.0.42", &[("app", "web"), ("set", "two")]),
        workload("c", "127.0.0.43", &[("app", "web"), ("set", "three")]),
        dead("d", "127.0.0.44", &[("app", "web"), ("set", "three")]),
        dead("e", "127.0.0.45", &[("app", "web"), ("set", "three")]),
    ];
    let services = vec![
        service("ejects", "127.0.10.40", &[("set", "two")]),
        service("at-most-one", "127.0.10.41", &[("set", "three")]),
        service("min-health", "127.0.10.42", &[("set", "three")]),
        service("all-out", "127.0.10.43", &[("set", "three")]),
        service("deprecated", "127.0.10.44", &[("set", "two")]),
    ];
    let mut world = World::start("outlier", &workloads, services, |_| resources).await;
    for name in [
        "ejects",
        "at-most-one",
        "min-health",
        "all-out",
        "deprecated",
    ] {
        world.assert_enforced(&format!("DestinationRule/demo/{name}"));
    }
    let (ejects, state) = world.client(NS, CLIENT, "127.0.10.40:80").await;
    let ejections = |state: &ProxyState, cluster: &str, endpoint: &str| {
        count(
            &metrics(state),
            &format!(
                r#"plexus_proxy_outlier_ejections_total{{cluster="demo/{cluster}",endpoint="{endpoint}",reason="consecutive-5xx"}}"#
            ),
        )
    };
    let b = world.servers["b"].addr.to_string();

    // b's app refuses: its third 503 in a row ejects it for a second.
    until_failed(ejects, "ejects", 3, 20).await;
    let ejected = Instant::now();
    assert_eq!(ejections(&state, "ejects:80", &b), 1);
    let dump = state.snapshot().expect("a configuration").clusters.dump();
    let standing = dump
        .iter()
        .find(|c| c["name"] == "demo/ejects:80")
        .and_then(|c| {
            c["endpoints"]
                .as_array()?
                .iter()
                .find(|e| e["address"] == b.as_str())
                .cloned()
        })
        .expect("b in the dump");
    assert!(
        standing["ejectedForMs"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms <= 1_000),
        "{standing}"
    );
    assert_eq!(
        failures(&statuses(ejects, "ejects", 20).await),
        0,
        "b is out"
    );
    // Back after its second: three more failures eject it again, now for
    // two seconds (it has not been healthy for an interval since).
    tokio::time::sleep(Duration::from_millis(1_100).saturating_sub(ejected.elapsed())).await;
    until_failed(ejects, "ejects", 3, 20).await;
    let again = Instant::now();
    assert_eq!(ejections(&state, "ejects:80", &b), 2);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(
        failures(&statuses(ejects, "ejects", 20).await),
        0,
        "still out after 1.3 s"
    );
    tokio::time::sleep(Duration::from_millis(2_100).saturating_sub(again.elapsed())).await;
    assert!(
        failures(&statuses(ejects, "ejects", 6).await) > 0,
        "back after 2 s"
    );
    let returns = count(
        &metrics(&state),
        &format!(
            r#"plexus_proxy_outlier_returns_total{{cluster="demo/ejects:80",endpoint="{b}"}}"#
        ),
    );
    assert_eq!(returns, 2);

    // maxEjectionPercent 50 of three endpoints: one may be out, not two.
    let (at_most_one, state) = world.client(NS, CLIENT, "127.0.10.41:80").await;
    let first = failures(&statuses(at_most_one, "at-most-one", 30).await);
    let later = failures(&statuses(at_most_one, "at-most-one", 30).await);
    assert_eq!(
        later, 15,
        "one dead endpoint of the two left takes every other call ({first} first)"
    );
    assert!(
        series(
            &state,
            "outlier_not_ejected",
            "at-most-one:80/all",
            "max-ejection-percent"
        ) >= 14
    );

    // Both dead ones out: with minHealthPercent 50, one healthy of three is
    // too few, so all three take calls again; without it, c takes all.
    let (min_health, _) = world.client(NS, CLIENT, "127.0.10.42:80").await;
    let (all_out, _) = world.client(NS, CLIENT, "127.0.10.43:80").await;
    statuses(min_health, "min-health", 6).await;
    statuses(all_out, "all-out", 6).await;
    assert_eq!(failures(&statuses(min_health, "min-health", 30).await), 20);
    assert_eq!(failures(&statuses(all_out, "all-out", 30).await), 0);

    // The deprecated consecutiveErrors: gateway errors in a row.
    let (deprecated, _) = world.client(NS, CLIENT, "127.0.10.44:80").await;
    until_failed(deprecated, "deprecated", 2, 10).await;
    assert_eq!(failures(&statuses(deprecated, "deprecated", 20).await), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_origin_failures_count_apart() {
    let rule = |name: &str| {
        format!(
            r#"apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: {name}
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    outlierDetection:
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 2
      consecutive5xxErrors: 0
      baseEjectionTime: 60s
      maxEjectionPercent: 100
---
"#
        )
    };
    let resources =
        rule("unreachable") + &rule("failing") + &retries_off(&["unreachable", "failing"]);
    let workloads = [
        workload(
            "a",
            "127.0.0.71",
            &[("app", "web"), ("u", "yes"), ("f", "yes")],
        ),
        Workload {
            down: true,
            ..workload("down", "127.0.0.72", &[("app", "web"), ("u", "yes")])
        },
        Workload {
            dead: true,
            ..workload("dead", "127.0.0.73", &[("app", "web"), ("f", "yes")])
        },
    ];
    let services = vec![
        service("unreachable", "127.0.10.70", &[("u", "yes")]),
        service("failing", "127.0.10.71", &[("f", "yes")]),
    ];
    let mut world = World::start("local-origin", &workloads, services, |_| resources).await;
    for name in ["unreachable", "failing"] {
        world.assert_enforced(&format!("DestinationRule/demo/{name}"));
    }
    // Nothing listens at `down`: two connect failures in a row eject it.
    let (unreachable, state) = world.client(NS, CLIENT, "127.0.10.70:80").await;
    until_failed(unreachable, "unreachable", 2, 10).await;
    assert_eq!(failures(&statuses(unreachable, "unreachable", 20).await), 0);
    let ejections = |state: &ProxyState| {
        metrics(state)
            .lines()
            .filter(|l| l.starts_with("plexus_proxy_outlier_ejections_total"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let ejected = ejections(&state);
    assert_eq!(ejected.len(), 1, "{ejected:?}");
    assert!(
        ejected[0].contains(r#"endpoint="127.0.0.72:"#)
            && ejected[0].contains(r#"reason="consecutive-local-origin-failures""#),
        "{ejected:?}"
    );
    // The 503s of `dead` come from its proxy: the endpoint answered, so
    // they are not local-origin failures, and 5xx are not counted here.
    let (failing, state) = world.client(NS, CLIENT, "127.0.10.71:80").await;
    assert_eq!(failures(&statuses(failing, "failing", 20).await), 10);
    assert_eq!(ejections(&state), Vec::<String>::new());
}

/// A GET through `proxy`, over HTTP/2 when `grpc` (as a gRPC call): the
/// status, the body, and the `grpc-status` of the trailers.
async fn call(
    proxy: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    grpc: bool,
) -> (u16, String, Option<String>) {
    use http_body_util::BodyExt;
    let client = http_client(grpc);
    let mut request = hyper::Request::builder()
        .method("GET")
        .uri(format!("http://{proxy}{path}"))
        .header("host", host("web"));
    if grpc {
        request = request.header("content-type", "application/grpc");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("a request");
    let response = client.request(request).await.expect("an answer");
    let status = response.status().as_u16();
    let in_headers = response.headers().get("grpc-status").cloned();
    let collected = response.into_body().collect().await.expect("a body");
    let grpc_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status").cloned())
        .or(in_headers)
        .map(|v| v.to_str().expect("text").to_owned());
    let body = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
    (status, body, grpc_status)
}

/// An HTTP/2 server outside the mesh that refuses the first stream of
/// each connection (REFUSED_STREAM) and answers the others.
async fn refusing_server(ip: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(stream).await else {
                    return;
                };
                let mut first = true;
                while let Some(Ok((_, mut respond))) = connection.accept().await {
                    if std::mem::take(&mut first) {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    let response = http::Response::builder()
                        .status(200)
                        .body(())
                        .expect("a response");
                    if let Ok(mut body) = respond.send_response(response, false) {
                        let _ = body.send_data(bytes::Bytes::from_static(b"second"), true);
                    }
                }
            });
        }
    });
    addr
}

/// A condition, the query that makes the app fail once as it covers,
/// request headers, and whether the call is gRPC.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    bool,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retry_on_condition_retries() {
    let refusing = refusing_server("127.0.0.59").await;
    let conditions = [
        "retriable-4xx",
        "envoy-ratelimited",
        "retriable-headers",
        "retriable-status-codes",
        "reset-before-request",
        "cancelled",
        "deadline-exceeded",
        "resource-exhausted",
        "internal",
        "unavailable",
    ];
    let mut resources = String::from(
        r#"
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
    - {name: one, labels: {track: one}}
    - {name: down-first, labels: {track: down-first}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
    - name: not-grpc
      match: [{uri: {prefix: /not-grpc}}]
      retries: {attempts: 2, retryOn: 5xx}
      route: [{destination: {host: web, subset: one}}]
"#,
    );
    for condition in conditions {
        let subset = if condition == "reset-before-request" {
            "down-first"
        } else {
            "one"
        };
        resources.push_str(&format!(
            "    - name: {condition}\n      match: [{{uri: {{prefix: /{condition}}}}}]\n      retries: {{attempts: 2, retryOn: {condition}, backoff: 1ms}}\n      route: [{{destination: {{host: web, subset: {subset}}}}}]\n"
        ));
    }
    resources.push_str(&format!(
        r#"---
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: refusing}}
spec:
  hosts: [refusing.external.test]
  addresses: [127.0.10.59]
  ports: [{{number: 80, name: http2, protocol: HTTP2, targetPort: {port}}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: 127.0.0.59}}]
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {{name: refusing}}
spec:
  hosts: [refusing.external.test]
  http: [{{name: refused, retries: {{attempts: 2, retryOn: refused-stream, backoff: 1ms}}, route: [{{destination: {{host: refusing.external.test}}}}]}}]
"#,
        port = refusing.port()
    ));
    let workloads = [
        workload("one", "127.0.0.51", &[("app", "web"), ("track", "one")]),
        // First by address in round robin: nothing listens there.
        Workload {
            down: true,
            ..workload(
                "down",
                "127.0.0.52",
                &[("app", "web"), ("track", "down-first")],
            )
        },
        workload(
            "up",
            "127.0.0.53",
            &[("app", "web"), ("track", "down-first")],
        ),
    ];
    let mut world = World::start(
        "retry-on",
        &workloads,
        vec![service("web", "127.0.10.50", &[("app", "web")])],
        |_| resources,
    )
    .await;
    for origin in [
        "VirtualService/demo/web",
        "VirtualService/demo/refusing",
        "DestinationRule/demo/web",
    ] {
        world.assert_enforced(origin);
    }
    let (proxy, state) = world.client(NS, CLIENT, "127.0.10.50:80").await;
    let one = world.servers["one"].app.clone();
    let cases: [Case; 10] = [
        ("retriable-4xx", "?fail=409", &[], false),
        ("envoy-ratelimited", "?limited", &[], false),
        (
            "retriable-headers",
            "?mark=x-upstream-retry",
            &[("x-envoy-retriable-header-names", "X-Upstream-Retry")],
            false,
        ),
        (
            "retriable-status-codes",
            "?fail=418",
            &[("x-envoy-retriable-status-codes", "418")],
            false,
        ),
        ("reset-before-request", "", &[], false),
        ("cancelled", "?grpc=1", &[], true),
        ("deadline-exceeded", "?grpc-only=4", &[], true),
        ("resource-exhausted", "?grpc=8", &[], true),
        ("internal", "?grpc=13", &[], true),
        ("unavailable", "?grpc=14", &[], true),
    ];
    for (condition, query, headers, grpc) in cases {
        let id = format!("id-{condition}");
        let mut with = headers.to_vec();
        with.push(("x-request-id", &id));
        let (status, body, grpc_status) =
            call(proxy, &format!("/{condition}{query}"), &with, grpc).await;
        let expected = if condition == "reset-before-request" {
            "up"
        } else {
            "one"
        };
        assert_eq!((status, body.as_str()), (200, expected), "{condition}");
        if grpc {
            assert_eq!(grpc_status.as_deref(), Some("0"), "{condition}");
        }
        if expected == "one" {
            assert_eq!(
                one.served(&format!("/{condition}")),
                2,
                "{condition}: the failure, then the retry"
            );
        }
        let retries = count(
            &metrics(&state),
            &format!(
                r#"plexus_proxy_retries_total{{route="VirtualService/demo/web/{condition}"}}"#
            ),
        );
        assert_eq!(retries, 1, "{condition}");
    }
    // UNAVAILABLE in the trailers of a route that retries 5xx only: passed on.
    let (status, _, grpc_status) =
        call(proxy, "/not-grpc?grpc=14", &[("x-request-id", "n")], true).await;
    assert_eq!((status, grpc_status.as_deref()), (200, Some("14")));
    assert_eq!(one.served("/not-grpc"), 1);

    // REFUSED_STREAM from an HTTP/2 server outside the mesh: retried.
    let (refused, refused_state) = world.client(NS, CLIENT, "127.0.10.59:80").await;
    let client = http_client(true);
    let answer = send(&client, refused, "GET", "/", "refusing.external.test", &[]).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "second"));
    let retries = count(
        &metrics(&refused_state),
        r#"plexus_proxy_retries_total{route="VirtualService/demo/refusing/refused"}"#,
    );
    assert_eq!(retries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_retried_within_the_limit() {
    let resources = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http: [{name: upload, retries: {attempts: 1, retryOn: 5xx, backoff: 1ms}, route: [{destination: {host: web}}]}]
"#;
    let workloads = [workload("a", "127.0.0.61", &[("app", "web")])];
    let mut world = World::start(
        "bodies",
        &workloads,
        vec![service("web", "127.0.10.60", &[("app", "web")])],
        |_| resources.into(),
    )
    .await;
    world.assert_enforced("VirtualService/demo/web");
    let (proxy, state) = world.client(NS, CLIENT, "127.0.10.60:80").await;
    let app: Arc<support::AppLog> = world.servers["a"].app.clone();
    let bodies = || std::mem::take(&mut *app.bodies.lock().expect("log"));

    // 32 KiB streamed: kept as it went, sent again.
    assert_eq!(
        post_streamed(proxy, "/small?fail=503", "small", 32 * 1024).await,
        200
    );
    assert_eq!(bodies(), [32 * 1024, 32 * 1024]);
    // 1 MiB streamed: sent once; the 503 is the answer.
    assert_eq!(
        post_streamed(proxy, "/large?fail=503", "large", 1024 * 1024).await,
        503
    );
    assert_eq!(bodies(), [1024 * 1024]);
    assert_eq!(
        series(&state, "retries_skipped", "web:80", "body-too-large"),
        1
    );
    let retries = count(
        &metrics(&state),
        r#"plexus_proxy_retries_total{route="VirtualService/demo/web/upload"}"#,
    );
    assert_eq!(retries, 1);
}

/// An HTTP/1.1 server that answers the first request of each connection
/// (keeping it alive) and closes the connection on the second, unanswered.
/// It counts the requests it read.
async fn closing_server(ip: &str) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = read.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                for answered in [true, false] {
                    // One request head (these requests have no body).
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buffer[..n]),
                        }
                    }
                    seen.clear();
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if answered {
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_unanswered_is_tried_again_when_idempotent() {
    let (server, read) = closing_server("127.0.0.91").await;
    let resources = format!(
        r#"
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: closing}}
spec:
  hosts: [closing.external.test]
  addresses: [127.0.10.91]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {port}}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: 127.0.0.91}}]
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {{name: closing}}
spec:
  hosts: [closing.external.test]
  http: [{{route: [{{destination: {{host: closing.external.test}}}}], retries: {{attempts: 0}}}}]
"#,
        port = server.port()
    );
    let mut world = World::start("closing", &[], Vec::new(), |_| resources).await;
    world.assert_enforced("ServiceEntry/demo/closing");
    let (proxy, _) = world.client(NS, CLIENT, "127.0.10.91:80").await;
    let client = http_client(false);
    let host = "closing.external.test";
    // The second GET goes out on the kept-alive connection, which closes
    // unanswered: it is sent again on a new one.
    for _ in 0..2 {
        assert_eq!(
            send(&client, proxy, "GET", "/", host, &[]).await.status,
            200
        );
    }
    assert_eq!(read.load(std::sync::atomic::Ordering::SeqCst), 3);
    // A POST is not: it takes the connection the retried GET left, which
    // closes on it; the caller hears of it. The next one opens a new one.
    let first = send(&client, proxy, "POST", "/", host, &[]).await;
    let second = send(&client, proxy, "POST", "/", host, &[]).await.status;
    assert_eq!((first.status, second), (503, 200), "{first:?}");
    assert_eq!(read.load(std::sync::atomic::Ordering::SeqCst), 5);
}

/// A listener on `ip` that never accepts, its queue full: a connection
/// to it waits for an answer to its SYN that does not come.
fn unanswering(ip: [u8; 4]) -> (SocketAddr, std::os::fd::OwnedFd, Vec<std::net::TcpStream>) {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, getsockname, listen, socket,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    let [a, b, c, d] = ip;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(a, b, c, d, 0),
    )
    .expect("bind");
    listen(&fd, Backlog::new(0).expect("a backlog")).expect("listen");
    let bound: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd)).expect("address");
    let addr = SocketAddr::from((ip, bound.port()));
    // Fill the queue until a connection is no longer answered.
    let mut held = Vec::new();
    while let Ok(stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        held.push(stream);
        assert!(held.len() < 16, "the queue does not fill");
    }
    (addr, fd, held)
}

/// The timers of the established connections to `server`, as
/// /proc/net/tcp lists them: (kind, clock ticks of 1/100 s left). The kernel
/// shows one timer a connection: a pending retransmission (kind 1) or zero
/// window probe (4) hides the keepalive timer (2), so this waits, up to a
/// second, until no connection to `server` has data unacknowledged.
async fn settled_timers(server: SocketAddr) -> Vec<(u8, u64)> {
    let SocketAddr::V4(v4) = server else {
        panic!("an IPv4 address");
    };
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    let read = || -> Vec<(u8, u64)> {
        std::fs::read_to_string("/proc/net/tcp")
            .expect("/proc/net/tcp")
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (rem, state, timer) = (fields.get(2)?, fields.get(3)?, fields.get(5)?);
                let (kind, when) = timer.split_once(':')?;
                (*rem == remote && *state == "01").then_some(())?;
                Some((kind.parse().ok()?, u64::from_str_radix(when, 16).ok()?))
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let timers = read();
        if Instant::now() >= deadline || timers.iter().all(|(kind, _)| ![1, 4].contains(kind)) {
            return timers;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Outbound mTLS handshakes a client proxy made.
fn handshakes(state: &ProxyState) -> u64 {
    metrics(state)
        .lines()
        .filter(|l| {
            l.starts_with("plexus_proxy_tcp_mtls_total") && l.contains(r#"direction="outbound""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_live_as_the_pool_says() {
    let (silent, _listener, _held) = unanswering([127, 0, 0, 95]);
    let pool = |name: &str, pool: &str| {
        format!(
            "apiVersion: plexus.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec: {{host: {name}, trafficPolicy: {{connectionPool: {pool}}}}}\n---\n"
        )
    };
    let resources = [
        pool("per-request", "{http: {maxRequestsPerConnection: 1}}"),
        pool("idle", "{http: {idleTimeout: 300ms}}"),
        pool("aging", "{tcp: {maxConnectionDuration: 400ms}}"),
        pool(
            "plain",
            "{tcp: {maxConnections: 100, tcpKeepalive: {time: 10s, interval: 5s, probes: 3}}}",
        ),
        pool("silent.external.test", "{tcp: {connectTimeout: 300ms}}"),
        format!(
            r#"apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: silent}}
spec:
  hosts: [silent.external.test]
  addresses: [127.0.10.95]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {port}}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: 127.0.0.95}}]
"#,
            port = silent.port()
        ),
    ]
    .concat();
    let workloads = [workload("a", "127.0.0.96", &[("app", "web")])];
    let names = ["per-request", "idle", "aging", "plain"];
    let services = names
        .iter()
        .enumerate()
        .map(|(i, name)| service(name, &format!("127.0.10.{}", 96 + i), &[("app", "web")]))
        .collect();
    let mut world = World::start("lifetimes", &workloads, services, |_| resources).await;
    for name in names {
        world.assert_enforced(&format!("DestinationRule/demo/{name}"));
    }
    world.assert_enforced("DestinationRule/demo/silent.external.test");
    let client = http_client(false);
    let mut proxies = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        proxies.insert(
            *name,
            world
                .client(NS, CLIENT, &format!("127.0.10.{}:80", 96 + i))
                .await,
        );
    }
    let get = |name: &'static str| {
        let (proxy, _) = &proxies[name];
        let (proxy, client) = (*proxy, client.clone());
        async move {
            assert_eq!(
                send(&client, proxy, "GET", "/", &host(name), &[])
                    .await
                    .status,
                200,
                "{name}"
            );
        }
    };
    for _ in 0..4 {
        get("per-request").await;
        get("plain").await;
    }
    for name in ["idle", "aging"] {
        get(name).await;
        get(name).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for name in ["idle", "aging"] {
        get(name).await;
    }
    let made: BTreeMap<&str, u64> = proxies
        .iter()
        .map(|(name, (_, state))| (*name, handshakes(state)))
        .collect();
    assert_eq!(
        made,
        BTreeMap::from([("aging", 2), ("idle", 2), ("per-request", 4), ("plain", 1)]),
        "connections made"
    );

    // Keepalive on plain's connection, which lives through the test, and on
    // no other: the kernel's keepalive timer runs on it, due within its 10 s.
    let server = world.servers["a"].addr;
    let timers = settled_timers(server).await;
    let keepalive: Vec<u64> = timers
        .iter()
        .filter(|(kind, _)| *kind == 2)
        .map(|(_, when)| *when)
        .collect();
    assert_eq!(keepalive.len(), 1, "{timers:?}");
    assert!(keepalive[0] > 0 && keepalive[0] <= 1_000, "{timers:?}");

    // The connect timeout: 300 ms, not the default 10 s.
    let (silent_proxy, _) = world.client(NS, CLIENT, "127.0.10.95:80").await;
    let started = Instant::now();
    let answer = send(
        &client,
        silent_proxy,
        "GET",
        "/",
        "silent.external.test",
        &[],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_profile_routes_retry_time_out_and_classify() {
    let resources = r#"
apiVersion: plexus.dev/v1alpha1
kind: ServiceProfile
metadata: {name: web.demo.svc.cluster.local}
spec:
  routes:
    - name: flaky
      condition: {method: GET, pathRegex: "/api/.*/flaky"}
      isRetryable: true
    - name: slow
      condition: {pathRegex: /slow}
      timeout: 300ms
    - name: teapots
      condition: {all: [{any: [{pathRegex: "/tea.*"}, {pathRegex: /kettle}]}, {not: {method: POST}}]}
      responseClasses: [{condition: {any: [{status: {min: 418, max: 418}}]}, isFailure: true}]
      isRetryable: false
  retryBudget: {retryRatio: 0.0, minRetriesPerSecond: 1, ttl: 5s}
"#;
    let workloads = [workload("a", "127.0.0.101", &[("app", "web")])];
    let mut world = World::start(
        "profile",
        &workloads,
        vec![service("web", "127.0.10.101", &[("app", "web")])],
        |_| resources.into(),
    )
    .await;
    world.assert_enforced("ServiceProfile/demo/web.demo.svc.cluster.local");
    let (proxy, state) = world.client(NS, CLIENT, "127.0.10.101:80").await;
    let client = http_client(false);
    let app = world.servers["a"].app.clone();
    let get = |path: String, id: String| {
        let client = client.clone();
        async move {
            send(
                &client,
                proxy,
                "GET",
                &path,
                &host("web"),
                &[("x-request-id", &id)],
            )
            .await
            .status
        }
    };
    // Retryable, within a budget of 5 retries in 5 s (1 a second, no
    // ratio): the first five failures are retried, the next five not.
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(get(format!("/api/{i}/flaky"), format!("f-{i}")).await);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 503, 503, 503, 503, 503]);
    assert_eq!(
        series(&state, "retries_skipped", "web:80", "retry-budget"),
        5
    );
    let route = |name: &str| format!("ServiceProfile/demo/web.demo.svc.cluster.local/{name}");
    let retries = count(
        &metrics(&state),
        &format!(
            r#"plexus_proxy_retries_total{{route="{}"}}"#,
            route("flaky")
        ),
    );
    assert_eq!(retries, 5);
    // Not retryable: the POST is not the route's method, and /other no route's.
    let post = send(
        &client,
        proxy,
        "POST",
        "/api/x/flaky",
        &host("web"),
        &[("x-request-id", "p")],
    )
    .await;
    assert_eq!(post.status, 503);
    // The route's timeout.
    let started = Instant::now();
    assert_eq!(get("/slow".into(), "s".into()).await, 504);
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    // Response classes: 418 is a failure on `teapots`, 500 is not.
    assert_eq!(get("/teapot?fail=418".into(), "t1".into()).await, 418);
    assert_eq!(get("/teapot?fail=500".into(), "t2".into()).await, 500);
    assert_eq!(get("/teapot".into(), "t3".into()).await, 200);
    let class = |route: &str, class: &str| {
        count(
            &metrics(&state),
            &format!(
                r#"plexus_proxy_response_classes_total{{dst_service="demo/web",route="{route}",classification="{class}"}}"#
            ),
        )
    };
    assert_eq!(
        (
            class(&route("teapots"), "failure"),
            class(&route("teapots"), "success")
        ),
        (1, 2)
    );
    assert_eq!(class(&route("flaky"), "failure"), 5);
    assert_eq!(app.served("/teapot"), 3);
}
