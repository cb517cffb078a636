//! The test server deployed by the e2e suite and the demo.
//!
//! Answers every request with JSON naming who answered (version, pod,
//! namespace) and what it received (method, path, query, headers). It can be
//! told to misbehave per request: `?status=503` answers with that status,
//! `?delay=250ms` waits first. `/call?url=…&count=N` makes N requests to
//! another service (through the pod's sidecar, when meshed), propagating
//! `end-user` and `x-request-id`, and answers with the versions and status
//! codes that came back. Configured by environment: `PORT` (8080),
//! `VERSION`, `POD_NAME`, `POD_NAMESPACE`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, Query, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

#[derive(Clone)]
struct Identity {
    version: String,
    pod: String,
    namespace: String,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let port: u16 = env_or("PORT", "8080")
        .parse()
        .map_err(|e| anyhow::anyhow!("PORT={:?}: {e}", env_or("PORT", "")))?;
    let identity = Identity {
        version: env_or("VERSION", "v1"),
        pod: env_or("POD_NAME", &env_or("HOSTNAME", "unknown")),
        namespace: env_or("POD_NAMESPACE", "unknown"),
    };
    let caller: Caller =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/call",
            get(move |query, headers| call(caller.clone(), query, headers)),
        )
        .fallback(move |connect, query, request| echo(identity.clone(), connect, query, request));
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await?;
    eprintln!("test-server listening on :{port}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

async fn echo(
    identity: Identity,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<BTreeMap<String, String>>,
    request: Request,
) -> Response {
    if let Some(delay) = query.get("delay") {
        match parse_delay(delay) {
            Some(delay) => tokio::time::sleep(delay).await,
            None => {
                return bad_request(format!(
                    "delay={delay:?}: expected milliseconds such as 250ms or 2s"
                ));
            }
        }
    }
    let status = match query
        .get("status")
        .map(|s| s.parse::<u16>().map(StatusCode::from_u16))
    {
        None => StatusCode::OK,
        Some(Ok(Ok(status))) => status,
        Some(_) => {
            return bad_request(format!(
                "status={:?}: expected an HTTP status code",
                query["status"]
            ));
        }
    };
    let body = json!({
        "version": identity.version,
        "pod": identity.pod,
        "namespace": identity.namespace,
        "peer": peer.to_string(),
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "query": query,
        "headers": headers(request.headers()),
    });
    (status, Json(body)).into_response()
}

type Caller = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<bytes::Bytes>,
>;

/// Headers a service passes on to the services it calls, as Istio's
/// Bookinfo does for routing and tracing.
const PROPAGATED: [&str; 2] = ["end-user", "x-request-id"];

/// The most requests one `/call` makes.
const MAX_CALLS: u32 = 20_000;

async fn call(
    caller: Caller,
    Query(query): Query<BTreeMap<String, String>>,
    incoming: HeaderMap,
) -> Response {
    use http_body_util::BodyExt;
    let Some(url) = query.get("url") else {
        return bad_request("url= is required".into());
    };
    let Ok(uri) = url.parse::<axum::http::Uri>() else {
        return bad_request(format!("url={url:?} is not a URL"));
    };
    let count = match query.get("count").map(|c| c.parse::<u32>()) {
        None => 1,
        Some(Ok(n)) if (1..=MAX_CALLS).contains(&n) => n,
        Some(_) => return bad_request(format!("count: expected 1 to {MAX_CALLS}")),
    };
    let mut versions = BTreeMap::<String, u32>::new();
    let mut statuses = BTreeMap::<String, u32>::new();
    let mut errors = BTreeMap::<String, u32>::new();
    for _ in 0..count {
        let mut request = axum::http::Request::get(uri.clone());
        for name in PROPAGATED {
            if let Some(value) = incoming.get(name) {
                request = request.header(name, value);
            }
        }
        let Ok(request) = request.body(http_body_util::Empty::new()) else {
            return bad_request(format!("url={url:?} cannot be requested"));
        };
        match caller.request(request).await {
            Ok(response) => {
                *statuses
                    .entry(response.status().as_u16().to_string())
                    .or_default() += 1;
                let body = response.into_body().collect().await.map(|b| b.to_bytes());
                let version = body
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v.get("version")?.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "none".into());
                *versions.entry(version).or_default() += 1;
            }
            Err(error) => *errors.entry(error.to_string()).or_default() += 1,
        }
    }
    Json(json!({"count": count, "versions": versions, "statuses": statuses, "errors": errors}))
        .into_response()
}

fn headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn parse_delay(text: &str) -> Option<std::time::Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let number: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(std::time::Duration::from_millis(number)),
        "s" => Some(std::time::Duration::from_secs(number)),
        _ => None,
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}
