//! The cluster works: a pod behind a Service answers a client pod through the
//! Service's DNS names and its ClusterIP; names outside the cluster do not
//! resolve.

use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use plexus_e2e::{
    client, has_finished, in_namespace, is_ready, logs, test_server_image, toolbox_image,
    wait_for_pod,
};
use serde_json::json;

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh runs it on the local cluster, e2e/kind/run.sh on kind"]
async fn a_service_answers_by_dns_name_and_cluster_ip() -> anyhow::Result<()> {
    let client = client().await?;
    let api = client.clone();
    in_namespace(&client, "smoke", |ns| async move {
        let client = api;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);

        let server: Pod = serde_json::from_value(json!({
            "metadata": { "name": "echo", "labels": { "app": "echo" } },
            "spec": { "containers": [{
                "name": "server",
                "image": test_server_image(),
                "imagePullPolicy": "Never",
                "env": [
                    { "name": "VERSION", "value": "smoke-v1" },
                    { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }
                ],
                "ports": [{ "containerPort": 8080 }],
                "readinessProbe": { "httpGet": { "path": "/healthz", "port": 8080 }, "periodSeconds": 1 }
            }] }
        }))?;
        pods.create(&PostParams::default(), &server).await.context("creating the server pod")?;
        let service: Service = serde_json::from_value(json!({
            "metadata": { "name": "echo" },
            "spec": { "selector": { "app": "echo" }, "ports": [{ "port": 80, "targetPort": 8080 }] }
        }))?;
        let service = services.create(&PostParams::default(), &service).await.context("creating the service")?;
        let cluster_ip = service.spec.and_then(|s| s.cluster_ip).context("the service has no ClusterIP")?;
        wait_for_pod(&pods, "echo", "Ready", Duration::from_secs(90), is_ready()).await?;

        let targets = ["echo".to_owned(), format!("echo.{ns}"), format!("echo.{ns}.svc.cluster.local"), cluster_ip.clone()];
        // busybox's nc quits when its stdin ends, racing the answer; with -e the
        // request is written and the answer read until the server closes.
        // Each target is retried while the DNS server catches up with the new
        // Service (it follows Services within a second or two).
        let mut script = String::from(
            "get() { nc -w 5 \"$1\" 80 -e /bin/busybox sh -c \
             'printf \"GET /smoke HTTP/1.0\\r\\nHost: echo\\r\\n\\r\\n\"; /bin/busybox cat >&2' 2>&1; }; ",
        );
        for target in &targets {
            script.push_str(&format!(
                "echo '>>> {target}'; for i in $(seq 30); do out=$(get {target}); \
                 case \"$out\" in *' 200 '*) break;; esac; sleep 1; done; echo \"$out\"; "
            ));
        }
        script.push_str(
            "if nslookup example.com >/dev/null 2>&1; then echo '>>> external: resolved'; \
             else echo '>>> external: unresolved'; fi",
        );
        let client_pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "client" },
            "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "client",
                    "image": toolbox_image(),
                    "imagePullPolicy": "Never",
                    "command": ["/bin/busybox", "sh", "-c", script]
                }]
            }
        }))?;
        pods.create(&PostParams::default(), &client_pod).await.context("creating the client pod")?;
        let finished = wait_for_pod(&pods, "client", "finished", Duration::from_secs(120), has_finished()).await?;
        let output = logs(&pods, &finished).await?;

        for target in &targets {
            let answer = output
                .split(&format!(">>> {target}\n"))
                .nth(1)
                .and_then(|rest| rest.split(">>> ").next())
                .with_context(|| format!("no answer section for {target} in:\n{output}"))?;
            ensure!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{target} did not answer 200:\n{output}");
            ensure!(answer.contains(r#""pod":"echo""#) && answer.contains(r#""version":"smoke-v1""#), "{target}: not the test server's answer:\n{output}");
            ensure!(answer.contains(r#""path":"/smoke""#), "{target}: wrong path echoed:\n{output}");
        }
        ensure!(output.contains(">>> external: unresolved"), "a name outside the cluster resolved:\n{output}");
        Ok(())
    })
    .await
}
