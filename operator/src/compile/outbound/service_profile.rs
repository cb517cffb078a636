//! Linkerd's ServiceProfiles, named by the host they describe: per-route
//! retryability, timeouts and failure classes, a retry budget, and opaque
//! ports (never read as HTTP).

use kube::ResourceExt;
use plexus_config as cfg;
use plexus_crds::service_profile::{RequestMatch, ResponseMatch, ServiceProfileSpec};

use super::super::check::Check;
use super::super::{Key, Kind, State, by_age};
use super::Dests;

/// Judges every ServiceProfile (the oldest of a host is in force) and
/// applies those accepted.
pub(super) fn compile(state: &mut State<'_>, dests: &mut Dests) {
    for sp in by_age(&state.input.service_profiles) {
        let key = Key::of(Kind::ServiceProfile, sp);
        let mut check = Check::default();
        let host = state.qualify(&sp.name_any(), &key.namespace);
        let targets = dests.lookup(&host);
        if targets.is_empty() {
            check.missing("metadata.name", format!("no Service is named {host}"));
        }
        let (profile, opaque) = convert(&sp.spec, key.origin(), &mut check);
        for &t in &targets {
            if dests.all[t].service.profile.is_some() {
                check
                    .notes
                    .push(format!("an older ServiceProfile for {host} is in force"));
            }
        }
        if !state.judge(
            &key,
            sp.metadata.generation,
            check.finish(key.kind, &sp.spec),
        ) {
            continue;
        }
        for t in targets {
            let dest = &mut dests.all[t];
            if dest.service.profile.is_some() {
                continue;
            }
            dest.service.profile = Some(profile.clone());
            for port in &mut dest.service.ports {
                if opaque.contains(&port.port) {
                    port.protocol = cfg::Protocol::Tcp;
                }
            }
            dest.contributors.push(key.clone());
        }
    }
}

/// The profile, and its opaque ports.
fn convert(
    spec: &ServiceProfileSpec,
    origin: String,
    check: &mut Check,
) -> (cfg::Profile, Vec<u16>) {
    let mut routes = Vec::new();
    for (i, r) in spec.routes.iter().enumerate() {
        let path = format!("spec.routes[{i}]");
        let condition = request_condition(check, &format!("{path}.condition"), &r.condition);
        let mut failure_statuses = Vec::new();
        for (j, class) in r.response_classes.iter().enumerate() {
            if class.is_failure.unwrap_or(true) {
                response_ranges(
                    check,
                    &format!("{path}.responseClasses[{j}].condition"),
                    &class.condition,
                    &mut failure_statuses,
                );
            }
        }
        routes.push(cfg::ProfileRoute {
            name: r.name.clone(),
            condition,
            retryable: r.is_retryable.unwrap_or(false),
            timeout_ms: r
                .timeout
                .as_ref()
                .and_then(|t| check.duration(format!("{path}.timeout"), t)),
            failure_statuses,
        });
    }
    let retry_budget = spec.retry_budget.as_ref().map(|b| cfg::RetryBudget {
        ratio: b.retry_ratio,
        min_per_second: b.min_retries_per_second,
        ttl_ms: check
            .duration("spec.retryBudget.ttl", &b.ttl)
            .unwrap_or(10_000),
    });
    let opaque = spec
        .opaque_ports
        .iter()
        .enumerate()
        .map(|(i, p)| check.port(format!("spec.opaquePorts[{i}]"), *p))
        .collect();
    let profile = cfg::Profile {
        name: origin,
        routes,
        retry_budget,
    };
    (profile, opaque)
}

fn request_condition(check: &mut Check, path: &str, m: &RequestMatch) -> cfg::RequestCondition {
    let mut parts = Vec::new();
    if !m.all.is_empty() {
        parts.push(cfg::RequestCondition::All(
            m.all
                .iter()
                .enumerate()
                .map(|(i, c)| request_condition(check, &format!("{path}.all[{i}]"), c))
                .collect(),
        ));
    }
    if !m.any.is_empty() {
        parts.push(cfg::RequestCondition::Any(
            m.any
                .iter()
                .enumerate()
                .map(|(i, c)| request_condition(check, &format!("{path}.any[{i}]"), c))
                .collect(),
        ));
    }
    if let Some(not) = &m.not {
        parts.push(cfg::RequestCondition::Not(Box::new(request_condition(
            check,
            &format!("{path}.not"),
            not,
        ))));
    }
    if let Some(regex) = &m.path_regex {
        check.regex(format!("{path}.pathRegex"), regex);
        parts.push(cfg::RequestCondition::PathRegex(regex.clone()));
    }
    if let Some(method) = &m.method {
        parts.push(cfg::RequestCondition::Method(method.to_ascii_uppercase()));
    }
    match parts.len() {
        0 => {
            check.invalid(
                path,
                "a condition needs one of all, any, not, pathRegex and method",
            );
            cfg::RequestCondition::default()
        }
        1 => parts.remove(0),
        _ => cfg::RequestCondition::All(parts),
    }
}

fn response_ranges(check: &mut Check, path: &str, m: &ResponseMatch, out: &mut Vec<(u16, u16)>) {
    if let Some(status) = &m.status {
        let min = status.min.unwrap_or(100);
        let max = status.max.unwrap_or(599);
        if !(100..=599).contains(&min) || !(100..=599).contains(&max) || min > max {
            check.invalid(
                format!("{path}.status"),
                format!("{min}-{max} is not a range of HTTP statuses"),
            );
        }
        out.push((
            u16::try_from(min).unwrap_or(500),
            u16::try_from(max).unwrap_or(599),
        ));
    }
    for (i, any) in m.any.iter().enumerate() {
        response_ranges(check, &format!("{path}.any[{i}]"), any, out);
    }
    if !m.all.is_empty() || m.not.is_some() {
        check.unsupported(
            path,
            "only status ranges and `any` of them are implemented in response classes",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_opaque_ports() {
        let spec: ServiceProfileSpec = serde_json::from_value(serde_json::json!({
            "routes": [{"name": "GET /api", "condition": {"method": "get", "pathRegex": "/api/.*"},
                        "isRetryable": true, "timeout": "300ms",
                        "responseClasses": [{"condition": {"status": {"min": 500, "max": 599}}, "isFailure": true}]}],
            "opaquePorts": [5432]
        }))
        .expect("spec");
        let mut check = Check::default();
        let (profile, opaque) = convert(&spec, "ServiceProfile/demo/web".into(), &mut check);
        assert!(check.ok());
        assert_eq!(opaque, [5432]);
        let route = &profile.routes[0];
        assert_eq!(
            route.condition,
            cfg::RequestCondition::All(vec![
                cfg::RequestCondition::PathRegex("/api/.*".into()),
                cfg::RequestCondition::Method("GET".into())
            ])
        );
        assert_eq!(
            (route.timeout_ms, route.failure_statuses.clone()),
            (Some(300), vec![(500, 599)])
        );
    }
}
