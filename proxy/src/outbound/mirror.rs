//! Mirrors (VirtualService `mirror`, `mirrors[]`): copies of a request sent
//! to other destinations, fire and forget. Each mirror is drawn by its
//! percentage when the route is taken; its copy carries the request as the
//! route changed it (rewrites and the route's header rules, not the
//! backend's), with `-shadow` appended to the host as Envoy does, and the
//! body when it is kept: a body read whole goes at once, a streamed one
//! after the primary's answer, if it ended within the retry limit. The
//! copy's answer is read and dropped; nothing of it reaches the caller, who
//! never waits for it. Copies in flight are bounded per proxy
//! (`ctx::MIRRORS_IN_FLIGHT`); each outcome is counted in
//! `plexus_proxy_mirrored_total`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use plexus_config::{Backend, Mirror};

use super::attempts::{Sendable, outgoing};
use crate::balance::Cluster;
use crate::classify::Class;
use crate::client::Options;
use crate::ctx::Ctx;
use crate::detect::Detected;
use crate::http::{Body, full};
use crate::routing::Route;
use crate::state::Snapshot;
use crate::telemetry::metrics::MirrorLabels;

/// How long a copy may take when the route sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// How much of a copy's answer is read (so that its connection can be
/// used again) before it is dropped.
const ANSWER_READ_LIMIT: usize = 64 * 1024;

/// The mirrors of `route` this request goes to, drawn by their
/// percentages with `draw` (a number in [0, 100)).
pub fn drawn(route: &Route, mut draw: impl FnMut() -> f64) -> Vec<&Mirror> {
    route
        .spec
        .mirrors
        .iter()
        .filter(|m| draw() < m.percent)
        .collect()
}

/// The Host of a copy: `-shadow` appended to the name, before the port.
pub fn shadow_host(host: &str) -> String {
    match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!name.contains(':') || name.ends_with(']')) =>
        {
            format!("{name}-shadow:{port}")
        }
        _ => format!("{host}-shadow"),
    }
}

/// A copy of a request's head (method, target, version and headers).
pub fn head(parts: &http::request::Parts) -> http::request::Parts {
    let (mut head, ()) = Request::new(()).into_parts();
    head.method = parts.method.clone();
    head.uri = parts.uri.clone();
    head.version = parts.version;
    head.headers = parts.headers.clone();
    head
}

/// The copies of one request: where they go and what they carry.
pub struct Copies<'a> {
    pub ctx: &'a Arc<Ctx>,
    pub snapshot: &'a Arc<Snapshot>,
    pub app: Detected,
    pub route: &'a Route,
    /// The request's destination port (a mirror without one uses it).
    pub port: u16,
    pub parts: &'a http::request::Parts,
    /// The request's host, after the route's rewrite.
    pub host: &'a str,
}

impl Copies<'_> {
    /// Sends a copy to each of `mirrors` whose body is at hand (a body read
    /// whole); returns those that must wait for a streamed body to end.
    pub fn send_now<'m>(&self, mirrors: Vec<&'m Mirror>, body: &Sendable) -> Vec<&'m Mirror> {
        match body {
            Sendable::Whole(bytes) => {
                for mirror in mirrors {
                    self.send(mirror, Ok(full(bytes.clone())));
                }
                Vec::new()
            }
            Sendable::Kept(_) => mirrors,
        }
    }

    /// Sends a copy to each of `mirrors` once the primary was answered: with
    /// the streamed body if it ended within the limit.
    pub fn send_after(&self, mirrors: Vec<&Mirror>, body: &Sendable) {
        for mirror in mirrors {
            let body = match body {
                Sendable::Whole(bytes) => Ok(full(bytes.clone())),
                Sendable::Kept(kept) => kept.ended().ok_or(if kept.replayable() {
                    "body-unfinished"
                } else {
                    "body-too-large"
                }),
            };
            self.send(mirror, body);
        }
    }

    /// One copy, or the count of why it was not made.
    fn send(&self, mirror: &Mirror, body: Result<Body, &'static str>) {
        let backend = Backend {
            host: mirror.host.clone(),
            port: mirror.port,
            subset: mirror.subset.clone(),
            weight: 100,
            ..Default::default()
        };
        let table = &self.snapshot.table;
        let Some(cluster) = table
            .cluster(&backend, self.port)
            .and_then(|index| self.snapshot.cluster(index))
        else {
            self.count(&mirror.host, "unknown-destination");
            return;
        };
        let count = |outcome| self.count(&cluster.name, outcome);
        let body = match body {
            Ok(body) => body,
            Err(why) => return count(why),
        };
        let Ok(permit) = self.ctx.mirrors.clone().try_acquire_owned() else {
            return count("too-many");
        };
        let request = outgoing(self.parts, &shadow_host(self.host), body);
        let timeout = self
            .route
            .spec
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        let copy = Copy {
            ctx: self.ctx.clone(),
            cluster: cluster.clone(),
            app: self.app,
            route: self.route.spec.name.clone(),
        };
        tokio::spawn(async move {
            let _permit = permit;
            copy.run(request, timeout).await;
        });
    }

    fn count(&self, cluster: &str, outcome: &'static str) {
        count(self.ctx, &self.route.spec.name, cluster, outcome);
    }
}

fn count(ctx: &Ctx, route: &str, cluster: &str, outcome: &'static str) {
    ctx.metrics()
        .mirrored
        .get_or_create(&MirrorLabels {
            route: route.to_owned(),
            cluster: cluster.to_owned(),
            outcome,
        })
        .inc();
}

/// A copy on its way.
struct Copy {
    ctx: Arc<Ctx>,
    cluster: Arc<Cluster>,
    app: Detected,
    route: String,
}

impl Copy {
    async fn run(self, request: Request<Body>, timeout: Duration) {
        let Some(endpoint) = self
            .cluster
            .pick(|n| fastrand::usize(..n), None, &[])
            .cloned()
        else {
            return self.count("no-endpoints");
        };
        let options = Options::of(self.cluster.limits.config.as_ref());
        let in_flight = endpoint.start();
        let sent = Instant::now();
        let send = self.ctx.clients.send(
            endpoint.addr(),
            endpoint.identity(),
            endpoint.spec.origination.as_ref(),
            self.app,
            request,
            options,
        );
        let outcome = tokio::time::timeout(timeout, async {
            match send.await {
                Ok(response) => Ok(drain(response).await),
                Err(failure) => Err(failure),
            }
        })
        .await
        .unwrap_or(Err(crate::http::Failure::Timeout));
        drop(in_flight);
        let class = Class::of(&outcome);
        self.cluster.observe(&endpoint, class, sent.elapsed());
        self.count(if outcome.is_ok() {
            "answered"
        } else {
            "failed"
        });
    }

    fn count(&self, outcome: &'static str) {
        count(&self.ctx, &self.route, &self.cluster.name, outcome);
    }
}

/// Reads a copy's answer (up to a limit) and drops it; the head is kept for
/// the copy's classification.
async fn drain(response: Response<Body>) -> Response<Body> {
    let (parts, mut body) = response.into_parts();
    let mut read = 0;
    while read < ANSWER_READ_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |data| data.len()),
            _ => break,
        }
    }
    Response::from_parts(parts, full(bytes::Bytes::new()))
}

#[cfg(test)]
mod tests {
    use super::shadow_host;

    #[test]
    fn shadow_hosts_keep_their_port() {
        assert_eq!(shadow_host("web"), "web-shadow");
        assert_eq!(shadow_host("web.demo:8080"), "web.demo-shadow:8080");
        assert_eq!(shadow_host("10.0.0.1:80"), "10.0.0.1-shadow:80");
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
        assert_eq!(shadow_host("[::1]"), "[::1]-shadow");
    }
}
