use std::sync::Arc;

use plexus_config::ProxyConfig;

use super::*;
use crate::balance::Clusters;
use crate::routing::Table;

fn config() -> ProxyConfig {
    crate::testing::web(&[("198.18.0.7", Some("web")), ("198.18.0.8", None)], None)
}

fn snapshot(config: ProxyConfig) -> Snapshot {
    let table = Table::new(Arc::new(config)).expect("compiles");
    let clusters = Clusters::new(&table, None, &Default::default());
    Snapshot {
        table,
        clusters,
        inbound: Default::default(),
    }
}

#[test]
fn plans() {
    let snapshot_ = snapshot(config());
    let to = |s: &str| s.parse::<SocketAddr>().expect("address");
    let labels = Default::default();
    let plan = |snapshot: &Snapshot, addr: &str, draw: usize| {
        let opened = Opened {
            original: to(addr),
            sni: None,
            labels: &labels,
        };
        plan(snapshot, &opened, |_| draw).0
    };
    let mesh = Plan::Mesh {
        addr: to("198.18.0.7:8080"),
        identity: "spiffe://cluster.local/ns/demo/sa/web".into(),
    };
    assert_eq!(plan(&snapshot_, "198.19.0.10:80", 0), mesh);
    // The unmeshed endpoint the balancer picked, in plaintext.
    assert_eq!(
        plan(&snapshot_, "198.19.0.10:80", 1),
        Plan::Plain(to("198.18.0.8:8080"))
    );
    // The meshed pod addressed directly.
    assert_eq!(plan(&snapshot_, "198.18.0.7:8080", 0), mesh);
    // Another port of the service's address, or anything else.
    assert_eq!(
        plan(&snapshot_, "198.19.0.10:81", 0),
        Plan::Plain(to("198.19.0.10:81"))
    );
    assert_eq!(
        plan(&snapshot_, "192.0.2.1:443", 0),
        Plan::Plain(to("192.0.2.1:443"))
    );
    // Under REGISTRY_ONLY, only the unknown destination is refused.
    let strict = snapshot(ProxyConfig {
        outbound_policy: plexus_config::OutboundPolicy::RegistryOnly,
        ..config()
    });
    assert_eq!(plan(&strict, "192.0.2.1:443", 0), Plan::Refuse);
    assert_eq!(
        plan(&strict, "198.18.0.8:8080", 0),
        Plan::Plain(to("198.18.0.8:8080"))
    );
    assert_eq!(
        plan(&strict, "198.19.0.10:80", 1),
        Plan::Plain(to("198.18.0.8:8080"))
    );
}

#[test]
fn an_open_connection_counts_as_in_flight() {
    let snapshot = snapshot(config());
    let to = |s: &str| s.parse::<SocketAddr>().expect("address");
    let labels = Default::default();
    let opened = Opened {
        original: to("198.19.0.10:80"),
        sni: None,
        labels: &labels,
    };
    let (_, guard) = plan(&snapshot, &opened, |_| 0);
    let cluster = snapshot
        .cluster(snapshot.table.service_cluster(0, 80).expect("web:80"))
        .expect("cluster");
    assert_eq!(cluster.endpoints[0].in_flight(), 1);
    drop(guard);
    assert_eq!(cluster.endpoints[0].in_flight(), 0);
}
