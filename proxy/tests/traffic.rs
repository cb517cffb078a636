//! Traffic management beyond routes and splits, end to end on loopback:
//! mirrors (and, as they land, CORS, TCP and TLS routes). Resources are
//! compiled by the operator's compiler and enforced by real proxies; the
//! capability list names these tests as the proof.

mod support;

use std::time::{Duration, Instant};

use support::world::{NS, World, host, post_streamed, send, service, workload};
use support::{AppLog, client_hello, count, http_client, metrics};

const CLIENT: &[(&str, &str)] = &[("app", "client")];

/// What `app` served of `path` once the copies on their way arrived: the
/// count once it has not changed for 200 ms.
async fn served(app: &AppLog, path: &str) -> u64 {
    let mut last = app.served(path);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = app.served(path);
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_copy_requests_without_the_caller_waiting() {
    let resources = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
    - name: all
      match: [{uri: {prefix: /all}}]
      route: [{destination: {host: web}}]
      mirror: {host: shadow, subset: a}
    - name: tenth
      match: [{uri: {prefix: /tenth}}]
      route: [{destination: {host: web}}]
      mirror: {host: shadow, subset: a, port: {number: 80}}
      mirrorPercentage: {value: 10}
    - name: both
      match: [{uri: {prefix: /both}}]
      route: [{destination: {host: web}}]
      mirrors:
        - {destination: {host: shadow, subset: a, port: {number: 80}}}
        - {destination: {host: other}, percentage: {value: 50}}
    - route: [{destination: {host: web}}]
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: shadow}
spec:
  host: shadow
  subsets: [{name: a, labels: {version: a}}]
"#;
    let workloads = [
        workload("web", "127.0.0.131", &[("app", "web")]),
        workload(
            "shadow",
            "127.0.0.132",
            &[("app", "shadow"), ("version", "a")],
        ),
        workload(
            "shadow-b",
            "127.0.0.134",
            &[("app", "shadow"), ("version", "b")],
        ),
        workload("other", "127.0.0.133", &[("app", "other")]),
    ];
    let services = vec![
        service("web", "127.0.10.131", &[("app", "web")]),
        service("shadow", "127.0.10.132", &[("app", "shadow")]),
        service("other", "127.0.10.133", &[("app", "other")]),
    ];
    let mut world = World::start("mirrors", &workloads, services, |_| resources.into()).await;
    world.assert_enforced("VirtualService/demo/web");
    let (proxy, state) = world.client(NS, CLIENT, "127.0.10.131:80").await;
    let client = http_client(false);
    let web = world.servers["web"].app.clone();
    let shadow = world.servers["shadow"].app.clone();
    let other = world.servers["other"].app.clone();
    let shadow_b = world.servers["shadow-b"].app.clone();
    let call = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let client = client.clone();
        async move {
            let answer = send(&client, proxy, "GET", path, &host("web"), headers).await;
            (answer.status, answer.body)
        }
    };

    // Every request copied; the callers get the primary's answers only,
    // the copies carry the host with `-shadow`.
    for _ in 0..20 {
        assert_eq!(call("/all", &[]).await, (200, "web".to_owned()));
    }
    // Subset a's endpoint gets them, not the other of shadow's.
    assert_eq!(served(&shadow, "/all").await, 20);
    assert_eq!(shadow_b.served("/all"), 0);
    assert_eq!(web.served("/all"), 20);
    let hosts = std::mem::take(&mut *shadow.hosts.lock().expect("log"));
    assert!(
        hosts
            .iter()
            .all(|h| h == &format!("{}-shadow", host("web"))),
        "{hosts:?}"
    );
    let mirrored = |route: &str, cluster: &str, outcome: &str| {
        count(
            &metrics(&state),
            &format!(
                r#"plexus_proxy_mirrored_total{{route="VirtualService/demo/web/{route}",cluster="{cluster}",outcome="{outcome}"}}"#
            ),
        )
    };
    assert_eq!(mirrored("all", "demo/shadow:80/a", "answered"), 20);

    // mirrorPercentage 10 over 1,000 requests, and two mirrors at once.
    for _ in 0..1000 {
        assert_eq!(call("/tenth", &[]).await.0, 200);
    }
    let tenth = served(&shadow, "/tenth").await;
    assert_eq!(shadow_b.served("/tenth"), 0);
    eprintln!("mirrorPercentage 10 over 1,000 requests: {tenth} copies");
    assert!((70..=130).contains(&tenth), "{tenth} of 1,000 mirrored");
    for _ in 0..200 {
        assert_eq!(call("/both", &[]).await.0, 200);
    }
    assert_eq!(served(&shadow, "/both").await, 200);
    assert_eq!(shadow_b.served("/both"), 0);
    let half = served(&other, "/both").await;
    eprintln!("mirrors[] at 100 % and 50 % over 200 requests: 200 and {half} copies");
    assert!(
        (70..=130).contains(&half),
        "{half} of 200 mirrored to other"
    );

    // A mirror answering in 2 s: the callers do not wait for it.
    let slow: &[(&str, &str)] = &[("x-delay-shadow", "2000")];
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(
            call("/all/slow-mirror", slow).await,
            (200, "web".to_owned())
        );
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("slowest of 10 calls with a mirror answering in 2 s: {slowest:?}");
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");
    // Sent at once (the last one may still be on its way).
    assert_eq!(
        served(&shadow, "/all/slow-mirror").await,
        10,
        "copies sent at once"
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(mirrored("all", "demo/shadow:80/a", "answered"), 30);

    // Bodies: one of known length goes with the copy, a streamed one once
    // it ended within 64 KiB; a larger one is not copied, and counted.
    let take = |app: &AppLog| std::mem::take(&mut *app.bodies.lock().expect("log"));
    take(&shadow);
    take(&web);
    let posted = {
        let request = hyper::Request::builder()
            .method("POST")
            .uri(format!("http://{proxy}/all/known"))
            .header("host", host("web"))
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                b'x';
                1024
            ])))
            .expect("a request");
        client.request(request).await.expect("an answer").status()
    };
    assert_eq!(posted, 200);
    assert_eq!(served(&shadow, "/all/known").await, 1);
    assert_eq!(
        post_streamed(proxy, "/all/streamed", "s", 32 * 1024).await,
        200
    );
    assert_eq!(served(&shadow, "/all/streamed").await, 1);
    assert_eq!(
        post_streamed(proxy, "/all/large", "l", 1024 * 1024).await,
        200
    );
    assert_eq!(served(&shadow, "/all/large").await, 0);
    assert_eq!(take(&web), [1024, 32 * 1024, 1024 * 1024]);
    assert_eq!(take(&shadow), [1024, 32 * 1024]);
    assert_eq!(mirrored("all", "demo/shadow:80/a", "body-too-large"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_preflights_and_marks_answers() {
    let resources = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
    - name: api
      match: [{uri: {prefix: /api}}]
      corsPolicy:
        allowOrigins:
          - {exact: "https://a.example"}
          - {prefix: "https://b."}
          - {regex: "https://[a-z]+[.]c[.]example"}
        allowOrigin: ["https://old.example"]
        allowMethods: [GET, POST]
        allowHeaders: [x-custom, content-type]
        exposeHeaders: [x-app]
        maxAge: 24h
        allowCredentials: true
      route: [{destination: {host: web}}]
    - name: strict
      match: [{uri: {prefix: /strict}}]
      corsPolicy:
        allowOrigins: [{exact: "https://a.example"}]
        unmatchedPreflights: IGNORE
      route: [{destination: {host: web}}]
    - route: [{destination: {host: web}}]
"#;
    let workloads = [workload("web", "127.0.0.141", &[("app", "web")])];
    let services = vec![service("web", "127.0.10.141", &[("app", "web")])];
    let mut world = World::start("cors", &workloads, services, |_| resources.into()).await;
    world.assert_enforced("VirtualService/demo/web");
    let (proxy, _) = world.client(NS, CLIENT, "127.0.10.141:80").await;
    let client = http_client(false);
    let app = world.servers["web"].app.clone();
    let cors_headers = |answer: &support::world::Answer| -> Vec<(String, String)> {
        answer
            .headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("access-control-"))
            .map(|(k, v)| (k.to_string(), v.to_str().expect("text").to_owned()))
            .collect()
    };
    let preflight = |origin: &'static str| {
        [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-custom"),
        ]
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };

    // A preflight from an allowed origin: answered by the proxy.
    let answer = send(
        &client,
        proxy,
        "OPTIONS",
        "/api/items",
        &host("web"),
        &preflight("https://a.example"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        cors_headers(&answer),
        pairs(&[
            ("access-control-allow-origin", "https://a.example"),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "GET,POST"),
            ("access-control-allow-headers", "x-custom,content-type"),
            ("access-control-max-age", "86400"),
        ])
    );
    assert_eq!(
        app.served("/api/items"),
        0,
        "the proxy answered the preflight"
    );

    // Requests from allowed origins (prefix, regex, the deprecated list):
    // on to the app, their answers marked.
    for origin in [
        "https://b.example",
        "https://x.c.example",
        "https://old.example",
    ] {
        let answer = send(
            &client,
            proxy,
            "GET",
            "/api/items",
            &host("web"),
            &[("origin", origin)],
        )
        .await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "web"),
            "{origin}"
        );
        assert_eq!(
            cors_headers(&answer),
            pairs(&[
                ("access-control-allow-origin", origin),
                ("access-control-allow-credentials", "true"),
                ("access-control-expose-headers", "x-app"),
            ]),
            "{origin}"
        );
    }
    assert_eq!(app.served("/api/items"), 3);

    // Another origin, or none: on to the app, nothing added.
    for headers in [&[("origin", "https://x.c.example.evil")][..], &[]] {
        let answer = send(&client, proxy, "GET", "/api/items", &host("web"), headers).await;
        assert_eq!(answer.status, 200);
        assert!(cors_headers(&answer).is_empty(), "{headers:?}");
    }
    assert_eq!(app.served("/api/items"), 5);

    // An unmatched preflight goes to the app (FORWARD, the default), or is
    // answered bare (IGNORE).
    let answer = send(
        &client,
        proxy,
        "OPTIONS",
        "/api/items",
        &host("web"),
        &preflight("https://evil.example"),
    )
    .await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "web"));
    assert!(cors_headers(&answer).is_empty());
    assert_eq!(app.served("/api/items"), 6, "forwarded");
    let answer = send(
        &client,
        proxy,
        "OPTIONS",
        "/strict",
        &host("web"),
        &preflight("https://evil.example"),
    )
    .await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    assert!(cors_headers(&answer).is_empty());
    assert_eq!(app.served("/strict"), 0, "answered by the proxy");
    let answer = send(
        &client,
        proxy,
        "OPTIONS",
        "/strict",
        &host("web"),
        &preflight("https://a.example"),
    )
    .await;
    assert_eq!(
        cors_headers(&answer),
        pairs(&[("access-control-allow-origin", "https://a.example")])
    );
    assert_eq!(app.served("/strict"), 0);
}

/// A Service of [`NS`] whose port 80 is declared `name-…` (tcp, tls).
fn opaque_service(name: &str, kind: &str, ip: &str, app: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"clusterIP": ip, "selector": {"app": app},
                 "ports": [{"name": format!("{kind}-port"), "port": 80, "targetPort": "http", "protocol": "TCP"}]}
    })
}

/// Opaque connections a server proxy accepted.
fn accepted(world: &World, server: &str) -> u64 {
    count(
        &metrics(&world.servers[server].state),
        r#"plexus_proxy_tcp_open_total{direction="inbound"}"#,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tls_routes_pick_backends() {
    let resources = r#"
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
    - match: [{port: 80, sourceLabels: {app: client}, sourceNamespace: demo, destinationSubnets: [127.0.10.0/24]}]
      route:
        - {destination: {host: a, port: {number: 80}}, weight: 80}
        - {destination: {host: b, port: {number: 80}}, weight: 20}
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: narrow}
spec:
  hosts: [narrow]
  tcp:
    - match: [{sourceLabels: {app: someone-else}}, {destinationSubnets: [10.0.0.0/8]}, {port: 81}]
      route: [{destination: {host: b}}]
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: secure}
spec:
  hosts: [secure]
  tls:
    - match: [{sniHosts: [a.secure.example], port: 80}]
      route: [{destination: {host: a, port: {number: 80}}}]
    - match: [{sniHosts: ["*.b.example"]}]
      route: [{destination: {host: b}}]
  tcp:
    - route: [{destination: {host: c}}]
"#;
    let workloads = [
        workload("a", "127.0.0.151", &[("app", "a")]),
        workload("b", "127.0.0.152", &[("app", "b")]),
        workload("c", "127.0.0.153", &[("app", "c")]),
    ];
    let services = vec![
        opaque_service("db", "tcp", "127.0.10.150", "c"),
        opaque_service("narrow", "tcp", "127.0.10.154", "c"),
        opaque_service("secure", "tls", "127.0.10.155", "c"),
        opaque_service("a", "tcp", "127.0.10.151", "a"),
        opaque_service("b", "tcp", "127.0.10.152", "b"),
        opaque_service("c", "tcp", "127.0.10.153", "c"),
    ];
    let mut world = World::start("l4-routes", &workloads, services, |_| resources.into()).await;
    for name in ["db", "narrow", "secure"] {
        world.assert_enforced(&format!("VirtualService/demo/{name}"));
    }
    let (db, _) = world.client(NS, CLIENT, "127.0.10.150:80").await;
    let request = b"GET / HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n";
    let who = |answer: Vec<u8>| {
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.rsplit("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_owned()
    };

    // 80/20 over 500 connections.
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..500 {
        *seen
            .entry(who(support::converse(db, request).await))
            .or_default() += 1;
    }
    eprintln!("an 80/20 TCP route over 500 connections: {seen:?}");
    let a = seen.get("a").copied().unwrap_or(0);
    let b = seen.get("b").copied().unwrap_or(0);
    assert_eq!(a + b, 500, "{seen:?}");
    assert!((375..=425).contains(&a), "{a} of 500 to a");

    // No match of narrow's holds (labels, subnet, port): the service's own.
    let (narrow, _) = world.client(NS, CLIENT, "127.0.10.154:80").await;
    assert_eq!(who(support::converse(narrow, request).await), "c");

    // TLS by SNI: two names to two services, anything else to the TCP
    // route. The apps speak no TLS: which one each connection reached is
    // counted by its server proxy.
    let (secure, _) = world.client(NS, CLIENT, "127.0.10.155:80").await;
    let before = ["a", "b", "c"].map(|s| accepted(&world, s));
    for (name, n) in [
        ("a.secure.example", 3),
        ("x.b.example", 2),
        ("other.example", 1),
    ] {
        for _ in 0..n {
            support::converse(secure, &client_hello(name)).await;
        }
    }
    let after = ["a", "b", "c"].map(|s| accepted(&world, s));
    let got: Vec<u64> = after.iter().zip(before).map(|(x, y)| x - y).collect();
    assert_eq!(got, [3, 2, 1], "connections to a, b and c by SNI");
}

/// Connections a server proxy took in: (plaintext, over mTLS).
fn inbound_by_security(world: &World, server: &str) -> (u64, u64) {
    let metrics = metrics(&world.servers[server].state);
    let sum = |prefix: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let opened = sum(r#"plexus_proxy_tcp_open_total{direction="inbound"}"#);
    let mtls = sum(r#"plexus_proxy_tcp_mtls_total{direction="inbound""#);
    (opened - mtls, mtls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_where_peer_authentication_or_destination_rule_disables() {
    let (outside, outside_log) = support::http_app_on("127.0.0.165", "outside").await;
    let workloads = [
        workload("off", "127.0.0.161", &[("app", "off")]),
        workload("on", "127.0.0.163", &[("app", "on")]),
    ];
    let services = vec![
        service("off", "127.0.10.161", &[("app", "off")]),
        service("on", "127.0.10.163", &[("app", "on")]),
        service("on-plain", "127.0.10.164", &[("app", "on")]),
    ];
    let mut world = World::start("plaintext", &workloads, services, |_| {
        format!(
            r#"
apiVersion: plexus.dev/v1alpha1
kind: PeerAuthentication
metadata: {{name: off}}
spec:
  selector: {{matchLabels: {{app: off}}}}
  mtls: {{mode: DISABLE}}
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {{name: on-plain}}
spec:
  host: on-plain
  trafficPolicy: {{tls: {{mode: DISABLE}}}}
---
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: outside}}
spec:
  hosts: [outside.external.test, strict.external.test]
  addresses: [127.0.10.165]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {outside}}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: 127.0.0.165}}]
---
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: insisting}}
spec:
  hosts: [insisting.external.test]
  addresses: [127.0.10.166]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {outside}}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: 127.0.0.165}}]
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {{name: insisting}}
spec:
  host: insisting.external.test
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
"#,
            outside = outside.port(),
        )
    })
    .await;
    for origin in [
        "PeerAuthentication/demo/off",
        "DestinationRule/demo/on-plain",
        "DestinationRule/demo/insisting",
    ] {
        world.assert_enforced(origin);
    }
    let client = http_client(false);
    let mut get = async |address: &str, host: &str| {
        let (proxy, _) = world.client(NS, CLIENT, address).await;
        let answer = send(&client, proxy, "GET", "/", host, &[]).await;
        (answer.status, answer.body)
    };
    // PeerAuthentication DISABLE: the client proxy speaks plaintext, the
    // server proxy takes it.
    assert_eq!(
        get("127.0.10.161:80", &host("off")).await,
        (200, "off".into())
    );
    // Unset, mTLS; DestinationRule DISABLE, plaintext to the same pod.
    assert_eq!(
        get("127.0.10.163:80", &host("on")).await,
        (200, "on".into())
    );
    assert_eq!(
        get("127.0.10.164:80", &host("on-plain")).await,
        (200, "on".into())
    );
    // Outside the mesh: plaintext; with ISTIO_MUTUAL set, refused rather
    // than sent in plaintext.
    assert_eq!(
        get("127.0.10.165:80", "outside.external.test").await,
        (200, "outside".into())
    );
    let (status, _) = get("127.0.10.166:80", "insisting.external.test").await;
    assert_eq!(status, 503);
    assert_eq!(outside_log.total(), 1, "only the plaintext one reached it");

    assert_eq!(inbound_by_security(&world, "off"), (1, 0));
    assert_eq!(
        inbound_by_security(&world, "on"),
        (1, 1),
        "on-plain's and on's"
    );
}

/// A server that speaks first (as MySQL or SMTP do): a banner on connect.
async fn banner_server(ip: &str) -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(b"220 banner\r\n").await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            });
        }
    });
    addr
}

/// How long a client that waits for the server's first bytes waits, through
/// the client proxy at `proxy`.
async fn first_byte(proxy: std::net::SocketAddr) -> Duration {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    let mut banner = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut banner))
        .await
        .expect("a banner within 5 s")
        .expect("a banner");
    assert_eq!(&banner, b"220 banner\r\n");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_first_protocol_waits_out_detection_on_an_undeclared_port() {
    let banner = banner_server("127.0.0.171").await;
    let entry = |name: &str, address: &str, protocol: &str| {
        format!(
            r#"
---
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{name}.external.test]
  addresses: [{address}]
  ports: [{{number: 3306, name: db, protocol: "{protocol}", targetPort: {port}}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: 127.0.0.171}}]
"#,
            port = banner.port()
        )
    };
    let resources = [
        entry("undeclared", "127.0.10.171", ""),
        entry("declared", "127.0.10.172", "TCP"),
    ]
    .concat();
    let mut world = World::start("detection", &[], Vec::new(), |_| resources).await;
    let (undeclared, _) = world.client(NS, CLIENT, "127.0.10.171:3306").await;
    let (declared, _) = world.client(NS, CLIENT, "127.0.10.172:3306").await;
    // The proxy waits for the client's first bytes to tell HTTP from the
    // rest; a server-first protocol on an undeclared port says nothing, so
    // its banner waits out the detection timeout (500 ms). Declared TCP,
    // the banner comes at once.
    let waited = first_byte(undeclared).await;
    let direct = first_byte(declared).await;
    eprintln!(
        "a server-first protocol's banner through the client proxy: {waited:?} on an undeclared port, {direct:?} on a port declared TCP"
    );
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    assert!(direct < Duration::from_millis(200), "{direct:?}");
}
