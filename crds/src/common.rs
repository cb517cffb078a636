//! Types shared by several kinds: status and conditions, Istio's common
//! messages (string matches, percentages, workload selectors, durations).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Declares a string-valued enum whose unknown values survive deserialization.
///
/// Istio models these as protobuf enums. Here an unknown value (a typo, or a
/// value a newer Istio added) must not make the whole object unreadable for the
/// operator's watches: it lands in `Unknown` and the operator reports it in the
/// resource's status. The CRD schema is therefore a plain string.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version of Plexus does not know.
            Unknown(String),
        }

        impl $name {
            /// Every value this version of Plexus understands.
            pub const VALUES: &'static [&'static str] = &[$($value),+];

            /// The value as written in a manifest.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $value, )+
                    Self::Unknown(other) => other,
                }
            }

            /// Whether the value is one this version of Plexus understands.
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Unknown(_))
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $( $value => Self::$variant, )+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Ok(Self::from(value.as_str()))
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string" })
            }
        }
    };
}
pub(crate) use string_enum;

/// Status shared by every Plexus resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// The `metadata.generation` that the conditions describe. When it is lower
    /// than the object's generation, the operator has not yet looked at the
    /// latest change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The operator's observations. `Accepted`: the spec is valid, every
    /// reference resolves and every field is understood. `Programmed`: the
    /// resource is part of the configuration served to proxies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Condition type: the spec is valid and fully understood.
pub const CONDITION_ACCEPTED: &str = "Accepted";
/// Condition type: the resource is in the configuration of the proxies it selects.
pub const CONDITION_PROGRAMMED: &str = "Programmed";
/// Condition type on the Mesh: the control plane is serving.
pub const CONDITION_READY: &str = "Ready";

/// Selects workloads (pods) by their labels. Without a selector a policy
/// applies to every workload in its namespace (or in the whole mesh, when it
/// lives in the mesh's root namespace).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Labels a pod must carry, all of them, to be selected.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// Labels that select workloads, in the flat form DestinationRule and
/// ServiceEntry use (`workloadSelector.labels`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadLabels {
    /// Labels a pod must carry, all of them, to be selected.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A reference to the object a policy attaches to, instead of a selector
/// (Istio's `targetRef`, after the Gateway API's policy attachment).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// API group of the target; empty for the core group (Services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind of the target, such as `Service` or `Gateway`.
    pub kind: String,
    /// Name of the target.
    pub name: String,
    /// Namespace of the target; must be the policy's own namespace when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Matches a string exactly, by prefix, or by an RE2-style regular
/// expression. Exactly one of the three fields is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    /// Matches when the value equals this string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Matches when the value starts with this string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Matches when this regular expression matches the whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A percentage, as a number from 0.0 to 100.0 (fractions allowed).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Percent {
    /// The percentage, from 0.0 to 100.0.
    pub value: f64,
}

/// Selects a port of a destination service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct PortSelector {
    /// The port number.
    pub number: u32,
}

/// Names a provider configured in the Mesh (telemetry and tracing back ends).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ProviderRef {
    /// The provider's name, such as `prometheus`, `envoy` (access logs on the
    /// proxy's standard output) or `zipkin`.
    pub name: String,
}

/// Header changes applied to a request or a response.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderOperations {
    /// Headers to overwrite (or create) with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Values to append to these headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Names of headers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A duration as Istio and Linkerd write them: a sequence of decimal numbers,
/// each with a unit (`h`, `m`, `s`, `ms`, `us`, `ns`), such as `1.5s`, `3000ms`
/// or `1h30m`. Validated by the operator, which reports a bad value in the
/// resource's status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct Duration(pub String);

/// A duration that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid duration {value:?}: {reason} (expected numbers with units h, m, s, ms, us or ns, such as 1.5s or 1h30m)"
)]
pub struct DurationError {
    /// The value as written.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Duration {
    /// Parses the duration.
    pub fn parse(&self) -> Result<std::time::Duration, DurationError> {
        parse_duration(&self.0)
    }
}

impl From<&str> for Duration {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
}

/// Parses Go-style durations (what Istio and Linkerd accept).
pub fn parse_duration(value: &str) -> Result<std::time::Duration, DurationError> {
    let error = |reason| DurationError {
        value: value.to_owned(),
        reason,
    };
    let mut rest = value.trim();
    if rest.is_empty() {
        return Err(error("empty"));
    }
    if rest == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| error("a number has no unit"))?;
        if number_len == 0 {
            return Err(error("expected a number"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| error("malformed number"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "h" => 3_600e9,
            "m" => 60e9,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return Err(error("unknown unit")),
        };
        rest = &rest[unit_len..];
        total_nanos += number * nanos_per_unit;
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(error("too large"));
    }
    Ok(std::time::Duration::from_nanos(total_nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    #[test]
    fn parses_istio_and_linkerd_durations() {
        assert_eq!(parse_duration("2s"), Ok(Std::from_secs(2)));
        assert_eq!(parse_duration("3000ms"), Ok(Std::from_millis(3000)));
        assert_eq!(parse_duration("1.5s"), Ok(Std::from_millis(1500)));
        assert_eq!(parse_duration("1h30m"), Ok(Std::from_secs(5400)));
        assert_eq!(parse_duration("3m"), Ok(Std::from_secs(180)));
        assert_eq!(parse_duration("250us"), Ok(Std::from_micros(250)));
        assert_eq!(parse_duration("0"), Ok(Std::ZERO));
    }

    #[test]
    fn rejects_bad_durations_with_a_reason() {
        for (bad, reason) in [
            ("", "empty"),
            ("10", "a number has no unit"),
            ("s", "expected a number"),
            ("5 minutes", "unknown unit"),
            ("1.2.3s", "malformed number"),
            ("3d", "unknown unit"),
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert_eq!(err.reason, reason, "{bad}");
        }
    }

    string_enum! {
        /// Test enum.
        Colour { Red = "RED", Green = "GREEN" }
    }

    #[test]
    fn string_enums_keep_unknown_values() {
        let parsed: Vec<Colour> =
            serde_json::from_str(r#"["RED", "GREEN", "BLUE"]"#).expect("strings");
        assert_eq!(
            parsed,
            vec![Colour::Red, Colour::Green, Colour::Unknown("BLUE".into())]
        );
        assert!(!parsed[2].is_known());
        assert_eq!(
            serde_json::to_string(&parsed).expect("serializes"),
            r#"["RED","GREEN","BLUE"]"#
        );
        assert_eq!(Colour::VALUES, &["RED", "GREEN"]);
    }
}
