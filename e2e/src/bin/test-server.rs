//! The test server deployed by the e2e suite, and every service of the demo
//! application (`demo/`).
//!
//! Answers every request with JSON naming who answered (service, version,
//! pod, namespace) and what it received (method, path, query, headers). It
//! can be told to misbehave per request: `?status=503` answers with that
//! status (`&every=N`: only every Nth request, the others 200),
//! `?delay=250ms` waits first (`DELAY=2s` in the environment: every
//! answer waits that long).
//!
//! With `UPSTREAMS` set (comma-separated URLs), each request first calls
//! every upstream, propagating `end-user` and `x-request-id`, and nests their
//! answers under `upstreams`: that is how the demo's productpage calls
//! details and reviews, and reviews v2 and v3 call ratings, as in Istio's
//! Bookinfo.
//!
//! `/call?url=…&count=N[&user=NAME]` makes N requests to another service
//! (through the pod's sidecar, when meshed), propagating `end-user` (or
//! setting it to NAME) and `x-request-id`, and answers with the versions
//! and status codes that came back, and every `service:version` seen in the
//! answers' upstream trees. `&method=POST` changes the method, each
//! `&header=name:value` adds a header and `&token=T` sends
//! `authorization: Bearer T`. The calls are one after the other, unless
//! `&concurrency=C` (C at a time) or `&rate=R` (one started every 1/R s,
//! whatever the others do); the answer also gives the slowest and fastest
//! call by status (`slowest_ms`, `fastest_ms`) and the 50th and 99th
//! percentiles of all answered calls (`p50_ms`, `p99_ms`).
//!
//! `/tcp?addr=host:port&message=TEXT` opens a TCP connection (through the
//! sidecar, when meshed), sends TEXT and answers with what came back before
//! the connection closed or two seconds passed; `&count=N` opens N, one
//! after the other, and tallies the answers (`echoes`). The TCP echo
//! answers the message `who` with its service's name instead.
//!
//! `TLS_PORT` serves TLS there (a self-signed certificate, whatever the
//! SNI): each connection is answered with the service's name. `/tls?addr=
//! host:port&sni=NAME[&count=N]` makes such connections, with that SNI and
//! no verification of the server, and tallies the answers.
//!
//! `HTTPS_PORT` serves everything above over TLS too, with the certificate
//! and key in `HTTPS_CERT_DIR` (`tls.crt`, `tls.key`): a server outside the
//! mesh that a proxy originates TLS to. With a `ca.crt` there as well, it
//! serves only clients with a certificate that CA issued (MUTUAL), and logs
//! each one's subject.
//!
//! `/jwks` is a key set store, for an issuer: PUT stores the body, GET
//! answers it (404 until one is stored).
//!
//! Configured by environment: `PORT` (8080), `SERVICE`, `VERSION`,
//! `UPSTREAMS`, `POD_NAME`, `POD_NAMESPACE`; `TCP_ECHO_PORT` also echoes
//! TCP on that port; `LOG_REQUESTS=1` prints a line for every request
//! answered (`request <method> <path?query> from <peer> host <host>`), so
//! that a test can count what reached the app. SIGTERM (or SIGINT) stops it
//! gracefully: no new connections, in-flight requests answered.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, Query, RawQuery, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use plexus_e2e::tls;

#[derive(Clone)]
struct Identity {
    service: String,
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
        service: env_or("SERVICE", "test-server"),
        version: env_or("VERSION", "v1"),
        pod: env_or("POD_NAME", &env_or("HOSTNAME", "unknown")),
        namespace: env_or("POD_NAMESPACE", "unknown"),
    };
    let upstreams = env_or("UPSTREAMS", "")
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            url.parse::<axum::http::Uri>()
                .map_err(|e| anyhow::anyhow!("UPSTREAMS: {url:?} is not a URL: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let caller: Caller =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let server =
        Arc::new(Server {
            identity,
            upstreams,
            caller: caller.clone(),
            requests: AtomicU64::new(0),
            log_requests: env_or("LOG_REQUESTS", "") == "1",
            delay: match std::env::var("DELAY") {
                Ok(text) => Some(parse_delay(&text).ok_or_else(|| {
                    anyhow::anyhow!("DELAY={text:?}: expected such as 250ms or 2s")
                })?),
                Err(_) => None,
            },
        });
    if let Ok(port) = std::env::var("TCP_ECHO_PORT") {
        let port: u16 = port
            .parse()
            .map_err(|e| anyhow::anyhow!("TCP_ECHO_PORT={port:?}: {e}"))?;
        tokio::spawn(tcp_echo(
            port,
            server.log_requests,
            server.identity.service.clone(),
        ));
    }
    if let Ok(port) = std::env::var("TLS_PORT") {
        let port: u16 = port
            .parse()
            .map_err(|e| anyhow::anyhow!("TLS_PORT={port:?}: {e}"))?;
        tokio::spawn(tls::serve(port, server.identity.service.clone()));
    }
    let keys: Arc<Mutex<Option<String>>> = Arc::default();
    let stored = keys.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/call",
            get(move |query, headers| call(caller.clone(), query, headers)),
        )
        .route("/tcp", get(tcp_call))
        .route("/tls", get(tls::call))
        .route(
            "/jwks",
            get(move || jwks_get(keys.clone())).put(move |body| jwks_put(stored.clone(), body)),
        )
        .fallback(move |connect, query, request| echo(server.clone(), connect, query, request));
    if let Ok(https) = std::env::var("HTTPS_PORT") {
        let https: u16 = https
            .parse()
            .map_err(|e| anyhow::anyhow!("HTTPS_PORT={https:?}: {e}"))?;
        let dir = env_or("HTTPS_CERT_DIR", "/etc/test-server/tls");
        let listener = tls::HttpsListener::bind_or_exit(https, &dir).await;
        // The handlers read the peer as a SocketAddr, as on the plain port.
        let app = app.clone().layer(axum::middleware::map_request(
            |ConnectInfo(tls::HttpsPeer(peer)): ConnectInfo<tls::HttpsPeer>,
             mut request: Request| async move {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        tokio::spawn(async move {
            let served = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<tls::HttpsPeer>(),
            )
            .await;
            if let Err(error) = served {
                eprintln!("HTTPS: {error}");
            }
        });
    }
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await?;
    eprintln!("test-server listening on :{port}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(term) => term.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        eprintln!("test-server: stopping, in-flight requests first");
    })
    .await?;
    Ok(())
}

/// What every answer needs: who this is, whom it calls, and a count of
/// requests (for `every=`).
struct Server {
    identity: Identity,
    upstreams: Vec<axum::http::Uri>,
    caller: Caller,
    requests: AtomicU64,
    log_requests: bool,
    /// Every answer waits this long (`DELAY`).
    delay: Option<std::time::Duration>,
}

async fn echo(
    server: Arc<Server>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<BTreeMap<String, String>>,
    request: Request,
) -> Response {
    let identity = &server.identity;
    let nth = server.requests.fetch_add(1, Ordering::Relaxed) + 1;
    if server.log_requests {
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let host = request
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("-");
        println!(
            "request {} {target} from {peer} host {host}",
            request.method()
        );
    }
    if let Some(delay) = server.delay {
        tokio::time::sleep(delay).await;
    }
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
    let every = match query.get("every").map(|n| n.parse::<u64>()) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return bad_request("every: expected a positive number".into()),
    };
    let status = match query
        .get("status")
        .map(|s| s.parse::<u16>().map(StatusCode::from_u16))
    {
        None => StatusCode::OK,
        Some(Ok(Ok(status))) if nth.is_multiple_of(every) => status,
        Some(Ok(Ok(_))) => StatusCode::OK,
        Some(_) => {
            return bad_request(format!(
                "status={:?}: expected an HTTP status code",
                query["status"]
            ));
        }
    };
    let mut upstreams = Vec::with_capacity(server.upstreams.len());
    for uri in &server.upstreams {
        upstreams.push(
            match get_json(
                &server.caller,
                uri.clone(),
                request.headers(),
                None,
                &Outgoing::default(),
            )
            .await
            {
                Ok((status, body)) => {
                    json!({"url": uri.to_string(), "status": status.as_u16(), "body": body})
                }
                Err(error) => json!({"url": uri.to_string(), "error": error}),
            },
        );
    }
    let body = json!({
        "service": identity.service,
        "version": identity.version,
        "pod": identity.pod,
        "namespace": identity.namespace,
        "peer": peer.to_string(),
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "query": query,
        "headers": headers(request.headers()),
        "upstreams": upstreams,
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

async fn call(caller: Caller, RawQuery(raw): RawQuery, incoming: HeaderMap) -> Response {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let query: BTreeMap<String, String> = pairs.iter().cloned().collect();
    let method = match query
        .get("method")
        .map(|m| Method::from_bytes(m.as_bytes()))
    {
        None => Method::GET,
        Some(Ok(method)) => method,
        Some(Err(_)) => return bad_request("method: not an HTTP method".into()),
    };
    let mut extra = Vec::new();
    for (key, value) in &pairs {
        let header = match key.as_str() {
            "header" => value
                .split_once(':')
                .map(|(n, v)| (n.trim(), v.trim().to_owned())),
            "token" => Some(("authorization", format!("Bearer {value}"))),
            _ => continue,
        };
        match header.and_then(|(n, v)| {
            Some((
                HeaderName::from_bytes(n.as_bytes()).ok()?,
                HeaderValue::try_from(v).ok()?,
            ))
        }) {
            Some(header) => extra.push(header),
            None => return bad_request(format!("{key}={value:?}: not a header")),
        }
    }
    let request = Outgoing { method, extra };
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
    let concurrency = match query.get("concurrency").map(|c| c.parse::<u32>()) {
        None => 1,
        Some(Ok(n)) if (1..=64).contains(&n) => n,
        Some(_) => return bad_request("concurrency: expected 1 to 64".into()),
    };
    let rate = match query.get("rate").map(|r| r.parse::<u32>()) {
        None => None,
        Some(Ok(n)) if (1..=1000).contains(&n) => Some(n),
        Some(_) => return bad_request("rate: expected 1 to 1000 per second".into()),
    };
    let one = Arc::new(OneCall {
        caller,
        uri,
        incoming,
        user: query.get("user").cloned(),
        request,
    });
    let mut tasks = tokio::task::JoinSet::new();
    match rate {
        Some(rate) => {
            let start = tokio::time::Instant::now();
            for i in 0..u64::from(count) {
                let at =
                    start + std::time::Duration::from_nanos(i * 1_000_000_000 / u64::from(rate));
                tokio::time::sleep_until(at).await;
                let one = one.clone();
                tasks.spawn(async move { vec![one.call().await] });
            }
        }
        None => {
            for worker in 0..concurrency {
                let one = one.clone();
                let share = count / concurrency + u32::from(worker < count % concurrency);
                tasks.spawn(async move {
                    let mut done = Vec::new();
                    for _ in 0..share {
                        done.push(one.call().await);
                    }
                    done
                });
            }
        }
    }
    let mut versions = BTreeMap::<String, u32>::new();
    let mut statuses = BTreeMap::<String, u32>::new();
    let mut errors = BTreeMap::<String, u32>::new();
    let mut services = BTreeMap::<String, u32>::new();
    let mut slowest = BTreeMap::<String, u128>::new();
    let mut fastest = BTreeMap::<String, u128>::new();
    let mut took_ms = Vec::new();
    while let Some(done) = tasks.join_next().await {
        for (outcome, took) in done.unwrap_or_default() {
            took_ms.push(took.as_secs_f64() * 1000.0);
            match outcome {
                Ok((status, body)) => {
                    let status = status.as_u16().to_string();
                    let slow = slowest.entry(status.clone()).or_default();
                    *slow = (*slow).max(took.as_millis());
                    let fast = fastest.entry(status.clone()).or_insert(u128::MAX);
                    *fast = (*fast).min(took.as_millis());
                    *statuses.entry(status).or_default() += 1;
                    let version = body
                        .get("version")
                        .and_then(|v| v.as_str())
                        .unwrap_or("none")
                        .to_owned();
                    *versions.entry(version).or_default() += 1;
                    count_services(&body, &mut services);
                }
                Err(error) => *errors.entry(error).or_default() += 1,
            }
        }
    }
    took_ms.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        let rank = ((took_ms.len() as f64 * p).ceil() as usize).clamp(1, took_ms.len().max(1));
        took_ms.get(rank - 1).copied().unwrap_or(0.0)
    };
    Json(
        json!({"count": count, "versions": versions, "statuses": statuses, "errors": errors,
                "services": services, "slowest_ms": slowest, "fastest_ms": fastest,
                "p50_ms": percentile(0.5), "p99_ms": percentile(0.99)}),
    )
    .into_response()
}

/// What each call of one `/call` sends.
struct OneCall {
    caller: Caller,
    uri: axum::http::Uri,
    incoming: HeaderMap,
    user: Option<String>,
    request: Outgoing,
}

impl OneCall {
    /// One call, and how long it took.
    async fn call(
        &self,
    ) -> (
        Result<(StatusCode, serde_json::Value), String>,
        std::time::Duration,
    ) {
        let started = std::time::Instant::now();
        let outcome = get_json(
            &self.caller,
            self.uri.clone(),
            &self.incoming,
            self.user.as_deref(),
            &self.request,
        )
        .await;
        (outcome, started.elapsed())
    }
}

/// How long one call to another service may take.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// How a `/call` request differs from a plain GET.
#[derive(Default)]
struct Outgoing {
    method: Method,
    extra: Vec<(HeaderName, HeaderValue)>,
}

/// Requests `uri`, propagating `end-user` (or setting it to `user`) and
/// `x-request-id` from `incoming`; the status and the body as JSON (null
/// when it is not JSON).
async fn get_json(
    caller: &Caller,
    uri: axum::http::Uri,
    incoming: &HeaderMap,
    user: Option<&str>,
    outgoing: &Outgoing,
) -> Result<(StatusCode, serde_json::Value), String> {
    use http_body_util::BodyExt;
    let mut request = axum::http::Request::builder()
        .method(outgoing.method.clone())
        .uri(uri);
    for (name, value) in &outgoing.extra {
        request = request.header(name, value);
    }
    for name in PROPAGATED {
        if let Some(value) = incoming.get(name) {
            request = request.header(name, value);
        }
    }
    if let Some(user) = user {
        request = request.header("end-user", user);
    }
    let request = request
        .body(http_body_util::Empty::new())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = caller.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {CALL_TIMEOUT:?}")))
}

/// Counts `service:version` of an answer and of every answer nested under
/// its `upstreams`.
fn count_services(body: &serde_json::Value, services: &mut BTreeMap<String, u32>) {
    if let (Some(service), Some(version)) = (
        body.get("service").and_then(|s| s.as_str()),
        body.get("version").and_then(|v| v.as_str()),
    ) {
        *services.entry(format!("{service}:{version}")).or_default() += 1;
    }
    for upstream in body
        .get("upstreams")
        .and_then(|u| u.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(body) = upstream.get("body") {
            count_services(body, services);
        }
    }
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

/// Echoes every TCP connection to `port` back to its sender.
async fn tcp_echo(port: u16, log: bool, service: String) {
    let listener = tls::listen_or_exit(port, "TCP_ECHO_PORT").await;
    eprintln!("test-server echoing TCP on :{port}");
    while let Ok((mut stream, peer)) = listener.accept().await {
        if log {
            println!("tcp connection to :{port} from {peer}");
        }
        let service = service.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buffer).await {
                if &buffer[..n] == b"who" {
                    let _ = stream.write_all(service.as_bytes()).await;
                    break;
                }
                if n == 0 || stream.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// How long `/tcp` waits for the echo.
const TCP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn tcp_call(Query(query): Query<BTreeMap<String, String>>) -> Response {
    let (Some(addr), Some(message)) = (query.get("addr"), query.get("message")) else {
        return bad_request("addr= and message= are required".into());
    };
    let Some(count) = tally_count(&query) else {
        return bad_request(format!("count: expected 1 to {MAX_CONNECTIONS}"));
    };
    let mut first = None;
    let mut echoes = BTreeMap::<String, u32>::new();
    let mut errors = BTreeMap::<String, u32>::new();
    for _ in 0..count {
        let (echo, error) = tcp_once(addr, message).await;
        if let Some(error) = error {
            *errors.entry(error).or_default() += 1;
        } else {
            *echoes.entry(echo.clone()).or_default() += 1;
        }
        first.get_or_insert(echo);
    }
    let mut answer = json!({"echo": first.unwrap_or_default(), "echoes": echoes});
    if let Some((error, _)) = errors.iter().next() {
        answer["error"] = json!(error);
        answer["errors"] = json!(errors);
    }
    Json(answer).into_response()
}

/// Connections one `/tcp` or `/tls` may make, one after the other.
const MAX_CONNECTIONS: u32 = 2_000;

/// A query's `count` (1 when absent); none when out of bounds.
fn tally_count(query: &BTreeMap<String, String>) -> Option<u32> {
    match query.get("count").map(|c| c.parse::<u32>()) {
        None => Some(1),
        Some(Ok(n)) if (1..=MAX_CONNECTIONS).contains(&n) => Some(n),
        Some(_) => None,
    }
}

/// One `/tcp` exchange: what came back, and the error if it failed.
async fn tcp_once(addr: &str, message: &str) -> (String, Option<String>) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(message.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut echoed = Vec::new();
        let mut buffer = [0u8; 4096];
        while message == "who" || echoed.len() < message.len() {
            match stream.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => echoed.extend_from_slice(&buffer[..n]),
                Err(e) if echoed.is_empty() => return Err(format!("read: {e}")),
                Err(_) => break,
            }
        }
        Ok::<_, String>(String::from_utf8_lossy(&echoed).into_owned())
    };
    match tokio::time::timeout(TCP_TIMEOUT, exchange).await {
        Ok(Ok(echo)) => (echo, None),
        Ok(Err(error)) => (String::new(), Some(error)),
        Err(_) => (
            String::new(),
            Some(format!("no echo within {TCP_TIMEOUT:?}")),
        ),
    }
}

async fn jwks_get(keys: Arc<Mutex<Option<String>>>) -> Response {
    let stored = keys.lock().map(|k| k.clone()).unwrap_or_default();
    match stored {
        Some(keys) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            keys,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no key set stored yet").into_response(),
    }
}

async fn jwks_put(keys: Arc<Mutex<Option<String>>>, body: String) -> Response {
    match keys.lock() {
        Ok(mut keys) => {
            eprintln!("key set stored ({} bytes)", body.len());
            *keys = Some(body);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}
