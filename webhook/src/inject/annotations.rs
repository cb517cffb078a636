//! What a pod's annotations change: traffic left out of the redirection
//! (checked with the init mode's own parsers) and the proxy's resources.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use plexus_config::redirect::{Cidr, PortRange};
use plexus_crds::mesh::ProxyDefaults;
use regex::Regex;

use super::{
    InjectError, PROXY_CPU, PROXY_CPU_LIMIT, PROXY_MEMORY, PROXY_MEMORY_LIMIT, ProxyPorts,
    SKIP_INBOUND_PORTS, SKIP_OUTBOUND_CIDRS, SKIP_OUTBOUND_PORTS,
};

/// What the init container leaves out of the redirection.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Redirect {
    pub skip_inbound_ports: Vec<String>,
    pub skip_outbound_ports: Vec<String>,
    pub skip_outbound_cidrs: Vec<String>,
}

impl Redirect {
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        ports: &ProxyPorts,
    ) -> Result<Self, InjectError> {
        let mut skip_inbound_ports = vec![ports.admin.to_string()];
        skip_inbound_ports.extend(port_list(annotations, SKIP_INBOUND_PORTS)?);
        Ok(Self {
            skip_inbound_ports,
            skip_outbound_ports: port_list(annotations, SKIP_OUTBOUND_PORTS)?,
            skip_outbound_cidrs: cidr_list(annotations, SKIP_OUTBOUND_CIDRS)?,
        })
    }
}

/// The comma-separated items of an annotation, trimmed, empty ones dropped.
fn items<'a>(annotations: &'a BTreeMap<String, String>, key: &str) -> Vec<&'a str> {
    annotations
        .get(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn port_list(
    annotations: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<Vec<String>, InjectError> {
    parsed::<PortRange>(annotations, key).map_err(|value| InjectError::Ports {
        annotation: key,
        value,
    })
}

fn cidr_list(
    annotations: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<Vec<String>, InjectError> {
    parsed::<Cidr>(annotations, key).map_err(|value| InjectError::Cidrs {
        annotation: key,
        value,
    })
}

/// The annotation's items, each checked with the init mode's own parser
/// and written back in its canonical form; `Err` is the annotation's value.
fn parsed<T: std::str::FromStr + std::fmt::Display>(
    annotations: &BTreeMap<String, String>,
    key: &str,
) -> Result<Vec<String>, String> {
    items(annotations, key)
        .into_iter()
        .map(|item| item.parse::<T>().map(|v| v.to_string()))
        .collect::<Result<_, _>>()
        .map_err(|_| annotations.get(key).cloned().unwrap_or_default())
}

static QUANTITY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+)?$")
        .unwrap_or_else(|e| panic!("quantity pattern: {e}"))
});

/// The proxy's resources: the Mesh's defaults (or ours), each value
/// overridable by an annotation.
pub fn proxy_resources(
    defaults: &ProxyDefaults,
    annotations: &BTreeMap<String, String>,
) -> Result<ResourceRequirements, InjectError> {
    let configured = defaults.resources.clone().unwrap_or_default();
    let requests = configured.requests.unwrap_or_default();
    let limits = configured.limits.unwrap_or_default();
    let pick = |annotation: &'static str, configured: Option<Quantity>, fallback: Option<&str>| {
        match annotations.get(annotation) {
            Some(value) if QUANTITY.is_match(value.trim()) => {
                Ok(Some(Quantity(value.trim().to_owned())))
            }
            Some(value) => Err(InjectError::Quantity {
                annotation,
                value: value.clone(),
            }),
            None => Ok(configured.or_else(|| fallback.map(|f| Quantity(f.to_owned())))),
        }
    };
    let collect = |cpu: Option<Quantity>, memory: Option<Quantity>| {
        let map: BTreeMap<String, Quantity> = [("cpu", cpu), ("memory", memory)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect();
        (!map.is_empty()).then_some(map)
    };
    // Without a Mesh setting: a small request and a memory limit well
    // above the proxy's footprint; no CPU limit, which only adds latency.
    Ok(ResourceRequirements {
        requests: collect(
            pick(PROXY_CPU, requests.cpu, Some("10m"))?,
            pick(PROXY_MEMORY, requests.memory, Some("32Mi"))?,
        ),
        limits: collect(
            pick(PROXY_CPU_LIMIT, limits.cpu, None)?,
            pick(PROXY_MEMORY_LIMIT, limits.memory, Some("128Mi"))?,
        ),
        ..Default::default()
    })
}
