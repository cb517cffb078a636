//! Load balancing as DestinationRules configure it, end to end (resource,
//! the operator's compiler, proxies on loopback): round robin at the
//! destination's, a port's and a subset's level, random, least-request and
//! peak-EWMA spreads, and consistent hashing on a header, a cookie, the source address
//! and a query parameter.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use support::http_client;
use support::world::{NS, World, host, send, service, workload};

const WEB_IP: &str = "127.0.10.1";
const WEB: &str = "127.0.10.1:80";
const CLIENT: &[(&str, &str)] = &[("app", "client")];

/// Three pods of `web` (`a`, `b`, `c`, in address order), and `resources`.
async fn three(name: &str, resources: &str) -> World {
    let workloads = [
        workload("a", "127.0.0.21", &[("app", "web"), ("pair", "yes")]),
        workload("b", "127.0.0.22", &[("app", "web"), ("pair", "yes")]),
        workload("c", "127.0.0.23", &[("app", "web")]),
    ];
    let resources = resources.to_owned();
    World::start(
        name,
        &workloads,
        vec![service("web", WEB_IP, &[("app", "web")])],
        |_| resources,
    )
    .await
}

/// The apps that answered `n` calls of `path`, in order.
async fn answers(proxy: SocketAddr, path: &str, headers: &[(&str, &str)], n: usize) -> Vec<String> {
    let client = http_client(false);
    let mut seen = Vec::new();
    for _ in 0..n {
        let answer = send(&client, proxy, "GET", path, &host("web"), headers).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        seen.push(answer.body);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_takes_turns() {
    let resources = r#"
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  trafficPolicy:
    portLevelSettings:
      - {port: {number: 80}, loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
    - {name: pair, labels: {pair: "yes"}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
    - name: pair-port
      labels: {pair: "yes"}
      trafficPolicy:
        portLevelSettings: [{port: {number: 80}, loadBalancer: {simple: ROUND_ROBIN}}]
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
    - match: [{uri: {prefix: /pair-port}}]
      route: [{destination: {host: web, subset: pair-port}}]
    - match: [{uri: {prefix: /pair}}]
      route: [{destination: {host: web, subset: pair}}]
"#;
    let mut world = three("round-robin", resources).await;
    world.assert_enforced("DestinationRule/demo/web");
    let (proxy, _) = world.client(NS, CLIENT, WEB).await;
    // The port's balancer for the Service's own endpoints.
    assert_eq!(
        answers(proxy, "/", &[], 6).await,
        ["a", "b", "c", "a", "b", "c"]
    );
    // The subset's, and a port's of the subset.
    assert_eq!(answers(proxy, "/pair", &[], 4).await, ["a", "b", "a", "b"]);
    assert_eq!(
        answers(proxy, "/pair-port", &[], 4).await,
        ["a", "b", "a", "b"]
    );
}

/// How many of `n` calls (8 at a time) each app answered, with app `b`
/// slowed by `delay` ms.
async fn spread(proxy: SocketAddr, n: usize, delay: &'static str) -> BTreeMap<String, usize> {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                let client = http_client(false);
                let mut seen = BTreeMap::<String, usize>::new();
                for _ in 0..n / 8 {
                    let answer = send(
                        &client,
                        proxy,
                        "GET",
                        "/",
                        &host("web"),
                        &[("x-delay-b", delay)],
                    )
                    .await;
                    *seen.entry(answer.body).or_default() += 1;
                }
                seen
            })
        })
        .collect();
    let mut total = BTreeMap::new();
    for task in tasks {
        for (k, v) in task.await.expect("a load task") {
            *total.entry(k).or_default() += v;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_least_request_balancing() {
    let rule = |name: &str, simple: &str| {
        format!(
            "apiVersion: plexus.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec: {{host: {name}, trafficPolicy: {{loadBalancer: {{simple: {simple}}}}}}}\n---\n"
        )
    };
    let resources = [
        rule("random", "RANDOM"),
        rule("least-request", "LEAST_REQUEST"),
        rule("least-conn", "LEAST_CONN"),
        rule("unspecified", "UNSPECIFIED"),
        rule("peak-ewma", "PEAK_EWMA"),
    ]
    .concat();
    let workloads = [
        workload("a", "127.0.0.21", &[("app", "web")]),
        workload("b", "127.0.0.22", &[("app", "web")]),
    ];
    let names = [
        "random",
        "least-request",
        "least-conn",
        "unspecified",
        "peak-ewma",
    ];
    let services = names
        .iter()
        .enumerate()
        .map(|(i, name)| service(name, &format!("127.0.10.{}", 10 + i), &[("app", "web")]))
        .collect();
    let mut world = World::start("spread", &workloads, services, |_| resources).await;
    for (i, name) in names.iter().enumerate() {
        let (proxy, _) = world
            .client(NS, CLIENT, &format!("127.0.10.{}:80", 10 + i))
            .await;
        let seen = spread(proxy, 160, "50").await;
        let slow = seen.get("b").copied().unwrap_or(0);
        eprintln!("{name}, b slowed by 50 ms: {seen:?}");
        assert_eq!(seen.values().sum::<usize>(), 160, "{name}: {seen:?}");
        if *name == "random" {
            // Blind to load: about half each.
            assert!((40..=120).contains(&slow), "{name}: {seen:?}");
        } else {
            // The slow endpoint has requests in flight: the other wins.
            assert!(slow <= 40, "{name}: {seen:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_a_key_on_one_endpoint() {
    let rule = |name: &str, hash: &str| {
        format!(
            "apiVersion: plexus.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec: {{host: {name}, trafficPolicy: {{loadBalancer: {{consistentHash: {hash}}}}}}}\n---\n"
        )
    };
    let mut resources = [
        rule("by-header", "{httpHeaderName: x-user}"),
        rule(
            "by-cookie",
            "{httpCookie: {name: session, path: /, ttl: 3600s}}",
        ),
        rule("by-source", "{useSourceIp: true}"),
        rule("by-query", "{httpQueryParameterName: shard}"),
    ]
    .concat();
    // The same key at a port's level, and at a subset's.
    resources.push_str(
        r#"apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: by-level}
spec:
  host: by-level
  trafficPolicy:
    portLevelSettings: [{port: {number: 80}, loadBalancer: {consistentHash: {httpHeaderName: x-user}}}]
  subsets:
    - name: all
      labels: {app: web}
      trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
---
apiVersion: plexus.dev/v1alpha1
kind: VirtualService
metadata: {name: by-level}
spec:
  hosts: [by-level]
  http:
    - match: [{uri: {prefix: /subset}}]
      route: [{destination: {host: by-level, subset: all}}]
"#,
    );
    let workloads = [
        workload("a", "127.0.0.21", &[("app", "web")]),
        workload("b", "127.0.0.22", &[("app", "web")]),
        workload("c", "127.0.0.23", &[("app", "web")]),
        workload("d", "127.0.0.24", &[("app", "web")]),
    ];
    let names = [
        "by-header",
        "by-cookie",
        "by-source",
        "by-query",
        "by-level",
    ];
    let services = names
        .iter()
        .enumerate()
        .map(|(i, name)| service(name, &format!("127.0.10.{}", 20 + i), &[("app", "web")]))
        .collect();
    let mut world = World::start("hash", &workloads, services, |_| resources).await;
    for name in names {
        world.assert_enforced(&format!("DestinationRule/demo/{name}"));
    }
    let client = http_client(false);
    let proxy = |i: usize| format!("127.0.10.{}:80", 20 + i);
    let (header, _) = world.client(NS, CLIENT, &proxy(0)).await;
    let (cookie, _) = world.client(NS, CLIENT, &proxy(1)).await;
    let (source, _) = world.client(NS, CLIENT, &proxy(2)).await;
    let (query, _) = world.client(NS, CLIENT, &proxy(3)).await;
    let (by_level, _) = world.client(NS, CLIENT, &proxy(4)).await;

    // 1,000 calls with one key reach one endpoint; twenty keys spread.
    let endpoints = |seen: Vec<String>| seen.into_iter().collect::<BTreeSet<_>>();
    let one = endpoints(answers(header, "/", &[("x-user", "ann")], 1000).await);
    assert_eq!(one.len(), 1, "x-user: ann went to {one:?}");
    let mut keys = BTreeSet::new();
    for i in 0..20 {
        let user = format!("user-{i}");
        keys.extend(answers(header, "/", &[("x-user", &user)], 3).await);
    }
    assert!(keys.len() >= 2, "twenty keys all went to {keys:?}");

    let one = endpoints(answers(query, "/?shard=7", &[], 1000).await);
    assert_eq!(one.len(), 1, "shard=7 went to {one:?}");
    let mut keys = BTreeSet::new();
    for i in 0..20 {
        keys.extend(answers(query, &format!("/?shard={i}"), &[], 1).await);
    }
    assert!(keys.len() >= 2, "{keys:?}");

    for path in ["/", "/subset"] {
        let one = endpoints(answers(by_level, path, &[("x-user", "bob")], 200).await);
        assert_eq!(one.len(), 1, "{path}: x-user: bob went to {one:?}");
        let mut keys = BTreeSet::new();
        for i in 0..20 {
            let user = format!("user-{i}");
            keys.extend(answers(by_level, path, &[("x-user", &user)], 1).await);
        }
        assert!(keys.len() >= 2, "{path}: {keys:?}");
    }

    // Every call comes from 127.0.0.1.
    let one = endpoints(answers(source, "/", &[], 1000).await);
    assert_eq!(one.len(), 1, "one source went to {one:?}");

    // No cookie: the proxy sets one, and calls bringing it back stay.
    let first = send(&client, cookie, "GET", "/", &host("web"), &[]).await;
    let set = first.headers["set-cookie"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(
        set.starts_with("session=") && set.contains("Max-Age=3600") && set.contains("Path=/"),
        "{set}"
    );
    let value = set.split(';').next().expect("name=value").to_owned();
    let seen = endpoints(answers(cookie, "/", &[("cookie", &value)], 1000).await);
    assert_eq!(seen, BTreeSet::from([first.body]), "{value}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_an_endpoint_remaps_few_keys() {
    let rule = |name: &str| {
        format!(
            "apiVersion: plexus.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec: {{host: {name}, trafficPolicy: {{loadBalancer: {{consistentHash: {{httpHeaderName: x-user}}}}}}}}\n---\n"
        )
    };
    let resources = rule("nine") + &rule("ten");
    const NAMES: [&str; 10] = ["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"];
    const IPS: [&str; 10] = [
        "127.0.0.80",
        "127.0.0.81",
        "127.0.0.82",
        "127.0.0.83",
        "127.0.0.84",
        "127.0.0.85",
        "127.0.0.86",
        "127.0.0.87",
        "127.0.0.88",
        "127.0.0.89",
    ];
    // The same nine pods, and with the tenth.
    let workloads: Vec<_> = (0..10)
        .map(|i| {
            let labels: &'static [(&str, &str)] = if i < 9 {
                &[("app", "web"), ("nine", "yes")]
            } else {
                &[("app", "web")]
            };
            workload(NAMES[i], IPS[i], labels)
        })
        .collect();
    let services = vec![
        service("nine", "127.0.10.80", &[("nine", "yes")]),
        service("ten", "127.0.10.81", &[("app", "web")]),
    ];
    let mut world = World::start("remap", &workloads, services, |_| resources).await;
    world.assert_enforced("DestinationRule/demo/nine");
    let (nine, _) = world.client(NS, CLIENT, "127.0.10.80:80").await;
    let (ten, _) = world.client(NS, CLIENT, "127.0.10.81:80").await;
    let mut moved = 0;
    for key in 0..1000 {
        let user = format!("user-{key}");
        let before = answers(nine, "/", &[("x-user", &user)], 1).await;
        let after = answers(ten, "/", &[("x-user", &user)], 1).await;
        if before != after {
            assert_eq!(after, ["e9"], "{user} moved between the nine");
            moved += 1;
        }
    }
    // The tenth endpoint takes about a tenth of the keys, and only those.
    eprintln!("{moved} of 1000 keys moved to another endpoint");
    assert!((50..=150).contains(&moved), "{moved} of 1000 keys moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_endpoint_warms_up() {
    let rule = |name: &str, warmup: &str| {
        format!(
            "apiVersion: plexus.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec: {{host: {name}, trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN{warmup}}}}}}}\n---\n"
        )
    };
    let resources = rule("slow-start", ", warmupDurationSecs: 3s") + &rule("at-once", "");
    let workloads = [
        workload("a", "127.0.0.111", &[("app", "web")]),
        support::world::Workload {
            unready: true,
            ..workload("b", "127.0.0.112", &[("app", "web")])
        },
    ];
    let services = vec![
        service("slow-start", "127.0.10.111", &[("app", "web")]),
        service("at-once", "127.0.10.112", &[("app", "web")]),
    ];
    let resources2 = resources.clone();
    let mut world = World::start("warmup", &workloads, services, |_| resources).await;
    world.assert_enforced("DestinationRule/demo/slow-start");
    let (slow_start, _) = world.client(NS, CLIENT, "127.0.10.111:80").await;
    let (at_once, _) = world.client(NS, CLIENT, "127.0.10.112:80").await;
    let share = |seen: Vec<String>| seen.iter().filter(|s| *s == "b").count();
    let answers_of = |proxy, name: &'static str, n| async move {
        let client = http_client(false);
        let mut seen = Vec::new();
        for _ in 0..n {
            seen.push(
                send(&client, proxy, "GET", "/", &host(name), &[])
                    .await
                    .body,
            );
        }
        seen
    };
    assert_eq!(
        share(answers_of(slow_start, "slow-start", 10).await),
        0,
        "b is not Ready"
    );
    // b joins: at once it gets every other call without slow start, a
    // small share with it (a tenth of its weight at first).
    world.set_ready("b", &resources2);
    let joined = std::time::Instant::now();
    let early = share(answers_of(slow_start, "slow-start", 60).await);
    let without = share(answers_of(at_once, "at-once", 60).await);
    assert!(
        joined.elapsed() < std::time::Duration::from_millis(1_000),
        "{:?}",
        joined.elapsed()
    );
    eprintln!(
        "b's share just after it joined: {early} of 60 with slow start, {without} of 60 without"
    );
    assert_eq!(without, 30);
    assert!(early <= 15, "{early} of 60 during slow start");
    // After the warm-up, its full share.
    tokio::time::sleep(std::time::Duration::from_millis(3_100).saturating_sub(joined.elapsed()))
        .await;
    assert_eq!(share(answers_of(slow_start, "slow-start", 60).await), 30);
}
