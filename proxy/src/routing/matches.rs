//! Whether a request takes a route: the route's matches compiled once per
//! configuration version (regexes among them) and evaluated per request.

use std::collections::BTreeMap;

use plexus_config::{HttpMatch, StringMatch};
use regex::Regex;

/// A configuration that cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("route {route}: regex {pattern:?}: {error}")]
pub struct TableError {
    pub route: String,
    pub pattern: String,
    pub error: regex::Error,
}

/// A compiled string condition.
#[derive(Debug)]
pub(super) enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    Present,
}

impl Matcher {
    pub(super) fn compile(m: &StringMatch, route: &str) -> Result<Self, TableError> {
        Ok(match m {
            StringMatch::Exact(s) => Self::Exact(s.clone()),
            StringMatch::Prefix(s) => Self::Prefix(s.clone()),
            StringMatch::Present(_) => Self::Present,
            StringMatch::Regex(pattern) => {
                Self::Regex(Regex::new(&format!("^(?:{pattern})$")).map_err(|error| {
                    TableError {
                        route: route.to_owned(),
                        pattern: pattern.clone(),
                        error,
                    }
                })?)
            }
        })
    }

    pub(super) fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => value == s,
            Self::Prefix(s) => value.starts_with(s.as_str()),
            Self::Regex(r) => r.is_match(value),
            Self::Present => true,
        }
    }
}

/// What a request is matched on.
pub struct RequestInfo<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authority: &'a str,
    pub scheme: &'a str,
    pub port: u16,
    pub headers: &'a http::HeaderMap,
}

/// Who sends the request: the pod this proxy runs in.
pub struct Source<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub namespace: &'a str,
}

/// One compiled match: every condition must hold.
#[derive(Debug)]
pub struct Match {
    uri: Option<Matcher>,
    ignore_uri_case: bool,
    scheme: Option<Matcher>,
    method: Option<Matcher>,
    authority: Option<Matcher>,
    headers: Vec<(String, Matcher)>,
    without_headers: Vec<(String, Matcher)>,
    query_params: Vec<(String, Matcher)>,
    port: Option<u16>,
    source_labels: BTreeMap<String, String>,
    source_namespace: Option<String>,
}

impl Match {
    pub fn compile(m: &HttpMatch, route: &str) -> Result<Self, TableError> {
        let one =
            |m: &Option<StringMatch>| m.as_ref().map(|m| Matcher::compile(m, route)).transpose();
        let all = |ms: &BTreeMap<String, StringMatch>| {
            ms.iter()
                .map(|(k, m)| Ok((k.to_ascii_lowercase(), Matcher::compile(m, route)?)))
                .collect::<Result<Vec<_>, TableError>>()
        };
        let uri = match (&m.uri, m.ignore_uri_case) {
            (Some(StringMatch::Exact(s)), true) => Some(Matcher::Exact(s.to_lowercase())),
            (Some(StringMatch::Prefix(s)), true) => Some(Matcher::Prefix(s.to_lowercase())),
            (Some(StringMatch::Regex(r)), true) => Some(Matcher::compile(
                &StringMatch::Regex(format!("(?i:{r})")),
                route,
            )?),
            _ => one(&m.uri)?,
        };
        Ok(Self {
            uri,
            ignore_uri_case: m.ignore_uri_case,
            scheme: one(&m.scheme)?,
            method: one(&m.method)?,
            authority: one(&m.authority)?,
            headers: all(&m.headers)?,
            without_headers: all(&m.without_headers)?,
            query_params: all(&m.query_params)?,
            port: m.port,
            source_labels: m.source_labels.clone(),
            source_namespace: m.source_namespace.clone(),
        })
    }

    pub fn matches(&self, request: &RequestInfo<'_>, source: &Source<'_>) -> bool {
        let header = |name: &str| {
            request
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
        };
        let path_ok = match &self.uri {
            None => true,
            Some(Matcher::Regex(r)) => r.is_match(request.path),
            Some(m) if self.ignore_uri_case => m.matches(&request.path.to_lowercase()),
            Some(m) => m.matches(request.path),
        };
        path_ok
            && self.port.is_none_or(|p| p == request.port)
            && self
                .scheme
                .as_ref()
                .is_none_or(|m| m.matches(request.scheme))
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.matches(request.method))
            && self
                .authority
                .as_ref()
                .is_none_or(|m| m.matches(request.authority))
            && self
                .headers
                .iter()
                .all(|(name, m)| header(name).iter().any(|v| m.matches(v)))
            && !self
                .without_headers
                .iter()
                .any(|(name, m)| header(name).iter().any(|v| m.matches(v)))
            && self
                .query_params
                .iter()
                .all(|(name, m)| query_values(request.query, name).any(|v| m.matches(&v)))
            && self
                .source_labels
                .iter()
                .all(|(k, v)| source.labels.get(k) == Some(v))
            && self
                .source_namespace
                .as_ref()
                .is_none_or(|ns| ns == source.namespace)
    }
}

/// The values of a query parameter, percent-decoded.
pub fn query_values<'a>(
    query: Option<&'a str>,
    name: &'a str,
) -> impl Iterator<Item = String> + 'a {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(move |pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key) == name).then(|| decode(value))
        })
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_values() {
        assert_eq!(decode("a%20b+c%2"), "a b c%2");
        assert_eq!(
            query_values(Some("x=1&y&x=2"), "x").collect::<Vec<_>>(),
            ["1", "2"]
        );
    }
}
