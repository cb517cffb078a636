//! ServiceEntries by name, through the operator's compiler and real
//! proxies on loopback: hosts-only entries matched by Host and by server
//! name whatever address the app dialled, DNS and DNS_ROUND_ROBIN
//! endpoints resolved by the proxy itself (a loopback DNS server whose
//! answers change under it, TTLs honoured), a TCP entry matched by the
//! address its host resolved to, and REGISTRY_ONLY refusing the rest with
//! a metric naming each refused destination.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::dns::Dns;
use support::world::{NS, World, send};
use support::{client_hello, count, http_client, metrics, settles};

const CLIENT: &[(&str, &str)] = &[("app", "client")];

const REGISTRY_ONLY: &str = r#"
apiVersion: plexus.dev/v1alpha1
kind: Mesh
metadata: {name: default}
spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_only_entries_resolve_by_dns_and_refuse_the_rest() {
    let dns = Dns::start().await;
    // Two servers outside the mesh on one port; DNS says which is which.
    let (first, first_log) = support::http_app_on("127.0.0.181", "first").await;
    let port = first.port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.182", port))
        .await
        .expect("the same port on another address");
    let (_, second_log) = support::http_app_listening(listener, "second");
    dns.set("legacy.example.test", &["127.0.0.181"], 1);
    dns.set("pool.example.test", &["127.0.0.181", "127.0.0.182"], 300);
    let entry = |name: &str, resolution: &str, endpoints: &str| {
        format!(
            r#"
---
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{name}.example.test]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  location: MESH_EXTERNAL
  resolution: {resolution}
  endpoints: [{endpoints}]
"#
        )
    };
    let resources = [
        REGISTRY_ONLY.to_owned(),
        entry("legacy", "DNS", ""),
        entry("everyone", "DNS", "{address: pool.example.test}"),
        entry("whoever", "DNS_ROUND_ROBIN", "{address: pool.example.test}"),
    ]
    .concat();
    let mut world = World::start("entries-dns", &[], Vec::new(), |_| resources).await;
    for name in ["legacy", "everyone", "whoever"] {
        world.assert_enforced(&format!("ServiceEntry/demo/{name}"));
    }
    world.resolve_with(dns.addr);
    // The app dialled an address nothing in the mesh has: the Host says.
    let (proxy, state) = world
        .client(NS, CLIENT, &format!("127.0.10.180:{port}"))
        .await;
    settles(
        &state,
        r#"plexus_proxy_dns_lookups_total{result="changed"}"#,
        2,
    )
    .await;
    let client = http_client(false);
    let mut served = BTreeMap::<(String, String), u64>::new();
    for host in ["legacy", "everyone", "whoever"] {
        for _ in 0..40 {
            let answer = send(
                &client,
                proxy,
                "GET",
                "/",
                &format!("{host}.example.test"),
                &[],
            )
            .await;
            assert_eq!(answer.status, 200, "{host}: {}", answer.body);
            *served.entry((host.into(), answer.body)).or_default() += 1;
        }
    }
    eprintln!("by host and server: {served:?}");
    let at = |host: &str, server: &str| served.get(&(host.into(), server.into())).copied();
    assert_eq!(at("legacy", "first"), Some(40));
    // DNS: every address is an endpoint; DNS_ROUND_ROBIN: the first only.
    assert!(at("everyone", "first").is_some() && at("everyone", "second").is_some());
    assert_eq!(at("whoever", "first"), Some(40));
    // 120 requests, a handful of lookups: answers are cached for their TTL.
    let asked = dns.queries("legacy.example.test");
    assert!(asked <= 4, "legacy.example.test asked {asked} times");
    assert_eq!(dns.queries("pool.example.test"), 1);

    // The answer changes: within its TTL (1 s) and the refresh floor (1 s)
    // the requests follow it.
    dns.set("legacy.example.test", &["127.0.0.182"], 1);
    let changed = Instant::now();
    let moved = loop {
        let answer = send(&client, proxy, "GET", "/", "legacy.example.test", &[]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        if answer.body == "second" {
            break changed.elapsed();
        }
        assert!(changed.elapsed() < Duration::from_secs(5), "never moved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("legacy.example.test moved after {moved:?}");
    assert!(moved <= Duration::from_millis(3500), "{moved:?}");
    // legacy's and whoever's 80, plus everyone's share and the requests
    // made before the move.
    let first = at("everyone", "first").unwrap_or(0) + 80;
    assert!(second_log.served("/") > 0 && first_log.served("/") >= first);

    // REGISTRY_ONLY: a host no entry declares is refused, and named.
    let answer = send(&client, proxy, "GET", "/", "stranger.example.test", &[]).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    let text = metrics(&state);
    let refused = r#"plexus_proxy_registry_only_refused_total{destination="stranger.example.test",protocol="http"}"#;
    assert_eq!(count(&text, refused), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tls_entries_match_by_resolved_address_and_server_name() {
    let dns = Dns::start().await;
    let database = support::echo_app_on("127.0.0.183", 0).await;
    let db_port = database.port();
    let secure = support::echo_app_on("127.0.0.186", 0).await;
    let tls_port = secure.port();
    dns.set("db.example.test", &["127.0.0.183"], 30);
    dns.set("secure.example.test", &["127.0.0.186"], 30);
    let resources = format!(
        r#"{REGISTRY_ONLY}
---
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: db}}
spec:
  hosts: [db.example.test]
  ports: [{{number: {db_port}, name: tcp, protocol: TCP}}]
  resolution: NONE
---
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: secure}}
spec:
  hosts: [secure.example.test]
  ports: [{{number: {tls_port}, name: tls, protocol: TLS}}]
  resolution: DNS
"#
    );
    let mut world = World::start("entries-tcp", &[], Vec::new(), |_| resources).await;
    world.assert_enforced("ServiceEntry/demo/db");
    world.assert_enforced("ServiceEntry/demo/secure");
    world.resolve_with(dns.addr);
    // TCP: the address db.example.test resolves to is the entry's.
    let (to_db, state) = world.client(NS, CLIENT, &database.to_string()).await;
    settles(
        &state,
        r#"plexus_proxy_dns_lookups_total{result="changed"}"#,
        2,
    )
    .await;
    assert_eq!(support::exchange(to_db, b"select 1").await, b"select 1");
    // Another address on that port: nothing declares it.
    let stranger = format!("127.0.0.184:{db_port}");
    let (to_stranger, state) = world.client(NS, CLIENT, &stranger).await;
    settles(
        &state,
        r#"plexus_proxy_dns_lookups_total{result="changed"}"#,
        2,
    )
    .await;
    assert!(support::exchange(to_stranger, b"select 1").await.is_empty());
    let refused = format!(
        r#"plexus_proxy_registry_only_refused_total{{destination="{stranger}",protocol="tcp"}}"#
    );
    assert_eq!(count(&metrics(&state), &refused), 1);
    // TLS to an address nothing has: the ClientHello's name says; the
    // proxy sends it where that name resolves (the echo returns it).
    let (to_secure, state) = world
        .client(NS, CLIENT, &format!("127.0.10.181:{tls_port}"))
        .await;
    settles(
        &state,
        r#"plexus_proxy_dns_lookups_total{result="changed"}"#,
        2,
    )
    .await;
    let hello = client_hello("secure.example.test");
    assert_eq!(support::exchange(to_secure, &hello).await, hello);
    let hello = client_hello("other.example.test");
    assert!(support::exchange(to_secure, &hello).await.is_empty());
    let refused = r#"plexus_proxy_registry_only_refused_total{destination="other.example.test",protocol="tcp"}"#;
    assert_eq!(count(&metrics(&state), refused), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_internal_entries_speak_mtls_to_their_account() {
    // A workload outside Kubernetes' Services with a proxy of its own (a
    // VM, say): only a ServiceEntry declares it.
    let workloads = [support::world::workload(
        "vm",
        "127.0.0.187",
        &[("app", "vm")],
    )];
    let mut world = World::start("entries-internal", &workloads, Vec::new(), |_| {
        String::new()
    })
    .await;
    let vm = world.servers["vm"].addr;
    let entry = |name: &str, location: &str, address: &str| {
        format!(
            r#"
---
apiVersion: plexus.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{name}.example.test]
  addresses: [{address}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  location: {location}
  resolution: STATIC
  endpoints: [{{address: 127.0.0.187, ports: {{http: {port}}}, serviceAccount: web}}]
"#,
            port = vm.port()
        )
    };
    world.apply(
        &[
            entry("internal", "MESH_INTERNAL", "127.0.10.186"),
            entry("external", "MESH_EXTERNAL", "127.0.10.187"),
        ]
        .concat(),
    );
    world.assert_enforced("ServiceEntry/demo/internal");
    world.assert_enforced("ServiceEntry/demo/external");
    let client = http_client(false);
    for (address, host) in [
        ("127.0.10.186:80", "internal"),
        ("127.0.10.187:80", "external"),
    ] {
        let (proxy, _) = world.client(NS, CLIENT, address).await;
        let answer = send(
            &client,
            proxy,
            "GET",
            "/",
            &format!("{host}.example.test"),
            &[],
        )
        .await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "vm"), "{host}");
    }
    // MESH_INTERNAL: mTLS, the endpoint proving its account; MESH_EXTERNAL:
    // plaintext (the workload's proxy, PERMISSIVE, takes both).
    let text = metrics(&world.servers["vm"].state);
    let inbound = |source: &str| {
        format!(
            r#"plexus_proxy_requests_total{{direction="inbound",src_identity="{source}",dst_identity="spiffe://cluster.local/ns/demo/sa/web",route="",dst_service="",status="200"}}"#
        )
    };
    assert_eq!(
        count(&text, &inbound("spiffe://cluster.local/ns/demo/sa/client")),
        1,
        "{text}"
    );
    // Two connections reached the workload's proxy, one of them mTLS.
    let opened = r#"plexus_proxy_tcp_open_total{direction="inbound"}"#;
    let mtls = r#"plexus_proxy_tcp_mtls_total{direction="inbound",peer_identity="spiffe://cluster.local/ns/demo/sa/client"}"#;
    assert_eq!((count(&text, opened), count(&text, mtls)), (2, 1), "{text}");
}
