//! Times the pure compile and the encoding of its output at mesh scale
//! (1,000 Services, 1,000 VirtualServices, 5,000 endpoints, 10 injected
//! namespaces), without a cluster: `cargo bench -p plexus-operator --bench compile`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plexus_crds::virtual_service::VirtualService;
use plexus_operator::compile::{EndpointInput, Input, ServiceInput, ServicePortInput, compile};

fn input(namespaces: usize, services: usize, pods_per_service: usize) -> Input {
    let mut input = Input {
        root_namespace: "plexus-system".into(),
        cluster_domain: "cluster.local".into(),
        ..Default::default()
    };
    for n in 0..namespaces {
        input.namespaces.insert(format!("scale-{n:02}"));
        input.injected.insert(
            format!("scale-{n:02}"),
            services * pods_per_service / namespaces,
        );
    }
    for i in 0..services {
        let ns = format!("scale-{:02}", i % namespaces);
        let name = format!("svc-{i:04}");
        input.services.push(ServiceInput {
            namespace: ns.clone(),
            name: name.clone(),
            cluster_ip: Some(format!("198.19.{}.{}", i / 250, 1 + i % 250)),
            ports: vec![ServicePortInput {
                name: Some("http".into()),
                port: 80,
                target_port: Some(8080),
                ..Default::default()
            }],
            selector: Some(BTreeMap::from([("app".into(), name.clone())])),
        });
        for p in 0..pods_per_service {
            let n = i * pods_per_service + p;
            input.endpoints.push(EndpointInput {
                namespace: ns.clone(),
                service: name.clone(),
                ip: format!("198.18.{}.{}", 16 + n / 250, 1 + n % 250),
                service_account: Some("default".into()),
                labels: BTreeMap::from([
                    ("app".into(), name.clone()),
                    ("version".into(), format!("v{}", p % 2 + 1)),
                ]),
                meshed: true,
                ports: BTreeMap::new(),
            });
        }
        let vs: VirtualService = serde_json::from_value(serde_json::json!({
            "apiVersion": "plexus.dev/v1alpha1", "kind": "VirtualService",
            "metadata": { "name": name, "namespace": ns, "generation": 1 },
            "spec": { "hosts": [name], "http": [
                { "name": "api", "match": [{ "uri": { "prefix": "/api/" }, "headers": { "x-tenant": { "exact": "acme" } } }],
                  "retries": { "attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx,reset" },
                  "route": [{ "destination": { "host": name } }] },
                { "timeout": "10s", "route": [
                    { "destination": { "host": name }, "weight": 90 },
                    { "destination": { "host": format!("svc-{:04}", (i + namespaces) % services) }, "weight": 10 } ] }
            ]}
        }))
        .expect("VirtualService");
        input.virtual_services.push(vs);
    }
    input
}

fn time<T>(runs: u32, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let start = Instant::now();
        let value = f();
        best = best.min(start.elapsed());
        out = Some(value);
    }
    (best, out.expect("at least one run"))
}

fn main() {
    let input = input(10, 1000, 5);
    let (compile_time, output) = time(5, || compile(&input));
    let mut one = input.clone();
    one.injected = one.injected.into_iter().take(1).collect();
    let (one_time, _) = time(5, || compile(&one));
    println!("compile with 1 injected namespace: {one_time:.1?}");
    let (serialize_time, jsons) = time(5, || {
        output
            .configs
            .values()
            .map(|c| serde_json::to_vec(c).expect("JSON"))
            .collect::<Vec<_>>()
    });
    let (gzip_time, compressed) = time(5, || {
        jsons
            .iter()
            .map(|j| plexus_config::compress(j))
            .collect::<Vec<_>>()
    });
    let largest_json = jsons.iter().map(Vec::len).max().unwrap_or(0);
    let largest_gz = compressed.iter().map(Vec::len).max().unwrap_or(0);
    println!(
        "compile (1,000 Services, 1,000 VirtualServices, 5,000 endpoints, 10 namespaces): {compile_time:.1?} (best of 5)"
    );
    println!(
        "serialize {} configurations: {serialize_time:.1?}; gzip them: {gzip_time:.1?}",
        jsons.len()
    );
    println!("largest configuration: {largest_json} bytes of JSON, {largest_gz} bytes compressed");
}
