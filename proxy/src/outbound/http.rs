//! The outbound request pipeline, one call per stage: the route (`routing`),
//! its direct answers and faults (`routing::filters`, `routing::fault`), the
//! backend by the split's weights, rewrites and header rules, then attempts
//! (`attempts`: an endpoint from the cluster's balancer, the request sent by
//! `client`, each outcome classified by `classify` for `retry`) within the
//! route's timeout; last, the response's header rules and the metrics.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::header::SET_COOKIE;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use plexus_config::Backend;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::attempts::{Attempts, Sendable, outgoing};
use super::mirror::{self, Copies};
use crate::balance::hash;
use crate::client::Options;
use crate::ctx::Ctx;
use crate::detect::Detected;
use crate::http::{Body, authority, full, incoming, local, strip_hop_by_hop};
use crate::routing::cors::{CorsHeaders, Verdict};
use crate::routing::filters::{apply_header_ops, rewrite, short_circuit};
use crate::routing::profile::failure;
use crate::routing::{Destination, RequestInfo, Route, Source, fault};
use crate::server::serve_connection;
use crate::telemetry::Direction;
use crate::telemetry::metrics::RequestLabels;

/// Serves a connection the app at `source` opened to `original` as HTTP,
/// until it closes or `stop` (graceful shutdown) fires.
pub async fn serve<I>(
    ctx: Arc<Ctx>,
    stream: I,
    protocol: Detected,
    original: SocketAddr,
    source: IpAddr,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let ctx = ctx.clone();
        async move {
            let call = Call {
                ctx: &ctx,
                app: protocol,
                original,
                source,
            };
            Ok::<_, Infallible>(call.request(request).await)
        }
    });
    serve_connection(stream, protocol, service, stop).await
}

/// One request's context.
struct Call<'a> {
    ctx: &'a Arc<Ctx>,
    /// The protocol the app speaks.
    app: Detected,
    original: SocketAddr,
    source: IpAddr,
}

/// Labels of one outbound request.
struct Labels {
    route: String,
    dst_service: String,
    dst_identity: String,
    /// A ServiceProfile route's failure classes, when one applies.
    failures: Option<Vec<(u16, u16)>>,
    /// The CORS headers the answer gets.
    cors: CorsHeaders,
}

impl Call<'_> {
    /// Routes one request and counts it.
    async fn request(&self, request: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let mut labels = Labels {
            route: "default".into(),
            dst_service: String::new(),
            dst_identity: String::new(),
            failures: None,
            cors: CorsHeaders::new(),
        };
        let mut response = self.route(request, &mut labels).await;
        for (name, value) in labels.cors.drain(..) {
            response.headers_mut().insert(name, value);
        }
        // Requests a ServiceProfile route took are classified by its
        // response classes (the others' status says it all).
        if let Some(failures) = &labels.failures {
            let failure = failure(failures, response.status().as_u16());
            self.ctx
                .metrics()
                .classified(&labels.dst_service, &labels.route, failure);
        }
        self.ctx.metrics().request(
            RequestLabels {
                direction: Direction::Outbound.as_str(),
                src_identity: self.ctx.state.own_identity(),
                dst_identity: labels.dst_identity,
                route: labels.route,
                dst_service: labels.dst_service,
                status: response.status().as_u16(),
            },
            started.elapsed(),
        );
        response
    }

    async fn route(&self, request: Request<Incoming>, labels: &mut Labels) -> Response<Body> {
        let Some(snapshot) = self.ctx.state.snapshot() else {
            return local(StatusCode::SERVICE_UNAVAILABLE, "no-configuration");
        };
        let table = &snapshot.table;
        let host = authority(&request);
        let (mut parts, body) = request.into_parts();
        let (service, port) = match table.destination(self.original) {
            Destination::Service { service, port } => (service, port),
            // Known by name only: the Host says which entry, if any.
            Destination::Named { port } => match (table.named(&host, port), table.unknown()) {
                (Some(service), _) => (service, port),
                (None, Destination::Refuse) => {
                    self.ctx.metrics().egress.refused(&host, "http");
                    return local(StatusCode::BAD_GATEWAY, "registry-only");
                }
                (None, _) => {
                    let request = outgoing(&parts, &host, incoming(body));
                    return self.direct(self.original, None, request).await;
                }
            },
            Destination::Pod(endpoint) => {
                // A pod addressed directly: no routes, that endpoint.
                labels.dst_identity = endpoint.identity.clone().unwrap_or_default();
                let request = outgoing(&parts, &host, incoming(body));
                let identity = endpoint.identity.as_deref();
                return self.direct(endpoint.addr, identity, request).await;
            }
            // The configuration changed under an open connection.
            Destination::Passthrough | Destination::Refuse => {
                return local(StatusCode::SERVICE_UNAVAILABLE, "unknown-destination");
            }
        };
        let Some(spec) = table.service(service) else {
            return local(StatusCode::SERVICE_UNAVAILABLE, "unknown-destination");
        };
        labels.dst_service = format!("{}/{}", spec.namespace, spec.name);
        let info = RequestInfo {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            authority: &host,
            scheme: parts.uri.scheme_str().unwrap_or("http"),
            port,
            headers: &parts.headers,
        };
        let source = Source {
            labels: self.ctx.labels(),
            namespace: &table.config.namespace,
        };
        let route = table.route(service, &info, &source);
        let profile = table.profile_route(service, info.method, info.path);
        if let Some(profile) = profile {
            labels.failures = Some(profile.spec.failure_statuses.clone());
            if route.is_none() {
                labels.route.clone_from(&profile.label);
            }
        }
        if let Some(route) = route {
            labels.route = route.spec.name.clone();
            match route
                .cors
                .as_ref()
                .map(|c| c.verdict(&parts.method, &parts.headers))
            {
                None | Some(Verdict::Pass) => {}
                Some(Verdict::Allowed(headers)) => labels.cors = headers,
                Some(Verdict::Preflight(headers)) => {
                    labels.cors = headers;
                    return Response::new(full(""));
                }
            }
            if let Some(response) = short_circuit(route, &parts, &host) {
                return response;
            }
            if let Some(response) = faults(route).await {
                return response;
            }
        }
        let mirrors = route
            .map(|r| mirror::drawn(r, || fastrand::f64() * 100.0))
            .unwrap_or_default();
        // Without routes, the service's own endpoints.
        let own;
        let backend = match route {
            Some(route) => match route.backend(fastrand::u32(..route.total_weight().max(1))) {
                Some(backend) => backend,
                None => return local(StatusCode::SERVICE_UNAVAILABLE, "no-backend"),
            },
            None => {
                own = Backend {
                    host: spec.hosts.first().cloned().unwrap_or_default(),
                    weight: 100,
                    ..Default::default()
                };
                &own
            }
        };
        let Some(cluster) = table
            .cluster(backend, port)
            .and_then(|index| snapshot.cluster(index))
        else {
            return local(StatusCode::SERVICE_UNAVAILABLE, "unknown-backend");
        };
        let Ok(body) = Sendable::read(body).await else {
            return local(StatusCode::BAD_REQUEST, "request-body");
        };
        let mut host = host;
        // Mirrors waiting for a streamed body, with the request's head as
        // the route changed it.
        let mut waiting = (Vec::new(), None);
        if let Some(route) = route {
            rewrite(route, &mut parts, &mut host);
            apply_header_ops(&mut parts.headers, &route.spec.headers.request);
            if !mirrors.is_empty() {
                let copies = Copies {
                    ctx: self.ctx,
                    snapshot: &snapshot,
                    app: self.app,
                    route,
                    port,
                    parts: &parts,
                    host: &host,
                };
                let later = copies.send_now(mirrors, &body);
                if !later.is_empty() {
                    waiting = (later, Some(mirror::head(&parts)));
                }
            }
        }
        apply_header_ops(&mut parts.headers, &backend.headers.request);
        let key = match &cluster.balance {
            crate::routing::Balance::Hash(policy) => hash::key(
                policy,
                &hash::Request {
                    headers: &parts.headers,
                    query: parts.uri.query(),
                    source: self.source,
                },
            ),
            _ => None,
        };

        // A destination resolved NONE: as the app addressed it.
        if cluster.passthrough {
            let request = outgoing(&parts, &host, body.attempt());
            return self.direct(self.original, None, request).await;
        }
        let attempts = Attempts {
            ctx: self.ctx,
            app: self.app,
            route,
            profile,
            cluster,
            parts: &parts,
            host: &host,
            hash: key.as_ref().map(|k| k.value),
        };
        let mut response = attempts
            .run(&body, &labels.route, &mut labels.dst_identity)
            .await;
        if let (Some(route), (later, Some(head))) = (route, waiting) {
            let copies = Copies {
                ctx: self.ctx,
                snapshot: &snapshot,
                app: self.app,
                route,
                port,
                parts: &head,
                host: &host,
            };
            copies.send_after(later, &body);
        }
        strip_hop_by_hop(response.headers_mut());
        if let Some(route) = route {
            apply_header_ops(response.headers_mut(), &route.spec.headers.response);
        }
        apply_header_ops(response.headers_mut(), &backend.headers.response);
        if let Some(cookie) = key.and_then(|k| k.set_cookie) {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
        response
    }
}

impl Call<'_> {
    /// Sends a request to one address, no balancing or retries.
    async fn direct(
        &self,
        addr: SocketAddr,
        identity: Option<&str>,
        request: Request<Body>,
    ) -> Response<Body> {
        let options = Options::default();
        match self
            .ctx
            .clients
            .send(addr, identity, None, self.app, request, options)
            .await
        {
            Ok(response) => response,
            Err(failure) => failure.response(),
        }
    }
}

/// A route's injected faults: waits out a delay, answers an abort.
async fn faults(route: &Route) -> Option<Response<Body>> {
    let decided = fault::decide(route.spec.fault.as_ref(), || fastrand::f64() * 100.0);
    if let Some(delay) = decided.delay {
        tokio::time::sleep(delay).await;
    }
    let status = decided.abort?;
    let mut response = Response::new(full("fault filter abort\n"));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    Some(response)
}
