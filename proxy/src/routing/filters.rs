//! What a route does to a request besides choosing its backend: answer it
//! itself (direct response, redirect), rewrite its path and authority, and
//! change headers of requests and responses.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode, Uri};
use plexus_config::HeaderOps;

use super::route::Route;
use crate::http::{Body, full};

/// A direct response or a redirect: the answer, without any upstream.
pub fn short_circuit(
    route: &Route,
    parts: &http::request::Parts,
    host: &str,
) -> Option<Response<Body>> {
    let spec = &route.spec;
    if let Some(direct) = &spec.direct_response {
        let mut response = Response::new(full(direct.body.clone().unwrap_or_default()));
        *response.status_mut() = StatusCode::from_u16(direct.status).unwrap_or(StatusCode::OK);
        return Some(response);
    }
    let redirect = spec.redirect.as_ref()?;
    let scheme = redirect.scheme.as_deref().unwrap_or("http");
    let mut authority = redirect
        .authority
        .clone()
        .unwrap_or_else(|| host.to_owned());
    if let Some(port) = redirect.port {
        let name = authority
            .rsplit_once(':')
            .map(|(h, _)| h.to_owned())
            .unwrap_or(authority);
        authority = format!("{name}:{port}");
    }
    let path = redirect.uri.clone().unwrap_or_else(|| {
        parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default()
    });
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() =
        StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    if let Ok(location) = HeaderValue::try_from(format!("{scheme}://{authority}{path}")) {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    Some(response)
}

/// A route's rewrite of the path and authority.
pub fn rewrite(route: &Route, parts: &mut http::request::Parts, host: &mut String) {
    let Some(rewrite) = &route.spec.rewrite else {
        return;
    };
    if let Some(authority) = &rewrite.authority {
        host.clone_from(authority);
    }
    let path = parts.uri.path().to_owned();
    let new_path = if rewrite.uri_regex.is_some() {
        match &route.rewrite_regex {
            Some((regex, replacement)) => {
                regex.replace_all(&path, replacement.as_str()).into_owned()
            }
            None => path,
        }
    } else if let Some(uri) = &rewrite.uri {
        // The matched prefix is replaced; for other matches, the whole path.
        match route.matched_prefix(&path) {
            Some(prefix) => format!("{uri}{}", &path[prefix.len()..]),
            None => uri.clone(),
        }
    } else {
        return;
    };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    if let Ok(uri) = Uri::try_from(format!("{new_path}{query}")) {
        parts.uri = uri;
    }
}

/// Removes, sets and adds headers, in that order.
pub fn apply_header_ops(headers: &mut http::HeaderMap, ops: &HeaderOps) {
    for name in &ops.remove {
        headers.remove(name.as_str());
    }
    for (name, value) in &ops.set {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    }
    for (name, value) in &ops.add {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
}
