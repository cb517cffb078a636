//! Proxy injection as one pure function: a Pod and the injection settings in,
//! a JSON patch out. The webhook serves it; `plexus inject` applies it offline.
//!
//! What a patch adds (see the README for why):
//! - the init container `plexus-init` (the proxy image in init mode), which
//!   redirects the pod's TCP to the proxy and needs only NET_ADMIN and NET_RAW;
//! - the proxy `plexus-proxy`: a native sidecar (an init container with
//!   `restartPolicy: Always`) where the cluster has them, otherwise the first
//!   container, holding the others back until it is ready;
//! - its volumes (configuration, identity, pod labels), and the app's HTTP
//!   probes rewritten through the proxy's admin port.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile,
    DownwardAPIVolumeSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, Lifecycle,
    LifecycleHandler, ObjectFieldSelector, Pod, Probe, ResourceRequirements, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use plexus_config::redirect::{Cidr, PortRange};
use plexus_config::{APP_PROBES_ENV, AppProbe};
use plexus_crds::keys::{INJECT_DISABLED, INJECT_ENABLED, INJECT_LABEL, identity_secret_name};
use plexus_crds::mesh::ProxyDefaults;
use regex::Regex;
use serde::Serialize;
use serde_json::{Value, json};

pub use plexus_crds::keys::{INIT_CONTAINER, PROXY_CONTAINER};
/// Annotation the webhook sets on every pod it injected: the proxy's version.
pub const PROXY_VERSION_ANNOTATION: &str = "plexus.dev/proxy-version";
/// Annotation recording a restart policy the webhook changed (see README).
pub const ORIGINAL_RESTART_POLICY_ANNOTATION: &str = "plexus.dev/original-restart-policy";
/// Inbound ports not redirected to the proxy (comma-separated ports or ranges).
pub const SKIP_INBOUND_PORTS: &str = "plexus.dev/skip-inbound-ports";
/// Outbound ports not redirected to the proxy.
pub const SKIP_OUTBOUND_PORTS: &str = "plexus.dev/skip-outbound-ports";
/// Outbound destinations (comma-separated CIDRs) not redirected to the proxy.
pub const SKIP_OUTBOUND_CIDRS: &str = "plexus.dev/skip-outbound-cidrs";
/// Per-pod overrides of the proxy's resources.
pub const PROXY_CPU: &str = "plexus.dev/proxy-cpu";
pub const PROXY_MEMORY: &str = "plexus.dev/proxy-memory";
pub const PROXY_CPU_LIMIT: &str = "plexus.dev/proxy-cpu-limit";
pub const PROXY_MEMORY_LIMIT: &str = "plexus.dev/proxy-memory-limit";

/// Where the proxy finds what the webhook mounts.
pub const CONFIG_DIR: &str = "/var/run/plexus/config";
pub const IDENTITY_DIR: &str = "/var/run/plexus/identity";
pub const PODINFO_DIR: &str = "/var/run/plexus/podinfo";
/// Prefix of the admin port's paths that run an app's HTTP probe.
pub const APP_HEALTH_PREFIX: &str = "/app-health";

const CONFIG_VOLUME: &str = "plexus-config";
const IDENTITY_VOLUME: &str = "plexus-identity";
/// Where Kubernetes mounts a pod's API token.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const PODINFO_VOLUME: &str = "plexus-podinfo";

/// The proxy's ports and user, shared by the webhook, the init mode and the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyPorts {
    /// Where redirected inbound connections arrive.
    pub inbound: u16,
    /// Where redirected outbound connections arrive.
    pub outbound: u16,
    /// Health, metrics and admin endpoints; never redirected.
    pub admin: u16,
}

impl Default for ProxyPorts {
    fn default() -> Self {
        Self {
            inbound: 4143,
            outbound: 4140,
            admin: 4191,
        }
    }
}

/// The proxy's fixed, non-root user and group; the init container exempts
/// its traffic from redirection.
pub const PROXY_UID: i64 = 2102;

/// Everything a patch depends on besides the pod.
#[derive(Clone, Debug, PartialEq)]
pub struct InjectConfig {
    /// The `Mesh`'s proxy defaults: image, pull policy, resources, logging.
    pub proxy: ProxyDefaults,
    /// Whether the cluster runs native sidecars (Kubernetes 1.29 or later).
    pub native_sidecars: bool,
    /// The control plane's namespace, never injected.
    pub mesh_namespace: String,
    pub ports: ProxyPorts,
}

impl InjectConfig {
    pub fn new(proxy: ProxyDefaults, native_sidecars: bool, mesh_namespace: &str) -> Self {
        Self {
            proxy,
            native_sidecars,
            mesh_namespace: mesh_namespace.to_owned(),
            ports: ProxyPorts::default(),
        }
    }
}

/// Why a pod is left as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Neither its namespace nor the pod asks for injection.
    NotEnabled,
    /// The pod (label or annotation) says `plexus.dev/inject: disabled`.
    OptedOut,
    /// Host-network pods share the node's network: redirecting it would
    /// capture the node's traffic.
    HostNetwork,
    /// It already has the proxy (a reinvocation, or `plexus inject` twice).
    AlreadyInjected,
    /// The mesh's own namespace or kube-system.
    SystemNamespace,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotEnabled => "not-enabled",
            Skip::OptedOut => "opted-out",
            Skip::HostNetwork => "host-network",
            Skip::AlreadyInjected => "already-injected",
            Skip::SystemNamespace => "system-namespace",
        }
    }
}

/// A pod that should be injected but cannot be: the webhook admits it
/// unchanged with this as a warning.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InjectError {
    #[error("annotation {annotation}: {value:?} is not a quantity (e.g. 100m, 64Mi)")]
    Quantity {
        annotation: &'static str,
        value: String,
    },
    #[error(
        "annotation {annotation}: {value:?} is not a list of ports or port ranges (e.g. 25,8000-8100)"
    )]
    Ports {
        annotation: &'static str,
        value: String,
    },
    #[error("annotation {annotation}: {value:?} is not a list of CIDRs (e.g. 10.0.0.0/8,fd00::/8)")]
    Cidrs {
        annotation: &'static str,
        value: String,
    },
    #[error("the pod has no spec")]
    NoSpec,
}

/// What injection makes of a pod.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Skipped(Skip),
    Injected(Patch),
}

/// Decides and builds: whether `pod` in `namespace` (whose labels are
/// `namespace_labels`) is injected, and the patch if it is.
pub fn inject(
    pod: &Pod,
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    config: &InjectConfig,
) -> Result<Outcome, InjectError> {
    match wants_injection(pod, namespace, namespace_labels, config) {
        Err(skip) => Ok(Outcome::Skipped(skip)),
        Ok(()) => patch(pod, config).map(Outcome::Injected),
    }
}

/// The injection rules: the pod's own opt-in or opt-out (label, or
/// annotation) wins over its namespace's label; some pods never are.
pub fn wants_injection(
    pod: &Pod,
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    config: &InjectConfig,
) -> Result<(), Skip> {
    if namespace == config.mesh_namespace || namespace == "kube-system" {
        return Err(Skip::SystemNamespace);
    }
    if is_injected(pod) {
        return Err(Skip::AlreadyInjected);
    }
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return Err(Skip::HostNetwork);
    }
    let own = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(INJECT_LABEL))
        .or_else(|| {
            pod.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(INJECT_LABEL))
        })
        .map(String::as_str);
    match own {
        Some(INJECT_DISABLED) => Err(Skip::OptedOut),
        Some(INJECT_ENABLED) => Ok(()),
        _ if namespace_labels.get(INJECT_LABEL).map(String::as_str) == Some(INJECT_ENABLED) => {
            Ok(())
        }
        _ => Err(Skip::NotEnabled),
    }
}

/// Whether the pod already carries the proxy, as a container or a native sidecar.
pub fn is_injected(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == PROXY_CONTAINER)
    })
}

/// The patch that injects `pod`. Operations come in an order that applies:
/// a parent object or array is created before anything is added into it,
/// and app containers are edited at their indices before the proxy is
/// inserted in front of them.
pub fn patch(pod: &Pod, config: &InjectConfig) -> Result<Patch, InjectError> {
    let spec = pod.spec.as_ref().ok_or(InjectError::NoSpec)?;
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let redirect = Redirect::from_annotations(&annotations, &config.ports)?;
    let resources = proxy_resources(&config.proxy, &annotations)?;
    let mut ops = Vec::new();

    // Run-to-completion pods on clusters without native sidecars: the proxy
    // exits once the app's processes have (it sees them through a shared
    // process namespace), and each retry must be a fresh pod with a fresh
    // proxy, so OnFailure becomes Never (the Job's backoffLimit still counts).
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let exit_with_app = !config.native_sidecars && restart_policy != "Always";
    let mut new_annotations = vec![(
        PROXY_VERSION_ANNOTATION.to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    )];
    if exit_with_app {
        ops.push(add(&["spec", "shareProcessNamespace"], json!(true)));
        if restart_policy == "OnFailure" {
            ops.push(add(&["spec", "restartPolicy"], json!("Never")));
            new_annotations.push((
                ORIGINAL_RESTART_POLICY_ANNOTATION.to_owned(),
                restart_policy.to_owned(),
            ));
        }
    }
    add_entries(
        &mut ops,
        &["metadata", "annotations"],
        pod.metadata.annotations.is_some(),
        new_annotations,
    );

    // App probes, at the containers' original indices.
    let mut app_probes = BTreeMap::new();
    for (index, container) in spec.containers.iter().enumerate() {
        for (field, kind, probe) in [
            ("livenessProbe", "livez", &container.liveness_probe),
            ("readinessProbe", "readyz", &container.readiness_probe),
            ("startupProbe", "startupz", &container.startup_probe),
        ] {
            let Some(probe) = probe else { continue };
            let Some((path, target, rewritten)) = rewrite_probe(container, kind, probe, config)
            else {
                continue;
            };
            app_probes.insert(path, target);
            ops.push(replace(
                &["spec", "containers", &index.to_string(), field],
                to_value(&rewritten),
            ));
        }
    }

    let service_account = spec.service_account_name.as_deref().unwrap_or("default");
    add_items(
        &mut ops,
        &["spec", "volumes"],
        spec.volumes.is_some(),
        None,
        volumes(service_account).iter().map(to_value).collect(),
    );

    let init = init_container(config, &redirect);
    // The ServiceAccount admission ran before this webhook: the proxy gets
    // the API token the app containers were given (it watches its
    // ConfigMap and identity Secret through the API), if they have one.
    let token = spec
        .containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .find(|m| m.mount_path == SERVICE_ACCOUNT_DIR)
        .cloned();
    let mut proxy = proxy_container(config, &resources, &app_probes, exit_with_app);
    if let Some(env) = proxy.env.as_mut() {
        env.push(self::env(
            "PLEXUS_IDENTITY_SECRET",
            identity_secret_name(service_account),
        ));
    }
    if let (Some(token), Some(mounts)) = (token, proxy.volume_mounts.as_mut()) {
        mounts.push(token);
    }
    let has_init = spec.init_containers.is_some();
    if config.native_sidecars {
        // First the redirection, then the proxy (started and ready), then
        // the pod's own init containers, which are meshed too.
        add_items(
            &mut ops,
            &["spec", "initContainers"],
            has_init,
            Some(0),
            vec![to_value(&init), to_value(&proxy)],
        );
    } else {
        // Without native sidecars, init containers run before the proxy
        // exists: the redirection goes last so that theirs is not captured.
        add_items(
            &mut ops,
            &["spec", "initContainers"],
            has_init,
            None,
            vec![to_value(&init)],
        );
        ops.push(add(&["spec", "containers", "0"], to_value(&proxy)));
    }
    Ok(Patch(ops))
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: pointer(tokens),
        value,
    })
}

fn replace(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation {
        path: pointer(tokens),
        value,
    })
}

fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Adds `entries` to the map at `path`, creating the map if it is absent.
fn add_entries(
    ops: &mut Vec<PatchOperation>,
    path: &[&str],
    exists: bool,
    entries: Vec<(String, String)>,
) {
    if exists {
        for (key, value) in entries {
            let mut tokens = path.to_vec();
            tokens.push(&key);
            ops.push(add(&tokens, Value::String(value)));
        }
    } else {
        let map: serde_json::Map<String, Value> = entries
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        ops.push(add(path, Value::Object(map)));
    }
}

/// Adds `items` to the array at `path` (at `at`, or at its end), creating
/// the array if it is absent.
fn add_items(
    ops: &mut Vec<PatchOperation>,
    path: &[&str],
    exists: bool,
    at: Option<usize>,
    items: Vec<Value>,
) {
    if !exists {
        ops.push(add(path, Value::Array(items)));
        return;
    }
    for (offset, item) in items.into_iter().enumerate() {
        let index = at.map_or_else(|| "-".to_owned(), |at| (at + offset).to_string());
        let mut tokens = path.to_vec();
        tokens.push(&index);
        ops.push(add(&tokens, item));
    }
}

/// What the init container leaves out of the redirection.
#[derive(Debug, Default, PartialEq, Eq)]
struct Redirect {
    skip_inbound_ports: Vec<String>,
    skip_outbound_ports: Vec<String>,
    skip_outbound_cidrs: Vec<String>,
}

impl Redirect {
    fn from_annotations(
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
fn proxy_resources(
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

/// An app's HTTP or TCP probe rewritten to `/app-health/<container>/<kind>`
/// on the admin port, which is never redirected and so works under STRICT
/// mTLS; a TCP probe left alone would always pass, since the proxy accepts
/// every redirected connection. HTTPS, gRPC and exec probes stay as they are
/// (see README).
fn rewrite_probe(
    container: &Container,
    kind: &str,
    probe: &Probe,
    config: &InjectConfig,
) -> Option<(String, AppProbe, Probe)> {
    let resolve = |port: &IntOrString| match port {
        IntOrString::Int(port) => u16::try_from(*port).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    };
    let target = if let Some(get) = &probe.http_get {
        if get
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
        {
            return None;
        }
        AppProbe {
            port: resolve(&get.port)?,
            path: get.path.clone().unwrap_or_else(|| "/".into()),
            host: get.host.clone(),
            headers: get
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            tcp: false,
        }
    } else if let Some(socket) = &probe.tcp_socket {
        if socket.host.is_some() {
            return None; // Another host: not redirected by the pod's rules.
        }
        AppProbe {
            port: resolve(&socket.port)?,
            path: String::new(),
            host: None,
            headers: Vec::new(),
            tcp: true,
        }
    } else {
        return None;
    };
    let path = format!("{APP_HEALTH_PREFIX}/{}/{kind}", container.name);
    let rewritten = Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.clone()),
            port: IntOrString::Int(i32::from(config.ports.admin)),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        tcp_socket: None,
        ..probe.clone()
    };
    Some((path, target, rewritten))
}

fn volumes(service_account: &str) -> Vec<Volume> {
    vec![
        // Optional, so that a pod never waits on them: the proxy is not
        // ready until both are there, and picks them up when they are.
        Volume {
            name: CONFIG_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: plexus_config::CONFIGMAP_NAME.into(),
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: IDENTITY_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(identity_secret_name(service_account)),
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: PODINFO_VOLUME.into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: "labels".into(),
                    field_ref: Some(field("metadata.labels")),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]
}

fn field(path: &str) -> ObjectFieldSelector {
    ObjectFieldSelector {
        field_path: path.into(),
        ..Default::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(field(path)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn capabilities(add: &[&str]) -> Capabilities {
    Capabilities {
        add: (!add.is_empty()).then(|| add.iter().map(|c| (*c).to_owned()).collect()),
        drop: Some(vec!["ALL".into()]),
    }
}

fn init_container(config: &InjectConfig, redirect: &Redirect) -> Container {
    let ports = &config.ports;
    let mut args = vec![
        "init".to_owned(),
        "--proxy-uid".into(),
        PROXY_UID.to_string(),
        "--inbound-port".into(),
        ports.inbound.to_string(),
        "--outbound-port".into(),
        ports.outbound.to_string(),
        "--skip-inbound-ports".into(),
        redirect.skip_inbound_ports.join(","),
    ];
    if !redirect.skip_outbound_ports.is_empty() {
        args.extend([
            "--skip-outbound-ports".into(),
            redirect.skip_outbound_ports.join(","),
        ]);
    }
    if !redirect.skip_outbound_cidrs.is_empty() {
        args.extend([
            "--skip-outbound-cidrs".into(),
            redirect.skip_outbound_cidrs.join(","),
        ]);
    }
    Container {
        name: INIT_CONTAINER.into(),
        image: Some(config.proxy.image.clone()),
        image_pull_policy: config.proxy.image_pull_policy.clone(),
        args: Some(args),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "10m"), ("memory", "10Mi")])),
            limits: Some(quantities(&[("cpu", "100m"), ("memory", "50Mi")])),
            ..Default::default()
        }),
        // Root inside the pod's network namespace, with only the two
        // capabilities that programming nftables needs.
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            privileged: Some(false),
            capabilities: Some(capabilities(&["NET_ADMIN", "NET_RAW"])),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

fn proxy_container(
    config: &InjectConfig,
    resources: &ResourceRequirements,
    app_probes: &BTreeMap<String, AppProbe>,
    exit_with_app: bool,
) -> Container {
    let ports = &config.ports;
    let admin_get = |path: &str| HTTPGetAction {
        path: Some(path.into()),
        port: IntOrString::Int(i32::from(ports.admin)),
        scheme: Some("HTTP".into()),
        ..Default::default()
    };
    let mut env_vars = vec![
        env_field("PLEXUS_POD_NAME", "metadata.name"),
        env_field("PLEXUS_POD_NAMESPACE", "metadata.namespace"),
        env_field("PLEXUS_SERVICE_ACCOUNT", "spec.serviceAccountName"),
        env_field("PLEXUS_POD_IP", "status.podIP"),
        env_field("PLEXUS_NODE_NAME", "spec.nodeName"),
        env("PLEXUS_LOG", config.proxy.log_level.clone()),
        env(
            "PLEXUS_ACCESS_LOG",
            config.proxy.access_log_encoding.to_string(),
        ),
        env("PLEXUS_INBOUND_PORT", ports.inbound.to_string()),
        env("PLEXUS_OUTBOUND_PORT", ports.outbound.to_string()),
        env("PLEXUS_ADMIN_PORT", ports.admin.to_string()),
        env("PLEXUS_CONFIG_DIR", CONFIG_DIR),
        env("PLEXUS_IDENTITY_DIR", IDENTITY_DIR),
        env("PLEXUS_PODINFO_DIR", PODINFO_DIR),
    ];
    if let Some(format) = &config.proxy.access_log_format {
        env_vars.push(env("PLEXUS_ACCESS_LOG_FORMAT", format.clone()));
    }
    if !app_probes.is_empty() {
        env_vars.push(env(APP_PROBES_ENV, to_value(app_probes).to_string()));
    }
    if exit_with_app {
        env_vars.push(env("PLEXUS_EXIT_WITH_APP", "true"));
    }
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    };
    let mut container = Container {
        name: PROXY_CONTAINER.into(),
        image: Some(config.proxy.image.clone()),
        image_pull_policy: config.proxy.image_pull_policy.clone(),
        args: Some(vec!["run".into()]),
        env: Some(env_vars),
        ports: Some(vec![
            ContainerPort {
                name: Some("plexus-admin".into()),
                container_port: i32::from(ports.admin),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("plexus-inbound".into()),
                container_port: i32::from(ports.inbound),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(admin_get("/ready")),
            period_seconds: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(admin_get("/live")),
            initial_delay_seconds: Some(10),
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        resources: Some(resources.clone()),
        security_context: Some(SecurityContext {
            run_as_user: Some(PROXY_UID),
            run_as_group: Some(PROXY_UID),
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            privileged: Some(false),
            capabilities: Some(capabilities(&[])),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount(CONFIG_VOLUME, CONFIG_DIR),
            mount(IDENTITY_VOLUME, IDENTITY_DIR),
            mount(PODINFO_VOLUME, PODINFO_DIR),
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    if config.native_sidecars {
        // The kubelet starts the next container once this probe passes.
        container.restart_policy = Some("Always".into());
        container.startup_probe = Some(Probe {
            http_get: Some(admin_get("/ready")),
            period_seconds: Some(1),
            failure_threshold: Some(120),
            ..Default::default()
        });
    } else {
        // The kubelet starts the next container only once postStart
        // returns: the app starts after the proxy is ready.
        container.lifecycle = Some(Lifecycle {
            post_start: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec![
                        "/plexus-proxy".into(),
                        "wait-ready".into(),
                        "--timeout".into(),
                        "120s".into(),
                    ]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    container
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).expect("pod")
    }

    fn config() -> InjectConfig {
        InjectConfig::new(ProxyDefaults::default(), false, "plexus-system")
    }

    fn enabled() -> BTreeMap<String, String> {
        [(INJECT_LABEL.to_owned(), INJECT_ENABLED.to_owned())].into()
    }

    #[test]
    fn pod_labels_win_over_the_namespace() {
        let plain = pod(json!({"spec": {"containers": [{"name": "app"}]}}));
        let out = pod(json!({"metadata": {"labels": {INJECT_LABEL: "disabled"}},
                             "spec": {"containers": [{"name": "app"}]}}));
        let opt_in = pod(
            json!({"metadata": {"annotations": {INJECT_LABEL: "enabled"}},
                                "spec": {"containers": [{"name": "app"}]}}),
        );
        let c = config();
        assert_eq!(wants_injection(&plain, "demo", &enabled(), &c), Ok(()));
        assert_eq!(
            wants_injection(&plain, "demo", &BTreeMap::new(), &c),
            Err(Skip::NotEnabled)
        );
        assert_eq!(
            wants_injection(&out, "demo", &enabled(), &c),
            Err(Skip::OptedOut)
        );
        assert_eq!(
            wants_injection(&opt_in, "demo", &BTreeMap::new(), &c),
            Ok(())
        );
        assert_eq!(
            wants_injection(&opt_in, "kube-system", &enabled(), &c),
            Err(Skip::SystemNamespace)
        );
        assert_eq!(
            wants_injection(&opt_in, "plexus-system", &enabled(), &c),
            Err(Skip::SystemNamespace)
        );
    }

    #[test]
    fn bad_annotations_are_errors_not_patches() {
        let c = config();
        for (key, value) in [
            (PROXY_MEMORY, "lots"),
            (SKIP_INBOUND_PORTS, "80,http"),
            (SKIP_OUTBOUND_PORTS, "9000-80"),
            (SKIP_OUTBOUND_CIDRS, "10.0.0.0/33"),
            (SKIP_OUTBOUND_CIDRS, "10.0.0.0"),
        ] {
            let p = pod(json!({"metadata": {"annotations": {key: value}},
                               "spec": {"containers": [{"name": "app"}]}}));
            assert!(patch(&p, &c).is_err(), "{key}={value} was accepted");
        }
        let good = pod(json!({"metadata": {"annotations": {
                SKIP_OUTBOUND_CIDRS: "10.0.0.0/8, fd00::/8", SKIP_OUTBOUND_PORTS: "25,8000-8100",
                PROXY_CPU: "0.5", PROXY_MEMORY_LIMIT: "1Gi"}},
            "spec": {"containers": [{"name": "app"}]}}));
        assert!(patch(&good, &c).is_ok());
    }

    #[test]
    fn a_patched_pod_is_not_injected_again() {
        for native in [false, true] {
            let c = InjectConfig::new(ProxyDefaults::default(), native, "plexus-system");
            let original = pod(json!({"metadata": {"name": "p"},
                "spec": {"containers": [{"name": "app", "readinessProbe": {"httpGet": {"port": 80}}}],
                         "initContainers": [{"name": "setup"}], "restartPolicy": "OnFailure"}}));
            let ops = patch(&original, &c).expect("patch");
            let mut doc = to_value(&original);
            json_patch::patch(&mut doc, &ops).expect("the patch applies");
            let injected: Pod = serde_json::from_value(doc).expect("still a pod");
            assert!(is_injected(&injected));
            assert_eq!(
                inject(&injected, "demo", &enabled(), &c),
                Ok(Outcome::Skipped(Skip::AlreadyInjected))
            );
        }
    }
}
