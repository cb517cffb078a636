//! The identity controller's reconcile against a mock API server: what it
//! writes for a ServiceAccount of a namespace labelled for injection, and
//! what it removes once the label is gone.

use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use k8s_openapi::ByteString;
use serde_json::{Value, json};

use super::*;
use crate::authority::Authority;
use crate::fixtures::{self, Asked, not_found};

fn namespace(labelled: bool) -> Namespace {
    let labels = if labelled {
        json!({"plexus.dev/inject": "enabled"})
    } else {
        json!({})
    };
    serde_json::from_value(json!({"metadata": {"name": "shop", "labels": labels}}))
        .expect("namespace")
}

fn account() -> Arc<ServiceAccount> {
    Arc::new(
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}}),
        )
        .expect("account"),
    )
}

const ROLES: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/shop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_of_a_labelled_namespace_gets_its_identity_and_proxy_access() {
    let authority = Authority::generate(
        "cluster.local",
        SystemTime::now(),
        Duration::from_secs(86_400 * 365),
    )
    .expect("a root");
    let (client, server) = fixtures::client(|asked: &Asked| match asked.method {
        Method::GET => not_found("plexus-identity-web"),
        _ => (StatusCode::OK, asked.body.clone()),
    });
    let ctx = fixtures::context(client, vec![namespace(true)], Some(authority.clone()));
    let action = reconcile(account(), ctx.clone()).await.expect("reconciled");
    drop(ctx);
    let asked = server.await.expect("the mock API server");
    let lines: Vec<String> = asked.iter().map(Asked::line).collect();
    assert_eq!(
        lines,
        [
            format!("PATCH {ROLES}/roles/plexus-proxy-web"),
            format!("PATCH {ROLES}/rolebindings/plexus-proxy-web"),
            "GET /api/v1/namespaces/shop/secrets/plexus-identity-web".to_owned(),
            "PATCH /api/v1/namespaces/shop/secrets/plexus-identity-web".to_owned(),
            "POST /apis/events.k8s.io/v1/namespaces/shop/events".to_owned(),
        ]
    );
    // The Role reads exactly the identity Secret and the proxy ConfigMap.
    let rules = &asked[0].body["rules"];
    let names: Vec<&str> = rules
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["resourceNames"][0].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["plexus-proxy-config", "plexus-identity-web"]);
    assert_eq!(asked[1].body["subjects"][0]["name"], "web");
    // The Secret: a certificate for the account's SPIFFE ID, owned by it.
    let secret = &asked[3].body;
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], "u-1");
    let pem: ByteString =
        serde_json::from_value(secret["data"][TLS_CERT_KEY].clone()).expect("tls.crt");
    let info =
        crate::ca::inspect("tls.crt", &String::from_utf8_lossy(&pem.0)).expect("a certificate");
    assert_eq!(info.uris, ["spiffe://cluster.local/ns/shop/sa/web"]);
    assert_eq!(asked[4].body["reason"], "IdentityIssued");
    // Looked at again at its renewal point (two thirds of 24 h).
    assert!(
        action == Action::requeue(Duration::from_secs(16 * 3600 + 1)),
        "{action:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_of_an_unlabelled_namespace_loses_them() {
    let managed: Value = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "plexus-identity-web", "namespace": "shop",
                     "labels": {"app.kubernetes.io/managed-by": "plexus-operator"}}
    });
    let (client, server) = fixtures::client(move |asked: &Asked| match asked.method {
        Method::GET if asked.path.ends_with("/pods") => (
            StatusCode::OK,
            json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}),
        ),
        Method::GET => (StatusCode::OK, managed.clone()),
        Method::DELETE if asked.path.contains("/roles/") => not_found("role"),
        _ => (
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
    });
    let ctx = fixtures::context(client, vec![namespace(false)], None);
    reconcile(account(), ctx.clone()).await.expect("reconciled");
    drop(ctx);
    let asked = server.await.expect("the mock API server");
    let lines: Vec<String> = asked.iter().map(Asked::line).collect();
    assert_eq!(
        lines,
        [
            // Looks for an opted-in pod of the account first.
            "GET /api/v1/namespaces/shop/pods".to_owned(),
            "GET /api/v1/namespaces/shop/secrets/plexus-identity-web".to_owned(),
            "DELETE /api/v1/namespaces/shop/secrets/plexus-identity-web".to_owned(),
            format!("DELETE {ROLES}/rolebindings/plexus-proxy-web"),
            format!("DELETE {ROLES}/roles/plexus-proxy-web"),
        ]
    );
}
