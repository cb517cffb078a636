//! ServiceProfile routes (Linkerd), compiled once per configuration
//! version: a request takes the first route whose condition holds (method,
//! a path regex matching the whole path, all/any/not); the route names it
//! in metrics, may make it retryable (within the retry budget), gives it a
//! timeout, and says which answers are failures (its `responseClasses`
//! with `isFailure`; 5xx without them).

use plexus_config::{Profile, ProfileRoute, RequestCondition, RetryBudget};
use regex::Regex;

use super::matches::TableError;

/// Linkerd's default budget, for a profile that sets none.
pub fn default_budget() -> RetryBudget {
    RetryBudget {
        ratio: 0.2,
        min_per_second: 10,
        ttl_ms: 10_000,
    }
}

/// A compiled condition.
#[derive(Debug)]
enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Path(Regex),
    Method(String),
}

impl Condition {
    fn compile(c: &RequestCondition, route: &str) -> Result<Self, TableError> {
        let all = |cs: &[RequestCondition]| {
            cs.iter()
                .map(|c| Self::compile(c, route))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(match c {
            RequestCondition::All(cs) => Self::All(all(cs)?),
            RequestCondition::Any(cs) => Self::Any(all(cs)?),
            RequestCondition::Not(c) => Self::Not(Box::new(Self::compile(c, route)?)),
            RequestCondition::Method(m) => Self::Method(m.to_ascii_uppercase()),
            RequestCondition::PathRegex(pattern) => Self::Path(
                Regex::new(&format!("^(?:{pattern})$")).map_err(|error| TableError {
                    route: route.to_owned(),
                    pattern: pattern.clone(),
                    error,
                })?,
            ),
        })
    }

    fn holds(&self, method: &str, path: &str) -> bool {
        match self {
            Self::All(cs) => cs.iter().all(|c| c.holds(method, path)),
            Self::Any(cs) => cs.iter().any(|c| c.holds(method, path)),
            Self::Not(c) => !c.holds(method, path),
            Self::Path(r) => r.is_match(path),
            Self::Method(m) => m == method,
        }
    }
}

/// A compiled route.
#[derive(Debug)]
pub struct ProfileRouteMatch {
    pub spec: ProfileRoute,
    /// `ServiceProfile/<namespace>/<name>/<route>`: its name in metrics.
    pub label: String,
    condition: Condition,
}

impl ProfileRouteMatch {
    /// Whether an answer with `status` is a failure on this route.
    pub fn is_failure(&self, status: u16) -> bool {
        failure(&self.spec.failure_statuses, status)
    }
}

/// Whether `status` is a failure under `ranges` (5xx when there are none).
pub fn failure(ranges: &[(u16, u16)], status: u16) -> bool {
    if ranges.is_empty() {
        status >= 500
    } else {
        ranges
            .iter()
            .any(|(min, max)| (*min..=*max).contains(&status))
    }
}

/// A service's compiled profile.
#[derive(Debug)]
pub struct CompiledProfile {
    routes: Vec<ProfileRouteMatch>,
}

impl CompiledProfile {
    pub fn compile(profile: &Profile) -> Result<Self, TableError> {
        let routes = profile
            .routes
            .iter()
            .map(|r| {
                let label = format!("{}/{}", profile.name, r.name);
                Ok(ProfileRouteMatch {
                    condition: Condition::compile(&r.condition, &label)?,
                    spec: r.clone(),
                    label,
                })
            })
            .collect::<Result<_, TableError>>()?;
        Ok(Self { routes })
    }

    /// The first route a request takes.
    pub fn route(&self, method: &str, path: &str) -> Option<&ProfileRouteMatch> {
        self.routes.iter().find(|r| r.condition.holds(method, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_route_whose_condition_holds() {
        let route = |name: &str, condition| ProfileRoute {
            name: name.into(),
            condition,
            ..Default::default()
        };
        let profile = Profile {
            name: "ServiceProfile/demo/web".into(),
            routes: vec![
                route(
                    "get-user",
                    RequestCondition::All(vec![
                        RequestCondition::Method("GET".into()),
                        RequestCondition::PathRegex("/users/[0-9]+".into()),
                    ]),
                ),
                route(
                    "not-get",
                    RequestCondition::Not(Box::new(RequestCondition::Method("GET".into()))),
                ),
            ],
            retry_budget: None,
        };
        let compiled = CompiledProfile::compile(&profile).expect("compiles");
        let name = |m, p| compiled.route(m, p).map(|r| r.label.as_str());
        assert_eq!(
            name("GET", "/users/7"),
            Some("ServiceProfile/demo/web/get-user")
        );
        assert_eq!(
            name("GET", "/users/7/x"),
            None,
            "the regex matches the whole path"
        );
        assert_eq!(
            name("POST", "/users/7"),
            Some("ServiceProfile/demo/web/not-get")
        );
        assert!(failure(&[], 503) && !failure(&[], 404));
        assert!(failure(&[(418, 418)], 418) && !failure(&[(418, 418)], 500));
    }
}
