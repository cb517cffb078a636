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
//!
//! Files: `annotations` (what a pod's annotations change), `probes` (the
//! app's probes), `containers` (what is added), `ops` (the patch's
//! operations); the decision and the order of operations are here.

mod annotations;
mod containers;
mod ops;
mod probes;

use std::collections::BTreeMap;

use json_patch::Patch;
use k8s_openapi::api::core::v1::Pod;
use plexus_config::sidecar::{ADMIN_PORT, INBOUND_PORT, OUTBOUND_PORT};
use plexus_crds::keys::{INJECT_DISABLED, INJECT_ENABLED, INJECT_LABEL};
use plexus_crds::mesh::ProxyDefaults;
use serde_json::json;

use annotations::{Redirect, proxy_resources};
use ops::{add, add_entries, add_items, replace, to_value};

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

/// Where Kubernetes mounts a pod's API token.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

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
            inbound: INBOUND_PORT,
            outbound: OUTBOUND_PORT,
            admin: ADMIN_PORT,
        }
    }
}

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
            let Some((path, target, rewritten)) =
                probes::rewrite_probe(container, kind, probe, config)
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
        containers::volumes(service_account)
            .iter()
            .map(to_value)
            .collect(),
    );

    let init = containers::init_container(config, &redirect);
    // The ServiceAccount admission ran before this webhook: the proxy gets
    // the API token the app containers were given (it watches its
    // ConfigMap and identity Secret through the API), if they have one.
    let token = spec
        .containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .find(|m| m.mount_path == SERVICE_ACCOUNT_DIR)
        .cloned();
    let mut proxy = containers::proxy_container(
        config,
        &resources,
        &app_probes,
        exit_with_app,
        service_account,
    );
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

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

#[cfg(test)]
mod env_tests {
    use super::*;

    /// Every variable the webhook gives the proxy is one the proxy reads
    /// (`PROXY_ENV`; the proxy's own test says it reads exactly those).
    #[test]
    fn the_proxy_reads_every_variable_it_is_given() {
        for native in [false, true] {
            let config = InjectConfig::new(ProxyDefaults::default(), native, "plexus-system");
            let pod: Pod = serde_json::from_value(json!({"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "app", "readinessProbe": {"httpGet": {"port": 80}}}]
            }}))
            .expect("pod");
            let mut doc = to_value(&pod);
            json_patch::patch(&mut doc, &patch(&pod, &config).expect("patch")).expect("applies");
            let injected: Pod = serde_json::from_value(doc).expect("pod");
            let spec = injected.spec.expect("spec");
            let proxy = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|c| c.name == PROXY_CONTAINER)
                .expect("the proxy");
            let names: Vec<&str> = proxy
                .env
                .iter()
                .flatten()
                .map(|e| e.name.as_str())
                .collect();
            assert!(names.contains(&plexus_config::sidecar::ENV_SERVICE_ACCOUNT));
            for name in names {
                assert!(
                    plexus_config::sidecar::PROXY_ENV.contains(&name),
                    "the proxy does not read {name}"
                );
            }
        }
    }
}
