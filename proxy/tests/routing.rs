//! Routing as users write it, end to end: VirtualServices, DestinationRules,
//! TrafficSplits, ServiceEntries and ServiceProfiles compiled by the
//! operator's compiler, enforced by real proxies on loopback (a client proxy,
//! server proxies over mTLS in front of test apps), and observed at the apps
//! and in the answers. The capability list (`config/src/capability`) names
//! these tests as the proof of what it says the proxy enforces.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::world::{NS, Workload, World, host, send, service, workload};
use support::{count, http_client, metrics};

const WEB_IP: &str = "127.0.10.1";
const WEB: &str = "127.0.10.1:80";

const V1: &[(&str, &str)] = &[("app", "web"), ("version", "v1")];
const V2: &[(&str, &str)] = &[("app", "web"), ("version", "v2")];
const CLIENT: &[(&str, &str)] = &[("app", "client")];

const SUBSETS: &str = r#"
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
"#;

/// `web` with pods v1 and v2, its subsets, and `routes` (more YAML).
async fn web(name: &str, routes: &str) -> World {
    let workloads = [
        workload("v1", "127.0.0.11", V1),
        workload("v2", "127.0.0.12", V2),
    ];
    let resources = format!("{SUBSETS}\n---\n{routes}");
    World::start(
        name,
        &workloads,
        vec![service("web", WEB_IP, &[("app", "web")])],
        |_| resources,
    )
    .await
}

/// Which app answered each of `n` calls of `path`.
async fn tally(
    proxy: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> BTreeMap<String, usize> {
    let client = http_client(false);
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let answer = send(&client, proxy, "GET", path, &host("web"), headers).await;
        *seen
            .entry(format!("{} {}", answer.status, answer.body))
            .or_default() += 1;
    }
    seen
}

/// A request (method, path, Host, headers) and the app that must answer it.
type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_path_matches_pick_routes() {
    let routes = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  gateways: [mesh]
  http:
    - name: by-header
      match: [{headers: {end-user: {exact: jason}}}]
      route: [{destination: {host: web, subset: v2}}]
    - name: by-header-regex
      match: [{headers: {user-agent: {regex: ".*Mobile.*"}}}]
      route: [{destination: {host: web, subset: v2}}]
    - name: by-prefix
      match: [{uri: {prefix: /api/v2}}]
      route: [{destination: {host: web, subset: v2}}]
    - name: by-exact
      match: [{uri: {exact: /exact}}]
      route: [{destination: {host: web, subset: v2}}]
    - name: by-regex
      match: [{uri: {regex: "/re/[0-9]+"}}]
      route: [{destination: {host: web, subset: v2}}]
    - name: by-case
      match: [{uri: {exact: /caseless}, ignoreUriCase: true}]
      route: [{destination: {host: web, subset: v2}}]
    - name: by-method
      match: [{uri: {prefix: /post}, method: {exact: POST}}]
      route: [{destination: {host: web, subset: v2}}]
    - name: by-authority
      match: [{authority: {prefix: web-canary}}]
      route: [{destination: {host: web, subset: v2}}]
    - name: by-query
      match: [{uri: {prefix: /q}, queryParams: {debug: {exact: "on"}}}]
      route: [{destination: {host: web, subset: v2}}]
    - name: without-header
      match: [{uri: {prefix: /without}, withoutHeaders: {x-legacy: {exact: "1"}}}]
      route: [{destination: {host: web, subset: v2}}]
    - name: by-port
      match: [{uri: {prefix: /port80}, port: 80}, {uri: {prefix: /port81}, port: 81}]
      route: [{destination: {host: web, subset: v2}}]
    - name: by-scheme
      match: [{uri: {prefix: /scheme}, scheme: {exact: http}}]
      route: [{destination: {host: web, subset: v2}}]
    - name: by-source
      match:
        - {uri: {prefix: /src}, sourceLabels: {app: client}}
        - {uri: {prefix: /other-src}, sourceLabels: {app: other}}
      route: [{destination: {host: web, subset: v2}}]
    - name: by-source-ns
      match: [{uri: {prefix: /ns}, sourceNamespace: demo}, {uri: {prefix: /other-ns}, sourceNamespace: other}]
      route: [{destination: {host: web, subset: v2}}]
    - name: default
      route: [{destination: {host: web, subset: v1}}]
"#;
    let mut world = web("matches", routes).await;
    world.assert_enforced("VirtualService/demo/web");
    let (proxy, state) = world.client(NS, CLIENT, WEB).await;
    let client = http_client(false);
    let web = host("web");
    let cases: &[Case] = &[
        ("GET", "/", &web, &[("end-user", "jason")], "v2"),
        ("GET", "/", &web, &[("end-user", "jasonx")], "v1"),
        ("GET", "/", &web, &[("user-agent", "Foo Mobile Bar")], "v2"),
        ("GET", "/api/v2/items", &web, &[], "v2"),
        ("GET", "/api/v1/items", &web, &[], "v1"),
        ("GET", "/exact", &web, &[], "v2"),
        ("GET", "/exact/more", &web, &[], "v1"),
        ("GET", "/re/42", &web, &[], "v2"),
        ("GET", "/re/4x", &web, &[], "v1"),
        ("GET", "/CaseLess", &web, &[], "v2"),
        ("POST", "/post", &web, &[], "v2"),
        ("GET", "/post", &web, &[], "v1"),
        ("GET", "/", "web-canary.demo", &[], "v2"),
        ("GET", "/q?a=1&debug=on", &web, &[], "v2"),
        ("GET", "/q?debug=off", &web, &[], "v1"),
        ("GET", "/without", &web, &[], "v2"),
        ("GET", "/without", &web, &[("x-legacy", "1")], "v1"),
        ("GET", "/port80", &web, &[], "v2"),
        ("GET", "/port81", &web, &[], "v1"),
        ("GET", "/scheme", &web, &[], "v2"),
        ("GET", "/src", &web, &[], "v2"),
        ("GET", "/other-src", &web, &[], "v1"),
        ("GET", "/ns", &web, &[], "v2"),
        ("GET", "/other-ns", &web, &[], "v1"),
    ];
    let mut wrong = Vec::new();
    for (method, path, authority, headers, expected) in cases {
        let answer = send(&client, proxy, method, path, authority, headers).await;
        if (answer.status, answer.body.as_str()) != (200, *expected) {
            wrong.push(format!(
                "{method} {authority}{path} {headers:?}: {} {:?}, expected {expected}",
                answer.status, answer.body
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The route taken is named in the metrics.
    let jason = r#"plexus_proxy_requests_total{direction="outbound",src_identity="spiffe://cluster.local/ns/demo/sa/client",dst_identity="spiffe://cluster.local/ns/demo/sa/web",route="VirtualService/demo/web/by-header",dst_service="demo/web",status="200"}"#;
    assert_eq!(count(&metrics(&state), jason), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_follow_the_weights() {
    let routes = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.demo.svc.cluster.local]
  http:
    - route:
        - {destination: {host: web, subset: v1, port: {number: 80}}, weight: 80}
        - {destination: {host: web, subset: v2, port: {number: 80}}, weight: 20}
"#;
    let mut world = web("splits", routes).await;
    assert!(world.accepted("DestinationRule/demo/web").0);
    let (proxy, _) = world.client(NS, CLIENT, WEB).await;
    let total = 2000;
    let seen = tally(proxy, "/", &[], total).await;
    let v2 = seen.get("200 v2").copied().unwrap_or(0);
    let v1 = seen.get("200 v1").copied().unwrap_or(0);
    eprintln!("split over {total} calls: {seen:?}");
    assert_eq!(v1 + v2, total, "{seen:?}");
    let share = v2 as f64 / total as f64;
    assert!(
        (0.16..=0.24).contains(&share),
        "v2 got {:.1} %",
        share * 100.0
    );
    // Both subsets are what the DestinationRule's labels say.
    assert_eq!(world.servers["v1"].app.served("/") as usize, v1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_retry_on() {
    let routes = r#"
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: mixed}
spec:
  host: web
  subsets:
    - {name: mixed, labels: {track: mixed}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
    - name: server-error
      match: [{uri: {prefix: /5xx}}]
      retries: {attempts: 2, retryOn: 5xx}
      route: [{destination: {host: web, subset: v1}}]
    - name: gateway-error
      match: [{uri: {prefix: /gateway}}]
      retries: {attempts: 2, retryOn: gateway-error}
      route: [{destination: {host: web, subset: v1}}]
    - name: codes
      match: [{uri: {prefix: /codes}}]
      retries: {attempts: 2, retryOn: "retriable-status-codes,409"}
      route: [{destination: {host: web, subset: v1}}]
    - name: not-this-code
      match: [{uri: {prefix: /other-code}}]
      retries: {attempts: 2, retryOn: 5xx}
      route: [{destination: {host: web, subset: v1}}]
    - name: connect
      match: [{uri: {prefix: /connect}}]
      retries: {attempts: 2, retryOn: connect-failure}
      route: [{destination: {host: web, subset: mixed}}]
    - name: reset
      match: [{uri: {prefix: /reset}}]
      retries: {attempts: 2, retryOn: reset, perTryTimeout: 300ms}
      route: [{destination: {host: web, subset: v1}}]
    - name: backoff
      match: [{uri: {prefix: /backoff}}]
      retries: {attempts: 1, retryOn: 5xx, backoff: 400ms}
      route: [{destination: {host: web, subset: v1}}]
"#;
    let workloads = [
        workload("v1", "127.0.0.11", V1),
        workload("v2", "127.0.0.12", V2),
        // Sorted by address, first in round robin: its app refuses.
        Workload {
            dead: true,
            ..workload("dead", "127.0.0.10", &[("app", "web"), ("track", "mixed")])
        },
        workload("alive", "127.0.0.13", &[("app", "web"), ("track", "mixed")]),
    ];
    let resources = format!("{SUBSETS}\n---\n{routes}");
    let mut world = World::start(
        "retries",
        &workloads,
        vec![service("web", WEB_IP, &[("app", "web")])],
        |_| resources,
    )
    .await;
    let (proxy, state) = world.client(NS, CLIENT, WEB).await;
    let client = http_client(false);
    let call = |path: String, id: String| {
        let client = client.clone();
        async move {
            let answer = send(
                &client,
                proxy,
                "GET",
                &path,
                &host("web"),
                &[("x-request-id", &id)],
            )
            .await;
            (answer.status, answer.body)
        }
    };
    let v1 = &world.servers["v1"].app;
    for (i, path) in ["/5xx/flaky", "/gateway?fail=503", "/codes?fail=409"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            call(path.to_string(), format!("ok-{i}")).await,
            (200, "v1".into()),
            "{path}"
        );
    }
    assert_eq!(v1.served("/5xx/flaky"), 2, "the 503, then the retry");
    assert_eq!(v1.served("/gateway"), 2);
    assert_eq!(v1.served("/codes"), 2);
    // A status retryOn does not name is passed on.
    assert_eq!(
        call("/other-code?fail=409".into(), "other".into()).await.0,
        409
    );
    assert_eq!(v1.served("/other-code"), 1);
    // The endpoint whose app refuses answers connect-failure: the retry
    // goes to the next one.
    assert_eq!(
        call("/connect".into(), "c".into()).await,
        (200, "alive".into())
    );
    // A per-try timeout is a reset: retried.
    let started = Instant::now();
    assert_eq!(
        call("/reset?slow-once".into(), "r".into()).await,
        (200, "v1".into())
    );
    assert!(
        started.elapsed() < Duration::from_millis(1_800),
        "{:?}",
        started.elapsed()
    );
    let retries = |route: &str| {
        count(
            &metrics(&state),
            &format!(r#"plexus_proxy_retries_total{{route="VirtualService/demo/web/{route}"}}"#),
        )
    };
    assert_eq!(
        [
            "server-error",
            "gateway-error",
            "codes",
            "not-this-code",
            "connect",
            "reset"
        ]
        .map(retries),
        [1, 1, 1, 0, 1, 1]
    );
    // The backoff before a retry: about 200 ms each on average here.
    let started = Instant::now();
    for i in 0..5 {
        assert_eq!(call("/backoff/flaky".into(), format!("b-{i}")).await.0, 200);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "five retries after a 400 ms backoff took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeouts_end_attempts() {
    let routes = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
    - name: per-try
      match: [{uri: {prefix: /per-try}}]
      retries: {attempts: 1, retryOn: 5xx, perTryTimeout: 300ms}
      route: [{destination: {host: web, subset: v1}}]
    - route: [{destination: {host: web, subset: v1}}]
"#;
    let mut world = web("per-try", routes).await;
    let (proxy, _) = world.client(NS, CLIENT, WEB).await;
    let client = http_client(false);
    // The first attempt (2 s) is cut at 300 ms, the retry answers at once.
    let started = Instant::now();
    let answer = send(
        &client,
        proxy,
        "GET",
        "/per-try?slow-once",
        &host("web"),
        &[("x-request-id", "a")],
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!((answer.status, answer.body.as_str()), (200, "v1"));
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1_800), "{elapsed:?}");
    // Every attempt slow: both cut, the caller gets 504 per-try-timeout.
    let started = Instant::now();
    let answer = send(
        &client,
        proxy,
        "GET",
        "/per-try",
        &host("web"),
        &[("x-delay-v1", "2000")],
    )
    .await;
    assert_eq!(
        (answer.status, answer.body.trim()),
        (504, "per-try-timeout")
    );
    assert!(
        started.elapsed() < Duration::from_millis(1_800),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_answer_504() {
    let routes = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
    - {timeout: 300ms, route: [{destination: {host: web, subset: v1}}]}
"#;
    let mut world = web("timeout", routes).await;
    let (proxy, _) = world.client(NS, CLIENT, WEB).await;
    let client = http_client(false);
    let started = Instant::now();
    let answer = send(&client, proxy, "GET", "/slow", &host("web"), &[]).await;
    let elapsed = started.elapsed();
    assert_eq!((answer.status, answer.body.trim()), (504, "timeout"));
    assert!(
        (Duration::from_millis(300)..Duration::from_millis(1_500)).contains(&elapsed),
        "{elapsed:?}"
    );
    assert_eq!(
        send(&client, proxy, "GET", "/", &host("web"), &[])
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_delay_and_abort() {
    let routes = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
    - match: [{uri: {prefix: /delayed}}]
      fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}
      route: [{destination: {host: web, subset: v1}}]
    - match: [{uri: {prefix: /old-percent}}]
      fault: {delay: {fixedDelay: 200ms, percent: 100}}
      route: [{destination: {host: web, subset: v1}}]
    - match: [{uri: {prefix: /aborted}}]
      fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
      route: [{destination: {host: web, subset: v1}}]
    - match: [{uri: {prefix: /half}}]
      fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
      route: [{destination: {host: web, subset: v1}}]
    - route: [{destination: {host: web, subset: v1}}]
"#;
    let mut world = web("faults", routes).await;
    let (proxy, _) = world.client(NS, CLIENT, WEB).await;
    let client = http_client(false);
    for (path, least) in [("/delayed", 300), ("/old-percent", 200)] {
        let started = Instant::now();
        assert_eq!(
            send(&client, proxy, "GET", path, &host("web"), &[])
                .await
                .status,
            200
        );
        assert!(
            started.elapsed() >= Duration::from_millis(least),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    let aborted = send(&client, proxy, "GET", "/aborted", &host("web"), &[]).await;
    assert_eq!(aborted.status, 418);
    assert_eq!(
        world.servers["v1"].app.served("/aborted"),
        0,
        "an abort never reaches the app"
    );
    let seen = tally(proxy, "/half", &[], 200).await;
    let failed = seen
        .iter()
        .filter(|(k, _)| k.starts_with("503"))
        .map(|(_, n)| n)
        .sum::<usize>();
    eprintln!("50 % abort over 200 calls: {seen:?}");
    assert!((70..=130).contains(&failed), "{failed} of 200 aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_direct_responses() {
    let routes = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
    - match: [{uri: {exact: /old}}]
      redirect: {uri: /new, authority: example.com, port: 8443, scheme: https, redirectCode: 308}
    - match: [{uri: {exact: /moved}}]
      redirect: {uri: /elsewhere}
    - match: [{uri: {exact: /teapot}}]
      directResponse: {status: 418, body: {string: short and stout}}
    - route: [{destination: {host: web, subset: v1}}]
"#;
    let mut world = web("redirects", routes).await;
    let (proxy, _) = world.client(NS, CLIENT, WEB).await;
    let client = http_client(false);
    let old = send(&client, proxy, "GET", "/old?x=1", &host("web"), &[]).await;
    assert_eq!(old.status, 308);
    assert_eq!(old.headers["location"], "https://example.com:8443/new");
    let moved = send(&client, proxy, "GET", "/moved", &host("web"), &[]).await;
    assert_eq!(moved.status, 301);
    assert_eq!(
        moved.headers["location"],
        format!("http://{}/elsewhere", host("web"))
    );
    let teapot = send(&client, proxy, "GET", "/teapot", &host("web"), &[]).await;
    assert_eq!(
        (teapot.status, teapot.body.as_str()),
        (418, "short and stout")
    );
    assert_eq!(
        world.servers["v1"].app.served("/teapot") + world.servers["v1"].app.served("/old"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_change_path_and_authority() {
    let routes = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
    - match: [{uri: {prefix: /v1/}}]
      rewrite: {uri: /v2/}
      route: [{destination: {host: web, subset: v1}}]
    - match: [{uri: {prefix: /users}}]
      rewrite: {uriRegexRewrite: {match: "^/users/([0-9]+)$", rewrite: "/people/\\1"}}
      route: [{destination: {host: web, subset: v1}}]
    - match: [{uri: {prefix: /renamed}}]
      rewrite: {authority: renamed.example}
      route: [{destination: {host: web, subset: v1}}]
    - route: [{destination: {host: web, subset: v1}}]
"#;
    let mut world = web("rewrites", routes).await;
    let (proxy, _) = world.client(NS, CLIENT, WEB).await;
    let client = http_client(false);
    let echo = [("x-echo", "1")];
    let first_line = |body: String| body.lines().next().unwrap_or_default().to_owned();
    let items = send(
        &client,
        proxy,
        "GET",
        "/v1/items?page=2",
        &host("web"),
        &echo,
    )
    .await;
    assert_eq!(
        first_line(items.body),
        format!("GET {} /v2/items?page=2", host("web"))
    );
    let user = send(&client, proxy, "GET", "/users/42", &host("web"), &echo).await;
    assert_eq!(
        first_line(user.body),
        format!("GET {} /people/42", host("web"))
    );
    let renamed = send(&client, proxy, "GET", "/renamed", &host("web"), &echo).await;
    assert_eq!(first_line(renamed.body), "GET renamed.example /renamed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_change_requests_and_responses() {
    let routes = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
    - headers:
        request: {set: {x-set: route}, add: {x-added: "2"}, remove: [x-secret]}
        response: {set: {x-response: route}, remove: [x-app]}
      route:
        - destination: {host: web, subset: v1}
          headers:
            request: {set: {x-backend: v1}}
            response: {add: {x-served-by: v1}}
"#;
    let mut world = web("headers", routes).await;
    let (proxy, _) = world.client(NS, CLIENT, WEB).await;
    let client = http_client(false);
    let answer = send(
        &client,
        proxy,
        "GET",
        "/headers",
        &host("web"),
        &[
            ("x-secret", "s3cret"),
            ("x-set", "caller"),
            ("x-added", "1"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    let body = answer.body;
    assert!(body.contains("x-set: route\n"), "{body}");
    assert!(!body.contains("x-set: caller"), "{body}");
    assert!(
        body.contains("x-added: 1\n") && body.contains("x-added: 2\n"),
        "{body}"
    );
    assert!(!body.contains("x-secret"), "{body}");
    assert!(body.contains("x-backend: v1\n"), "{body}");
    assert_eq!(answer.headers["x-response"], "route");
    assert_eq!(answer.headers["x-served-by"], "v1");
    assert!(
        !answer.headers.contains_key("x-app"),
        "{:?}",
        answer.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_to_limits_who_sees_routes() {
    let routes = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  exportTo: ["."]
  http:
    - directResponse: {status: 418}
"#;
    let mut world = web("export-to", routes).await;
    let (here, _) = world.client(NS, CLIENT, WEB).await;
    let (there, _) = world.client("other", CLIENT, WEB).await;
    let client = http_client(false);
    assert_eq!(
        send(&client, here, "GET", "/", &host("web"), &[])
            .await
            .status,
        418
    );
    // The other namespace does not see the route: the Service's own pods.
    let other = send(&client, there, "GET", "/", &host("web"), &[]).await;
    assert_eq!(other.status, 200, "{other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_splits_split_between_services() {
    let split = r#"
apiVersion: plexus.dev/v1alpha1
kind: TrafficSplit
metadata: {name: web}
spec:
  service: web
  backends:
    - {service: web-v1, weight: 3}
    - {service: web-v2, weight: 1}
"#;
    let workloads = [
        workload("v1", "127.0.0.11", V1),
        workload("v2", "127.0.0.12", V2),
    ];
    let mut world = World::start(
        "traffic-split",
        &workloads,
        vec![
            service("web", WEB_IP, &[("app", "web")]),
            service("web-v1", "127.0.10.2", V1),
            service("web-v2", "127.0.10.3", V2),
        ],
        |_| split.into(),
    )
    .await;
    world.assert_enforced("TrafficSplit/demo/web");
    let (proxy, _) = world.client(NS, CLIENT, WEB).await;
    let total = 1000;
    let seen = tally(proxy, "/", &[], total).await;
    eprintln!("TrafficSplit over {total} calls: {seen:?}");
    let v2 = seen.get("200 v2").copied().unwrap_or(0);
    assert_eq!(v2 + seen.get("200 v1").copied().unwrap_or(0), total);
    assert!((190..=310).contains(&v2), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_entries_route_to_their_endpoints() {
    // Servers outside the mesh, on loopback.
    let (external, external_log) = support::http_app_on("127.0.0.51", "external").await;
    let (undeclared, undeclared_log) = support::http_app_on("127.0.0.53", "undeclared").await;
    let resources = format!(
        r#"
apiVersion: plexus.dev/v1alpha1
kind: Mesh
metadata: {{name: default}}
spec: {{outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}}}
---
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: api}}
spec:
  hosts: [api.external.test]
  addresses: [127.0.10.50]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {port}}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: 127.0.0.51, labels: {{track: blue}}}}]
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {{name: api}}
spec:
  host: api.external.test
  subsets: [{{name: blue, labels: {{track: blue}}}}]
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {{name: api}}
spec:
  hosts: [api.external.test]
  http: [{{route: [{{destination: {{host: api.external.test, subset: blue}}}}]}}]
---
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: named-port}}
spec:
  hosts: [named.external.test]
  addresses: [127.0.10.51]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.51, ports: {{http: {port}}}}}]
"#,
        port = external.port(),
    );
    let mut world = World::start("service-entry", &[], Vec::new(), |_| resources).await;
    for entry in ["ServiceEntry/demo/api", "ServiceEntry/demo/named-port"] {
        world.assert_enforced(entry);
    }
    let client = http_client(false);
    for (address, name) in [("127.0.10.50:80", "api"), ("127.0.10.51:80", "named")] {
        let (proxy, _) = world.client(NS, CLIENT, address).await;
        let answer = send(
            &client,
            proxy,
            "GET",
            "/",
            &format!("{name}.external.test"),
            &[],
        )
        .await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "external"),
            "{address}"
        );
    }
    assert_eq!(external_log.served("/"), 2);
    // REGISTRY_ONLY: what no ServiceEntry declares is refused.
    let (to_undeclared, state) = world.client(NS, CLIENT, &undeclared.to_string()).await;
    let refused = support::exchange(to_undeclared, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(refused.is_empty(), "{}", String::from_utf8_lossy(&refused));
    assert_eq!(undeclared_log.served("/"), 0);
    let counted = r#"plexus_proxy_tcp_refused_total{direction="outbound",reason="registry-only"}"#;
    assert_eq!(count(&metrics(&state), counted), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_ports_are_not_read_as_http() {
    let resources = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http: [{directResponse: {status: 418}}]
---
apiVersion: plexus.dev/v1alpha1
kind: ServiceProfile
metadata: {name: web.demo.svc.cluster.local}
spec: {opaquePorts: [80]}
"#;
    let workloads = [workload("v1", "127.0.0.11", V1)];
    let mut world = World::start(
        "opaque",
        &workloads,
        vec![service("web", WEB_IP, &[("app", "web")])],
        |_| resources.into(),
    )
    .await;
    let (proxy, state) = world.client(NS, CLIENT, WEB).await;
    // HTTP on an opaque port: carried as bytes over mTLS, no route applies.
    let answer = send(&http_client(false), proxy, "GET", "/", &host("web"), &[]).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "v1"));
    let text = metrics(&state);
    assert!(
        !text.contains(r#"plexus_proxy_requests_total{direction="outbound""#),
        "{text}"
    );
    let mtls = r#"plexus_proxy_tcp_mtls_total{direction="outbound",peer_identity="spiffe://cluster.local/ns/demo/sa/web"}"#;
    assert_eq!(count(&text, mtls), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_idle_before_its_first_request_is_still_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let routes = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http: [{directResponse: {status: 418}}]
"#;
    let mut world = web("idle-first", routes).await;
    let (proxy, _) = world.client(NS, CLIENT, WEB).await;
    // A client that opens its connection ahead of time (a pool warming
    // up): the port is declared HTTP, so the proxy waits past its 500 ms
    // detection window and still routes the request.
    let mut stream = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let request = format!(
        "GET / HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
        host("web")
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 418"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_destinations_pass_through_under_allow_any() {
    let (unknown, log) = support::http_app_on("127.0.0.54", "unknown").await;
    let mesh = r#"
apiVersion: plexus.dev/v1alpha1
kind: Mesh
metadata: {name: default}
spec: {outboundTrafficPolicy: {mode: ALLOW_ANY}}
"#;
    let mut world = World::start("allow-any", &[], Vec::new(), |_| mesh.into()).await;
    let (proxy, _) = world.client(NS, CLIENT, &unknown.to_string()).await;
    let answer = send(&http_client(false), proxy, "GET", "/", "unknown.test", &[]).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "unknown"));
    assert_eq!(log.served("/"), 1);
}
