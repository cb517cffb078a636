//! Gateways: their listeners, compiled (with the VirtualServices bound to
//! them) into the configuration of their namespace. No gateway proxy reads
//! them yet: the capability list enforces nothing of a Gateway.

use plexus_config as cfg;
use plexus_crds::gateway::GatewaySpec;

use super::super::check::Check;
use super::super::{Key, Kind, State, by_age};
use super::GatewayOut;

/// Judges every Gateway; the accepted ones, for VirtualServices to bind to.
pub(super) fn compile(state: &mut State<'_>) -> Vec<GatewayOut> {
    let mut gateways = Vec::new();
    for gw in by_age(&state.input.gateways) {
        let key = Key::of(Kind::Gateway, gw);
        let mut check = Check::default();
        let servers = convert(&gw.spec, &mut check);
        if state.judge(
            &key,
            gw.metadata.generation,
            check.finish(key.kind, &gw.spec),
        ) {
            gateways.push(GatewayOut {
                gateway: cfg::Gateway {
                    name: key.origin(),
                    selector: gw.spec.selector.clone(),
                    servers,
                    virtual_hosts: Vec::new(),
                },
                key,
                hosts: Vec::new(),
            });
        }
    }
    gateways
}

/// A Gateway's listeners, checked.
fn convert(spec: &GatewaySpec, check: &mut Check) -> Vec<cfg::GatewayServer> {
    let mut servers = Vec::new();
    for (i, s) in spec.servers.iter().enumerate() {
        let path = format!("spec.servers[{i}]");
        let port = check.port(format!("{path}.port.number"), s.port.number);
        let protocol: Option<cfg::GatewayProtocol> = check.parse(
            format!("{path}.port.protocol"),
            &s.port.protocol.to_ascii_uppercase(),
        );
        if s.hosts.is_empty() {
            check.invalid(format!("{path}.hosts"), "at least one host is required");
        }
        let tls_mode = s
            .tls
            .as_ref()
            .and_then(|t| t.mode.as_ref())
            .and_then(|mode| {
                check.parse::<cfg::ServerTlsMode>(format!("{path}.tls.mode"), mode.as_str())
            });
        if protocol == Some(cfg::GatewayProtocol::Https) && tls_mode.is_none() {
            check.invalid(format!("{path}.tls"), "an HTTPS server needs tls settings");
        }
        servers.push(cfg::GatewayServer {
            port,
            protocol: protocol.unwrap_or_default(),
            hosts: s.hosts.clone(),
            tls_mode,
            credential_name: s.tls.as_ref().and_then(|t| t.credential_name.clone()),
            https_redirect: s
                .tls
                .as_ref()
                .and_then(|t| t.https_redirect)
                .unwrap_or(false),
        });
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_checked_with_the_configuration_enums() {
        let spec: GatewaySpec = serde_json::from_value(serde_json::json!({
            "servers": [
                {"port": {"number": 443, "name": "https", "protocol": "https"},
                 "hosts": ["example.com"], "tls": {"mode": "SIMPLE", "credentialName": "cert"}},
                {"port": {"number": 80, "name": "x", "protocol": "SMTP"}, "hosts": ["*"]},
                {"port": {"number": 8443, "name": "y", "protocol": "HTTPS"}, "hosts": ["*"]}
            ]
        }))
        .expect("spec");
        let mut check = Check::default();
        let servers = convert(&spec, &mut check);
        assert_eq!(servers[0].protocol, cfg::GatewayProtocol::Https);
        assert_eq!(servers[0].tls_mode, Some(cfg::ServerTlsMode::Simple));
        let message = check
            .finish(Kind::Gateway, &spec)
            .expect_err("rejected")
            .message;
        assert!(
            message.contains("spec.servers[1].port.protocol: unknown value \"SMTP\""),
            "{message}"
        );
        assert!(
            message.contains("spec.servers[2].tls: an HTTPS server needs tls settings"),
            "{message}"
        );
    }
}
