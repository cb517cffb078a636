//! `--balancers`: the load balancers with one endpoint slowed. A client
//! proxy per balancer (ROUND_ROBIN, LEAST_REQUEST, PEAK_EWMA) in front of
//! the same three upstreams on loopback, two answering after 1 ms and one
//! after 10 ms, each pushed at the same fixed rate in turn (two rounds,
//! alternating); p50/p99 per balancer and the share the slow endpoint got.
//! The endpoints are outside the mesh (plaintext HTTP/1.1 from the client
//! proxy): the balancer is the client proxy's, so server proxies would only
//! add the same cost to every endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use plexus_config::{
    Endpoint, LoadBalancer, Protocol, ProxyConfig, SCHEMA, Service, ServicePort, TrafficPolicy,
};

use crate::load::{Latency, fixed_rate};
use crate::pairs::{Certs, plexus_proxy, upstream_on};
use crate::procs::Proc;
use crate::{Args, HOST, SERVICE_IP};

const FAST: Duration = Duration::from_millis(1);
const SLOW: Duration = Duration::from_millis(10);

fn config(lb: LoadBalancer, upstreams: &[SocketAddr]) -> ProxyConfig {
    ProxyConfig {
        schema: SCHEMA.into(),
        namespace: "bench".into(),
        trust_domain: "cluster.local".into(),
        services: Arc::new(vec![Service {
            namespace: "bench".into(),
            name: "upstream".into(),
            hosts: vec![HOST.into()],
            addresses: vec![SERVICE_IP.into()],
            ports: vec![ServicePort {
                port: 80,
                name: Some("http".into()),
                protocol: Protocol::Http,
                target_port: None,
            }],
            endpoints: upstreams
                .iter()
                .map(|u| Endpoint {
                    ip: u.ip().to_string(),
                    ports: [(80, u.port())].into(),
                    ..Default::default()
                })
                .collect(),
            policy: Some(TrafficPolicy {
                load_balancer: Some(lb),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// One balancer's measurement.
struct Run {
    name: &'static str,
    latency: Latency,
    errors: u64,
    slow_share: f64,
}

pub async fn compare(args: &Args, dir: &std::path::Path, certs: &Certs) -> anyhow::Result<()> {
    let mut upstreams = Vec::new();
    let mut counts: Vec<Arc<AtomicU64>> = Vec::new();
    for (ip, delay) in [
        ("127.0.0.21", FAST),
        ("127.0.0.22", FAST),
        ("127.0.0.23", SLOW),
    ] {
        let (addr, served) = upstream_on(ip, args.body, delay).await?;
        upstreams.push(addr);
        counts.push(served);
    }
    let service: SocketAddr = format!("{SERVICE_IP}:80").parse()?;
    let mut proxies: Vec<(&'static str, Proc, SocketAddr)> = Vec::new();
    for (name, lb) in [
        ("ROUND_ROBIN", LoadBalancer::RoundRobin),
        ("LEAST_REQUEST", LoadBalancer::LeastRequest),
        ("PEAK_EWMA", LoadBalancer::PeakEwma),
    ] {
        let (proc, port) = plexus_proxy(
            &args.proxy,
            &dir.join(name.to_ascii_lowercase()),
            &config(lb, &upstreams),
            &certs.plexus_client,
            &certs.root,
            ("--outbound-original-dst", service),
            None,
        )
        .await?;
        proxies.push((name, proc, format!("127.0.0.1:{port}").parse()?));
    }
    let body = Bytes::from(vec![b'p'; args.body]);
    let mut runs = Vec::new();
    for round in 0..2 {
        for i in 0..proxies.len() {
            // Each round in another order: none always goes first.
            let (name, _, addr) = &proxies[(i + round) % proxies.len()];
            eprintln!(
                "{name}: warming up, then {} rps for {} s",
                args.rate, args.fixed_seconds
            );
            fixed_rate(*addr, args.rate, 2, &body).await?;
            for c in &counts {
                c.store(0, Ordering::Relaxed);
            }
            let (latency, errors) = fixed_rate(*addr, args.rate, args.fixed_seconds, &body).await?;
            let served: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            let total = served.iter().sum::<u64>().max(1);
            runs.push(Run {
                name,
                latency,
                errors,
                slow_share: served[2] as f64 / total as f64,
            });
        }
    }
    println!(
        "\nplexus-bench --balancers: {} rps for {} s per run, {} B bodies; endpoints answer after {:?}, {:?} and {:?}",
        args.rate, args.fixed_seconds, args.body, FAST, FAST, SLOW
    );
    println!(
        "\n{:<14} {:>6} {:>9} {:>9} {:>12} {:>7}",
        "balancer", "round", "p50 ms", "p99 ms", "slow share", "errors"
    );
    for (i, run) in runs.iter().enumerate() {
        println!(
            "{:<14} {:>6} {:>9.3} {:>9.3} {:>11.1}% {:>7}",
            run.name,
            i / proxies.len() + 1,
            run.latency.p50 / 1000.0,
            run.latency.p99 / 1000.0,
            run.slow_share * 100.0,
            run.errors
        );
    }
    drop(proxies);
    Ok(())
}
