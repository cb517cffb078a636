//! The admin port on loopback: readiness follows the mounted configuration
//! and certificate (a corrupt update keeps the last good one), and the app's
//! rewritten probes are run against the app.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use plexus_config::{AppProbe, CONFIG_KEY, ProxyConfig};
use plexus_proxy::admin::{self, Admin};
use plexus_proxy::state::ProxyState;
use plexus_proxy::telemetry::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// GET `path`, returning the status code and body.
async fn get_path(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// A workload certificate from the mesh's own CA code, and its root (PEM).
fn identity_pem() -> (String, String, String) {
    let day = std::time::Duration::from_secs(86_400);
    let now = std::time::SystemTime::now();
    let root = plexus_operator::ca::generate_root("cluster.local", now, day).expect("root");
    let id = plexus_operator::ca::SpiffeId {
        trust_domain: "cluster.local".into(),
        namespace: "demo".into(),
        service_account: "web".into(),
    };
    let leaf = plexus_operator::ca::issue_workload(&root, &id, now, day).expect("leaf");
    (leaf.cert_pem, leaf.key_pem, root.cert_pem)
}

#[tokio::test]
async fn readiness_follows_configuration_and_certificate() {
    let dir = std::env::temp_dir().join(format!("plexus-admin-{}", std::process::id()));
    let (config_dir, identity_dir) = (dir.join("config"), dir.join("identity"));
    std::fs::create_dir_all(&config_dir).expect("dir");
    std::fs::create_dir_all(&identity_dir).expect("dir");
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(ProxyState::new(
        config_dir.clone(),
        identity_dir.clone(),
        metrics,
    ));
    let (shutdown, _) = tokio::sync::watch::channel(false);
    let addr = serve(admin::router(Admin {
        state: state.clone(),
        probes: Arc::default(),
        shutdown,
        hook_done: tokio::sync::watch::channel(None).0,
    }))
    .await;

    state.reload();
    assert_eq!(get_path(addr, "/live").await.0, 200);
    assert_eq!(
        get_path(addr, "/ready").await,
        (503, "no configuration yet\n".into())
    );

    let config = ProxyConfig {
        schema: plexus_config::SCHEMA.into(),
        namespace: "demo".into(),
        ..Default::default()
    };
    std::fs::write(config_dir.join(CONFIG_KEY), config.to_gzip()).expect("write");
    state.reload();
    assert_eq!(
        get_path(addr, "/ready").await,
        (503, "no certificate yet\n".into())
    );

    let (cert, key, root) = identity_pem();
    for (name, pem) in [("tls.crt", &cert), ("tls.key", &key), ("ca.crt", &root)] {
        std::fs::write(identity_dir.join(name), pem).expect("write");
    }
    state.reload();
    assert_eq!(get_path(addr, "/ready").await.0, 200);
    let (status, dump) = get_path(addr, "/config_dump").await;
    assert_eq!(status, 200);
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("JSON");
    assert_eq!(dump["config"]["namespace"], "demo");
    assert_eq!(dump["identity"], "spiffe://cluster.local/ns/demo/sa/web");
    let version = dump["version"].as_str().expect("a version").to_owned();
    assert_eq!(version.len(), 64);

    // Corrupt updates: rejected, counted, and the last good ones stay.
    std::fs::write(config_dir.join(CONFIG_KEY), b"not gzip").expect("write");
    std::fs::write(identity_dir.join("tls.key"), b"garbage").expect("write");
    state.reload();
    assert_eq!(get_path(addr, "/ready").await.0, 200);
    assert_eq!(
        state.config().map(|c| c.namespace.clone()),
        Some("demo".into())
    );
    assert_eq!(state.config_version(), Some(version));
    let (_, metrics) = get_path(addr, "/metrics").await;
    assert!(
        metrics.contains(r#"plexus_proxy_reloads_total{source="config",result="rejected"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"plexus_proxy_reloads_total{source="identity",result="rejected"} 1"#)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn app_probes_run_against_the_app() {
    let app = serve(Router::new().route("/ok", get(|| async { "fine" })).route(
        "/sick",
        get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "sick") }),
    ))
    .await;
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed_port = closed.local_addr().expect("address").port();
    drop(closed);
    let probe = |port, path: &str, tcp| AppProbe {
        port,
        path: path.into(),
        host: None,
        headers: vec![],
        tcp,
    };
    let probes = [
        (
            "/app-health/web/readyz".to_owned(),
            probe(app.port(), "/ok", false),
        ),
        (
            "/app-health/web/livez".to_owned(),
            probe(app.port(), "/sick", false),
        ),
        (
            "/app-health/web/startupz".to_owned(),
            probe(app.port(), "", true),
        ),
        (
            "/app-health/db/startupz".to_owned(),
            probe(closed_port, "", true),
        ),
    ]
    .into();
    let state = Arc::new(ProxyState::new(
        "/nonexistent".into(),
        "/nonexistent".into(),
        Arc::default(),
    ));
    let (shutdown, _) = tokio::sync::watch::channel(false);
    let admin = serve(admin::router(Admin {
        state,
        probes: Arc::new(probes),
        shutdown,
        hook_done: tokio::sync::watch::channel(None).0,
    }))
    .await;
    assert_eq!(get_path(admin, "/app-health/web/readyz").await.0, 200);
    assert_eq!(get_path(admin, "/app-health/web/livez").await.0, 503);
    assert_eq!(get_path(admin, "/app-health/web/startupz").await.0, 200);
    assert_eq!(get_path(admin, "/app-health/db/startupz").await.0, 503);
    assert_eq!(get_path(admin, "/app-health/other/readyz").await.0, 404);
}
