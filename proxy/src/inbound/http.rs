//! HTTP from a peer proxy, already through mTLS: each request is
//! authorized under the configuration in force when it arrives (a
//! connection between proxies lives long, and a policy applies to the
//! requests it carries from then on), then sent to the app on localhost in
//! the protocol the app spoke to the client proxy (HTTP/1.1, pooled, or
//! HTTP/2 on one connection per peer connection), and counted under the
//! peer's identity.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::client::Shared;
use crate::ctx::Ctx;
use crate::detect::Detected;
use crate::http::body::{ReadBody, read_small};
use crate::http::{Body, ORIG_PROTO, full, incoming, local, strip_hop_by_hop};
use crate::policy::{self, Decision};
use crate::server::serve_connection;
use crate::telemetry::Direction;
use crate::telemetry::metrics::RequestLabels;

/// The body of a request authorization refuses, as Istio's.
const DENIED_BODY: &str = "RBAC: access denied";

/// Serves HTTP/2 from a peer proxy proving `peer` to the app on localhost
/// `port`, until the connection closes or `stop` (drain) fires.
pub async fn serve<I>(
    ctx: Arc<Ctx>,
    stream: I,
    peer: String,
    port: u16,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer: Arc<str> = peer.into();
    let app_h2: Arc<Shared> = Arc::default();
    let service = hyper::service::service_fn(move |request| {
        let ctx = ctx.clone();
        let peer = peer.clone();
        let app_h2 = app_h2.clone();
        async move {
            let started = Instant::now();
            let decision = policy::authorize(ctx.state.config().as_deref(), &ctx.labels);
            let response = match &decision {
                Decision::Allow => to_app(&ctx, request, port, &app_h2).await,
                Decision::Deny { policy, reason } => {
                    ctx.metrics().denied(policy, reason);
                    let mut response = Response::new(full(DENIED_BODY));
                    *response.status_mut() = StatusCode::FORBIDDEN;
                    response
                }
            };
            ctx.metrics().request(
                RequestLabels {
                    direction: Direction::Inbound.as_str(),
                    src_identity: peer.to_string(),
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
    serve_connection(stream, Detected::Http2, service, stop).await
}

async fn to_app(
    ctx: &Ctx,
    request: Request<Incoming>,
    port: u16,
    app_h2: &Shared,
) -> Response<Body> {
    let app = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (mut parts, body) = request.into_parts();
    let http1 = parts.headers.remove(ORIG_PROTO).is_some();
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
