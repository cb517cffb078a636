//! Inbound policy as users write it, end to end (resource, the operator's
//! compiler, proxies on loopback): PeerAuthentication modes at namespace,
//! workload and port level; an ALLOW AuthorizationPolicy without rules
//! allows nothing, over HTTP and opaque TCP, and DENY and AUDIT policies
//! without rules change nothing; a policy applies to the requests of
//! connections already open. (The rest of authorization: `authz.rs`.)

mod support;

use support::world::{NS, World, host, send, service, workload};
use support::{count, exchange, http_client, metrics};

const CLIENT: &[(&str, &str)] = &[("app", "client")];

/// Plaintext HTTP straight to a server proxy (no client proxy, no mTLS):
/// the answer's first line, or "" when the connection was refused.
async fn plaintext(server: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Not half-closed: the app answers, then closes (`connection: close`).
    let mut stream = tokio::net::TcpStream::connect(server)
        .await
        .expect("connect");
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), read).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_authentication_modes_decide_plaintext() {
    let workloads = [
        workload("strict", "127.0.0.31", &[("app", "strict")]),
        workload("legacy", "127.0.0.32", &[("app", "legacy")]),
        workload("unset", "127.0.0.33", &[("app", "unset")]),
        workload("targeted", "127.0.0.34", &[("app", "targeted")]),
    ];
    let services = vec![
        service("strict", "127.0.10.31", &[("app", "strict")]),
        service("legacy", "127.0.10.32", &[("app", "legacy")]),
        service("targeted", "127.0.10.34", &[("app", "targeted")]),
    ];
    let mut world = World::start("peer-authentication", &workloads, services, |ports| {
        format!(
            r#"
apiVersion: plexus.dev/v1alpha1
kind: PeerAuthentication
metadata: {{name: default}}
spec: {{mtls: {{mode: STRICT}}}}
---
apiVersion: plexus.dev/v1alpha1
kind: PeerAuthentication
metadata: {{name: legacy}}
spec:
  selector: {{matchLabels: {{app: legacy}}}}
  mtls: {{mode: PERMISSIVE}}
---
apiVersion: plexus.dev/v1alpha1
kind: PeerAuthentication
metadata: {{name: unset}}
spec:
  selector: {{matchLabels: {{app: unset}}}}
  mtls: {{mode: UNSET}}
---
apiVersion: plexus.dev/v1alpha1
kind: PeerAuthentication
metadata: {{name: targeted}}
spec:
  targetRef: {{kind: Service, name: targeted}}
  mtls: {{mode: PERMISSIVE}}
  portLevelMtls: {{"{port}": {{mode: STRICT}}}}
"#,
            port = ports["targeted"]
        )
    })
    .await;
    for name in ["default", "legacy", "unset", "targeted"] {
        world.assert_enforced(&format!("PeerAuthentication/demo/{name}"));
    }
    let server = |name: &str| world.servers[name].addr;
    // Plaintext: refused under STRICT (namespace-wide, inherited by UNSET,
    // and on the port a port-level rule makes STRICT), taken under PERMISSIVE.
    assert_eq!(plaintext(server("strict")).await, "");
    assert_eq!(plaintext(server("unset")).await, "");
    assert_eq!(plaintext(server("targeted")).await, "");
    assert_eq!(plaintext(server("legacy")).await, "HTTP/1.1 200 OK");
    let refused = r#"plexus_proxy_tcp_refused_total{direction="inbound",reason="plaintext"}"#;
    assert_eq!(count(&metrics(&world.servers["strict"].state), refused), 1);
    // Through a client proxy, mTLS: every mode takes it.
    let client = http_client(false);
    for (name, address) in [
        ("strict", "127.0.10.31:80"),
        ("legacy", "127.0.10.32:80"),
        ("targeted", "127.0.10.34:80"),
    ] {
        let (proxy, _) = world.client(NS, CLIENT, address).await;
        let answer = send(&client, proxy, "GET", "/", &host(name), &[]).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, name), "{name}");
    }
}

const WEB_IP: &str = "127.0.10.41";

/// `web` (two pods, `app: web`) and `other` (`app: other`), with `policies`.
async fn guarded(name: &str, policies: &'static str) -> World {
    let workloads = [
        workload("web", "127.0.0.41", &[("app", "web")]),
        workload("other", "127.0.0.42", &[("app", "other")]),
    ];
    let services = vec![
        service("web", WEB_IP, &[("app", "web")]),
        service("other", "127.0.10.42", &[("app", "other")]),
        // The same pods on a port declared TCP: opaque, over mTLS.
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web-tcp", "namespace": NS},
            "spec": {"clusterIP": "127.0.10.43", "selector": {"app": "web"},
                     "ports": [{"name": "tcp-raw", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
        }),
    ];
    World::start(name, &workloads, services, |_| policies.into()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_nothing_refuses_every_request() {
    let policies = r#"
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec:
  selector: {matchLabels: {app: web}}
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-nothing}
spec:
  selector: {matchLabels: {app: other}}
  action: DENY
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: audit-nothing}
spec:
  selector: {matchLabels: {app: other}}
  action: AUDIT
"#;
    let mut world = guarded("allow-nothing", policies).await;
    for name in ["allow-nothing", "deny-nothing", "audit-nothing"] {
        world.assert_enforced(&format!("AuthorizationPolicy/demo/{name}"));
    }
    let client = http_client(false);
    let (to_web, _) = world.client(NS, CLIENT, "127.0.10.41:80").await;
    for _ in 0..3 {
        let answer = send(&client, to_web, "GET", "/", &host("web"), &[]).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (403, "RBAC: access denied")
        );
    }
    // Opaque TCP: the connection closes after the handshake.
    let (to_web_tcp, _) = world.client(NS, CLIENT, "127.0.10.43:80").await;
    let answer = exchange(to_web_tcp, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(
        world.servers["web"].app.served("/"),
        0,
        "a denied request reached the app"
    );
    let denied = |protocol| {
        format!(
            r#"plexus_proxy_authz_denied_total{{policy="AuthorizationPolicy/demo/allow-nothing",rule="",reason="allow-nothing",protocol="{protocol}"}}"#
        )
    };
    let web = metrics(&world.servers["web"].state);
    assert_eq!(
        (count(&web, &denied("http")), count(&web, &denied("tcp"))),
        (3, 1)
    );
    // DENY and AUDIT policies without rules match nothing.
    let (to_other, _) = world.client(NS, CLIENT, "127.0.10.42:80").await;
    let answer = send(&client, to_other, "GET", "/", &host("other"), &[]).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "other"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_sets_the_default_mode_and_the_trust_domain() {
    let mesh = r#"
apiVersion: plexus.dev/v1alpha1
kind: Mesh
metadata: {name: default}
spec: {trustDomain: mesh.example, mtls: {mode: STRICT}}
"#;
    let workloads = [workload("web", "127.0.0.41", &[("app", "web")])];
    let services = vec![service("web", WEB_IP, &[("app", "web")])];
    let mut world = World::start("mesh-defaults", &workloads, services, |_| mesh.into()).await;
    assert_eq!(world.trust_domain, "mesh.example");
    // No PeerAuthentication: the Mesh's STRICT refuses plaintext.
    assert_eq!(plaintext(world.servers["web"].addr).await, "");
    // mTLS between identities of the Mesh's trust domain.
    let (proxy, _) = world.client(NS, CLIENT, "127.0.10.41:80").await;
    let answer = send(&http_client(false), proxy, "GET", "/", &host("web"), &[]).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "web"));
    let seen = r#"plexus_proxy_tcp_mtls_total{direction="inbound",peer_identity="spiffe://mesh.example/ns/demo/sa/client"}"#;
    assert_eq!(count(&metrics(&world.servers["web"].state), seen), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_applies_to_requests_on_open_connections() {
    let mut world = guarded("open-connections", "").await;
    let client = http_client(false);
    let (to_web, client_state) = world.client(NS, CLIENT, "127.0.10.41:80").await;
    assert_eq!(
        send(&client, to_web, "GET", "/", &host("web"), &[])
            .await
            .status,
        200
    );
    // The policy arrives while the proxies' HTTP/2 connection is open.
    world.apply(
        r#"
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec: {selector: {matchLabels: {app: web}}}
"#,
    );
    let answer = send(&client, to_web, "GET", "/", &host("web"), &[]).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (403, "RBAC: access denied")
    );
    // And goes again.
    world.apply("");
    assert_eq!(
        send(&client, to_web, "GET", "/", &host("web"), &[])
            .await
            .status,
        200
    );
    // All three requests rode one connection between the proxies.
    let opened = r#"plexus_proxy_tcp_mtls_total{direction="outbound",peer_identity="spiffe://cluster.local/ns/demo/sa/web"}"#;
    assert_eq!(count(&metrics(&client_state), opened), 1);
}
