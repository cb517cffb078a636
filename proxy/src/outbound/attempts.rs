//! The attempts of one request to a cluster, within the route's timeout:
//! the cluster's circuit breakers admit the request (`balance::pool`); each
//! attempt goes to an endpoint the balancer picks (one not tried yet, when
//! there is one), its outcome is classified once (`classify`) and fed to
//! outlier detection (`balance::outlier`) and to the retry conditions
//! (`retry`). A request that did not reach the app (refused connection or
//! stream) goes to another endpoint whatever the route says, unless the
//! route turns retries off. A streamed body is kept as it is sent, so that it can be sent
//! again when it ended within the limit; otherwise the retry is not made
//! and counted as such.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, HOST, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;

use super::retry::{self, Answer};
use crate::balance::{Cluster, Endpoint, Overflow};
use crate::classify::Class;
use crate::client::Options;
use crate::ctx::Ctx;
use crate::detect::Detected;
use crate::http::body::{ReadBody, Replayable, holding, read_small, read_to_trailers};
use crate::http::{Body, Failure, full, local, strip_hop_by_hop};
use crate::routing::Route;
use crate::routing::profile::ProfileRouteMatch;
use crate::telemetry::metrics::RouteLabels;

/// Retries of a request that did not reach the app, each to an endpoint
/// not tried yet, beyond the route's own (unless it turns retries off).
const UNPROCESSED_RETRIES: u32 = 2;

/// Retries of a retryable ServiceProfile route (Linkerd bounds them by the
/// budget alone; this bounds one request's too).
const PROFILE_RETRIES: u32 = 3;

/// The attempts of one request.
pub struct Attempts<'a> {
    pub ctx: &'a Ctx,
    /// The protocol the app speaks.
    pub app: Detected,
    pub route: Option<&'a Route>,
    /// The ServiceProfile route the request takes, if any.
    pub profile: Option<&'a ProfileRouteMatch>,
    pub cluster: &'a Cluster,
    pub parts: &'a http::request::Parts,
    pub host: &'a str,
    /// The request's consistent-hash key.
    pub hash: Option<u64>,
}

/// The body every attempt (and a mirror's copy) sends.
pub enum Sendable {
    /// Read whole before the first attempt.
    Whole(bytes::Bytes),
    /// Kept as it is sent.
    Kept(Replayable),
}

impl Sendable {
    /// Bodies of known, small size are read whole first: they go out with
    /// the request's headers (one write, END_STREAM on the last frame).
    /// Others are streamed, and kept as they go.
    pub async fn read(body: Incoming) -> Result<Self, hyper::Error> {
        Ok(match read_small(body).await? {
            ReadBody::Whole(bytes) => Sendable::Whole(bytes),
            ReadBody::Stream(body) => Sendable::Kept(Replayable::new(body)),
        })
    }

    /// The body of one attempt.
    pub fn attempt(&self) -> Body {
        match self {
            Sendable::Whole(bytes) => full(bytes.clone()),
            Sendable::Kept(kept) => kept.attempt(),
        }
    }
}

impl Attempts<'_> {
    /// Runs the attempts; `route` names the route in metrics, and
    /// `dst_identity` is set to the identity of the endpoint last tried.
    pub async fn run(
        &self,
        body: &Sendable,
        route: &str,
        dst_identity: &mut String,
    ) -> Response<Body> {
        // The route's timeout, else the ServiceProfile route's.
        let timeout = self
            .route
            .and_then(|r| r.spec.timeout_ms)
            .or_else(|| self.profile.and_then(|p| p.spec.timeout_ms))
            .map(Duration::from_millis);
        let attempts = async {
            if !self.cluster.limits.counting() {
                return self.attempts(body, route, dst_identity).await;
            }
            match self.cluster.limits.admit(self.app == Detected::Http1).await {
                Ok(admitted) => self
                    .attempts(body, route, dst_identity)
                    .await
                    .map(|body| holding(body, admitted)),
                Err(overflow) => self.overflow(overflow),
            }
        };
        match timeout {
            Some(limit) => match tokio::time::timeout(limit, attempts).await {
                Ok(response) => response,
                Err(_) => local(StatusCode::GATEWAY_TIMEOUT, "timeout"),
            },
            None => attempts.await,
        }
    }

    /// The answer to a request the circuit breakers refused.
    fn overflow(&self, overflow: Overflow) -> Response<Body> {
        self.cluster.overflowed(overflow);
        let mut response = local(StatusCode::SERVICE_UNAVAILABLE, "overflow");
        response
            .headers_mut()
            .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
        response
    }

    async fn attempts(
        &self,
        sendable: &Sendable,
        route: &str,
        dst_identity: &mut String,
    ) -> Response<Body> {
        let policy = self.route.and_then(|r| r.spec.retries.as_ref());
        // `attempts: 0` turns retries off, those of unprocessed requests too.
        let retries_off = policy.is_some_and(|r| r.attempts == 0);
        let retry = policy.filter(|r| r.attempts > 0);
        // Without a policy of the route's, a retryable ServiceProfile route
        // retries its failures, within the budget.
        let profile_retries = self
            .profile
            .filter(|p| policy.is_none() && p.spec.retryable);
        let mut attempts = match (retry, profile_retries) {
            (Some(r), _) => 1 + r.attempts,
            (None, Some(_)) => 1 + PROFILE_RETRIES,
            (None, None) => 1,
        };
        let budget = self.cluster.retry_budget.as_ref();
        if let Some(budget) = budget {
            budget.deposit(std::time::Instant::now());
        }
        let mut unprocessed_retries = 0;
        let per_try = retry
            .and_then(|r| r.per_try_timeout_ms)
            .map(Duration::from_millis);
        let retry_on = retry.map(|r| r.retry_on.as_slice()).unwrap_or_default();
        // A gRPC status may come in the trailers: read them, while there
        // are attempts left, when a condition needs it.
        let grpc = retry::reads_grpc_status(retry_on)
            && self
                .parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/grpc"));
        let options = Options::of(self.cluster.limits.config.as_ref());
        let mut tried: Vec<Arc<Endpoint>> = Vec::new();
        let mut _retrying = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(endpoint) = self
                .cluster
                .pick(|n| fastrand::usize(..n), self.hash, &tried)
                .cloned()
            else {
                let why = if self.cluster.endpoints.is_empty() {
                    "no-endpoints"
                } else {
                    "no-healthy-endpoints"
                };
                return local(StatusCode::SERVICE_UNAVAILABLE, why);
            };
            endpoint
                .identity()
                .unwrap_or_default()
                .clone_into(dst_identity);
            let request = outgoing(self.parts, self.host, sendable.attempt());
            let in_flight = endpoint.start();
            let sent = std::time::Instant::now();
            let send = self.ctx.clients.send(
                endpoint.addr(),
                endpoint.identity(),
                endpoint.spec.origination.as_ref(),
                self.app,
                request,
                options,
            );
            let outcome = match per_try {
                Some(limit) => match tokio::time::timeout(limit, send).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Failure::Timeout),
                },
                None => send.await,
            };
            drop(in_flight);
            let last = attempt >= attempts;
            let (outcome, trailers) = match outcome {
                Ok(response)
                    if grpc && !last && !response.headers().contains_key("grpc-status") =>
                {
                    let (parts, body) = response.into_parts();
                    match read_to_trailers(body).await {
                        Ok(buffered) => {
                            let trailers = buffered.trailers().cloned();
                            (
                                Ok(Response::from_parts(parts, buffered.into_body())),
                                trailers,
                            )
                        }
                        Err(error) => (Err(Failure::Reset(error.to_string())), None),
                    }
                }
                outcome => (outcome, None),
            };
            let class = Class::of(&outcome);
            self.cluster.observe(&endpoint, class, sent.elapsed());
            let answer = Answer {
                class,
                headers: outcome.as_ref().ok().map(|r| r.headers()),
                trailers: trailers.as_ref(),
                request: &self.parts.headers,
            };
            let done = |outcome: Result<Response<Body>, Failure>| match outcome {
                Ok(response) => response,
                Err(failure) => {
                    tracing::debug!(?failure, cluster = %self.cluster.name, "request failed");
                    failure.response()
                }
            };
            let by_profile =
                profile_retries.is_some_and(|p| class.status().is_none_or(|s| p.is_failure(s)));
            let by_policy = !last && (retry::retryable(retry_on, answer) || by_profile);
            // Nothing reached the app: another endpoint may take it, beyond
            // the policy's attempts.
            let elsewhere = !by_policy
                && !retries_off
                && class.unprocessed()
                && unprocessed_retries < UNPROCESSED_RETRIES
                && self.cluster.endpoints.len() > tried.len() + 1;
            if !by_policy && !elsewhere {
                return done(outcome);
            }
            if elsewhere {
                unprocessed_retries += 1;
                attempts += 1;
            }
            if let Sendable::Kept(kept) = sendable
                && !kept.replayable()
            {
                let metrics = &self.ctx.metrics().resilience;
                metrics.retry_skipped(&self.cluster.name, "body-too-large");
                return done(outcome);
            }
            if let Some(budget) = budget
                && !budget.withdraw(std::time::Instant::now())
            {
                let metrics = &self.ctx.metrics().resilience;
                metrics.retry_skipped(&self.cluster.name, "retry-budget");
                return done(outcome);
            }
            match self.cluster.limits.retry() {
                Ok(retrying) => _retrying = Some(retrying),
                Err(overflow) => {
                    self.cluster.overflowed(overflow);
                    let metrics = &self.ctx.metrics().resilience;
                    metrics.retry_skipped(&self.cluster.name, overflow.as_str());
                    return done(outcome);
                }
            }
            drop(outcome);
            tried.push(endpoint);
            self.ctx
                .metrics()
                .retries
                .get_or_create(&RouteLabels {
                    route: route.to_owned(),
                })
                .inc();
            if let Some(retry) = retry {
                tokio::time::sleep(retry::backoff(retry, attempt, fastrand::f64())).await;
            }
        }
    }
}

/// The request to send upstream: absolute URI with the authority the app
/// addressed, hop-by-hop headers removed.
pub fn outgoing(parts: &http::request::Parts, host: &str, body: Body) -> Request<Body> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = Uri::try_from(format!("http://{host}{path}"))
        .or_else(|_| Uri::try_from(path))
        .unwrap_or_default();
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = parts.headers.clone();
    strip_hop_by_hop(request.headers_mut());
    if let Ok(value) = HeaderValue::try_from(host) {
        request.headers_mut().insert(HOST, value);
    }
    request
}
