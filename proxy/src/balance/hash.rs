//! Consistent hashing: a request's key (a header, a cookie, the source
//! address or a query parameter, as the DestinationRule says) and the
//! endpoint it maps to. The mapping is rendezvous hashing: each endpoint
//! scores `hash(key, endpoint)` and the highest wins, so a key stays on its
//! endpoint as long as that endpoint remains, and adding or removing one
//! endpoint moves only the keys it wins or held.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash};
use std::net::IpAddr;

use http::HeaderValue;
use http::header::COOKIE;
use plexus_config::HashKey;

use super::endpoint::Endpoint;
use crate::routing::matches::query_values;

fn hash(value: impl Hash) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

/// A request's hash key, and the cookie to set when the proxy made one up.
#[derive(Debug, PartialEq, Eq)]
pub struct Key {
    pub value: u64,
    /// `Set-Cookie` for the response: the cookie the key came from was
    /// absent and the policy gives it a lifetime, so the proxy chose one.
    pub set_cookie: Option<HeaderValue>,
}

/// What a request is hashed on.
pub struct Request<'a> {
    pub headers: &'a http::HeaderMap,
    pub query: Option<&'a str>,
    /// The address the app connected from.
    pub source: IpAddr,
}

/// The request's key under `policy`; None when the request does not carry
/// it (it is then balanced at random).
pub fn key(policy: &HashKey, request: &Request<'_>) -> Option<Key> {
    let value = |v: &str| Key {
        value: hash(v),
        set_cookie: None,
    };
    match policy {
        HashKey::Header(name) => {
            let values: Vec<&str> = request
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| value(&values.join(",")))
        }
        HashKey::QueryParameter(name) => {
            query_values(request.query, name).next().map(|v| value(&v))
        }
        HashKey::SourceIp => Some(Key {
            value: hash(request.source),
            set_cookie: None,
        }),
        HashKey::Cookie { name, path, ttl_ms } => {
            if let Some(found) = cookie(request.headers, name) {
                return Some(value(found));
            }
            // Envoy's behaviour: with a lifetime, make the cookie up.
            let ttl_ms = (*ttl_ms)?;
            let chosen = format!("{:016x}", fastrand::u64(..));
            let mut set = format!("{name}={chosen}; Max-Age={}; HttpOnly", ttl_ms / 1000);
            if let Some(path) = path {
                set.push_str(&format!("; Path={path}"));
            }
            Some(Key {
                value: hash(chosen.as_str()),
                set_cookie: HeaderValue::try_from(set).ok(),
            })
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The index of the endpoint `key` maps to (rendezvous hashing by address).
pub fn rendezvous<'a>(key: u64, endpoints: impl Iterator<Item = &'a Endpoint>) -> usize {
    endpoints
        .enumerate()
        .max_by_key(|(_, e)| hash((key, e.addr())))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn keys_come_from_what_the_policy_names() {
        let source = IpAddr::from([127, 0, 0, 1]);
        let with = headers(&[("x-user", "ann"), ("cookie", "a=1; session=s42")]);
        let request = Request {
            headers: &with,
            query: Some("shard=7&x=1"),
            source,
        };
        let header = key(&HashKey::Header("x-user".into()), &request).expect("a key");
        assert_eq!(header.value, hash("ann"));
        let query = key(&HashKey::QueryParameter("shard".into()), &request).expect("a key");
        assert_eq!(query.value, hash("7"));
        let cookie = HashKey::Cookie {
            name: "session".into(),
            path: None,
            ttl_ms: Some(60_000),
        };
        let found = key(&cookie, &request).expect("a key");
        assert_eq!((found.value, found.set_cookie), (hash("s42"), None));
        assert!(key(&HashKey::SourceIp, &request).is_some());
        // Absent: no key, unless the cookie has a lifetime: then one is made.
        let none = http::HeaderMap::new();
        let bare = Request {
            headers: &none,
            query: None,
            source,
        };
        assert_eq!(key(&HashKey::Header("x-user".into()), &bare), None);
        let made = key(&cookie, &bare).expect("a made-up cookie");
        let set = made.set_cookie.expect("Set-Cookie");
        let set = set.to_str().expect("text");
        assert!(
            set.starts_with("session=") && set.contains("Max-Age=60"),
            "{set}"
        );
        let no_ttl = HashKey::Cookie {
            name: "session".into(),
            path: None,
            ttl_ms: None,
        };
        assert_eq!(key(&no_ttl, &bare), None);
    }

    #[test]
    fn adding_an_endpoint_moves_only_the_keys_it_wins() {
        let endpoints = |n: u8| -> Vec<Arc<Endpoint>> {
            (0..n)
                .map(|i| {
                    Arc::new(Endpoint::new(crate::routing::EndpointSpec {
                        addr: ([127, 0, 0, 10 + i], 8080).into(),
                        identity: None,
                        origination: None,
                    }))
                })
                .collect()
        };
        let (nine, ten) = (endpoints(9), endpoints(10));
        let moved = (0..1000u64)
            .filter(|k| {
                let before = nine[rendezvous(*k, nine.iter().map(|e| &**e))].addr();
                let after = ten[rendezvous(*k, ten.iter().map(|e| &**e))].addr();
                before != after
            })
            .count();
        // The tenth endpoint takes about a tenth of the keys, and only those.
        assert!((50..=150).contains(&moved), "{moved} of 1000 keys moved");
    }
}
