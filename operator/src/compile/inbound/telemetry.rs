//! Telemetry: access logs, tracing and metrics settings of the workloads it
//! selects, merged by precedence. No proxy acts on them yet: the capability
//! list enforces nothing of a Telemetry.

use std::collections::{BTreeMap, BTreeSet};

use plexus_config as cfg;
use plexus_crds::telemetry::{StandardMetric, TelemetrySpec, WorkloadMode};

use super::super::check::Check;
use super::super::{Key, Kind, State, by_age};
use super::{Entry, Policies, TelemetryParts, target};

/// Judges every Telemetry and keeps those accepted.
pub(super) fn compile(state: &mut State<'_>, namespaces: &mut BTreeMap<String, Policies>) {
    for t in by_age(&state.input.telemetries) {
        let key = Key::of(Kind::Telemetry, t);
        let spec = &t.spec;
        let mut check = Check::default();
        let selector = target(&mut check, state, &key.namespace, spec);
        let parts = convert(spec, &mut check);
        if state.judge(&key, t.metadata.generation, check.finish(key.kind, spec)) {
            namespaces
                .entry(key.namespace.clone())
                .or_default()
                .telemetry
                .push(Entry {
                    key,
                    selector,
                    value: parts,
                });
        }
    }
}

/// The settings, checked; only the first entry of each list is used.
fn convert(spec: &TelemetrySpec, check: &mut Check) -> TelemetryParts {
    let mut parts = TelemetryParts::default();
    if spec.access_logging.len() > 1 || spec.tracing.len() > 1 || spec.metrics.len() > 1 {
        check
            .notes
            .push("only the first entry of accessLogging, tracing and metrics is used".into());
    }
    if let Some(a) = spec.access_logging.first() {
        parts.access_log = Some(cfg::AccessLog {
            enabled: !a.disabled.unwrap_or(false),
            providers: a.providers.iter().map(|p| p.name.clone()).collect(),
            mode: workload_mode(
                check,
                "spec.accessLogging[0].match.mode",
                a.traffic.as_ref().and_then(|t| t.mode.as_ref()),
            ),
        });
    }
    if let Some(tr) = spec.tracing.first() {
        parts.tracing = Some(cfg::TracingPolicy {
            sampling_percent: check.percent(
                "spec.tracing[0].randomSamplingPercentage",
                tr.random_sampling_percentage.unwrap_or(1.0),
            ),
            providers: tr.providers.iter().map(|p| p.name.clone()).collect(),
            disable_span_reporting: tr.disable_span_reporting.unwrap_or(false),
            literal_tags: tr
                .custom_tags
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.literal.as_ref()?.value.clone())))
                .collect(),
        });
        workload_mode(
            check,
            "spec.tracing[0].match.mode",
            tr.traffic.as_ref().and_then(|t| t.mode.as_ref()),
        );
    }
    if let Some(m) = spec.metrics.first() {
        let mut disabled = BTreeSet::new();
        for (i, o) in m.overrides.iter().enumerate() {
            let metric = o
                .selector
                .as_ref()
                .and_then(|s| s.metric.clone())
                .unwrap_or(StandardMetric::AllMetrics);
            check.known(
                format!("spec.metrics[0].overrides[{i}].match.metric"),
                metric.as_str(),
                metric.is_known(),
                StandardMetric::VALUES,
            );
            if o.disabled.unwrap_or(false) {
                disabled.insert(metric.as_str().to_owned());
            }
        }
        parts.metrics = Some(cfg::MetricsPolicy {
            providers: m.providers.iter().map(|p| p.name.clone()).collect(),
            disabled: disabled.into_iter().collect(),
            reporting_interval_ms: m
                .reporting_interval
                .as_ref()
                .and_then(|d| check.duration("spec.metrics[0].reportingInterval", d)),
        });
    }
    parts
}

/// Which side a setting applies to; both when unset.
fn workload_mode(check: &mut Check, path: &str, mode: Option<&WorkloadMode>) -> cfg::WorkloadMode {
    mode.and_then(|m| check.parse(path, m.as_str()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_modes() {
        let spec: TelemetrySpec = serde_json::from_value(serde_json::json!({
            "accessLogging": [{"providers": [{"name": "envoy"}], "match": {"mode": "SERVER"}}],
            "tracing": [{"randomSamplingPercentage": 10, "customTags": {"team": {"literal": {"value": "a"}}}}]
        }))
        .expect("spec");
        let mut check = Check::default();
        let parts = convert(&spec, &mut check);
        assert!(check.ok());
        let log = parts.access_log.expect("access log");
        assert_eq!((log.enabled, log.mode), (true, cfg::WorkloadMode::Server));
        let tracing = parts.tracing.expect("tracing");
        assert_eq!(tracing.sampling_percent, 10.0);
        assert_eq!(tracing.literal_tags["team"], "a");
    }

    #[test]
    fn an_unknown_mode_is_invalid() {
        let spec: TelemetrySpec = serde_json::from_value(serde_json::json!({
            "accessLogging": [{"match": {"mode": "BOTH"}}]
        }))
        .expect("spec");
        let mut check = Check::default();
        convert(&spec, &mut check);
        assert!(!check.ok());
    }
}
