//! The value patterns of authorization rules: strings (exact, `prefix*`,
//! `*suffix`, `*`) and address blocks (CIDRs or single addresses).

use std::net::IpAddr;

pub use plexus_config::Cidr;

/// A compiled string pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// `*`: any value, as long as there is one.
    Present,
}

impl Pattern {
    pub fn new(value: &str) -> Self {
        if value == "*" {
            Self::Present
        } else if let Some(prefix) = value.strip_suffix('*') {
            Self::Prefix(prefix.to_owned())
        } else if let Some(suffix) = value.strip_prefix('*') {
            Self::Suffix(suffix.to_owned())
        } else {
            Self::Exact(value.to_owned())
        }
    }

    /// The pattern for case-insensitive matching (hosts).
    pub fn lowercase(value: &str) -> Self {
        Self::new(&value.to_ascii_lowercase())
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => value == s,
            Self::Prefix(s) => value.starts_with(s.as_str()),
            Self::Suffix(s) => value.ends_with(s.as_str()),
            Self::Present => true,
        }
    }
}

/// Whether any pattern matches the value; never when there is no value.
pub fn any(patterns: &[Pattern], value: Option<&str>) -> bool {
    value.is_some_and(|v| patterns.iter().any(|p| p.matches(v)))
}

/// Parses every block.
pub fn cidrs(values: &[String]) -> Result<Vec<Cidr>, String> {
    values.iter().map(|v| Cidr::parse(v)).collect()
}

/// Whether any block holds the address.
pub fn within(blocks: &[Cidr], ip: IpAddr) -> bool {
    blocks.iter().any(|b| b.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = |v: &str, s: &str| Pattern::new(v).matches(s);
        assert!(p("/admin", "/admin") && !p("/admin", "/admin/"));
        assert!(p("/api/*", "/api/v1") && p("/api/*", "/api/") && !p("/api/*", "/api"));
        assert!(p("*.json", "/a/b.json") && !p("*.json", "/a/b.jsonx"));
        assert!(p("*", "") && p("*", "anything"));
        assert!(!any(&[Pattern::Present], None));
        assert!(Pattern::lowercase("Web.Demo*").matches("web.demo.svc"));
    }
}
