use std::sync::Arc;

use plexus_config::{LoadBalancer, ProxyConfig};

use super::*;

fn config(endpoints: &[&str], lb: Option<LoadBalancer>) -> ProxyConfig {
    let meshed: Vec<(&str, Option<&str>)> = endpoints.iter().map(|ip| (*ip, Some("web"))).collect();
    crate::testing::web(&meshed, lb)
}

fn clusters(config: ProxyConfig, previous: Option<&Clusters>) -> (Table, Clusters) {
    let table = Table::new(Arc::new(config)).expect("compiles");
    let clusters = Clusters::new(&table, previous, &Default::default());
    (table, clusters)
}

fn web(table: &Table, clusters: &Clusters) -> Arc<Cluster> {
    clusters
        .get(table.service_cluster(0, 80).expect("web:80"))
        .expect("cluster")
        .clone()
}

#[test]
fn least_request_prefers_the_idle_endpoint() {
    let (table, clusters) = clusters(config(&["198.18.0.20", "198.18.0.21"], None), None);
    let all = web(&table, &clusters);
    assert_eq!(all.balance, Balance::LeastRequest);
    let _busy: Vec<InFlight> = (0..5).map(|_| all.endpoints[0].start()).collect();
    // Draws 0 and 0 compare endpoints 0 and 1: the idle one wins.
    let mut draws = [0usize, 0].into_iter();
    let picked = all
        .pick(|_| draws.next().unwrap_or(0), None, &[])
        .expect("endpoint");
    assert_eq!(picked.addr().to_string(), "198.18.0.21:8080");
}

#[test]
fn a_dropped_request_is_no_longer_in_flight() {
    let (table, clusters) = clusters(config(&["198.18.0.20"], None), None);
    let endpoint = web(&table, &clusters).endpoints[0].clone();
    let guard = endpoint.start();
    let request = async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    };
    assert_eq!(endpoint.in_flight(), 1);
    // A request dropped while it waits (a timeout, a client gone).
    drop(request);
    assert_eq!(endpoint.in_flight(), 0);
}

#[test]
fn state_survives_configuration_versions() {
    let lb = Some(LoadBalancer::RoundRobin);
    let (table, first) = clusters(config(&["198.18.0.20", "198.18.0.21"], lb.clone()), None);
    let before = web(&table, &first);
    let picks: Vec<_> = (0..3)
        .map(|_| before.pick(|_| 0, None, &[]).expect("endpoint").addr())
        .collect();
    let held = before.endpoints[1].start();
    // A new version: a third endpoint joins.
    let (table, second) = clusters(
        config(&["198.18.0.20", "198.18.0.21", "198.18.0.22"], lb),
        Some(&first),
    );
    let after = web(&table, &second);
    assert!(Arc::ptr_eq(&before.endpoints[1], &after.endpoints[1]));
    assert_eq!(
        after.endpoints[1].in_flight(),
        1,
        "the request in flight still counts"
    );
    drop(held);
    assert_eq!(after.endpoints[1].in_flight(), 0);
    // The cursor goes on where it was (3 picks made): 3 % 3 = endpoint 0.
    assert_eq!(picks[2].to_string(), "198.18.0.20:8080");
    let next = after.pick(|_| 0, None, &[]).expect("endpoint").addr();
    assert_eq!(next.to_string(), "198.18.0.20:8080");
    let next = after.pick(|_| 0, None, &[]).expect("endpoint").addr();
    assert_eq!(next.to_string(), "198.18.0.21:8080");
}

#[test]
fn round_robin_takes_turns() {
    let lb = Some(LoadBalancer::RoundRobin);
    let (table, clusters) = clusters(config(&["198.18.0.20", "198.18.0.21"], lb), None);
    let cluster = web(&table, &clusters);
    let addrs: Vec<_> = (0..4)
        .map(|_| {
            cluster
                .pick(|_| 0, None, &[])
                .expect("endpoint")
                .addr()
                .to_string()
        })
        .collect();
    assert_eq!(
        addrs,
        [
            "198.18.0.20:8080",
            "198.18.0.21:8080",
            "198.18.0.20:8080",
            "198.18.0.21:8080"
        ]
    );
}
