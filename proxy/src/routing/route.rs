//! A route compiled for one configuration version: its matches, the
//! cumulative weights of its backends, and its rewrite regex.

use plexus_config::{Backend, HttpRoute, StringMatch};
use regex::Regex;

use super::cors::CorsPolicy;
use super::matches::{Match, RequestInfo, Source, TableError};

/// A compiled route: the configuration's route and its matches.
#[derive(Debug)]
pub struct Route {
    pub spec: HttpRoute,
    matches: Vec<Match>,
    /// Backends with the cumulative weight up to and including each.
    cumulative: Vec<u32>,
    /// The rewrite's path regex, compiled (unanchored, as written), and its
    /// replacement in the regex crate's syntax.
    pub rewrite_regex: Option<(Regex, String)>,
    pub cors: Option<CorsPolicy>,
}

impl Route {
    pub fn compile(spec: &HttpRoute) -> Result<Self, TableError> {
        let matches = spec
            .matches
            .iter()
            .map(|m| Match::compile(m, &spec.name))
            .collect::<Result<_, _>>()?;
        let cumulative = spec
            .backends
            .iter()
            .scan(0u32, |sum, b| {
                *sum += b.weight;
                Some(*sum)
            })
            .collect();
        // A regex that does not compile leaves paths as they are (the
        // operator refuses such a route).
        let rewrite_regex = spec
            .rewrite
            .as_ref()
            .and_then(|r| r.uri_regex.as_ref())
            .and_then(|(pattern, replacement)| {
                Some((Regex::new(pattern).ok()?, replacement_syntax(replacement)))
            });
        let cors = spec
            .cors
            .as_ref()
            .map(|c| CorsPolicy::compile(c, &spec.name))
            .transpose()?;
        Ok(Self {
            spec: spec.clone(),
            matches,
            cumulative,
            rewrite_regex,
            cors,
        })
    }

    /// Whether the request takes this route.
    pub fn matches(&self, request: &RequestInfo<'_>, source: &Source<'_>) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(request, source))
    }

    /// The backend for a number drawn below the weights' total (see
    /// [`Route::total_weight`]); None when the route has no backends.
    pub fn backend(&self, draw: u32) -> Option<&Backend> {
        let index = self.cumulative.iter().position(|&sum| draw < sum)?;
        self.spec.backends.get(index)
    }

    pub fn total_weight(&self) -> u32 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The prefix a match of this route matched `path` with, if any.
    pub fn matched_prefix(&self, path: &str) -> Option<&str> {
        self.spec.matches.iter().find_map(|m| match &m.uri {
            Some(StringMatch::Prefix(prefix)) if path.starts_with(prefix.as_str()) => {
                Some(prefix.as_str())
            }
            _ => None,
        })
    }
}

/// Istio's (RE2's) replacement syntax, `\1` for a group, in the regex
/// crate's: `${1}`, with a literal `$` doubled.
fn replacement_syntax(re2: &str) -> String {
    let mut out = String::with_capacity(re2.len());
    let mut chars = re2.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut group = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    group.push(*d);
                    chars.next();
                }
                out.push_str(&format!("${{{group}}}"));
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_replacements_become_the_regex_crates() {
        assert_eq!(
            replacement_syntax(r"/people/\1/x\12"),
            "/people/${1}/x${12}"
        );
        assert_eq!(replacement_syntax("/cost/$5"), "/cost/$$5");
        let regex = Regex::new("^/users/([0-9]+)$").expect("regex");
        let replaced = regex.replace_all("/users/42", replacement_syntax(r"/people/\1").as_str());
        assert_eq!(replaced, "/people/42");
    }
}
