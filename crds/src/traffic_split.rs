//! `TrafficSplit`: weighted split of a service's traffic (SMI's shape).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ResourceStatus;

/// Splits the traffic addressed to a root service across backend services by
/// weight, as SMI's TrafficSplit does (what Linkerd and Flagger use for
/// canaries). Field for field the shape of SMI's TrafficSplit.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "plexus.dev",
    version = "v1alpha1",
    kind = "TrafficSplit",
    namespaced,
    status = "ResourceStatus",
    shortname = "ts",
    category = "plexus",
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.service"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Accepted")].status"#
    ),
    printcolumn(
        name = "Programmed",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Programmed")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSplitSpec {
    /// The root service clients address (name of a Service in this namespace).
    pub service: String,
    /// Services that receive the traffic, with their weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<TrafficSplitBackend>,
    /// Route groups (such as SMI HTTPRouteGroups) the split is restricted to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<TypedLocalObjectReference>,
}

/// A backend service and its weight.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSplitBackend {
    /// Name of a Service in this namespace.
    pub service: String,
    /// Weight relative to the other backends: an integer, or a quantity such as
    /// `900m` (SMI v1alpha1).
    pub weight: IntOrString,
}

/// A reference to an object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypedLocalObjectReference {
    /// Kind of the object.
    pub kind: String,
    /// Name of the object.
    pub name: String,
    /// API group of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
}

/// A backend weight that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid weight {0:?}: expected a non-negative integer or a quantity such as 900m")]
pub struct WeightError(pub String);

impl TrafficSplitBackend {
    /// The weight in thousandths, so that `1`, `1000m` and `1000m` compare equal.
    pub fn weight_millis(&self) -> Result<u64, WeightError> {
        match &self.weight {
            IntOrString::Int(value) => u64::try_from(*value)
                .map(|v| v * 1000)
                .map_err(|_| WeightError(value.to_string())),
            IntOrString::String(text) => parse_quantity_millis(text),
        }
    }
}

fn parse_quantity_millis(text: &str) -> Result<u64, WeightError> {
    let error = || WeightError(text.to_owned());
    let text = text.trim();
    let (number, scale) = match text.strip_suffix('m') {
        Some(milli) => (milli, 1),
        None => (text, 1000),
    };
    let value: u64 = number.parse().map_err(|_| error())?;
    value.checked_mul(scale).ok_or_else(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(weight: IntOrString) -> TrafficSplitBackend {
        TrafficSplitBackend {
            service: "b".into(),
            weight,
        }
    }

    #[test]
    fn weights_as_integers_or_quantities() {
        assert_eq!(backend(IntOrString::Int(90)).weight_millis(), Ok(90_000));
        assert_eq!(
            backend(IntOrString::String("900m".into())).weight_millis(),
            Ok(900)
        );
        assert_eq!(
            backend(IntOrString::String("1".into())).weight_millis(),
            Ok(1000)
        );
        assert!(backend(IntOrString::Int(-1)).weight_millis().is_err());
        assert!(
            backend(IntOrString::String("lots".into()))
                .weight_millis()
                .is_err()
        );
    }
}
