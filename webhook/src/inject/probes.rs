//! The app's HTTP and TCP probes, rewritten through the proxy's admin port.

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use plexus_config::AppProbe;
use plexus_config::sidecar::APP_HEALTH_PREFIX;

use super::InjectConfig;

/// An app's HTTP or TCP probe rewritten to `/app-health/<container>/<kind>`
/// on the admin port, which is never redirected and so works under STRICT
/// mTLS; a TCP probe left alone would always pass, since the proxy accepts
/// every redirected connection. HTTPS, gRPC and exec probes stay as they are
/// (see README).
pub fn rewrite_probe(
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
