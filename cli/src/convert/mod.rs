//! `plexus convert`: Istio, Linkerd and SMI manifests to Plexus ones.
//!
//! Kinds whose shape Plexus shares are converted by changing `apiVersion`
//! and passing the object through the Plexus type; a leaf-by-leaf comparison
//! then proves that every field survived, so a field Plexus does not model
//! fails the document instead of vanishing. EnvoyFilter local rate limits are
//! translated into RateLimitPolicies. Anything else is reported with its
//! position, kind, name and the reason.

pub mod envoy_filter;
pub mod leaves;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use plexus_crds as api;

/// Where a document stands in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based index of the YAML document.
    pub document: usize,
    /// 1-based index in the `items` of a `kind: List` document.
    pub item: Option<usize>,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "document {}", self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        Ok(())
    }
}

/// A document's identity, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Where it is.
    pub position: Position,
    /// Its `kind`, or `?` when it has none.
    pub kind: String,
    /// Its `metadata.name`, or `?` when it has none.
    pub name: String,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {})", self.position, self.kind, self.name)
    }
}

/// A translated document.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The original document.
    pub origin: Origin,
    /// The Plexus object.
    pub object: Value,
    /// Things the user should know, such as server-set fields left out.
    pub notes: Vec<String>,
}

/// A document that was not translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable {
    /// The original document.
    pub origin: Origin,
    /// Why it was not translated.
    pub reason: String,
}

/// The outcome of a conversion: what was translated and what was not, in
/// input order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Conversion {
    /// Translated documents.
    pub converted: Vec<Converted>,
    /// Documents that were not translated.
    pub untranslatable: Vec<Untranslatable>,
}

/// The input as a whole is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    /// Nothing to convert.
    #[error("the input holds no Kubernetes objects (it is empty, or only comments)")]
    Empty,
}

/// Converts every document of a (multi-document) YAML text.
pub fn convert(input: &str) -> Result<Conversion, InputError> {
    let mut conversion = Conversion::default();
    let mut objects = 0;
    for (index, document) in serde_yaml::Deserializer::from_str(input).enumerate() {
        let position = Position {
            document: index + 1,
            item: None,
        };
        let parsed = serde_yaml::Value::deserialize(document)
            .map_err(|e| format!("not valid YAML: {e}"))
            .and_then(yaml_to_json);
        let value = match parsed {
            Ok(Value::Null) => continue,
            Ok(value) => value,
            Err(reason) => {
                objects += 1;
                conversion.untranslatable.push(Untranslatable {
                    origin: Origin::unknown(position),
                    reason,
                });
                // The YAML stream cannot be trusted past a syntax error.
                break;
            }
        };
        objects += 1;
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            let items = value.get("items").and_then(Value::as_array);
            for (item, object) in items.into_iter().flatten().enumerate() {
                let position = Position {
                    item: Some(item + 1),
                    ..position
                };
                conversion.record(position, object);
            }
        } else {
            conversion.record(position, &value);
        }
    }
    if objects == 0 {
        return Err(InputError::Empty);
    }
    Ok(conversion)
}

impl Conversion {
    fn record(&mut self, position: Position, object: &Value) {
        let origin = Origin::of(position, object);
        match convert_object(object) {
            Ok((object, notes)) => self.converted.push(Converted {
                origin,
                object,
                notes,
            }),
            Err(reason) => self.untranslatable.push(Untranslatable { origin, reason }),
        }
    }
}

impl Origin {
    fn unknown(position: Position) -> Self {
        Self {
            position,
            kind: "?".into(),
            name: "?".into(),
        }
    }

    fn of(position: Position, object: &Value) -> Self {
        let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or("?").to_owned();
        Self {
            position,
            kind: text(object.get("kind")),
            name: text(object.pointer("/metadata/name")),
        }
    }
}

/// YAML allows what JSON (and Kubernetes) does not: non-string keys (such as
/// PeerAuthentication's `portLevelMtls: {8080: ...}`) and tags. Keys become
/// strings, tags are dropped.
fn yaml_to_json(value: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Yaml;
    Ok(match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("the number {n} cannot be represented in JSON"))?
            }
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(s) => s,
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Bool(b) => b.to_string(),
                    other => return Err(format!("a mapping key is not a scalar: {other:?}")),
                };
                map.insert(key, yaml_to_json(value)?);
            }
            Value::Object(map)
        }
        Yaml::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

/// What becomes of a kind.
enum Translation {
    /// Same shape in Plexus: change the apiVersion, keep every field.
    SameShape(&'static str),
    /// An EnvoyFilter: only local rate limits translate.
    EnvoyFilter,
}

const SAME_SHAPE: &[(&str, &[&str])] = &[
    (
        "networking.istio.io",
        &[
            "VirtualService",
            "DestinationRule",
            "Gateway",
            "ServiceEntry",
        ],
    ),
    (
        "security.istio.io",
        &[
            "PeerAuthentication",
            "AuthorizationPolicy",
            "RequestAuthentication",
        ],
    ),
    ("telemetry.istio.io", &["Telemetry"]),
    ("linkerd.io", &["ServiceProfile"]),
    ("split.smi-spec.io", &["TrafficSplit"]),
];

fn translation(api_version: &str, kind: &str) -> Result<Translation, String> {
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    if group == api::GROUP {
        return api::KINDS
            .iter()
            .find(|known| **known == kind)
            .map(|known| Translation::SameShape(known))
            .ok_or_else(|| format!("{kind} is not a kind of {}", api::GROUP));
    }
    for (known_group, kinds) in SAME_SHAPE {
        if group == *known_group
            && let Some(known) = kinds.iter().find(|known| **known == kind)
        {
            return Ok(Translation::SameShape(known));
        }
    }
    match (group, kind) {
        ("networking.istio.io", "EnvoyFilter") => Ok(Translation::EnvoyFilter),
        ("install.istio.io", "IstioOperator") => Err(
            "IstioOperator describes an Istio installation, not mesh configuration: install \
             Plexus with its Helm chart and put mesh-wide settings in the Mesh object"
                .into(),
        ),
        (group, kind) if group.ends_with("istio.io") => Err(format!(
            "Istio's {kind} ({api_version}) has no Plexus equivalent"
        )),
        (group, kind) if group.ends_with("linkerd.io") || group.ends_with("smi-spec.io") => {
            Err(format!(
                "{kind} ({api_version}) has no Plexus equivalent; Plexus translates Linkerd's ServiceProfile and SMI's TrafficSplit"
            ))
        }
        ("", _) => Err(format!(
            "apiVersion {api_version:?} is a core Kubernetes API, not mesh configuration"
        )),
        (group, _) => Err(format!(
            "unknown API group {group:?}: plexus convert translates networking.istio.io, \
             security.istio.io, telemetry.istio.io, linkerd.io (ServiceProfile) and \
             split.smi-spec.io (TrafficSplit)"
        )),
    }
}

fn convert_object(object: &Value) -> Result<(Value, Vec<String>), String> {
    let Some(fields) = object.as_object() else {
        return Err("not a Kubernetes object: expected a mapping with apiVersion and kind".into());
    };
    let field = |name| fields.get(name).and_then(Value::as_str);
    let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) else {
        return Err("not a Kubernetes object: apiVersion or kind is missing".into());
    };
    if object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err("metadata.name is missing".into());
    }
    match translation(api_version, kind)? {
        Translation::SameShape(kind) => {
            let mut object = object.clone();
            let notes = strip_server_fields(&mut object);
            object["apiVersion"] = Value::from(api::API_VERSION);
            let converted = through_plexus_type(kind, &object)?;
            Ok((converted, notes))
        }
        Translation::EnvoyFilter => {
            let (policy, notes) = envoy_filter::translate(object)?;
            let converted = through_plexus_type("RateLimitPolicy", &policy)?;
            Ok((converted, notes))
        }
    }
}

/// Fields the API server sets: they describe the source object, not the
/// configuration, and would be refused or misleading on a new object.
const SERVER_METADATA: &[&str] = &[
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "generation",
    "managedFields",
    "resourceVersion",
    "selfLink",
    "uid",
];
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn strip_server_fields(object: &mut Value) -> Vec<String> {
    let mut dropped = Vec::new();
    if let Some(fields) = object.as_object_mut()
        && fields.remove("status").is_some()
    {
        dropped.push("status".to_owned());
    }
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in SERVER_METADATA {
            if metadata.remove(*key).is_some() {
                dropped.push(format!("metadata.{key}"));
            }
        }
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
            && annotations.remove(LAST_APPLIED).is_some()
        {
            dropped.push(format!("metadata.annotations.{LAST_APPLIED}"));
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    if dropped.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "left out what the API server set on the source object: {}",
            dropped.join(", ")
        )]
    }
}

/// Passes the object through the Plexus type of `kind` and checks that every
/// leaf came out unchanged.
fn through_plexus_type(kind: &str, object: &Value) -> Result<Value, String> {
    match kind {
        "VirtualService" => round_trip::<api::VirtualService>(object),
        "DestinationRule" => round_trip::<api::DestinationRule>(object),
        "Gateway" => round_trip::<api::Gateway>(object),
        "ServiceEntry" => round_trip::<api::ServiceEntry>(object),
        "PeerAuthentication" => round_trip::<api::PeerAuthentication>(object),
        "AuthorizationPolicy" => round_trip::<api::AuthorizationPolicy>(object),
        "RequestAuthentication" => round_trip::<api::RequestAuthentication>(object),
        "Telemetry" => round_trip::<api::Telemetry>(object),
        "TrafficSplit" => round_trip::<api::TrafficSplit>(object),
        "ServiceProfile" => round_trip::<api::ServiceProfile>(object),
        "RateLimitPolicy" => round_trip::<api::RateLimitPolicy>(object),
        "Mesh" => round_trip::<api::Mesh>(object),
        other => Err(format!("{other} is not a kind of {}", api::GROUP)),
    }
}

fn round_trip<K: DeserializeOwned + Serialize>(object: &Value) -> Result<Value, String> {
    let typed: K = serde_path_to_error::deserialize(object).map_err(|error| {
        let path = error.path().to_string();
        format!("{path}: {}", error.into_inner())
    })?;
    let converted = serde_json::to_value(&typed).map_err(|e| format!("serializing: {e}"))?;
    let lost = leaves::lost_leaves(object, &converted);
    if lost.is_empty() {
        Ok(converted)
    } else {
        let lost: Vec<String> = lost.iter().map(ToString::to_string).collect();
        Err(lost.join("; "))
    }
}

/// Renders converted objects as one multi-document YAML text.
pub fn to_yaml(converted: &[Converted]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for document in converted {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&document.object)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
