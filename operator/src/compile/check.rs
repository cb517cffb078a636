//! Collects what is wrong with a resource while it is compiled.

use plexus_crds::common::Duration;

/// Why a resource is not accepted: a reason for the condition and a message
/// naming the fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `Invalid`, `RefNotFound` or `Unsupported`.
    pub reason: &'static str,
    /// The problems, each naming its field.
    pub message: String,
}

/// Problems found so far.
#[derive(Default)]
pub struct Check {
    problems: Vec<(&'static str, String)>,
    /// Remarks that do not prevent acceptance.
    pub notes: Vec<String>,
    /// What the proxies do instead of what they do not enforce.
    pub meanwhile: Option<String>,
    /// Why what is enforced is not in force yet.
    pub unavailable: Option<String>,
}

impl Check {
    /// A value that is wrong in itself.
    pub fn invalid(&mut self, path: impl std::fmt::Display, message: impl std::fmt::Display) {
        self.problems
            .push(("Invalid", format!("{path}: {message}")));
    }

    /// A reference to something that does not exist.
    pub fn missing(&mut self, path: impl std::fmt::Display, message: impl std::fmt::Display) {
        self.problems
            .push(("RefNotFound", format!("{path}: {message}")));
    }

    /// A valid setting Plexus refuses to ignore but cannot honour.
    pub fn unsupported(&mut self, path: impl std::fmt::Display, message: impl std::fmt::Display) {
        self.problems
            .push(("Unsupported", format!("{path}: {message}")));
    }

    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Milliseconds of a duration, or a problem.
    pub fn duration(&mut self, path: impl std::fmt::Display, value: &Duration) -> Option<u64> {
        match value.parse() {
            Ok(d) => Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            Err(e) => {
                self.invalid(path, e);
                None
            }
        }
    }

    /// A value of one of the proxy configuration's enums ([`plexus_config::one_of!`]):
    /// what the proxy cannot read is invalid.
    pub fn parse<T>(&mut self, path: impl std::fmt::Display, value: &str) -> Option<T>
    where
        T: std::str::FromStr<Err = plexus_config::UnknownValue>,
    {
        match value.parse() {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                self.invalid(path, error);
                None
            }
        }
    }

    /// A value of a string enum that this version knows.
    pub fn known(
        &mut self,
        path: impl std::fmt::Display,
        value: &str,
        known: bool,
        values: &[&str],
    ) {
        if !known {
            self.invalid(
                path,
                format!(
                    "unknown value {value:?}; expected one of {}",
                    values.join(", ")
                ),
            );
        }
    }

    /// A percentage in [0, 100].
    pub fn percent(&mut self, path: impl std::fmt::Display, value: f64) -> f64 {
        if !(0.0..=100.0).contains(&value) {
            self.invalid(
                path,
                format!("{value} is not a percentage between 0 and 100"),
            );
        }
        value
    }

    /// A regex the proxy can compile (RE2 syntax, whole-value match).
    pub fn regex(&mut self, path: impl std::fmt::Display, pattern: &str) {
        if let Err(e) = regex::Regex::new(&format!("^(?:{pattern})$")) {
            let reason = e.to_string();
            let last = reason.lines().last().unwrap_or_default().trim().to_owned();
            self.invalid(path, format!("regex {pattern:?} does not compile: {last}"));
        }
    }

    /// A port number.
    pub fn port(&mut self, path: impl std::fmt::Display, value: u32) -> u16 {
        match u16::try_from(value) {
            Ok(port) if port > 0 => port,
            _ => {
                self.invalid(path, format!("{value} is not a port number"));
                0
            }
        }
    }

    /// The verdict on a spec of `kind`: accepted, with what the proxy's
    /// capability list says it does not enforce, or rejected.
    pub fn finish<T: serde::Serialize>(
        self,
        kind: super::Kind,
        spec: &T,
    ) -> Result<super::Accepted, Rejection> {
        match self.problems.first() {
            None => {
                let report = serde_json::to_value(spec)
                    .map(|spec| plexus_config::capability::unenforced(kind.as_str(), &spec))
                    .unwrap_or_default();
                Ok(super::Accepted {
                    meanwhile: self.meanwhile.filter(|_| !report.unenforced.is_empty()),
                    unenforced: report.unenforced,
                    enforced_any: report.enforced_any,
                    notes: self.notes,
                    unavailable: self.unavailable,
                })
            }
            Some((reason, _)) => Err(Rejection {
                reason,
                message: self
                    .problems
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }
}
