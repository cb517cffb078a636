//! The webhook's HTTPS server, in process on loopback: reviews in, patches
//! or warnings out, 400 for what is not a review, and certificate swaps.

mod support;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};
use support::{TestServer, review, self_issued};

fn decode_patch(response: &Value) -> Vec<Value> {
    let patch = response["response"]["patch"]
        .as_str()
        .unwrap_or_else(|| panic!("no patch in {response}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("JSON patch")
}

/// Posts `review` to /mutate; the answer must be HTTP 200 with JSON.
async fn mutate(conn: &mut support::Connection, review: &Value) -> anyhow::Result<Value> {
    let (status, body) = conn
        .request("POST", "/mutate", serde_json::to_vec(review)?)
        .await?;
    anyhow::ensure!(
        status == 200,
        "HTTP {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(serde_json::from_slice(&body)?)
}

#[tokio::test]
async fn a_pod_in_a_labelled_namespace_gets_the_proxy() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut conn = server.connect(&server.cert).await?;
    let answer = mutate(&mut conn, &review("demo", "u-1")).await?;
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], "u-1");
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let ops = decode_patch(&answer);
    let proxy = ops
        .iter()
        .find(|op| op["path"] == "/spec/containers/0")
        .expect("the proxy goes first");
    assert_eq!(proxy["value"]["name"], "plexus-proxy");
    assert!(
        ops.iter()
            .any(|op| op["path"] == "/spec/initContainers"
                && op["value"][0]["name"] == "plexus-init")
    );
    assert!(ops.iter().any(|op| op["path"] == "/spec/volumes/-"
        && op["value"]["secret"]["secretName"] == "plexus-identity-web"));
    Ok(())
}

#[tokio::test]
async fn other_pods_are_admitted_unchanged() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut conn = server.connect(&server.cert).await?;

    let answer = mutate(&mut conn, &review("other", "u-2")).await?;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");

    // An injected pod whose annotation is wrong: admitted, no patch, a warning.
    let mut bad = review("demo", "u-3");
    bad["request"]["object"]["metadata"]["annotations"] = json!({"plexus.dev/proxy-cpu": "fast"});
    let answer = mutate(&mut conn, &bad).await?;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    let warning = answer["response"]["warnings"][0]
        .as_str()
        .unwrap_or_default();
    assert!(warning.contains("plexus.dev/proxy-cpu"), "{answer}");

    // A review of something else than a Pod (a broader webhook configuration).
    let mut deployment = review("demo", "u-5");
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    deployment["request"]["object"] = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"selector": {}, "template": {}}});
    let answer = mutate(&mut conn, &deployment).await?;
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["uid"], "u-5");
    assert!(answer["response"].get("patch").is_none());

    let (_, metrics) = conn.request("GET", "/metrics", vec![]).await?;
    let metrics = String::from_utf8(metrics)?;
    assert!(
        metrics.contains(
            r#"plexus_webhook_admissions_total{result="skipped",reason="not-a-pod-creation"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"plexus_webhook_admissions_total{result="skipped",reason="not-enabled"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"plexus_webhook_admissions_total{result="failed",reason="bad-resources"} 1"#
        )
    );
    Ok(())
}

#[tokio::test]
async fn malformed_reviews_get_400_with_a_message() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut conn = server.connect(&server.cert).await?;
    let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let mut not_a_pod = review("demo", "u-4");
    not_a_pod["request"]["object"]["spec"]["containers"] = json!("web");
    for body in [
        b"{not json".to_vec(),
        serde_json::to_vec(&no_request)?,
        serde_json::to_vec(&not_a_pod)?,
        vec![],
    ] {
        let (status, message) = conn.request("POST", "/mutate", body.clone()).await?;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
        assert!(!message.is_empty());
    }
    // The server is still there.
    let (status, _) = conn.request("GET", "/healthz", vec![]).await?;
    assert_eq!(status, 200);
    let (_, metrics) = conn.request("GET", "/metrics", vec![]).await?;
    assert!(String::from_utf8(metrics)?.contains(
        r#"plexus_webhook_admissions_total{result="invalid",reason="malformed-review"} 4"#
    ));
    Ok(())
}

#[tokio::test]
async fn a_new_certificate_serves_new_connections_and_a_bad_one_is_rejected() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let (cert_pem, key_pem, der) = self_issued();
    let secret = |cert: &str, key: &str| Secret {
        data: Some(
            [
                ("tls.crt".to_owned(), ByteString(cert.as_bytes().to_vec())),
                ("tls.key".to_owned(), ByteString(key.as_bytes().to_vec())),
            ]
            .into(),
        ),
        ..Default::default()
    };
    // A corrupt update (key of another certificate) changes nothing.
    let (_, other_key, _) = self_issued();
    assert!(
        server
            .state
            .certs
            .load_secret(&secret(&cert_pem, &other_key))
            .is_err()
    );
    assert!(
        server
            .state
            .certs
            .load_secret(&secret("garbage", &key_pem))
            .is_err()
    );
    assert!(
        server.connect(&server.cert).await.is_ok(),
        "the first certificate still serves"
    );

    let mut old = server.connect(&server.cert).await?;
    server
        .state
        .certs
        .load_secret(&secret(&cert_pem, &key_pem))?;
    assert!(
        server.connect(&server.cert).await.is_err(),
        "the old certificate still serves"
    );
    let mut new = server.connect(&der).await?;
    assert_eq!(new.request("GET", "/readyz", vec![]).await?.0, 200);
    // A connection made before the swap keeps working.
    assert_eq!(old.request("GET", "/healthz", vec![]).await?.0, 200);
    Ok(())
}
