//! The configuration compiler against a real cluster: with demo Services and
//! Deployments present, every converted seed manifest is Accepted and gets
//! the status the proxy's capability list makes honest: Programmed when all
//! it sets is in force, with what is not when some is not, and for security
//! resources and what no proxy acts on yet, Programmed=False NotEnforced
//! with a Warning Event (a RequestAuthentication whose keys cannot be
//! fetched: KeysUnavailable). Broken manifests are rejected with a message naming
//! the field and an Event, while a valid VirtualService applied alongside
//! is programmed. The operator binary runs outside the cluster with the
//! test's KUBECONFIG.

use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Client, ResourceExt};
use plexus_config::{CONFIG_KEY, CONFIGMAP_NAME, ProxyConfig, Resolution};
use plexus_e2e::{FIELD_MANAGER, in_namespace, test_server_image};
use serde_json::{Value, json};

mod support;
use support::{Operator, eventually};

/// The demo workloads the seed manifests refer to: (Deployment, labels).
const WORKLOADS: &[(&str, &[(&str, &str)])] = &[
    ("reviews-v1", &[("app", "reviews"), ("version", "v1")]),
    ("reviews-v2", &[("app", "reviews"), ("version", "v2")]),
    (
        "myapp-v1",
        &[
            ("app", "myapp"),
            ("version", "v1"),
            ("color", "blue"),
            ("variant", "web"),
        ],
    ),
    (
        "myapp-v2",
        &[
            ("app", "myapp"),
            ("version", "v2"),
            ("color", "green"),
            ("variant", "mobile"),
        ],
    ),
    ("httpbin", &[("app", "httpbin")]),
];

/// Labels as (key, value) pairs.
type Labels = &'static [(&'static str, &'static str)];

/// The demo Services: (name, selector, port).
const SERVICES: &[(&str, Labels, u16)] = &[
    ("reviews", &[("app", "reviews")], 9080),
    ("myapp", &[("app", "myapp")], 80),
    ("myapp-v1", &[("app", "myapp"), ("version", "v1")], 80),
    ("myapp-v2", &[("app", "myapp"), ("version", "v2")], 80),
    ("httpbin", &[("app", "httpbin")], 8000),
];

fn labels(pairs: &[(&str, &str)]) -> Value {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

async fn deploy_demo(client: &Client, ns: &str) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let params = PatchParams::apply(FIELD_MANAGER);
    for (name, pairs) in WORKLOADS {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": labels(pairs) },
                "template": {
                    "metadata": { "labels": labels(pairs) },
                    "spec": { "containers": [{
                        "name": "app",
                        "image": test_server_image(),
                        "imagePullPolicy": "Never",
                        "env": [{ "name": "VERSION", "value": name }],
                        "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }],
                        "readinessProbe": { "httpGet": { "path": "/healthz", "port": 8080 }, "periodSeconds": 1 }
                    }]}
                }
            }
        }))?;
        deployments
            .patch(name, &params, &Patch::Apply(&deployment))
            .await
            .with_context(|| format!("Deployment {name}"))?;
    }
    for (name, selector, port) in SERVICES {
        let service: Service = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "selector": labels(selector),
                "ports": [{ "name": "http", "port": port, "targetPort": "http", "protocol": "TCP" }]
            }
        }))?;
        services
            .patch(name, &params, &Patch::Apply(&service))
            .await
            .with_context(|| format!("Service {name}"))?;
    }
    Ok(())
}

/// Applies a Plexus object into `ns`, whatever namespace it names.
async fn apply(client: &Client, ns: &str, mut object: Value) -> anyhow::Result<(String, String)> {
    object["metadata"]["namespace"] = ns.into();
    let kind = object["kind"].as_str().context("kind")?.to_owned();
    let name = object["metadata"]["name"]
        .as_str()
        .context("name")?
        .to_owned();
    let gvk = GroupVersionKind::gvk(plexus_crds::GROUP, plexus_crds::VERSION, &kind);
    let (resource, _) = pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("discovering {kind}"))?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .with_context(|| format!("applying {kind} {name}"))?;
    Ok((kind, name))
}

/// The object's condition of `type_` if its status is for the current generation.
async fn condition(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    type_: &str,
) -> anyhow::Result<Option<Value>> {
    let gvk = GroupVersionKind::gvk(plexus_crds::GROUP, plexus_crds::VERSION, kind);
    let (resource, _) = pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let object = api.get(name).await?;
    let status = &object.data["status"];
    if status["observedGeneration"].as_i64() != object.metadata.generation {
        return Ok(None);
    }
    Ok(status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .cloned())
}

async fn config(client: &Client, ns: &str) -> anyhow::Result<ProxyConfig> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = api.get(CONFIGMAP_NAME).await?;
    let bytes = cm
        .binary_data
        .as_ref()
        .and_then(|d| d.get(CONFIG_KEY))
        .context("no config.json.gz")?;
    Ok(ProxyConfig::from_gzip(&bytes.0)?)
}

fn kubectl_get(ns: &str) -> String {
    std::process::Command::new("kubectl")
        .args(["get", "plexus", "-n", ns])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("(kubectl: {e})"))
}

/// The status each seed gets: kind, name, Accepted's reason, and
/// Programmed's status and reason.
#[rustfmt::skip]
const SEED_STATUS: &[(&str, &str, &str, &str, &str)] = &[
    ("VirtualService", "reviews", "Accepted", "True", "Programmed"),
    ("DestinationRule", "reviews", "Accepted", "True", "Programmed"),
    ("Gateway", "my-gateway", "UnimplementedFields", "False", "NotEnforced"),
    ("VirtualService", "canary", "Accepted", "True", "Programmed"),
    ("DestinationRule", "httpbin", "Accepted", "True", "Programmed"),
    ("VirtualService", "retry-policy", "Accepted", "True", "Programmed"),
    ("VirtualService", "timeout-policy", "Accepted", "True", "Programmed"),
    ("PeerAuthentication", "default", "Accepted", "True", "Programmed"),
    ("AuthorizationPolicy", "allow-get", "Accepted", "True", "Programmed"),
    ("RequestAuthentication", "jwt-auth", "Accepted", "False", "KeysUnavailable"),
    ("Telemetry", "mesh-default", "UnimplementedFields", "False", "NotEnforced"),
    ("Telemetry", "access-logging", "UnimplementedFields", "False", "NotEnforced"),
    ("Telemetry", "tracing", "UnimplementedFields", "False", "NotEnforced"),
    ("ServiceProfile", "myapp", "Accepted", "True", "Programmed"),
    ("TrafficSplit", "canary-split", "Accepted", "True", "Programmed"),
    ("VirtualService", "blue-green", "Accepted", "True", "Programmed"),
    ("VirtualService", "ab-test", "Accepted", "True", "Programmed"),
    ("Gateway", "myapp-gateway", "UnimplementedFields", "False", "NotEnforced"),
    ("VirtualService", "myapp", "UnimplementedFields", "False", "NotEnforced"),
    ("DestinationRule", "myapp", "Accepted", "True", "Programmed"),
    ("AuthorizationPolicy", "myapp-policy", "Accepted", "True", "Programmed"),
    ("TrafficSplit", "myapp-canary", "Accepted", "True", "Programmed"),
    ("ServiceEntry", "remote-service", "Accepted", "True", "Programmed"),
];

/// The messages the acceptance names: (kind, name, condition,
/// message), each exact.
const MESSAGES: &[(&str, &str, &str, &str)] = &[
    (
        "VirtualService",
        "reviews",
        "Accepted",
        "Valid; the proxy enforces every field it sets.",
    ),
    (
        "DestinationRule",
        "httpbin",
        "Accepted",
        "Valid; the proxy enforces every field it sets.",
    ),
    (
        "AuthorizationPolicy",
        "allow-get",
        "Accepted",
        "Valid; the proxy enforces every field it sets.",
    ),
    // The seed's issuer is example.com, which the test's operator may not
    // fetch from (support::Operator): the keys stay unavailable, and the
    // proxies refuse its tokens.
    (
        "RequestAuthentication",
        "jwt-auth",
        "Programmed",
        "Keys unavailable: spec.jwtRules[0].jwksUri https://example.com/.well-known/jwks.json could not be fetched: \
         the operator may not fetch from example.com (--jwks-allowed-hosts: jwks.test.invalid). \
         Meanwhile the proxies refuse (401) every token of https://example.com.",
    ),
    (
        "RateLimitPolicy",
        "login-limit",
        "Accepted",
        "Valid; the proxy enforces every field it sets.",
    ),
];

/// A RateLimitPolicy (the seeds' EnvoyFilter is a global rate limit,
/// which `plexus convert` does not translate).
fn rate_limit() -> Value {
    json!({
        "apiVersion": "plexus.dev/v1alpha1", "kind": "RateLimitPolicy",
        "metadata": { "name": "login-limit" },
        "spec": {
            "selector": { "matchLabels": { "app": "httpbin" } },
            "tokenBucket": { "maxTokens": 10, "fillInterval": "1s" }
        }
    })
}

/// The leader Lease of this test's operator.
const LEASE: &str = "plexus-operator-config-test";

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh runs it on the local cluster, e2e/kind/run.sh on kind"]
async fn seeds_get_honest_status_and_broken_resources_are_rejected() -> anyhow::Result<()> {
    let client = plexus_e2e::client().await?;
    support::prepare(&client).await?;
    let dir = std::env::temp_dir().join(format!("plexus-config-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("operator.log");
    let operator = Operator::start(&log.to_string_lossy(), LEASE, None)?;

    let seeds: Vec<Value> = plexus_e2e::converted_seed_manifests()?
        .into_iter()
        .map(|(_, object)| object)
        .collect();
    ensure!(
        seeds.len() == 25,
        "expected 25 converted seeds, got {}",
        seeds.len()
    );

    let test_client = client.clone();
    let outcome = in_namespace(&client, "mesh", |ns| async move {
        let client = test_client;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .patch(&ns, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": ns, "labels": { "plexus.dev/inject": "enabled" } }
            })))
            .await?;
        deploy_demo(&client, &ns).await?;
        // Subsets the seed VirtualServices name that no seed DestinationRule
        // defines (blue, mobile, web): the demo's own rule.
        apply(&client, &ns, json!({
            "apiVersion": "plexus.dev/v1alpha1", "kind": "DestinationRule",
            "metadata": { "name": "myapp-variants" },
            "spec": { "host": "myapp", "subsets": [
                { "name": "blue", "labels": { "color": "blue" } },
                { "name": "green", "labels": { "color": "green" } },
                { "name": "mobile", "labels": { "variant": "mobile" } },
                { "name": "web", "labels": { "variant": "web" } }
            ]}
        })).await?;

        let mut applied = Vec::new();
        for seed in seeds.iter().cloned().chain([rate_limit()]) {
            applied.push(apply(&client, &ns, seed).await?);
        }
        applied.sort();
        applied.dedup();
        let mut expected: Vec<(String, String)> = SEED_STATUS
            .iter()
            .map(|(kind, name, ..)| ((*kind).to_owned(), (*name).to_owned()))
            .chain([("RateLimitPolicy".to_owned(), "login-limit".to_owned())])
            .collect();
        expected.sort();
        ensure!(applied == expected, "the seeds are {applied:?}, the table has {expected:?}");
        let rows = SEED_STATUS
            .iter()
            .copied()
            .chain([("RateLimitPolicy", "login-limit", "Accepted", "True", "Programmed")]);
        for (kind, name, accepted, programmed, programmed_reason) in rows {
            for (type_, status, reason) in [
                ("Accepted", "True", accepted),
                ("Programmed", programmed, programmed_reason),
            ] {
                let found = eventually(&format!("{kind} {name} {type_}={status} {reason}"), Duration::from_secs(60), || {
                    let client = client.clone();
                    let ns = ns.clone();
                    async move {
                        let c = condition(&client, &ns, kind, name, type_).await?;
                        Ok(c.filter(|c| c["status"] == status && c["reason"] == reason))
                    }
                })
                .await;
                if let Err(error) = found {
                    let current = condition(&client, &ns, kind, name, type_).await.ok().flatten();
                    return Err(error.context(format!("{type_} is {current:?}")));
                }
            }
        }
        for (kind, name, type_, message) in MESSAGES {
            // The key set fetch runs beside the compiler: its outcome may
            // take a pass more to reach the status.
            let found = eventually(&format!("{kind} {name} {type_}: {message}"), Duration::from_secs(30), || {
                let client = client.clone();
                let ns = ns.clone();
                async move {
                    let c = condition(&client, &ns, kind, name, type_).await?;
                    Ok(c.filter(|c| c["message"] == *message))
                }
            })
            .await;
            if let Err(error) = found {
                let current = condition(&client, &ns, kind, name, type_).await.ok().flatten();
                return Err(error.context(format!("{type_} is {current:?}")));
            }
        }
        println!("every seed has its honest status:\n{}", kubectl_get(&ns));

        // The configuration holds what the seeds say.
        let proxy = config(&client, &ns).await?;
        // Every field of the DNS entry is in force: the proxy resolves the
        // host itself.
        let remote = proxy
            .services
            .iter()
            .find(|s| s.hosts == ["remote-service.cluster2.svc.cluster.local"])
            .context("remote-service in the configuration")?;
        ensure!(remote.resolution == Resolution::Dns, "remote-service resolves by DNS: {:?}", remote.resolution);
        ensure!(
            remote.endpoints.iter().map(|e| e.ip.as_str()).collect::<Vec<_>>() == ["remote-service.cluster2.svc.cluster.local"],
            "remote-service's endpoint is its host: {:?}",
            remote.endpoints
        );
        let host = |name: &str| format!("{name}.{ns}.svc.cluster.local");
        let reviews = proxy.services.iter().find(|s| s.hosts[0] == host("reviews")).context("reviews in the configuration")?;
        ensure!(reviews.http.iter().any(|r| r.name == format!("VirtualService/{ns}/reviews")), "reviews has its VirtualService routes");
        ensure!(reviews.subsets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>() == ["v1", "v2"], "reviews' subsets");
        let endpoints = eventually("two ready reviews endpoints in the configuration", Duration::from_secs(120), || {
            let client = client.clone();
            let ns = ns.clone();
            let want = host("reviews");
            async move {
                let proxy = config(&client, &ns).await?;
                let reviews = proxy.services.iter().find(|s| s.hosts[0] == want).context("reviews")?;
                Ok((reviews.endpoints.len() == 2).then(|| reviews.endpoints.clone()))
            }
        })
        .await?;
        ensure!(
            endpoints.iter().all(|e| e.subsets.len() == 1 && e.sa.as_deref() == Some("default")),
            "each endpoint is in one subset with its identity: {endpoints:?}"
        );
        ensure!(proxy.gateways.len() == 2, "two Gateways programmed: {:?}", proxy.gateways);

        // Broken manifests, and a valid VirtualService alongside.
        let vs = |name: &str, http: Value| json!({
            "apiVersion": "plexus.dev/v1alpha1", "kind": "VirtualService",
            "metadata": { "name": name }, "spec": { "hosts": ["httpbin"], "http": http }
        });
        let broken = [
            (vs("bad-regex", json!([{ "match": [{ "uri": { "regex": "/api/(v1" } }], "route": [{ "destination": { "host": "httpbin" } }] }])),
             "Invalid", "spec.http[0].match[0].uri.regex"),
            (vs("bad-weights", json!([{ "route": [
                { "destination": { "host": "myapp", "subset": "v1" }, "weight": 70 },
                { "destination": { "host": "myapp", "subset": "v2" }, "weight": 20 }] }])),
             "Invalid", "weights sum to 90, not 100"),
            (vs("missing-subset", json!([{ "route": [{ "destination": { "host": "myapp", "subset": "v9" } }] }])),
             "RefNotFound", "spec.http[0].route[0].destination.subset"),
            (json!({ "apiVersion": "plexus.dev/v1alpha1", "kind": "PeerAuthentication",
                     "metadata": { "name": "bad-mode" },
                     "spec": { "selector": { "matchLabels": { "app": "httpbin" } }, "mtls": { "mode": "STRIKT" } } }),
             "Invalid", "spec.mtls.mode: unknown value \"STRIKT\""),
        ];
        let valid = vs("valid-alongside", json!([{ "timeout": "2s", "route": [{ "destination": { "host": "httpbin" } }] }]));
        for (object, _, _) in &broken {
            apply(&client, &ns, object.clone()).await?;
        }
        apply(&client, &ns, valid).await?;
        for (object, reason, fragment) in &broken {
            let kind = object["kind"].as_str().context("kind")?;
            let name = object["metadata"]["name"].as_str().context("name")?;
            let accepted = eventually(&format!("{kind} {name} Accepted=False"), Duration::from_secs(30), || {
                let client = client.clone();
                let ns = ns.clone();
                async move { Ok(condition(&client, &ns, kind, name, "Accepted").await?.filter(|c| c["status"] == "False")) }
            })
            .await?;
            ensure!(accepted["reason"] == *reason, "{name}: reason {}", accepted["reason"]);
            let message = accepted["message"].as_str().unwrap_or_default();
            ensure!(message.contains(fragment), "{name}: message {message:?} does not name {fragment:?}");
            println!("{kind} {name}: Accepted=False {reason}: {message}");
            let programmed = condition(&client, &ns, kind, name, "Programmed").await?.context("Programmed")?;
            ensure!(programmed["status"] == "False", "{name} is not programmed");
        }
        for type_ in ["Accepted", "Programmed"] {
            eventually(&format!("valid-alongside {type_}=True"), Duration::from_secs(30), || {
                let client = client.clone();
                let ns = ns.clone();
                async move {
                    Ok(condition(&client, &ns, "VirtualService", "valid-alongside", type_).await?.filter(|c| c["status"] == "True"))
                }
            })
            .await?;
        }
        let proxy = config(&client, &ns).await?;
        let httpbin = proxy.services.iter().find(|s| s.hosts[0] == host("httpbin")).context("httpbin")?;
        let routes: Vec<&str> = httpbin.http.iter().map(|r| r.name.as_str()).collect();
        ensure!(routes == [format!("VirtualService/{ns}/valid-alongside")], "httpbin's routes: {routes:?}");
        ensure!(httpbin.http[0].timeout_ms == Some(2000), "the valid route's timeout");
        ensure!(
            proxy.inbound.mtls.iter().all(|m| !m.name.ends_with("/bad-mode")),
            "the rejected PeerAuthentication is not in force"
        );

        // Each rejection has a Warning Event on the object.
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        // And the RequestAuthentication whose keys are unavailable; the
        // enforced AuthorizationPolicy and RateLimitPolicy need none.
        let warned = eventually("a Warning Event per broken manifest and for the keys unavailable", Duration::from_secs(20), || {
            let events = events.clone();
            async move {
                let list = events.list(&ListParams::default()).await?;
                let names: Vec<String> = list
                    .items
                    .iter()
                    .filter(|e| e.type_.as_deref() == Some("Warning"))
                    .filter_map(|e| e.regarding.as_ref()?.name.clone())
                    .collect();
                let all = ["bad-regex", "bad-weights", "missing-subset", "bad-mode", "jwt-auth"]
                    .iter()
                    .all(|n| names.iter().any(|m| m == n));
                Ok(all.then_some(names))
            }
        })
        .await?;
        println!("Warning Events for {warned:?}");

        // Fixing a manifest brings it into force.
        apply(&client, &ns, vs("bad-weights", json!([{ "route": [
            { "destination": { "host": "myapp", "subset": "v1" }, "weight": 80 },
            { "destination": { "host": "myapp", "subset": "v2" }, "weight": 20 }] }]))).await?;
        eventually("the fixed VirtualService Programmed", Duration::from_secs(30), || {
            let client = client.clone();
            let ns = ns.clone();
            async move { Ok(condition(&client, &ns, "VirtualService", "bad-weights", "Programmed").await?.filter(|c| c["status"] == "True")) }
        })
        .await?;
        println!("after the broken manifests:\n{}", kubectl_get(&ns));
        let cm: ConfigMap = Api::namespaced(client.clone(), &ns).get(CONFIGMAP_NAME).await?;
        let size = cm.binary_data.as_ref().and_then(|d| d.get(CONFIG_KEY)).map_or(0, |b| b.0.len());
        println!("ConfigMap {}: {size} bytes compressed", cm.name_any());
        Ok(())
    })
    .await;
    drop(operator);
    let cleaned = support::clean_up(LEASE);
    outcome?;
    cleaned
}
