//! AuthorizationPolicy end to end: resources as users write them, the
//! operator's compiler, proxies on loopback, and what reaches the apps.
//! Callers are client proxies of ServiceAccounts `alice` and `bob` (in
//! `demo`) and `carol` (in `other`), and plaintext callers outside the
//! mesh. A denied request never reaches the app: every test counts what
//! the app served.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use support::world::{NS, Ports, Workload, World, host, send, send_to, service, workload};
use support::{HttpClient, converse, count, http_client, metrics};

const NO_LABELS: &[(&str, &str)] = &[];

/// A workload `name` (label `app: name`) at `127.0.0.<n>`, behind Service
/// `name` at `127.0.10.<n>:80`.
fn guarded(name: &'static str, n: u8) -> (Workload, serde_json::Value) {
    let ip: &'static str = Box::leak(format!("127.0.0.{n}").into_boxed_str());
    let labels: &'static [(&'static str, &'static str)] = Box::leak(Box::new([("app", name)]));
    (
        workload(name, ip, labels),
        service(name, &format!("127.0.10.{n}"), &[("app", name)]),
    )
}

/// The mesh of `guarded` workloads numbered from `first`, with `resources`.
async fn world(
    name: &str,
    names: &[&'static str],
    first: u8,
    resources: impl FnOnce(&Ports) -> String,
) -> World {
    world_with(name, names, first, Vec::new(), resources).await
}

/// [`world`] with more Services.
async fn world_with(
    name: &str,
    names: &[&'static str],
    first: u8,
    more: Vec<serde_json::Value>,
    resources: impl FnOnce(&Ports) -> String,
) -> World {
    let (workloads, mut services): (Vec<_>, Vec<_>) = names
        .iter()
        .zip(first..)
        .map(|(name, n)| guarded(name, n))
        .unzip();
    services.extend(more);
    World::start(name, &workloads, services, resources).await
}

/// Callers: `(name, client proxy)` of alice, bob and carol towards the
/// Service at `address`.
async fn callers(world: &mut World, address: &str) -> BTreeMap<&'static str, SocketAddr> {
    let mut callers = BTreeMap::new();
    for (caller, namespace) in [("alice", NS), ("bob", NS), ("carol", "other")] {
        let (proxy, _) = world.client_as(namespace, caller, NO_LABELS, address).await;
        callers.insert(caller, proxy);
    }
    callers
}

async fn status(
    client: &HttpClient,
    proxy: SocketAddr,
    method: &str,
    path: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> u16 {
    send_to(client, proxy, method, path, target, headers)
        .await
        .status
}

/// Plaintext HTTP straight to a server proxy, as a caller outside the mesh:
/// the status line, or "" when the connection was closed.
async fn plaintext(server: SocketAddr, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n");
    let answer = converse(server, request.as_bytes()).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn denied(
    state: &plexus_proxy::state::ProxyState,
    policy: &str,
    rule: &str,
    reason: &str,
    protocol: &str,
) -> u64 {
    count(
        &metrics(state),
        &format!(
            r#"plexus_proxy_authz_denied_total{{policy="{policy}",rule="{rule}",reason="{reason}",protocol="{protocol}"}}"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_allow_audit_and_their_targets() {
    let resources = r#"
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-allow}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/demo/sa/alice, cluster.local/ns/demo/sa/bob]}}]
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-admin}
spec:
  targetRef: {kind: Service, name: web}
  action: DENY
  rules:
  - to: [{operation: {methods: [DELETE]}}]
  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: audit}
spec:
  targetRefs: [{kind: Service, name: web}]
  action: AUDIT
  rules: [{to: [{operation: {paths: [/audited]}}]}]
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec: {selector: {matchLabels: {app: closed}}}
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-all}
spec:
  selector: {matchLabels: {app: open}}
  rules: [{}]
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: root-deny, namespace: plexus-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/root-denied]}}]}]
"#;
    let mut world = world("authz-actions", &["web", "closed", "open"], 71, |_| {
        resources.into()
    })
    .await;
    for name in [
        "web-allow",
        "no-admin",
        "audit",
        "allow-nothing",
        "allow-all",
    ] {
        world.assert_enforced(&format!("AuthorizationPolicy/demo/{name}"));
    }
    world.assert_enforced("AuthorizationPolicy/plexus-system/root-deny");
    let client = http_client(false);
    let web = callers(&mut world, "127.0.10.71:80").await;
    // ALLOW by principal: alice and bob, not carol.
    assert_eq!(
        status(&client, web["alice"], "GET", "/", "web", &[]).await,
        200
    );
    assert_eq!(
        status(&client, web["bob"], "POST", "/", "web", &[]).await,
        200
    );
    assert_eq!(
        status(&client, web["carol"], "GET", "/", "web", &[]).await,
        403
    );
    // DENY wins: the second rule, then the first.
    let answer = send(
        &client,
        web["alice"],
        "GET",
        "/admin/users",
        &host("web"),
        &[],
    )
    .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (403, "RBAC: access denied")
    );
    assert_eq!(
        status(&client, web["bob"], "DELETE", "/", "web", &[]).await,
        403
    );
    // The root namespace's DENY applies here too.
    assert_eq!(
        status(&client, web["alice"], "GET", "/root-denied", "web", &[]).await,
        403
    );
    // AUDIT changes nothing, and marks.
    assert_eq!(
        status(&client, web["alice"], "GET", "/audited", "web", &[]).await,
        200
    );
    assert_eq!(
        status(&client, web["carol"], "GET", "/audited", "web", &[]).await,
        403
    );
    // A caller outside the mesh (PERMISSIVE) is read as HTTP and refused.
    assert_eq!(
        plaintext(world.servers["web"].addr, "/").await,
        "HTTP/1.1 403 Forbidden"
    );

    let state = &world.servers["web"].state;
    let app = &world.servers["web"].app;
    assert_eq!(app.total(), 3, "only the allowed requests reach the app");
    assert_eq!(
        (app.served("/admin/users"), app.served("/root-denied")),
        (0, 0)
    );
    assert_eq!(
        denied(
            state,
            "AuthorizationPolicy/demo/no-admin",
            "1",
            "denied",
            "http"
        ),
        1
    );
    assert_eq!(
        denied(
            state,
            "AuthorizationPolicy/demo/no-admin",
            "0",
            "denied",
            "http"
        ),
        1
    );
    assert_eq!(
        denied(
            state,
            "AuthorizationPolicy/plexus-system/root-deny",
            "0",
            "denied",
            "http"
        ),
        1
    );
    assert_eq!(
        denied(
            state,
            "AuthorizationPolicy/demo/web-allow",
            "",
            "no-allow-match",
            "http"
        ),
        3
    );
    let audited =
        r#"plexus_proxy_authz_audited_total{policy="AuthorizationPolicy/demo/audit",rule="0"}"#;
    assert_eq!(count(&metrics(state), audited), 2);

    // allow-nothing refuses everyone; allow-all (`rules: [{}]`) takes anyone.
    let closed = callers(&mut world, "127.0.10.72:80").await;
    let open = callers(&mut world, "127.0.10.73:80").await;
    for caller in ["alice", "carol"] {
        assert_eq!(
            status(&client, closed[caller], "GET", "/", "closed", &[]).await,
            403
        );
        assert_eq!(
            status(&client, open[caller], "GET", "/", "open", &[]).await,
            200
        );
    }
    assert_eq!(world.servers["closed"].app.total(), 0);
    let closed_state = &world.servers["closed"].state;
    assert_eq!(
        denied(
            closed_state,
            "AuthorizationPolicy/demo/allow-nothing",
            "",
            "allow-nothing",
            "http"
        ),
        2
    );
    assert_eq!(
        plaintext(world.servers["open"].addr, "/").await,
        "HTTP/1.1 200 OK"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_identities_namespaces_and_addresses() {
    // One workload per field: (workload, source, alice's status, carol's).
    let cases: &[(&'static str, &str, u16, u16)] = &[
        (
            "principals",
            "principals: [cluster.local/ns/demo/sa/alice]",
            200,
            403,
        ),
        (
            "not-principals",
            "notPrincipals: [cluster.local/ns/demo/sa/alice]",
            403,
            200,
        ),
        (
            "prefix",
            r#"principals: ["cluster.local/ns/other/*"]"#,
            403,
            200,
        ),
        ("namespaces", "namespaces: [other]", 403, 200),
        ("not-namespaces", "notNamespaces: [other]", 200, 403),
        ("accounts", "serviceAccounts: [demo/alice]", 200, 403),
        ("not-accounts", "notServiceAccounts: [demo/alice]", 403, 200),
        ("ip", "ipBlocks: [127.0.0.1/32]", 200, 200),
        ("other-ip", "ipBlocks: [10.0.0.0/8]", 403, 403),
        ("not-ip", "notIpBlocks: [127.0.0.0/8]", 403, 403),
    ];
    let mut resources = String::from(
        "apiVersion: plexus.dev/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {authorization: {numTrustedProxies: 1}}\n",
    );
    for (name, source, _, _) in cases.iter().copied().chain([
        ("remote", "remoteIpBlocks: [203.0.113.0/24]", 0, 0),
        ("not-remote", "notRemoteIpBlocks: [203.0.113.0/24]", 0, 0),
    ]) {
        resources.push_str(&format!(
            "---\napiVersion: plexus.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}}}\n\
             spec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  rules: [{{from: [{{source: {{{source}}}}}]}}]\n"
        ));
    }
    let mut names: Vec<&'static str> = cases.iter().map(|c| c.0).collect();
    names.extend(["remote", "not-remote"]);
    let mut world = world("authz-sources", &names, 81, |_| resources).await;
    let client = http_client(false);
    for (i, (name, _, alice, carol)) in cases.iter().enumerate() {
        world.assert_enforced(&format!("AuthorizationPolicy/demo/{name}"));
        let to = callers(&mut world, &format!("127.0.10.{}:80", 81 + i)).await;
        assert_eq!(
            status(&client, to["alice"], "GET", "/", name, &[]).await,
            *alice,
            "{name}: alice"
        );
        assert_eq!(
            status(&client, to["carol"], "GET", "/", name, &[]).await,
            *carol,
            "{name}: carol"
        );
        let served = u64::from(*alice == 200) + u64::from(*carol == 200);
        assert_eq!(world.servers[name].app.total(), served, "{name}");
    }
    // The original client, as the one trusted proxy in front wrote it.
    let xff = [("x-forwarded-for", "198.51.100.1, 203.0.113.7")];
    let spoofed = [("x-forwarded-for", "203.0.113.7, 198.51.100.1")];
    for (name, n, with, without, wrong) in [
        ("remote", 91, 200, 403, 403),
        ("not-remote", 92, 403, 200, 200),
    ] {
        world.assert_enforced(&format!("AuthorizationPolicy/demo/{name}"));
        let to = callers(&mut world, &format!("127.0.10.{n}:80")).await;
        assert_eq!(
            status(&client, to["alice"], "GET", "/", name, &xff).await,
            with,
            "{name}"
        );
        assert_eq!(
            status(&client, to["alice"], "GET", "/", name, &[]).await,
            without,
            "{name}"
        );
        assert_eq!(
            status(&client, to["alice"], "GET", "/", name, &spoofed).await,
            wrong,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_are_hosts_ports_methods_and_normalized_paths() {
    let names = [
        "hosts",
        "not-hosts",
        "ports",
        "other-ports",
        "not-ports",
        "methods",
        "not-methods",
        "paths",
        "not-paths",
    ];
    let mut world = world("authz-operations", &names, 101, |ports| {
        let operation = |name: &str| match name {
            "hosts" => "hosts: [hosts.demo.svc.cluster.local]".to_owned(),
            "not-hosts" => r#"notHosts: ["*.internal"]"#.to_owned(),
            "ports" => format!(r#"ports: ["{}"]"#, ports["ports"]),
            "other-ports" => r#"ports: ["1"]"#.to_owned(),
            "not-ports" => format!(r#"notPorts: ["{}"]"#, ports["not-ports"]),
            "methods" => "methods: [GET, HEAD]".to_owned(),
            "not-methods" => "notMethods: [DELETE]".to_owned(),
            "paths" => r#"paths: ["/api/*", /public]"#.to_owned(),
            _ => r#"notPaths: [/admin, "/admin/*"]"#.to_owned(),
        };
        names
            .iter()
            .map(|name| {
                format!(
                    "apiVersion: plexus.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}}}\n\
                     spec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  rules: [{{to: [{{operation: {{{}}}}}]}}]\n",
                    operation(name)
                )
            })
            .collect::<Vec<_>>()
            .join("---\n")
    })
    .await;
    let client = http_client(false);
    // (workload, method, path, Host, status)
    let cases: &[(&str, &str, &str, &str, u16)] = &[
        ("hosts", "GET", "/", "hosts.demo.svc.cluster.local", 200),
        ("hosts", "GET", "/", "HOSTS.demo.svc.cluster.local:80", 200),
        ("hosts", "GET", "/", "elsewhere.example", 403),
        (
            "not-hosts",
            "GET",
            "/",
            "not-hosts.demo.svc.cluster.local",
            200,
        ),
        ("not-hosts", "GET", "/", "db.internal", 403),
        ("ports", "GET", "/", "ports", 200),
        ("other-ports", "GET", "/", "other-ports", 403),
        ("not-ports", "GET", "/", "not-ports", 403),
        ("methods", "GET", "/", "methods", 200),
        ("methods", "POST", "/", "methods", 403),
        ("not-methods", "POST", "/", "not-methods", 200),
        ("not-methods", "DELETE", "/", "not-methods", 403),
        ("paths", "GET", "/api/items", "paths", 200),
        ("paths", "GET", "/public?page=2", "paths", 200),
        ("paths", "GET", "/public/x", "paths", 403),
        ("paths", "GET", "/api/../secret", "paths", 403),
        ("paths", "GET", "/api/%2e%2e/secret", "paths", 403),
        ("paths", "GET", "/api/./v1", "paths", 200),
        ("not-paths", "GET", "/info", "not-paths", 200),
        ("not-paths", "GET", "/admin", "not-paths", 403),
        ("not-paths", "GET", "/info/../admin", "not-paths", 403),
        ("not-paths", "GET", "/%61dmin/x", "not-paths", 403),
        ("not-paths", "GET", "/info/./x", "not-paths", 200),
    ];
    let mut proxies = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        world.assert_enforced(&format!("AuthorizationPolicy/demo/{name}"));
        let (proxy, _) = world
            .client_as(NS, "alice", NO_LABELS, &format!("127.0.10.{}:80", 101 + i))
            .await;
        proxies.insert(*name, proxy);
    }
    for (name, method, path, target, expected) in cases {
        let answer = send(&client, proxies[name], method, path, target, &[]).await;
        assert_eq!(
            answer.status, *expected,
            "{name}: {method} {path} to {target}"
        );
    }
    // The app serves the path the policy saw.
    let paths = &world.servers["paths"].app;
    assert_eq!((paths.served("/api/v1"), paths.served("/api/./v1")), (1, 0));
    assert_eq!(paths.served("/secret"), 0);
    assert_eq!(world.servers["not-paths"].app.served("/admin"), 0);
    assert_eq!(world.servers["not-paths"].app.served("/info/x"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_test_request_attributes() {
    let mut world = world("authz-conditions", &["tenant"], 111, |ports| {
        format!(
            r#"
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: tenant}}
spec:
  selector: {{matchLabels: {{app: tenant}}}}
  rules:
  - when:
    - {{key: "request.headers[X-Tenant]", values: ["acme*"]}}
    - {{key: "request.headers[x-block]", notValues: ["*"]}}
    - {{key: source.namespace, values: [demo]}}
    - {{key: source.principal, notValues: [cluster.local/ns/demo/sa/bob]}}
    - {{key: source.serviceAccount, values: ["demo/*"]}}
    - {{key: source.ip, values: [127.0.0.0/8]}}
    - {{key: remote.ip, notValues: [203.0.113.0/24]}}
    - {{key: destination.ip, values: [127.0.0.1]}}
    - {{key: destination.port, values: ["{port}"]}}
    - {{key: connection.sni, values: [plexus.mesh]}}
"#,
            port = ports["tenant"]
        )
    })
    .await;
    world.assert_enforced("AuthorizationPolicy/demo/tenant");
    let client = http_client(false);
    let to = callers(&mut world, "127.0.10.111:80").await;
    let acme = [("x-tenant", "acme-eu")];
    assert_eq!(
        status(&client, to["alice"], "GET", "/", "tenant", &acme).await,
        200
    );
    assert_eq!(
        status(
            &client,
            to["alice"],
            "GET",
            "/",
            "tenant",
            &[("x-tenant", "globex")]
        )
        .await,
        403
    );
    assert_eq!(
        status(&client, to["alice"], "GET", "/", "tenant", &[]).await,
        403
    );
    assert_eq!(
        status(
            &client,
            to["alice"],
            "GET",
            "/",
            "tenant",
            &[("x-tenant", "acme"), ("x-block", "1")]
        )
        .await,
        403
    );
    assert_eq!(
        status(&client, to["bob"], "GET", "/", "tenant", &acme).await,
        403
    );
    assert_eq!(
        status(&client, to["carol"], "GET", "/", "tenant", &acme).await,
        403
    );
    assert_eq!(world.servers["tenant"].app.total(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_connections_are_authorized_by_identity() {
    let names = ["db", "cache"];
    // The same pods behind Services whose port is declared TCP: opaque mTLS.
    let tcp = |name: &str, n: u8| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("{name}-tcp"), "namespace": NS},
            "spec": {"clusterIP": format!("127.0.10.{n}"), "selector": {"app": name},
                     "ports": [{"name": "tcp-raw", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
        })
    };
    let more = vec![tcp("db", 131), tcp("cache", 132)];
    let mut world = world_with("authz-tcp", &names, 121, more, |ports| {
        format!(
            r#"
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: db}}
spec:
  selector: {{matchLabels: {{app: db}}}}
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/demo/sa/alice]}}}}]
  - from: [{{source: {{principals: [cluster.local/ns/demo/sa/bob]}}}}]
    to: [{{operation: {{methods: [GET]}}}}]
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: cache}}
spec:
  selector: {{matchLabels: {{app: cache}}}}
  action: DENY
  rules: [{{to: [{{operation: {{methods: [POST], ports: ["{port}"]}}}}]}}]
"#,
            port = ports["cache"]
        )
    })
    .await;
    world.assert_enforced("AuthorizationPolicy/demo/db");
    world.assert_enforced("AuthorizationPolicy/demo/cache");
    let request = b"GET / HTTP/1.1\r\nhost: db\r\nconnection: close\r\n\r\n";
    let over_tcp = |answer: Vec<u8>| {
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let db = callers(&mut world, "127.0.10.131:80").await;
    let cache = callers(&mut world, "127.0.10.132:80").await;
    // db: alice by identity; bob's rule tests HTTP, so on TCP it never
    // matches; carol has no rule.
    assert_eq!(
        over_tcp(converse(db["alice"], request).await),
        "HTTP/1.1 200 OK"
    );
    assert_eq!(over_tcp(converse(db["bob"], request).await), "");
    assert_eq!(over_tcp(converse(db["carol"], request).await), "");
    assert_eq!(world.servers["db"].app.total(), 1);
    let db_state = &world.servers["db"].state;
    assert_eq!(
        denied(
            db_state,
            "AuthorizationPolicy/demo/db",
            "",
            "no-allow-match",
            "tcp"
        ),
        2
    );
    // Over HTTP, bob's GET is allowed.
    let client = http_client(false);
    let (bob_http, _) = world
        .client_as(NS, "bob", NO_LABELS, "127.0.10.121:80")
        .await;
    assert_eq!(status(&client, bob_http, "GET", "/", "db", &[]).await, 200);
    assert_eq!(status(&client, bob_http, "POST", "/", "db", &[]).await, 403);
    // cache: DENY of POST on its port; on TCP the method is left out, so
    // every connection to that port is refused; over HTTP only POSTs are.
    assert_eq!(over_tcp(converse(cache["alice"], request).await), "");
    let (alice_http, _) = world
        .client_as(NS, "alice", NO_LABELS, "127.0.10.122:80")
        .await;
    assert_eq!(
        status(&client, alice_http, "GET", "/", "cache", &[]).await,
        200
    );
    assert_eq!(
        status(&client, alice_http, "POST", "/", "cache", &[]).await,
        403
    );
    assert_eq!(world.servers["cache"].app.total(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_denies_what_no_policy_allows() {
    let resources = r#"
apiVersion: plexus.dev/v1alpha1
kind: Mesh
metadata: {name: default}
spec: {authorization: {defaultAction: DENY}}
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: reads}
spec:
  selector: {matchLabels: {app: reads}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
"#;
    let mut world = world("authz-default-deny", &["reads", "quiet"], 141, |_| {
        resources.into()
    })
    .await;
    world.assert_enforced("AuthorizationPolicy/demo/reads");
    let client = http_client(false);
    let reads = callers(&mut world, "127.0.10.141:80").await;
    let quiet = callers(&mut world, "127.0.10.142:80").await;
    assert_eq!(
        status(&client, reads["alice"], "GET", "/", "reads", &[]).await,
        200
    );
    assert_eq!(
        status(&client, reads["alice"], "PUT", "/", "reads", &[]).await,
        403
    );
    assert_eq!(
        status(&client, quiet["alice"], "GET", "/", "quiet", &[]).await,
        403
    );
    assert_eq!(
        plaintext(world.servers["quiet"].addr, "/").await,
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(world.servers["quiet"].app.total(), 0);
    assert_eq!(
        denied(
            &world.servers["quiet"].state,
            "Mesh/default",
            "",
            "default-deny",
            "http"
        ),
        2
    );
    // ALLOW, the default, denies nothing by default.
    world.apply(
        "apiVersion: plexus.dev/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {authorization: {defaultAction: ALLOW}}\n",
    );
    assert_eq!(
        status(&client, quiet["alice"], "GET", "/", "quiet", &[]).await,
        200
    );
}
