//! A route's CORS policy (VirtualService `corsPolicy`), as Envoy's CORS
//! filter applies it where the route is chosen: a preflight (OPTIONS with
//! Origin and Access-Control-Request-Method) from an allowed origin is
//! answered by the proxy, 200 with the policy's headers; one from another
//! origin is forwarded to the app, or answered without CORS headers when the
//! policy says IGNORE. Other requests from an allowed origin go on, and
//! their answers get Access-Control-Allow-Origin (the request's origin),
//! -Allow-Credentials and -Expose-Headers. Requests without Origin are
//! left alone.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, HeaderName, HeaderValue, ORIGIN,
};
use http::{HeaderMap, Method};
use plexus_config::{Cors, StringMatch};

use super::matches::{Matcher, TableError};

/// Headers an answer gets.
pub type CorsHeaders = Vec<(HeaderName, HeaderValue)>;

/// A CORS policy compiled for one configuration version.
#[derive(Debug)]
pub struct CorsPolicy {
    origins: Vec<Matcher>,
    /// Any origin (`*` exactly).
    any: bool,
    methods: Option<HeaderValue>,
    headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    credentials: bool,
    ignore_unmatched: bool,
}

/// What the policy makes of a request.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Not a cross-origin request, or one the policy does not allow: on
    /// as it is.
    Pass,
    /// An allowed request: on, and its answer gets these headers.
    Allowed(CorsHeaders),
    /// A preflight the proxy answers (200) with these headers.
    Preflight(CorsHeaders),
}

/// Header values joined with commas; none when empty or not valid.
fn joined(values: &[String]) -> Option<HeaderValue> {
    if values.is_empty() {
        return None;
    }
    HeaderValue::try_from(values.join(",")).ok()
}

impl CorsPolicy {
    pub fn compile(spec: &Cors, route: &str) -> Result<Self, TableError> {
        Ok(Self {
            origins: spec
                .allow_origins
                .iter()
                .map(|m| Matcher::compile(m, route))
                .collect::<Result<_, _>>()?,
            any: spec
                .allow_origins
                .iter()
                .any(|m| matches!(m, StringMatch::Exact(o) if o == "*")),
            methods: joined(&spec.allow_methods),
            headers: joined(&spec.allow_headers),
            expose: joined(&spec.expose_headers),
            max_age: spec.max_age_s.map(HeaderValue::from),
            credentials: spec.allow_credentials,
            ignore_unmatched: spec.ignore_unmatched_preflights,
        })
    }

    /// The verdict on a request with `method` and `headers`.
    pub fn verdict(&self, method: &Method, headers: &HeaderMap) -> Verdict {
        let Some(origin) = headers.get(ORIGIN) else {
            return Verdict::Pass;
        };
        let preflight =
            method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        let allowed = self.any
            || origin
                .to_str()
                .is_ok_and(|o| self.origins.iter().any(|m| m.matches(o)));
        let mut answer = CorsHeaders::new();
        if !allowed {
            return if preflight && self.ignore_unmatched {
                Verdict::Preflight(answer)
            } else {
                Verdict::Pass
            };
        }
        answer.push((ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
        if self.credentials {
            answer.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if !preflight {
            if let Some(expose) = &self.expose {
                answer.push((ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone()));
            }
            return Verdict::Allowed(answer);
        }
        let fields = [
            (ACCESS_CONTROL_ALLOW_METHODS, &self.methods),
            (ACCESS_CONTROL_ALLOW_HEADERS, &self.headers),
            (ACCESS_CONTROL_MAX_AGE, &self.max_age),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                answer.push((name, value.clone()));
            }
        }
        Verdict::Preflight(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(spec: Cors) -> CorsPolicy {
        CorsPolicy::compile(&spec, "r").expect("compiles")
    }

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::try_from(*k).expect("name"),
                    HeaderValue::try_from(*v).expect("value"),
                )
            })
            .collect()
    }

    fn names(headers: &CorsHeaders) -> Vec<(&str, &str)> {
        headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().expect("text")))
            .collect()
    }

    #[test]
    fn origins_match_exactly_by_prefix_or_regex() {
        let cors = policy(Cors {
            allow_origins: vec![
                StringMatch::Exact("https://a.example".into()),
                StringMatch::Prefix("https://b.".into()),
                StringMatch::Regex(r"https://[a-z]+\.c\.example".into()),
            ],
            ..Default::default()
        });
        for (origin, allowed) in [
            ("https://a.example", true),
            ("https://a.example.evil", false),
            ("https://b.anything", true),
            ("https://x.c.example", true),
            ("https://x.c.example.evil", false),
            ("http://a.example", false),
        ] {
            let verdict = cors.verdict(&Method::GET, &request(&[("origin", origin)]));
            assert_eq!(matches!(verdict, Verdict::Allowed(_)), allowed, "{origin}");
        }
        assert_eq!(cors.verdict(&Method::GET, &HeaderMap::new()), Verdict::Pass);
    }

    #[test]
    fn a_preflight_gets_the_policy_and_an_answer_its_share() {
        let cors = policy(Cors {
            allow_origins: vec![StringMatch::Exact("*".into())],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["x-a".into(), "x-b".into()],
            expose_headers: vec!["x-c".into()],
            max_age_s: Some(86400),
            allow_credentials: true,
            ..Default::default()
        });
        let preflight = request(&[
            ("origin", "https://any.example"),
            ("access-control-request-method", "POST"),
        ]);
        let Verdict::Preflight(headers) = cors.verdict(&Method::OPTIONS, &preflight) else {
            panic!("a preflight");
        };
        assert_eq!(
            names(&headers),
            [
                ("access-control-allow-origin", "https://any.example"),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "GET,POST"),
                ("access-control-allow-headers", "x-a,x-b"),
                ("access-control-max-age", "86400"),
            ]
        );
        // OPTIONS without Access-Control-Request-Method is no preflight.
        let plain = request(&[("origin", "https://any.example")]);
        let Verdict::Allowed(headers) = cors.verdict(&Method::OPTIONS, &plain) else {
            panic!("an allowed request");
        };
        assert_eq!(
            names(&headers),
            [
                ("access-control-allow-origin", "https://any.example"),
                ("access-control-allow-credentials", "true"),
                ("access-control-expose-headers", "x-c"),
            ]
        );
    }

    #[test]
    fn unmatched_preflights_are_forwarded_or_answered_bare() {
        let spec = Cors {
            allow_origins: vec![StringMatch::Exact("https://a.example".into())],
            ..Default::default()
        };
        let preflight = request(&[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "DELETE"),
        ]);
        assert_eq!(
            policy(spec.clone()).verdict(&Method::OPTIONS, &preflight),
            Verdict::Pass
        );
        let ignoring = policy(Cors {
            ignore_unmatched_preflights: true,
            ..spec
        });
        assert_eq!(
            ignoring.verdict(&Method::OPTIONS, &preflight),
            Verdict::Preflight(Vec::new())
        );
    }
}
