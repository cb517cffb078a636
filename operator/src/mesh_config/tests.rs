//! The configuration controller's pass against a mock API server: the
//! requests it makes for a snapshot of objects, and none when nothing
//! changed.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::fixtures::{self, Asked, store};

/// The objects of `kind` among `objects`.
pub(super) fn of_kind<K: DeserializeOwned>(objects: &[Value], kind: &str) -> Vec<K> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .map(|o| serde_json::from_value(o.clone()).unwrap_or_else(|e| panic!("{kind}: {e}")))
        .collect()
}

fn stores(objects: &[Value]) -> Stores {
    Stores {
        kinds: KindStores::holding(objects),
        meshes: store(of_kind(objects, "Mesh")),
        services: store(of_kind(objects, "Service")),
        pods: store(of_kind(objects, "Pod")),
        namespaces: store(of_kind(objects, "Namespace")),
        config_maps: store(of_kind(objects, "PartialObjectMetadata")),
        secrets: store(of_kind(objects, "Secret")),
        endpoints: Endpoints::Pods,
        jwks: Arc::new(
            crate::jwks::Jwks::new(crate::jwks::Settings {
                refresh: Duration::from_secs(60),
                retry: Duration::from_secs(5),
                allowed_hosts: Vec::new(),
            })
            .expect("a TLS client"),
        ),
    }
}

fn vs(name: &str, http: Value) -> Value {
    json!({"apiVersion": "plexus.dev/v1alpha1", "kind": "VirtualService",
           "metadata": {"name": name, "namespace": "demo", "generation": 1},
           "spec": {"hosts": ["web"], "http": http}})
}

fn objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "demo", "labels": {"plexus.dev/inject": "enabled"}}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "demo"},
               "spec": {"clusterIP": "198.19.0.10", "selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web-1", "namespace": "demo", "labels": {"app": "web"}},
               "spec": {"serviceAccountName": "web",
                        "containers": [{"name": "app"}, {"name": "plexus-proxy"}]},
               "status": {"podIP": "198.18.0.7",
                          "conditions": [{"type": "Ready", "status": "True"}]}}),
        vs(
            "routes",
            json!([{"timeout": "2s", "route": [{"destination": {"host": "web"}}]}]),
        ),
        vs(
            "broken",
            json!([{"match": [{"uri": {"regex": "(unclosed"}}],
                             "route": [{"destination": {"host": "web"}}]}]),
        ),
        json!({"apiVersion": "plexus.dev/v1alpha1", "kind": "AuthorizationPolicy",
               "metadata": {"name": "get-only", "namespace": "demo", "generation": 1},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}),
        // Its keys are not fetched yet (no fetch runs in these tests).
        json!({"apiVersion": "plexus.dev/v1alpha1", "kind": "RequestAuthentication",
               "metadata": {"name": "remote-keys", "namespace": "demo", "generation": 1},
               "spec": {"jwtRules": [{"issuer": "https://issuer.test",
                                      "jwksUri": "https://issuer.test/jwks"}]}}),
    ]
}

/// Answers as the API server would: an applied or status-patched object
/// comes back whole, an Event as it was posted.
fn answer(objects: Vec<Value>) -> impl Fn(&Asked) -> (StatusCode, Value) {
    move |asked| {
        let name = asked
            .path
            .rsplit('/')
            .nth(usize::from(asked.path.ends_with("/status")));
        match (&asked.method, name) {
            (&Method::PATCH, Some(name)) if asked.path.ends_with("/status") => {
                let mut object = objects
                    .iter()
                    .find(|o| o["metadata"]["name"] == name)
                    .cloned()
                    .unwrap_or_else(|| panic!("no object {name}"));
                object["status"] = asked.body["status"].clone();
                (StatusCode::OK, object)
            }
            _ => (StatusCode::OK, asked.body.clone()),
        }
    }
}

async fn pass_asks(objects: Vec<Value>) -> (bool, Vec<Asked>) {
    let (client, server) = fixtures::client(answer(objects.clone()));
    let ctx = fixtures::context(client, Vec::new(), None);
    let ok = pass(&ctx, &stores(&objects), "cluster.local").await;
    drop(ctx);
    (ok, server.await.expect("the mock API server"))
}

fn find<'a>(asked: &'a [Asked], line: &str) -> Vec<&'a Asked> {
    asked.iter().filter(|a| a.line() == line).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_writes_the_configuration_every_status_and_the_warnings() {
    let (ok, asked) = pass_asks(objects()).await;
    assert!(ok, "every write succeeded");
    let mut lines: Vec<String> = asked.iter().map(Asked::line).collect();
    lines.sort();
    let plexus = "/apis/plexus.dev/v1alpha1/namespaces/demo";
    assert_eq!(
        lines,
        [
            "PATCH /api/v1/namespaces/demo/configmaps/plexus-proxy-config".to_owned(),
            format!("PATCH {plexus}/authorizationpolicies/get-only/status"),
            format!("PATCH {plexus}/requestauthentications/remote-keys/status"),
            format!("PATCH {plexus}/virtualservices/broken/status"),
            format!("PATCH {plexus}/virtualservices/routes/status"),
            "POST /apis/events.k8s.io/v1/namespaces/demo/events".to_owned(),
            "POST /apis/events.k8s.io/v1/namespaces/demo/events".to_owned(),
        ]
    );

    // The ConfigMap: applied by the operator's field manager, with the route.
    let config_map = &find(
        &asked,
        "PATCH /api/v1/namespaces/demo/configmaps/plexus-proxy-config",
    )[0];
    assert!(
        config_map.query.contains("fieldManager=plexus-operator"),
        "{}",
        config_map.query
    );
    let encoded = config_map.body["binaryData"][CONFIG_KEY]
        .as_str()
        .expect("binaryData");
    let bytes: ByteString = serde_json::from_value(json!(encoded)).expect("base64");
    let config = plexus_config::ProxyConfig::from_gzip(&bytes.0).expect("a configuration");
    let web = &config.services[0];
    assert_eq!(
        web.http.len(),
        1,
        "only the accepted VirtualService's route"
    );
    assert_eq!(web.http[0].timeout_ms, Some(2000));
    assert_eq!(
        config.inbound.authorization[0].name,
        "AuthorizationPolicy/demo/get-only"
    );

    // Statuses: what each verdict says, for the generation judged.
    let condition = |path: &str, type_: &str| -> Value {
        let status = &find(&asked, &format!("PATCH {plexus}/{path}/status"))[0].body["status"];
        assert_eq!(status["observedGeneration"], 1);
        status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == type_))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        condition("virtualservices/routes", "Accepted")["reason"],
        "Accepted"
    );
    assert_eq!(
        condition("virtualservices/routes", "Programmed")["status"],
        "True"
    );
    assert_eq!(
        condition("virtualservices/broken", "Accepted")["reason"],
        "Invalid"
    );
    let policy = condition("authorizationpolicies/get-only", "Programmed");
    assert_eq!(
        (policy["status"].as_str(), policy["reason"].as_str()),
        (Some("True"), Some("Programmed"))
    );
    let keys = condition("requestauthentications/remote-keys", "Programmed");
    assert_eq!(
        (keys["status"].as_str(), keys["reason"].as_str()),
        (Some("False"), Some("KeysUnavailable"))
    );

    // A Warning Event for the rejected resource and for the keys missing.
    let mut events: Vec<(String, String, String)> =
        find(&asked, "POST /apis/events.k8s.io/v1/namespaces/demo/events")
            .iter()
            .map(|e| {
                let body = &e.body;
                (
                    body["regarding"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    body["type"].as_str().unwrap_or_default().to_owned(),
                    body["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
    events.sort();
    assert_eq!(
        events,
        [
            (
                "broken".to_owned(),
                "Warning".to_owned(),
                "Invalid".to_owned()
            ),
            (
                "remote-keys".to_owned(),
                "Warning".to_owned(),
                "KeysUnavailable".to_owned()
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changed_nothing_written() {
    let (_, asked) = pass_asks(objects()).await;
    // The cluster as the first pass left it: statuses written, the
    // ConfigMap there with its revision.
    let mut objects = objects();
    for object in &mut objects {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(patch) = asked
            .iter()
            .find(|a| a.path.ends_with(&format!("/{name}/status")))
        {
            object["status"] = patch.body["status"].clone();
        }
    }
    let applied = &find(
        &asked,
        "PATCH /api/v1/namespaces/demo/configmaps/plexus-proxy-config",
    )[0];
    let revision = applied.body["metadata"]["annotations"][REVISION_ANNOTATION].clone();
    objects.push(json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": CONFIGMAP_NAME, "namespace": "demo",
                     "annotations": {REVISION_ANNOTATION: revision}}
    }));
    let (ok, again) = pass_asks(objects).await;
    assert!(ok);
    assert!(
        again.is_empty(),
        "{:?}",
        again.iter().map(Asked::line).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_without_injected_workloads_loses_its_configuration() {
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}}),
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
               "metadata": {"name": CONFIGMAP_NAME, "namespace": "gone",
                            "annotations": {REVISION_ANNOTATION: "0123456789abcdef"}}}),
    ];
    let (ok, asked) = pass_asks(objects).await;
    assert!(ok);
    let lines: Vec<String> = asked.iter().map(Asked::line).collect();
    assert_eq!(
        lines,
        ["DELETE /api/v1/namespaces/gone/configmaps/plexus-proxy-config"]
    );
}
