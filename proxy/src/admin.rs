//! The admin port: `/live`, `/ready` (configuration and certificate
//! loaded), `/metrics`, `/config_dump`, `/shutdown` (from localhost only) and
//! `/app-health/<container>/<probe>`, which runs an app's HTTP probe that
//! the webhook rewrote to come here (it works whatever the mTLS mode).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use plexus_config::AppProbe;
use plexus_config::sidecar::{APP_HEALTH_PREFIX, LIVE_PATH, READY_PATH};
use serde::Deserialize;
use tokio::sync::watch;

use crate::state::ProxyState;

/// The app's probes by admin path (`/app-health/<container>/<kind>`).
pub type AppProbes = BTreeMap<String, AppProbe>;

/// How long an app probe may take; the kubelet's own timeout is shorter by default.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Admin {
    pub state: Arc<ProxyState>,
    pub probes: Arc<AppProbes>,
    pub shutdown: watch::Sender<bool>,
    /// The last PID of the pod when the postStart hook saw the proxy ready.
    pub hook_done: watch::Sender<Option<u32>>,
}

#[derive(Debug, Deserialize)]
pub struct ReadyQuery {
    /// Set by `plexus-proxy wait-ready`.
    hook: Option<String>,
}

pub fn router(admin: Admin) -> Router {
    Router::new()
        .route(LIVE_PATH, get(|| async { "live\n" }))
        .route(READY_PATH, get(ready))
        .route("/metrics", get(metrics))
        .route("/shutdown", post(shutdown))
        .route("/config_dump", get(config_dump))
        .route(
            &format!("{APP_HEALTH_PREFIX}/{{container}}/{{kind}}"),
            get(app_health),
        )
        .with_state(admin)
}

async fn ready(State(admin): State<Admin>, Query(query): Query<ReadyQuery>) -> Response {
    match admin.state.not_ready() {
        None => {
            if query.hook.is_some() {
                // The postStart hook returns now, and the kubelet starts the app.
                let last = crate::lifecycle::last_pid(std::path::Path::new("/proc"));
                admin.hook_done.send_if_modified(|done| {
                    let first = done.is_none();
                    if first {
                        *done = last;
                    }
                    first
                });
            }
            "ready\n".into_response()
        }
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics(State(admin): State<Admin>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        admin.state.metrics.encode(),
    )
        .into_response()
}

/// The configuration in force, its version (the SHA-256 of the mounted
/// file), this proxy's identity, and the live state of the clusters with
/// outlier detection or circuit breakers (ejections, requests in flight).
async fn config_dump(State(admin): State<Admin>) -> Response {
    axum::Json(serde_json::json!({
        "version": admin.state.config_version(),
        "identity": admin.state.tls().map(|tls| tls.id.clone()),
        "config": admin.state.config(),
        "clusters": admin.state.snapshot().map(|s| s.clusters.dump()).unwrap_or_default(),
    }))
    .into_response()
}

async fn shutdown(
    State(admin): State<Admin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if !peer.ip().is_loopback() {
        return (StatusCode::FORBIDDEN, "only from inside the pod\n").into_response();
    }
    tracing::info!("shutdown requested on the admin port");
    admin.shutdown.send_replace(true);
    "shutting down\n".into_response()
}

async fn app_health(
    State(admin): State<Admin>,
    Path((container, kind)): Path<(String, String)>,
) -> Response {
    let path = format!("{APP_HEALTH_PREFIX}/{container}/{kind}");
    let Some(probe) = admin.probes.get(&path) else {
        return (StatusCode::NOT_FOUND, format!("no probe {path}\n")).into_response();
    };
    match tokio::time::timeout(PROBE_TIMEOUT, run_probe(probe)).await {
        Ok(Ok(status)) => (status, format!("{}\n", status.as_u16())).into_response(),
        Ok(Err(error)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the probe timed out\n").into_response(),
    }
}

/// Runs one probe against the app on localhost: for HTTP, the app's status
/// is the answer; for TCP, 200 when it accepts the connection.
async fn run_probe(probe: &AppProbe) -> anyhow::Result<StatusCode> {
    let stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, probe.port)).await?;
    if probe.tcp {
        return Ok(StatusCode::OK);
    }
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let host = probe
        .host
        .clone()
        .unwrap_or_else(|| format!("localhost:{}", probe.port));
    let mut request = hyper::Request::get(&probe.path).header(header::HOST, host);
    request = request.header(header::USER_AGENT, "kube-probe (via plexus-proxy)");
    for (name, value) in &probe.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new())?)
        .await?;
    let status = response.status();
    // Read the body so that the app sees a complete exchange.
    let _ = response.into_body().collect().await;
    Ok(status)
}
