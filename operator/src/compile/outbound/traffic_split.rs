//! SMI TrafficSplits: a weighted route for the apex service, to the
//! backend Services.

use plexus_config as cfg;
use plexus_crds::traffic_split::TrafficSplitSpec;

use super::super::check::Check;
use super::super::{Key, Kind, State, by_age};
use super::{Dests, RouteSet, Visibility};

/// Judges every TrafficSplit and adds the routes of those accepted.
pub(super) fn compile(state: &mut State<'_>, dests: &mut Dests) {
    for ts in by_age(&state.input.traffic_splits) {
        let key = Key::of(Kind::TrafficSplit, ts);
        let mut check = Check::default();
        let apex = state.qualify(&ts.spec.service, &key.namespace);
        let targets = dests.lookup(&apex);
        if targets.is_empty() {
            check.missing("spec.service", format!("no Service is named {apex}"));
        }
        let weighted = convert(&ts.spec, &mut check, |service| {
            let host = state.qualify(service, &key.namespace);
            let exists = !dests.lookup(&host).is_empty();
            (host, exists)
        });
        if !state.judge(
            &key,
            ts.metadata.generation,
            check.finish(key.kind, &ts.spec),
        ) {
            continue;
        }
        let route = cfg::HttpRoute {
            name: key.origin(),
            backends: weighted,
            ..Default::default()
        };
        for t in targets {
            dests.all[t].routes.push(RouteSet {
                key: key.clone(),
                visibility: Visibility::All,
                http: vec![route.clone()],
                tls: Vec::new(),
                tcp: Vec::new(),
            });
        }
    }
}

/// The split's backends with integer percentages; `resolve` qualifies a
/// backend Service's name and says whether there is such a Service.
fn convert(
    spec: &TrafficSplitSpec,
    check: &mut Check,
    resolve: impl Fn(&str) -> (String, bool),
) -> Vec<cfg::Backend> {
    if !spec.matches.is_empty() {
        check.unsupported(
            "spec.matches",
            "HTTPRouteGroup matches are not implemented; the split would apply to every request",
        );
    }
    let mut weighted = Vec::new();
    for (i, b) in spec.backends.iter().enumerate() {
        let (host, exists) = resolve(&b.service);
        if !exists {
            check.missing(
                format!("spec.backends[{i}].service"),
                format!("no Service is named {host}"),
            );
        }
        match b.weight_millis() {
            Ok(w) => weighted.push((host, w)),
            Err(e) => check.invalid(
                format!("spec.backends[{i}].weight"),
                format!("{:?} is not a weight", e.0),
            ),
        }
    }
    let total: u64 = weighted.iter().map(|(_, w)| w).sum();
    if total == 0 && check.ok() {
        check.invalid("spec.backends", "the weights sum to 0");
    }
    percentages(&weighted, total)
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .map(|(host, weight)| cfg::Backend {
            host,
            weight,
            ..Default::default()
        })
        .collect()
}

/// Integer percentages summing to 100 (largest remainder).
fn percentages(weighted: &[(String, u64)], total: u64) -> Vec<(String, u32)> {
    if total == 0 {
        return Vec::new();
    }
    let mut shares: Vec<(String, u32, u64)> = weighted
        .iter()
        .map(|(h, w)| {
            let scaled = w * 100;
            (
                h.clone(),
                u32::try_from(scaled / total).unwrap_or(100),
                scaled % total,
            )
        })
        .collect();
    let assigned: u32 = shares.iter().map(|s| s.1).sum();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| shares[b].2.cmp(&shares[a].2).then(a.cmp(&b)));
    for &i in order
        .iter()
        .take(100usize.saturating_sub(assigned as usize))
    {
        shares[i].1 += 1;
    }
    shares.into_iter().map(|(h, w, _)| (h, w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_become_percentages() {
        let spec: TrafficSplitSpec = serde_json::from_value(serde_json::json!({
            "service": "web",
            "backends": [{"service": "web-v1", "weight": 2}, {"service": "web-v2", "weight": 1}]
        }))
        .expect("spec");
        let mut check = Check::default();
        let backends = convert(&spec, &mut check, |s| {
            (format!("{s}.demo.svc.cluster.local"), true)
        });
        assert!(check.ok());
        let weights: Vec<_> = backends
            .iter()
            .map(|b| (b.host.as_str(), b.weight))
            .collect();
        assert_eq!(
            weights,
            [
                ("web-v1.demo.svc.cluster.local", 67),
                ("web-v2.demo.svc.cluster.local", 33)
            ]
        );
    }

    #[test]
    fn a_missing_backend_is_named() {
        let spec: TrafficSplitSpec = serde_json::from_value(serde_json::json!({
            "service": "web", "backends": [{"service": "nowhere", "weight": 1}]
        }))
        .expect("spec");
        let mut check = Check::default();
        convert(&spec, &mut check, |s| (s.to_owned(), false));
        let rejection = check
            .finish(Kind::TrafficSplit, &spec)
            .expect_err("rejected");
        assert_eq!(rejection.reason, "RefNotFound");
        assert!(rejection.message.starts_with("spec.backends[0].service"));
    }
}
