//! PeerAuthentication: the mTLS mode of the workloads it selects, and of
//! single ports of theirs.

use std::collections::BTreeMap;

use plexus_config as cfg;
use plexus_crds::peer_authentication::{MtlsMode, MutualTls, PeerAuthenticationSpec};

use super::super::check::Check;
use super::super::{Key, Kind, State, by_age};
use super::{Entry, Mtls, Policies, target};

/// Judges every PeerAuthentication and keeps those accepted, by namespace.
pub(super) fn compile(state: &mut State<'_>, namespaces: &mut BTreeMap<String, Policies>) {
    for pa in by_age(&state.input.peer_authentications) {
        let key = Key::of(Kind::PeerAuthentication, pa);
        let mut check = Check::default();
        let selector = target(&mut check, state, &key.namespace, &pa.spec);
        let value = convert(&pa.spec, selector.is_some(), &mut check);
        if state.judge(
            &key,
            pa.metadata.generation,
            check.finish(key.kind, &pa.spec),
        ) {
            namespaces
                .entry(key.namespace.clone())
                .or_default()
                .mtls
                .push(Entry {
                    key,
                    selector,
                    value,
                });
        }
    }
}

/// The modes, before inheritance; `selected`: it selects workloads (port
/// modes need that).
fn convert(spec: &PeerAuthenticationSpec, selected: bool, check: &mut Check) -> Mtls {
    let mode = mtls_mode(check, "spec.mtls.mode", &spec.mtls);
    let mut ports = BTreeMap::new();
    for (port, m) in &spec.port_level_mtls {
        let path = format!("spec.portLevelMtls.{port}");
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {
                ports.insert(
                    p,
                    mtls_mode(check, &format!("{path}.mode"), &Some(m.clone())),
                );
            }
            _ => check.invalid(&path, format!("{port:?} is not a port number")),
        }
    }
    if !ports.is_empty() && !selected {
        check.invalid(
            "spec.portLevelMtls",
            "port-level mTLS needs a selector or targetRef",
        );
    }
    Mtls { mode, ports }
}

fn mtls_mode(check: &mut Check, path: &str, m: &Option<MutualTls>) -> Option<cfg::MtlsMode> {
    match m.as_ref()?.mode.as_ref()? {
        MtlsMode::Unset => None,
        MtlsMode::Strict => Some(cfg::MtlsMode::Strict),
        MtlsMode::Permissive => Some(cfg::MtlsMode::Permissive),
        MtlsMode::Disable => Some(cfg::MtlsMode::Disable),
        other => {
            check.known(path, other.as_str(), false, MtlsMode::VALUES);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: serde_json::Value) -> PeerAuthenticationSpec {
        serde_json::from_value(value).expect("spec")
    }

    #[test]
    fn modes_and_port_modes() {
        let mut check = Check::default();
        let mtls = convert(
            &spec(serde_json::json!({"mtls": {"mode": "STRICT"},
                                     "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}, "9090": {"mode": "UNSET"}}})),
            true,
            &mut check,
        );
        assert!(check.ok());
        assert_eq!(mtls.mode, Some(cfg::MtlsMode::Strict));
        assert_eq!(
            mtls.ports,
            BTreeMap::from([(8080, Some(cfg::MtlsMode::Permissive)), (9090, None)])
        );
    }

    #[test]
    fn port_modes_need_a_selector_and_modes_must_be_known() {
        let mut check = Check::default();
        convert(
            &spec(serde_json::json!({"mtls": {"mode": "STRIKT"},
                                     "portLevelMtls": {"8080": {"mode": "STRICT"}}})),
            false,
            &mut check,
        );
        let message = check
            .finish(Kind::PeerAuthentication, &serde_json::json!({}))
            .expect_err("rejected")
            .message;
        assert!(
            message.contains("spec.mtls.mode: unknown value \"STRIKT\""),
            "{message}"
        );
        assert!(
            message.contains("spec.portLevelMtls: port-level mTLS needs a selector"),
            "{message}"
        );
    }
}
