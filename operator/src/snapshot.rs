//! The edge: converts Kubernetes objects into the compiler's input, once.
//! Pure functions, so that golden tests run them too.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use plexus_crds::keys::{INJECT_DISABLED, INJECT_ENABLED, INJECT_LABEL, PROXY_CONTAINER};

use crate::compile::{EndpointInput, Input, ServiceInput, ServicePortInput};

/// What the compiler needs of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PodView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Pod IP (empty until assigned).
    pub ip: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// ServiceAccount.
    pub service_account: String,
    /// Ready and not terminating.
    pub ready: bool,
    /// A Plexus proxy runs in it.
    pub meshed: bool,
    /// Named container ports.
    pub ports: BTreeMap<String, u16>,
}

/// A pod's view.
pub fn pod_view(pod: &Pod) -> PodView {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let ready = pod.metadata.deletion_timestamp.is_none()
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let containers = spec.into_iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    });
    let mut meshed = false;
    let mut ports = BTreeMap::new();
    for c in containers {
        meshed |= c.name == PROXY_CONTAINER;
        for p in c.ports.iter().flatten() {
            if let (Some(name), Ok(port)) = (&p.name, u16::try_from(p.container_port)) {
                ports.insert(name.clone(), port);
            }
        }
    }
    PodView {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        ip: status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        labels: pod.labels().clone(),
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        ready,
        meshed,
        ports,
    }
}

/// A Service as the compiler needs it; `None` for ExternalName Services.
pub fn service_input(svc: &Service) -> Option<ServiceInput> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let cluster_ip = spec
        .cluster_ip
        .clone()
        .filter(|ip| !ip.is_empty() && ip != "None");
    Some(ServiceInput {
        namespace: svc.namespace().unwrap_or_default(),
        name: svc.name_any(),
        cluster_ip,
        ports: spec
            .ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .filter_map(|p| {
                let port = u16::try_from(p.port).ok()?;
                let (target_port, target_port_name) = match &p.target_port {
                    None => (Some(port), None),
                    Some(IntOrString::Int(n)) => (u16::try_from(*n).ok(), None),
                    Some(IntOrString::String(s)) => match s.parse::<u16>() {
                        Ok(n) => (Some(n), None),
                        Err(_) => (None, Some(s.clone())),
                    },
                };
                Some(ServicePortInput {
                    name: p.name.clone(),
                    port,
                    target_port,
                    target_port_name,
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect(),
        selector: spec.selector.clone().filter(|s| !s.is_empty()),
    })
}

fn endpoint(svc: &ServiceInput, pod: &PodView, ports: BTreeMap<u16, u16>) -> EndpointInput {
    EndpointInput {
        namespace: svc.namespace.clone(),
        service: svc.name.clone(),
        ip: pod.ip.clone(),
        service_account: Some(pod.service_account.clone()),
        labels: pod.labels.clone(),
        meshed: pod.meshed,
        ports,
    }
}

/// Endpoints from ready pods matched against the Services' selectors (for
/// API servers without `discovery.k8s.io/v1`).
pub fn endpoints_from_pods(services: &[ServiceInput], pods: &[PodView]) -> Vec<EndpointInput> {
    let mut by_namespace: HashMap<&str, Vec<&PodView>> = HashMap::new();
    for pod in pods.iter().filter(|p| p.ready && !p.ip.is_empty()) {
        by_namespace.entry(&pod.namespace).or_default().push(pod);
    }
    let mut endpoints = Vec::new();
    for svc in services {
        let Some(selector) = &svc.selector else {
            continue;
        };
        for pod in by_namespace
            .get(svc.namespace.as_str())
            .into_iter()
            .flatten()
        {
            if !plexus_config::selects(selector, &pod.labels) {
                continue;
            }
            let ports = svc
                .ports
                .iter()
                .filter_map(|p| Some((p.port, *pod.ports.get(p.target_port_name.as_ref()?)?)))
                .collect();
            endpoints.push(endpoint(svc, pod, ports));
        }
    }
    endpoints
}

/// Endpoints from EndpointSlices, with labels and ServiceAccounts from the
/// pods they name.
pub fn endpoints_from_slices(
    services: &[ServiceInput],
    slices: &[EndpointSlice],
    pods: &HashMap<(String, String), PodView>,
) -> Vec<EndpointInput> {
    let services: HashMap<(&str, &str), &ServiceInput> = services
        .iter()
        .map(|s| ((s.namespace.as_str(), s.name.as_str()), s))
        .collect();
    let mut endpoints = Vec::new();
    for slice in slices {
        let namespace = slice.namespace().unwrap_or_default();
        let Some(name) = slice.labels().get("kubernetes.io/service-name") else {
            continue;
        };
        let Some(svc) = services.get(&(namespace.as_str(), name.as_str())) else {
            continue;
        };
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let ports: BTreeMap<u16, u16> = svc
            .ports
            .iter()
            .filter(|p| p.target_port_name.is_some())
            .filter_map(|p| {
                let sp = slice.ports.iter().flatten().find(|s| s.name == p.name)?;
                Some((p.port, u16::try_from(sp.port?).ok()?))
            })
            .collect();
        for e in &slice.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let Some(ip) = e.addresses.first() else {
                continue;
            };
            if !ready {
                continue;
            }
            let pod = e
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| pods.get(&(namespace.clone(), r.name.clone().unwrap_or_default())));
            let view = pod.cloned().unwrap_or_else(|| PodView {
                ip: ip.clone(),
                ..Default::default()
            });
            let mut input = endpoint(svc, &view, ports.clone());
            input.ip = ip.clone();
            if pod.is_none() {
                input.service_account = None;
            }
            endpoints.push(input);
        }
    }
    endpoints
}

/// Namespaces whose proxies need a configuration, with their number of
/// meshed pods: namespaces labelled for injection, and namespaces with pods
/// that opted in. The mesh's own namespace and kube-system never are, nor
/// namespaces being deleted (the API server refuses new objects there).
pub fn injected_namespaces(
    namespaces: &[Namespace],
    pods: &[PodView],
    mesh_namespace: &str,
) -> BTreeMap<String, usize> {
    let mut injected: BTreeMap<String, usize> = namespaces
        .iter()
        .filter(|ns| ns.labels().get(INJECT_LABEL).map(String::as_str) == Some(INJECT_ENABLED))
        .map(|ns| (ns.name_any(), 0))
        .collect();
    for pod in pods {
        let label = pod.labels.get(INJECT_LABEL).map(String::as_str);
        if pod.meshed || label == Some(INJECT_ENABLED) {
            let count = injected.entry(pod.namespace.clone()).or_default();
            if pod.meshed && label != Some(INJECT_DISABLED) {
                *count += 1;
            }
        }
    }
    injected.remove(mesh_namespace);
    injected.remove("kube-system");
    for ns in namespaces {
        if ns.metadata.deletion_timestamp.is_some() {
            injected.remove(&ns.name_any());
        }
    }
    injected
}

/// The keys of a Secret that hold CA certificates, as Istio reads a
/// `credentialName` Secret (`ca.crt` of a TLS Secret, `cacert` of a
/// generic one).
pub const CA_KEYS: [&str; 2] = ["ca.crt", "cacert"];

/// Drops every key of a Secret but its CA certificates, and what the
/// compiler does not read: the watch keeps no private key in memory.
pub fn slim_secret(secret: &mut Secret) {
    secret.metadata.managed_fields = None;
    secret.metadata.annotations = None;
    secret.string_data = None;
    if let Some(data) = &mut secret.data {
        data.retain(|key, _| CA_KEYS.contains(&key.as_str()));
    }
}

/// A Secret's CA certificates, by its namespace and name; none when it
/// holds none (or they are not text).
pub fn credential(secret: &Secret) -> Option<((String, String), String)> {
    let data = secret.data.as_ref()?;
    let ca = CA_KEYS.iter().find_map(|key| data.get(*key))?;
    let ca = String::from_utf8(ca.0.clone()).ok()?;
    Some(((secret.namespace()?, secret.name_any()), ca))
}

/// The compiler's input from objects given as JSON (Namespaces, Services,
/// Pods, Secrets, the Mesh and the mesh's resources), converted as the controller
/// converts what its watches see: endpoints are the ready Pods matched to
/// the Services' selectors (the 1.20 path). For tests and tools that read
/// manifests.
pub fn input_from_objects(
    objects: impl IntoIterator<Item = serde_json::Value>,
    root_namespace: &str,
    cluster_domain: &str,
) -> Result<Input, String> {
    let mut input = Input {
        root_namespace: root_namespace.to_owned(),
        cluster_domain: cluster_domain.to_owned(),
        ..Default::default()
    };
    let mut namespaces = Vec::new();
    let mut pods = Vec::new();
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let bad = |e: serde_json::Error| format!("{kind}: {e}");
        match kind.as_str() {
            "Namespace" => {
                namespaces.push(serde_json::from_value::<Namespace>(object).map_err(bad)?)
            }
            "Service" => {
                let svc: Service = serde_json::from_value(object).map_err(bad)?;
                input.services.extend(service_input(&svc));
            }
            "Pod" => pods.push(pod_view(
                &serde_json::from_value::<Pod>(object).map_err(bad)?,
            )),
            "Mesh" => input.mesh = serde_json::from_value(object["spec"].clone()).map_err(bad)?,
            "Secret" => {
                let secret: Secret = serde_json::from_value(object).map_err(bad)?;
                input.credentials.extend(credential(&secret));
            }
            _ => {
                if !input.add_resource(object)? {
                    return Err(format!("unexpected kind {kind:?}"));
                }
            }
        }
    }
    input.namespaces = namespaces.iter().map(|n| n.name_any()).collect();
    input.endpoints = endpoints_from_pods(&input.services, &pods);
    input.injected = injected_namespaces(&namespaces, &pods, root_namespace);
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> ServiceInput {
        let svc: Service = serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "demo" },
            "spec": { "clusterIP": "198.19.0.9", "selector": { "app": "web" },
                      "ports": [{ "name": "http", "port": 80, "targetPort": "http" },
                                { "name": "metrics", "port": 9090, "targetPort": 9090 }] }
        }))
        .expect("Service");
        service_input(&svc).expect("not ExternalName")
    }

    fn pod(name: &str, ip: &str, ready: bool, port: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "demo", "labels": { "app": "web", "version": name } },
            "spec": { "serviceAccountName": "web", "containers": [
                { "name": "app", "ports": [{ "name": "http", "containerPort": port }] },
                { "name": PROXY_CONTAINER }
            ]},
            "status": { "podIP": ip, "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }] }
        }))
        .expect("Pod")
    }

    #[test]
    fn ready_pods_become_endpoints_with_named_ports_resolved() {
        let pods = [
            pod("a", "198.18.0.5", true, 8080),
            pod("b", "198.18.0.6", false, 8080),
        ];
        let views: Vec<PodView> = pods.iter().map(pod_view).collect();
        let endpoints = endpoints_from_pods(&[service()], &views);
        assert_eq!(endpoints.len(), 1);
        let e = &endpoints[0];
        assert_eq!(e.ip, "198.18.0.5");
        assert_eq!(e.service_account.as_deref(), Some("web"));
        assert!(e.meshed);
        assert_eq!(e.ports, BTreeMap::from([(80, 8080)]));
        assert_eq!(e.labels.get("version").map(String::as_str), Some("a"));
    }

    #[test]
    fn endpoint_slices_give_the_same_endpoints() {
        let pods: HashMap<(String, String), PodView> = [pod("a", "198.18.0.5", true, 8081)]
            .iter()
            .map(|p| (("demo".to_owned(), p.name_any()), pod_view(p)))
            .collect();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": { "name": "web-x", "namespace": "demo", "labels": { "kubernetes.io/service-name": "web" } },
            "addressType": "IPv4",
            "ports": [{ "name": "http", "port": 8081 }, { "name": "metrics", "port": 9090 }],
            "endpoints": [
                { "addresses": ["198.18.0.5"], "conditions": { "ready": true }, "targetRef": { "kind": "Pod", "name": "a" } },
                { "addresses": ["198.18.0.7"], "conditions": { "ready": false }, "targetRef": { "kind": "Pod", "name": "c" } },
                { "addresses": ["198.18.0.99"], "conditions": { "ready": true } }
            ]
        }))
        .expect("EndpointSlice");
        let endpoints = endpoints_from_slices(&[service()], &[slice], &pods);
        assert_eq!(endpoints.len(), 2, "{endpoints:?}");
        assert_eq!(endpoints[0].ports, BTreeMap::from([(80, 8081)]));
        assert_eq!(endpoints[0].service_account.as_deref(), Some("web"));
        assert!(endpoints[0].meshed);
        // An address without a pod (a manually managed endpoint) has no identity.
        assert_eq!(endpoints[1].service_account, None);
        assert!(!endpoints[1].meshed);
    }

    #[test]
    fn injected_namespaces_are_labelled_or_have_opted_in_pods() {
        let ns = |name: &str, label: Option<&str>| -> Namespace {
            serde_json::from_value(json!({ "metadata": { "name": name, "labels":
                label.map(|l| json!({ INJECT_LABEL: l })).unwrap_or(json!({})) } }))
            .expect("Namespace")
        };
        let mut opted_in = pod_view(&pod("x", "198.18.0.8", true, 80));
        opted_in.namespace = "apps".into();
        opted_in.meshed = false;
        opted_in
            .labels
            .insert(INJECT_LABEL.into(), INJECT_ENABLED.into());
        let meshed = pod_view(&pod("y", "198.18.0.9", true, 80));
        let mut leaving = pod_view(&pod("z", "198.18.0.10", true, 80));
        leaving.namespace = "leaving".into();
        let mut terminating = ns("leaving", Some("enabled"));
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let injected = injected_namespaces(
            &[
                ns("demo", Some("enabled")),
                ns("off", Some("disabled")),
                ns("plexus-system", Some("enabled")),
                ns("apps", None),
                terminating,
            ],
            &[opted_in, meshed, leaving],
            "plexus-system",
        );
        assert_eq!(
            injected,
            BTreeMap::from([("apps".into(), 0), ("demo".into(), 1)])
        );
    }

    #[test]
    fn credentials_reach_only_their_namespace_and_only_their_ca() {
        let mut secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "upstream-tls", "namespace": "demo"},
            "data": {"ca.crt": "Y2E=", "tls.key": "a2V5", "tls.crt": "Y2VydA=="}
        }))
        .expect("Secret");
        slim_secret(&mut secret);
        let kept: Vec<&String> = secret.data.as_ref().expect("data").keys().collect();
        assert_eq!(kept, ["ca.crt"], "no key stays in the watch's memory");
        let namespace = |name: &str| {
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "labels": {"plexus.dev/inject": "enabled"}}})
        };
        let objects = vec![
            namespace("demo"),
            namespace("apps"),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "upstream-tls", "namespace": "demo"},
                   "data": {"ca.crt": "Y2E=", "tls.key": "a2V5"}}),
            json!({"apiVersion": "plexus.dev/v1alpha1", "kind": "ServiceEntry",
                   "metadata": {"name": "upstream", "namespace": "demo"},
                   "spec": {"hosts": ["upstream.example.com"], "resolution": "DNS",
                            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]}}),
            json!({"apiVersion": "plexus.dev/v1alpha1", "kind": "DestinationRule",
                   "metadata": {"name": "upstream", "namespace": "demo"},
                   "spec": {"host": "upstream.example.com",
                            "trafficPolicy": {"tls": {"mode": "SIMPLE", "credentialName": "upstream-tls"}}}}),
        ];
        let input = input_from_objects(objects, "plexus-system", "cluster.local").expect("input");
        let output = crate::compile::compile(&input);
        let demo = &output.configs["demo"].credentials;
        assert_eq!(demo.keys().collect::<Vec<_>>(), ["upstream-tls"]);
        assert_eq!(demo["upstream-tls"].ca_certificates, "ca");
        // The rule is seen in `apps` too, but the Secret is demo's.
        assert!(output.configs["apps"].credentials.is_empty());
        // Its status says where the proxies refuse to originate for want of it.
        let accepted = output
            .verdicts
            .values()
            .next()
            .expect("a verdict")
            .accepted();
        assert!(
            accepted.message.ends_with(
                "Note: spec.trafficPolicy.tls.credentialName: no Secret \"upstream-tls\" with a \
                 CA certificate (ca.crt or cacert) in namespace apps, where it applies: the \
                 proxies there refuse to originate TLS."
            ),
            "{}",
            accepted.message
        );
        let json = serde_json::to_string(&output.configs["demo"]).expect("JSON");
        assert!(!json.contains("a2V5") && !json.contains("key\""), "{json}");
    }
}
