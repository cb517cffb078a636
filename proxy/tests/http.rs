//! HTTP through a client proxy and two server proxies on loopback, over
//! mTLS: a 90/10 split between subsets, a header match, a retry that turns
//! an upstream 503 into a success, a timeout, and HTTP/2 from the app.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_90_10_split_lands_within_3_percent_over_10000_requests() {
    let mesh = mesh("split").await;
    let client = http_client(false);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let total = 10_000;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let proxy = mesh.client;
            tokio::spawn(async move {
                let mut seen = BTreeMap::<String, u64>::new();
                for _ in 0..total / 8 {
                    let answer = get(&client, proxy, "/", &[]).await;
                    let key = match answer {
                        Ok((200, body)) => body,
                        other => format!("{other:?}"),
                    };
                    *seen.entry(key).or_default() += 1;
                }
                seen
            })
        })
        .collect();
    for task in tasks {
        for (k, v) in task.await.expect("load task") {
            *counts.entry(k).or_default() += v;
        }
    }
    eprintln!("{counts:?}");
    let v1 = counts.get("v1").copied().unwrap_or(0);
    let v2 = counts.get("v2").copied().unwrap_or(0);
    assert_eq!(
        v1 + v2,
        total,
        "every request answered by v1 or v2: {counts:?}"
    );
    let share = v2 as f64 / total as f64;
    assert!(
        (0.07..=0.13).contains(&share),
        "v2 got {:.2} %",
        share * 100.0
    );
    // The apps saw it too, and every request crossed mTLS as `client`.
    assert_eq!(mesh.apps[0].served("/") + mesh.apps[1].served("/"), total);
    let inbound = r#"plexus_proxy_requests_total{direction="inbound",src_identity="spiffe://cluster.local/ns/demo/sa/client",dst_identity="spiffe://cluster.local/ns/demo/sa/web",route="",dst_service="",status="200"}"#;
    let served: u64 = mesh
        .server_states
        .iter()
        .map(|s| count(&metrics(s), inbound))
        .sum();
    assert_eq!(served, total);
    let outbound = r#"plexus_proxy_requests_total{direction="outbound",src_identity="spiffe://cluster.local/ns/demo/sa/client",dst_identity="spiffe://cluster.local/ns/demo/sa/web",route="VirtualService/demo/web",dst_service="demo/web",status="200"}"#;
    assert_eq!(count(&metrics(&mesh.client_state), outbound), total);
    // Multiplexed: a handful of connections between the proxies, not one per request.
    let mtls = r#"plexus_proxy_tcp_mtls_total{direction="outbound",peer_identity="spiffe://cluster.local/ns/demo/sa/web"}"#;
    assert!(count(&metrics(&mesh.client_state), mtls) <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_match_routes_to_its_subset() {
    let mesh = mesh("header").await;
    let client = http_client(false);
    for _ in 0..20 {
        let answer = get(&client, mesh.client, "/", &[("end-user", "jason")]).await;
        assert_eq!(answer, Ok((200, "v2".into())));
    }
    // Headers reach the app; hop-by-hop ones do not.
    let (status, headers) = get(
        &client,
        mesh.client,
        "/headers",
        &[
            ("end-user", "jason"),
            ("x-trace", "abc"),
            ("connection", "keep-alive"),
        ],
    )
    .await
    .expect("answer");
    assert_eq!(status, 200);
    assert!(headers.contains("x-trace: abc"), "{headers}");
    assert!(
        headers.contains("host: web.demo.svc.cluster.local"),
        "{headers}"
    );
    assert!(!headers.contains("plexus-orig-proto"), "{headers}");
    assert!(!headers.contains("connection"), "{headers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_turns_an_upstream_503_into_a_success() {
    let mesh = mesh("retry").await;
    let client = http_client(false);
    for i in 0..5 {
        let id = format!("retry-{i}");
        let answer = get(&client, mesh.client, "/flaky", &[("x-request-id", &id)]).await;
        assert_eq!(answer, Ok((200, "v1".into())));
    }
    // Each request reached the app twice: the 503, then the success.
    assert_eq!(mesh.apps[0].served("/flaky"), 10);
    let retries = r#"plexus_proxy_retries_total{route="VirtualService/demo/web/retried"}"#;
    assert_eq!(count(&metrics(&mesh.client_state), retries), 5);
    // A route without retries passes the 503 on.
    let answer = get(
        &client,
        mesh.client,
        "/once/flaky",
        &[("x-request-id", "once")],
    )
    .await;
    assert_eq!(answer.map(|(status, _)| status), Ok(503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_fires() {
    let mesh = mesh("timeout").await;
    let client = http_client(false);
    let started = Instant::now();
    let answer = get(&client, mesh.client, "/slow", &[]).await;
    let elapsed = started.elapsed();
    assert_eq!(
        answer.map(|(status, body)| (status, body.trim().to_owned())),
        Ok((504, "timeout".into()))
    );
    assert!(
        elapsed < Duration::from_millis(1_500),
        "answered after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(300),
        "answered after {elapsed:?}"
    );
    // The connection is still good for the next request.
    assert_eq!(
        get(&client, mesh.client, "/", &[("end-user", "jason")]).await,
        Ok((200, "v2".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_from_the_app_stays_http2() {
    let mesh = mesh("h2").await;
    let client = http_client(true);
    for _ in 0..10 {
        let answer = get(&client, mesh.client, "/", &[("end-user", "jason")]).await;
        assert_eq!(answer, Ok((200, "v2".into())));
    }
    let versions = mesh.apps[1].versions.lock().expect("log").clone();
    assert_eq!(versions.len(), 10);
    assert!(
        versions.iter().all(|v| *v == http::Version::HTTP_2),
        "{versions:?}"
    );
    // And HTTP/1.1 from the app arrives as HTTP/1.1.
    let answer = get(
        &http_client(false),
        mesh.client,
        "/",
        &[("end-user", "jason")],
    )
    .await;
    assert_eq!(answer, Ok((200, "v2".into())));
    let last = mesh.apps[1].versions.lock().expect("log").last().copied();
    assert_eq!(last, Some(http::Version::HTTP_11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_peer_identity_is_refused() {
    let root =
        plexus_operator::ca::generate_root("cluster.local", std::time::SystemTime::now(), DAY)
            .expect("root");
    let (app, log) = http_app("v1").await;
    let (server, _server_state, server_dir) = server_proxy(
        "wrong-id-server",
        &root,
        plexus_config::MtlsMode::Strict,
        app,
    )
    .await;
    // The client expects ServiceAccount `billing` where `web` answers.
    let mut config = routed_config(server, server);
    let mut services = (*config.services).clone();
    for endpoint in &mut services[0].endpoints {
        endpoint.sa = Some("billing".into());
    }
    config.services = std::sync::Arc::new(services);
    let dir = temp("wrong-id-client");
    volumes(&dir, &config, &workload(&root, "client"), &root);
    let (client, client_state) = proxy(
        &dir,
        plexus_proxy::telemetry::Direction::Outbound,
        SERVICE.parse().expect("address"),
    )
    .await;
    let answer = get(&http_client(false), client, "/", &[]).await;
    assert_eq!(
        answer.map(|(status, body)| (status, body.trim().to_owned())),
        Ok((503, "connect-failure".into()))
    );
    assert_eq!(log.served("/"), 0, "the request reached the app");
    let refused = r#"plexus_proxy_tcp_refused_total{direction="outbound",reason="handshake"}"#;
    assert!(count(&metrics(&client_state), refused) >= 1);
    for dir in [dir, server_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_given_up_leave_nothing_in_flight() {
    let mesh = mesh("in-flight").await;
    let client = http_client(false);
    // The route's timeout (300 ms) gives up on the app (2 s).
    let answer = get(&client, mesh.client, "/slow", &[]).await;
    assert_eq!(answer.map(|(status, _)| status), Ok(504));
    // The app's client gives up first (100 ms): its connection closes.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        get(&http_client(false), mesh.client, "/slow", &[]),
    )
    .await;
    assert!(gave_up.is_err(), "answered before the client gave up");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let snapshot = mesh.client_state.snapshot().expect("a configuration");
    let v1 = plexus_config::Backend {
        host: WEB.into(),
        subset: Some("v1".into()),
        weight: 100,
        ..Default::default()
    };
    let index = snapshot.table.cluster(&v1, 80).expect("the v1 cluster");
    let cluster = snapshot.cluster(index).expect("the v1 cluster");
    let in_flight: Vec<usize> = cluster.endpoints.iter().map(|e| e.in_flight()).collect();
    assert_eq!(in_flight, [0], "requests left counted in flight");
}
