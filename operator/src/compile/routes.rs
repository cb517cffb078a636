//! HTTP matches and routes, shared by VirtualServices (sidecar and Gateway
//! routes) and rate limits.

use plexus_config as cfg;
use plexus_crds::common::{HeaderOperations, StringMatch};
use plexus_crds::virtual_service::{
    CorsPolicy, Destination, Headers, HttpMatchRequest, HttpRoute, UnmatchedPreflights,
};

use super::check::Check;

/// Converts a string match; an empty one means presence where allowed.
pub fn string_match(
    check: &mut Check,
    path: &str,
    m: &StringMatch,
    presence: bool,
) -> Option<cfg::StringMatch> {
    let set = [&m.exact, &m.prefix, &m.regex]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if set > 1 {
        check.invalid(path, "set only one of exact, prefix and regex");
        return None;
    }
    if let Some(regex) = &m.regex {
        check.regex(format!("{path}.regex"), regex);
        return Some(cfg::StringMatch::Regex(regex.clone()));
    }
    match (&m.exact, &m.prefix) {
        (Some(v), _) => Some(cfg::StringMatch::Exact(v.clone())),
        (_, Some(v)) => Some(cfg::StringMatch::Prefix(v.clone())),
        _ if presence => Some(cfg::StringMatch::Present(true)),
        _ => {
            check.invalid(path, "set one of exact, prefix and regex");
            None
        }
    }
}

/// Converts a request match.
pub fn http_match(check: &mut Check, path: &str, m: &HttpMatchRequest) -> cfg::HttpMatch {
    let one = |field: &str, value: &Option<StringMatch>, check: &mut Check| {
        value
            .as_ref()
            .and_then(|v| string_match(check, &format!("{path}.{field}"), v, false))
    };
    let uri = one("uri", &m.uri, check);
    let scheme = one("scheme", &m.scheme, check);
    let method = one("method", &m.method, check);
    let authority = one("authority", &m.authority, check);
    let map = |field: &str,
               values: &std::collections::BTreeMap<String, StringMatch>,
               lowercase: bool,
               check: &mut Check| {
        values
            .iter()
            .filter_map(|(name, v)| {
                let key = if lowercase {
                    name.to_ascii_lowercase()
                } else {
                    name.clone()
                };
                string_match(check, &format!("{path}.{field}.{name}"), v, true).map(|m| (key, m))
            })
            .collect()
    };
    let headers = map("headers", &m.headers, true, check);
    let without_headers = map("withoutHeaders", &m.without_headers, true, check);
    let query_params = map("queryParams", &m.query_params, false, check);
    let port = m.port.map(|p| check.port(format!("{path}.port"), p));
    cfg::HttpMatch {
        uri,
        scheme,
        method,
        authority,
        headers,
        without_headers,
        query_params,
        port,
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
        ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
    }
}

/// Converts header operations.
pub fn header_ops(ops: &Option<HeaderOperations>) -> cfg::HeaderOps {
    ops.as_ref()
        .map(|o| cfg::HeaderOps {
            set: o.set.clone(),
            add: o.add.clone(),
            remove: o.remove.clone(),
        })
        .unwrap_or_default()
}

/// Converts header rules.
pub fn headers(headers: &Option<Headers>) -> cfg::HeaderRules {
    headers
        .as_ref()
        .map(|h| cfg::HeaderRules {
            request: header_ops(&h.request),
            response: header_ops(&h.response),
        })
        .unwrap_or_default()
}

/// Resolves a route's destination to a fully qualified host, checking the
/// host, port and subset exist.
pub trait Destinations {
    /// The host, or `None` (with a problem recorded) when it does not resolve.
    fn resolve(&self, check: &mut Check, path: &str, destination: &Destination) -> Option<String>;
}

/// Converts weighted destinations, checking the weights.
pub fn backends(
    check: &mut Check,
    path: &str,
    destinations: &[(&Destination, Option<i32>, cfg::HeaderRules)],
    resolver: &dyn Destinations,
) -> Vec<cfg::Backend> {
    // A redirect or direct response has no destinations, and no weights.
    if destinations.is_empty() {
        return Vec::new();
    }
    let single = destinations.len() == 1;
    let mut total: i64 = 0;
    let mut backends = Vec::new();
    for (i, (destination, weight, headers)) in destinations.iter().enumerate() {
        let dpath = format!("{path}[{i}]");
        let weight = match weight {
            _ if single => 100,
            Some(w) if *w < 0 => {
                check.invalid(format!("{dpath}.weight"), format!("{w} is negative"));
                0
            }
            Some(w) => *w,
            None => 0,
        };
        total += i64::from(weight);
        let host = resolver.resolve(check, &format!("{dpath}.destination"), destination);
        if let Some(host) = host {
            backends.push(cfg::Backend {
                host,
                port: destination
                    .port
                    .as_ref()
                    .map(|p| check.port(format!("{dpath}.destination.port.number"), p.number)),
                subset: destination.subset.clone(),
                weight: u32::try_from(weight).unwrap_or(0),
                headers: headers.clone(),
            });
        }
    }
    if !single && total != 100 {
        check.invalid(
            format!("{path}[*].weight"),
            format!("weights sum to {total}, not 100"),
        );
    }
    backends.retain(|b| b.weight > 0);
    backends
}

/// Converts a VirtualService HTTP route.
pub fn http_route(
    check: &mut Check,
    path: &str,
    route: &HttpRoute,
    origin: String,
    resolver: &dyn Destinations,
) -> cfg::HttpRoute {
    let matches = route
        .matches
        .iter()
        .enumerate()
        .map(|(i, m)| http_match(check, &format!("{path}.match[{i}]"), m))
        .collect();
    let actions = [
        !route.route.is_empty(),
        route.redirect.is_some(),
        route.direct_response.is_some(),
    ]
    .iter()
    .filter(|a| **a)
    .count();
    if actions != 1 && route.delegate.is_none() {
        check.invalid(
            path,
            "set exactly one of route, redirect and directResponse",
        );
    }
    let destinations: Vec<_> = route
        .route
        .iter()
        .map(|r| (&r.destination, r.weight, headers(&r.headers)))
        .collect();
    let backends = backends(check, &format!("{path}.route"), &destinations, resolver);
    let redirect = route.redirect.as_ref().map(|r| {
        let status = r.redirect_code.unwrap_or(301);
        if !(300..400).contains(&status) {
            check.invalid(
                format!("{path}.redirect.redirectCode"),
                format!("{status} is not a 3xx status"),
            );
        }
        cfg::Redirect {
            uri: r.uri.clone(),
            authority: r.authority.clone(),
            port: r
                .port
                .map(|p| check.port(format!("{path}.redirect.port"), p)),
            scheme: r.scheme.clone(),
            status: u16::try_from(status).unwrap_or(301),
        }
    });
    let direct_response = route.direct_response.as_ref().map(|d| {
        if !(200..600).contains(&d.status) {
            check.invalid(
                format!("{path}.directResponse.status"),
                format!("{} is not an HTTP status", d.status),
            );
        }
        cfg::DirectResponse {
            status: u16::try_from(d.status).unwrap_or(500),
            body: d.body.as_ref().and_then(|b| b.string.clone()),
        }
    });
    let rewrite = route.rewrite.as_ref().map(|r| {
        if let Some(rr) = &r.uri_regex_rewrite {
            check.regex(format!("{path}.rewrite.uriRegexRewrite.match"), &rr.pattern);
        }
        cfg::Rewrite {
            uri: r.uri.clone(),
            authority: r.authority.clone(),
            uri_regex: r
                .uri_regex_rewrite
                .as_ref()
                .map(|rr| (rr.pattern.clone(), rr.rewrite.clone())),
        }
    });
    let timeout_ms = route
        .timeout
        .as_ref()
        .and_then(|t| check.duration(format!("{path}.timeout"), t));
    let retries = route.retries.as_ref().map(|r| {
        let attempts = r.attempts.unwrap_or(2);
        if attempts < 0 {
            check.invalid(
                format!("{path}.retries.attempts"),
                format!("{attempts} is negative"),
            );
        }
        let retry_on: Vec<cfg::RetryOn> = r
            .retry_on
            .as_deref()
            .unwrap_or("5xx,gateway-error,connect-failure,refused-stream")
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .filter_map(|c| check.parse(format!("{path}.retries.retryOn"), c))
            .collect();
        cfg::Retry {
            attempts: u32::try_from(attempts).unwrap_or(0),
            per_try_timeout_ms: r
                .per_try_timeout
                .as_ref()
                .and_then(|t| check.duration(format!("{path}.retries.perTryTimeout"), t)),
            retry_on,
            backoff_ms: r
                .backoff
                .as_ref()
                .and_then(|t| check.duration(format!("{path}.retries.backoff"), t)),
        }
    });
    let fault = route.fault.as_ref().map(|f| cfg::Fault {
        delay: f.delay.as_ref().and_then(|d| {
            let percent = d
                .percentage
                .as_ref()
                .map(|p| p.value)
                .or(d.percent.map(f64::from))
                .unwrap_or(100.0);
            let percent = check.percent(format!("{path}.fault.delay.percentage"), percent);
            let delay_ms = d
                .fixed_delay
                .as_ref()
                .and_then(|t| check.duration(format!("{path}.fault.delay.fixedDelay"), t))?;
            Some(cfg::FaultDelay { delay_ms, percent })
        }),
        abort: f.abort.as_ref().and_then(|a| {
            let percent = a.percentage.as_ref().map(|p| p.value).unwrap_or(100.0);
            let percent = check.percent(format!("{path}.fault.abort.percentage"), percent);
            let status = a.http_status?;
            if !(200..600).contains(&status) {
                check.invalid(
                    format!("{path}.fault.abort.httpStatus"),
                    format!("{status} is not an HTTP status"),
                );
            }
            Some(cfg::FaultAbort {
                status: u16::try_from(status).unwrap_or(500),
                percent,
            })
        }),
    });
    let mut mirrors = Vec::new();
    if let Some(mirror) = &route.mirror {
        let percent = route
            .mirror_percentage
            .as_ref()
            .map(|p| p.value)
            .or(route.mirror_percent.map(f64::from))
            .unwrap_or(100.0);
        let percent = check.percent(format!("{path}.mirrorPercentage"), percent);
        if let Some(host) = resolver.resolve(check, &format!("{path}.mirror"), mirror) {
            mirrors.push(cfg::Mirror {
                host,
                port: mirror
                    .port
                    .as_ref()
                    .and_then(|p| u16::try_from(p.number).ok()),
                subset: mirror.subset.clone(),
                percent,
            });
        }
    }
    for (i, m) in route.mirrors.iter().enumerate() {
        let percent = m.percentage.as_ref().map(|p| p.value).unwrap_or(100.0);
        let percent = check.percent(format!("{path}.mirrors[{i}].percentage"), percent);
        if let Some(host) = resolver.resolve(
            check,
            &format!("{path}.mirrors[{i}].destination"),
            &m.destination,
        ) {
            mirrors.push(cfg::Mirror {
                host,
                port: m
                    .destination
                    .port
                    .as_ref()
                    .and_then(|p| u16::try_from(p.number).ok()),
                subset: m.destination.subset.clone(),
                percent,
            });
        }
    }
    cfg::HttpRoute {
        name: match &route.name {
            Some(name) => format!("{origin}/{name}"),
            None => origin,
        },
        matches,
        backends,
        redirect,
        direct_response,
        rewrite,
        timeout_ms,
        retries,
        fault,
        mirrors,
        headers: headers(&route.headers),
        cors: route
            .cors_policy
            .as_ref()
            .map(|c| cors(check, &format!("{path}.corsPolicy"), c)),
    }
}

/// Converts a CORS policy; the deprecated `allowOrigin` are exact origins.
fn cors(check: &mut Check, path: &str, policy: &CorsPolicy) -> cfg::Cors {
    let mut allow_origins: Vec<cfg::StringMatch> = policy
        .allow_origins
        .iter()
        .enumerate()
        .filter_map(|(i, m)| string_match(check, &format!("{path}.allowOrigins[{i}]"), m, false))
        .collect();
    allow_origins.extend(
        policy
            .allow_origin
            .iter()
            .map(|o| cfg::StringMatch::Exact(o.clone())),
    );
    cfg::Cors {
        allow_origins,
        allow_methods: policy.allow_methods.clone(),
        allow_headers: policy.allow_headers.clone(),
        expose_headers: policy.expose_headers.clone(),
        max_age_s: policy
            .max_age
            .as_ref()
            .and_then(|d| check.duration(format!("{path}.maxAge"), d))
            .map(|ms| ms / 1000),
        allow_credentials: policy.allow_credentials.unwrap_or(false),
        ignore_unmatched_preflights: policy.unmatched_preflights
            == Some(UnmatchedPreflights::Ignore),
    }
}
