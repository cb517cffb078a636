//! HTTP to this pod: from a peer proxy over mTLS, or plaintext from a
//! caller outside the mesh when policies need to read it. Each request runs
//! the policy pipeline under the configuration in force when it arrives (a
//! connection between proxies lives long, and a policy applies to the
//! requests it carries from then on):
//!
//! 1. normalization: methods must be uppercase, the path is normalized as
//!    Istio does (`policy::path`), and the app receives it so;
//! 2. authentication (RequestAuthentication): a token that does not verify
//!    is answered 401;
//! 3. authorization (AuthorizationPolicy): a denial is answered 403
//!    `RBAC: access denied`;
//! 4. rate limits (RateLimitPolicy): a limited request is answered 429 (or
//!    the policy's status) with `x-ratelimit-limit`, `x-ratelimit-remaining`
//!    (0), `x-ratelimit-reset` and `retry-after` (seconds to the next
//!    fill), and the policy's own headers;
//! 5. the app on localhost, in the protocol the caller spoke (HTTP/1.1,
//!    pooled, or HTTP/2 on one connection per peer connection).
//!
//! What refused a request is logged and counted (`telemetry::policy`),
//! never told to the caller.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::client::Shared;
use crate::ctx::Ctx;
use crate::detect::Detected;
use crate::http::body::{ReadBody, read_small};
use crate::http::{Body, ORIG_PROTO, authority_of, full, incoming, local, strip_hop_by_hop};
use crate::inbound::connection::Connection;
use crate::policy::attributes::remote_ip;
use crate::policy::path::normalize;
use crate::policy::rate_limit::Outcome as Limited;
use crate::policy::{Attributes, HttpAttributes, Inbound, Outcome};
use crate::routing::filters::apply_header_ops;
use crate::routing::matches::{RequestInfo, Source};
use crate::server::serve_connection;
use crate::telemetry::Direction;
use crate::telemetry::metrics::RequestLabels;

/// The body of a request authorization refuses, as Istio's.
pub const DENIED_BODY: &str = "RBAC: access denied";
/// The body of a request whose token does not verify, as Envoy's.
pub const UNAUTHENTICATED_BODY: &str = "Jwt verification fails";
/// The body of a rate-limited request, as Envoy's.
pub const LIMITED_BODY: &str = "local_rate_limited";

/// Serves HTTP (`protocol`) of `conn` to the app on localhost `port`, until
/// the connection closes or `stop` (drain) fires.
pub async fn serve<I>(
    ctx: Arc<Ctx>,
    stream: I,
    conn: Connection,
    protocol: Detected,
    port: u16,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let app_h2: Arc<Shared> = Arc::default();
    let service = hyper::service::service_fn(move |request| {
        let ctx = ctx.clone();
        let conn = conn.clone();
        let app_h2 = app_h2.clone();
        async move {
            let started = Instant::now();
            let response = handle(&ctx, &conn, request, port, &app_h2).await;
            ctx.metrics().request(
                RequestLabels {
                    direction: Direction::Inbound.as_str(),
                    src_identity: conn.peer_label().to_owned(),
                    dst_identity: ctx.state.own_identity(),
                    route: String::new(),
                    dst_service: String::new(),
                    status: response.status().as_u16(),
                },
                started.elapsed(),
            );
            Ok::<_, Infallible>(response)
        }
    });
    serve_connection(stream, protocol, service, stop).await
}

/// A response the proxy makes for a policy.
fn refusal(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
}

/// One request through the pipeline.
async fn handle(
    ctx: &Ctx,
    conn: &Connection,
    request: Request<Incoming>,
    port: u16,
    app_h2: &Shared,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    if parts
        .method
        .as_str()
        .bytes()
        .any(|b| b.is_ascii_lowercase())
    {
        return local(StatusCode::BAD_REQUEST, "method-not-uppercase");
    }
    let Ok(path) = normalize(parts.uri.path()) else {
        return local(StatusCode::BAD_REQUEST, "path");
    };
    if path != parts.uri.path() {
        let Some(uri) = with_path(&parts.uri, &path) else {
            return local(StatusCode::BAD_REQUEST, "path");
        };
        parts.uri = uri;
    }
    if let Some(snapshot) = ctx.state.snapshot()
        && let Some(refused) = policies(ctx, conn, &snapshot.inbound, &mut parts, &path, port)
    {
        return refused;
    }
    to_app(ctx, Request::from_parts(parts, body), port, app_h2).await
}

/// The URI with another path, its query kept.
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let mut builder = uri.clone().into_parts();
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    builder.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(builder).ok()
}

/// Authentication, authorization and rate limits: the answer of the first
/// that refuses the request, or None.
fn policies(
    ctx: &Ctx,
    conn: &Connection,
    inbound: &Inbound,
    parts: &mut http::request::Parts,
    path: &str,
    port: u16,
) -> Option<Response<Body>> {
    let metrics = &ctx.metrics().policy;
    let peer = conn.peer_label();
    let method = parts.method.clone();
    let line = || format!("{method} {path}");
    let claims = if inbound.jwt.is_empty() {
        None
    } else {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        match inbound.jwt.authenticate(parts, now) {
            Outcome::Anonymous => {
                metrics.jwt_passed("", "anonymous", &inbound.jwt.anonymous);
                None
            }
            Outcome::Verified {
                policy,
                claims,
                counters,
            } => {
                metrics.jwt_passed(policy, "verified", counters);
                Some(claims)
            }
            Outcome::Refused { policy, reason } => {
                metrics.jwt(policy, reason, peer, &line);
                let mut response = refusal(StatusCode::UNAUTHORIZED, UNAUTHENTICATED_BODY);
                response.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                return Some(response);
            }
        }
    };
    let host = authority_of(&parts.uri, &parts.headers);
    if !inbound.authz.is_empty() {
        let attributes = Attributes {
            peer: conn.peer.as_ref(),
            source_ip: conn.source.ip(),
            remote_ip: remote_ip(
                &parts.headers,
                conn.source.ip(),
                inbound.authz.trusted_proxies(),
            ),
            destination_ip: conn.destination.ip(),
            destination_port: conn.destination.port(),
            sni: conn.sni.as_deref(),
            http: Some(HttpAttributes {
                host: &host,
                method: parts.method.as_str(),
                path,
                headers: &parts.headers,
                auth: claims.as_deref(),
            }),
        };
        let verdict = inbound.authz.decide(&attributes);
        for (policy, rule) in &verdict.audited {
            metrics.audited(policy, *rule, peer, &line);
        }
        if let Some(denial) = &verdict.denial {
            metrics.denied(denial, "http", peer, &line);
            return Some(refusal(StatusCode::FORBIDDEN, DENIED_BODY));
        }
    }
    if inbound.limits.is_empty() {
        return None;
    }
    let info = RequestInfo {
        method: parts.method.as_str(),
        path,
        query: parts.uri.query(),
        authority: &host,
        scheme: "http",
        port,
        headers: &parts.headers,
    };
    let no_labels = Default::default();
    let source = Source {
        labels: &no_labels,
        namespace: conn.peer.as_ref().map_or("", |p| p.namespace.as_str()),
    };
    let decisions = inbound
        .limits
        .check(&info, &source, peer, tokio::time::Instant::now(), || {
            fastrand::f64() * 100.0
        });
    let mut refused = None;
    for (limit, decision) in decisions {
        metrics.rate_limited(&decision, peer, &line);
        if decision.outcome == Limited::Limited && refused.is_none() {
            let status =
                StatusCode::from_u16(limit.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut response = refusal(status, LIMITED_BODY);
            let reset = decision.reset.as_secs_f64().ceil().to_string();
            let headers = response.headers_mut();
            for (name, value) in [
                ("x-ratelimit-limit", decision.limit.to_string()),
                ("x-ratelimit-remaining", decision.remaining.to_string()),
                ("x-ratelimit-reset", reset.clone()),
            ] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            }
            if let Ok(value) = HeaderValue::from_str(&reset) {
                headers.insert(RETRY_AFTER, value);
            }
            apply_header_ops(headers, &limit.headers);
            refused = Some(response);
        }
    }
    refused
}

async fn to_app(
    ctx: &Ctx,
    request: Request<Incoming>,
    port: u16,
    app_h2: &Shared,
) -> Response<Body> {
    let app = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (mut parts, body) = request.into_parts();
    let http1 = parts.headers.remove(ORIG_PROTO).is_some() || parts.version < http::Version::HTTP_2;
    // A small body leaves with the head, in one write to the app, even when
    // the peer's HEADERS and DATA frames came in two reads.
    let body = match read_small(body).await {
        Ok(ReadBody::Whole(bytes)) => full(bytes),
        Ok(ReadBody::Stream(body)) => incoming(body),
        Err(_) => return local(StatusCode::BAD_REQUEST, "request-body"),
    };
    let request = Request::from_parts(parts, body);
    let outcome = if http1 {
        ctx.clients.app_http1(app, request).await
    } else {
        ctx.clients.app_http2(app_h2, app, request).await
    };
    match outcome {
        Ok(mut response) => {
            strip_hop_by_hop(response.headers_mut());
            response
        }
        Err(failure) => {
            tracing::debug!(?failure, port, "request to the app failed");
            failure.response()
        }
    }
}
