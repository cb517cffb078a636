//! The HTTPS server: `/mutate` (admission.k8s.io/v1 reviews of Pods),
//! `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::inject::{self, InjectError, Outcome};
use crate::state::State;

/// Largest review body read: a Pod is far smaller; the API server's own
/// limit on objects is 3 MiB.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// A TLS handshake that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn readyz(Extract(state): Extract<Arc<State>>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if state.certs.loaded() {
        "ready".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no serving certificate yet",
        )
            .into_response()
    }
}

async fn metrics(Extract(state): Extract<Arc<State>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn mutate(Extract(state): Extract<Arc<State>>, body: Bytes) -> Response {
    let started = Instant::now();
    let response = match review(&state, &body) {
        Ok(review) => axum::Json(review).into_response(),
        Err(message) => {
            state.metrics.admission("invalid", "malformed-review");
            tracing::warn!(%message, "malformed admission review");
            (StatusCode::BAD_REQUEST, message).into_response()
        }
    };
    state
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Answers one review; `Err` is a malformed review (HTTP 400).
pub fn review(state: &State, body: &[u8]) -> Result<serde_json::Value, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let kind = value["request"]["kind"]["kind"].as_str();
    let response = if kind.is_some_and(|k| k != "Pod") {
        // A webhook configuration that sends more than pods: let it through.
        let review: AdmissionReview<DynamicObject> =
            serde_json::from_value(value).map_err(|e| format!("not an AdmissionReview: {e}"))?;
        let request: AdmissionRequest<DynamicObject> = review
            .try_into()
            .map_err(|e| format!("the AdmissionReview has no request: {e}"))?;
        state.metrics.admission("skipped", "not-a-pod-creation");
        AdmissionResponse::from(&request)
    } else {
        let review: AdmissionReview<Pod> = serde_json::from_value(value)
            .map_err(|e| format!("not an AdmissionReview of a Pod: {e}"))?;
        let request: AdmissionRequest<Pod> = review
            .try_into()
            .map_err(|e| format!("the AdmissionReview has no request: {e}"))?;
        answer(state, &request)
    };
    let patch = response.patch.clone();
    let mut review = serde_json::to_value(response.into_review())
        .map_err(|e| format!("encoding the response: {e}"))?;
    // kube-core serializes the patch's bytes as an array of numbers; the
    // API (a Go []byte) defines it as base64, four times smaller.
    if let Some(patch) = patch {
        review["response"]["patch"] =
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    Ok(review)
}

fn answer(state: &State, request: &AdmissionRequest<Pod>) -> AdmissionResponse {
    let allow = AdmissionResponse::from(request);
    let (Operation::Create, Some(pod)) = (&request.operation, &request.object) else {
        state.metrics.admission("skipped", "not-a-pod-creation");
        return allow;
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_default();
    let name = pod
        .metadata
        .name
        .clone()
        .or_else(|| pod.metadata.generate_name.clone().map(|g| format!("{g}*")))
        .unwrap_or_default();
    let labels = state.namespace_labels(&namespace);
    let config = state.config();
    match inject::inject(pod, &namespace, &labels, &config) {
        Ok(Outcome::Skipped(skip)) => {
            state.metrics.admission("skipped", skip.as_str());
            tracing::debug!(%namespace, pod = %name, reason = skip.as_str(), "not injected");
            allow
        }
        Ok(Outcome::Injected(patch)) => match allow.clone().with_patch(patch) {
            Ok(patched) => {
                state.metrics.admission("injected", "");
                tracing::info!(%namespace, pod = %name, "injected");
                patched
            }
            Err(error) => failed(
                state,
                allow,
                &namespace,
                &name,
                "encoding",
                &error.to_string(),
            ),
        },
        Err(error) => {
            let kind = match error {
                InjectError::Quantity { .. } => "bad-resources",
                InjectError::Ports { .. } | InjectError::Cidrs { .. } => "bad-redirect",
                InjectError::NoSpec => "no-spec",
            };
            failed(state, allow, &namespace, &name, kind, &error.to_string())
        }
    }
}

/// The pod cannot be injected: it is admitted unchanged, and the user sees
/// why as a warning (kubectl prints it), a log line and a metric.
fn failed(
    state: &State,
    mut allow: AdmissionResponse,
    namespace: &str,
    name: &str,
    kind: &'static str,
    message: &str,
) -> AdmissionResponse {
    state.metrics.admission("failed", kind);
    tracing::warn!(%namespace, pod = %name, reason = kind, %message, "admitted without the proxy");
    allow.warnings = Some(vec![format!(
        "plexus: the proxy was not injected: {message}"
    )]);
    allow
}

/// Serves `router` over TLS (certificates from `state.certs`) on `listener`
/// until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: rustls::ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let service = TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (acceptor, service) = (acceptor.clone(), service.clone());
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, %peer, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
}
