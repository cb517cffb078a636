//! The certificate authority against a real cluster: the operator binary runs
//! outside the cluster with the KUBECONFIG of the test (until the Helm chart
//! deploys it). One test, in order, since it owns the cluster-wide Mesh.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, ensure};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use plexus_crds::Mesh;
use plexus_crds::keys::{CA_CERT_KEY, DEFAULT_MESH_NAMESPACE, TLS_CERT_KEY, identity_secret_name};
use plexus_operator::ca;
use serde_json::json;

use plexus_e2e::FIELD_MANAGER as MANAGER;

mod support;
use support::{Operator, eventually};

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

/// A valid identity: its leaf, its bundle and the leaf's fingerprint.
fn valid_identity(secret: &Secret, spiffe: &str) -> Option<(String, String, String)> {
    let (cert, bundle) = (text(secret, TLS_CERT_KEY)?, text(secret, CA_CERT_KEY)?);
    let info = ca::inspect("tls.crt", &cert).ok()?;
    (info.uris == [spiffe] && ca::verify_chain(&cert, &bundle, SystemTime::now()).is_ok())
        .then_some((cert, bundle, info.fingerprint))
}

fn openssl_verify(dir: &std::path::Path, cert: &str, bundle: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join("tls.crt"), cert)?;
    std::fs::write(dir.join("ca.crt"), bundle)?;
    let output = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(dir.join("ca.crt"))
        .arg(dir.join("tls.crt"))
        .output()
        .context("running openssl verify")?;
    ensure!(
        output.status.success(),
        "openssl verify: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

async fn events(client: &Client, namespace: &str, reason: &str) -> anyhow::Result<usize> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .count())
}

/// The leader Lease of this test's operator.
const LEASE: &str = "plexus-operator-ca-test";

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh runs it on the local cluster, e2e/kind/run.sh on kind"]
async fn the_mesh_ca_issues_renews_rotates_and_repairs_identities() -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let dir = std::env::temp_dir().join(format!("plexus-ca-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("operator.log");
    let log = log.to_string_lossy();

    support::prepare(&client).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_object = |name: &str, labels: BTreeMap<&str, &str>| {
        json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": labels }
        })
    };
    let meshes: Api<Mesh> = Api::all(client.clone());
    meshes
        .patch("default", &PatchParams::apply(MANAGER).force(), &Patch::Apply(json!({
            "apiVersion": plexus_crds::API_VERSION, "kind": "Mesh", "metadata": { "name": "default" },
            "spec": { "certificates": { "workloadTtl": "2m" } }
        })))
        .await?;

    // A namespace with injection enabled and two ServiceAccounts.
    let ns = format!("ca-{:06x}", std::process::id());
    namespaces
        .patch(
            &ns,
            &PatchParams::apply(MANAGER),
            &Patch::Apply(ns_object(
                &ns,
                BTreeMap::from([("plexus.dev/inject", "enabled"), ("plexus.dev/e2e", "ca")]),
            )),
        )
        .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    for name in ["alpha", "beta"] {
        accounts
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({ "metadata": { "name": name } }))?,
            )
            .await?;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let spiffe = |sa: &str| format!("spiffe://cluster.local/ns/{ns}/sa/{sa}");
    let identity = |sa: &'static str| {
        let secrets = secrets.clone();
        let spiffe = spiffe(sa);
        move || {
            let secrets = secrets.clone();
            let spiffe = spiffe.clone();
            async move {
                Ok(secrets
                    .get_opt(&identity_secret_name(sa))
                    .await?
                    .and_then(|s| valid_identity(&s, &spiffe)))
            }
        }
    };

    // A webhook configuration whose selector matches no namespace, to see
    // the operator keep its caBundle.
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    configurations
        .patch("plexus-webhook", &PatchParams::apply(MANAGER).force(), &Patch::Apply(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": { "name": "plexus-webhook" },
            "webhooks": [{
                "name": "inject.plexus.dev", "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Ignore",
                "clientConfig": { "service": { "name": "plexus-webhook", "namespace": DEFAULT_MESH_NAMESPACE, "path": "/mutate" } },
                "namespaceSelector": { "matchLabels": { "plexus.dev/e2e-never": "true" } },
                "rules": [{ "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"] }]
            }]
        })))
        .await?;
    let webhook_secrets: Api<Secret> = Api::namespaced(client.clone(), DEFAULT_MESH_NAMESPACE);
    let ca_bundle_is = |expected: String| {
        let configurations = configurations.clone();
        move || {
            let configurations = configurations.clone();
            let expected = expected.clone();
            async move {
                let configuration = configurations.get("plexus-webhook").await?;
                let bundle = configuration
                    .webhooks
                    .unwrap_or_default()
                    .first()
                    .and_then(|w| w.client_config.ca_bundle.clone());
                Ok((bundle.map(|b| b.0) == Some(expected.into_bytes())).then_some(()))
            }
        }
    };

    let result = async {
        let mut operator = Operator::start(&log, LEASE, None)?;
        let (alpha_cert, alpha_bundle, _) = eventually("alpha's identity", Duration::from_secs(60), identity("alpha")).await?;
        let (beta_cert, beta_bundle, _) = eventually("beta's identity", Duration::from_secs(30), identity("beta")).await?;
        openssl_verify(&dir, &alpha_cert, &alpha_bundle)?;
        openssl_verify(&dir, &beta_cert, &beta_bundle)?;

        // The Mesh reports Ready, the root and its expiry.
        eventually("the Mesh Ready with its root", Duration::from_secs(20), || async {
            let mesh = meshes.get("default").await?;
            let status = mesh.status.unwrap_or_default();
            let ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
            Ok((ready && status.root.is_some_and(|r| !r.not_after.is_empty())).then_some(()))
        })
        .await?;

        // The webhook's serving certificate names its Service and chains to
        // the bundle, which is in the webhook configuration.
        let webhook = eventually("the webhook certificate", Duration::from_secs(20), || async {
            Ok(webhook_secrets.get_opt("plexus-webhook-tls").await?)
        })
        .await?;
        let (webhook_cert, webhook_bundle) = (text(&webhook, TLS_CERT_KEY).context("tls.crt")?, text(&webhook, CA_CERT_KEY).context("ca.crt")?);
        ensure!(ca::inspect("webhook", &webhook_cert)?.dns_names.contains(&format!("plexus-webhook.{DEFAULT_MESH_NAMESPACE}.svc")));
        openssl_verify(&dir, &webhook_cert, &webhook_bundle)?;
        eventually("the caBundle", Duration::from_secs(20), ca_bundle_is(alpha_bundle.clone())).await?;

        // Corrupted and deleted Secrets come back within 10 s, with an Event.
        secrets
            .patch(&identity_secret_name("alpha"), &PatchParams::default(), &Patch::Merge(json!({ "data": { "tls.crt": "Z2FyYmFnZQ==" } })))
            .await?;
        let corrupted = Instant::now();
        eventually("alpha repaired", Duration::from_secs(10), identity("alpha")).await?;
        println!("corrupted Secret repaired in {:?}", corrupted.elapsed());
        eventually("a CorruptIdentityReplaced Event", Duration::from_secs(10), || async {
            Ok((events(&client, &ns, "CorruptIdentityReplaced").await? > 0).then_some(()))
        })
        .await?;
        secrets.delete(&identity_secret_name("beta"), &DeleteParams::default()).await?;
        let deleted = Instant::now();
        eventually("beta recreated", Duration::from_secs(10), identity("beta")).await?;
        println!("deleted Secret recreated in {:?}", deleted.elapsed());

        // Root rotation drill, watched every second by a checker.
        let checker = {
            let secrets = secrets.clone();
            let (stop, mut stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(async move {
                let (mut checks, mut failures) = (0, Vec::new());
                while !*stopped.borrow() {
                    let list = secrets.list(&ListParams::default().labels("plexus.dev/identity")).await;
                    for secret in list.map(|l| l.items).unwrap_or_default() {
                        let (Some(cert), Some(bundle)) = (text(&secret, TLS_CERT_KEY), text(&secret, CA_CERT_KEY)) else { continue };
                        checks += 1;
                        if let Err(error) = ca::verify_chain(&cert, &bundle, SystemTime::now()) {
                            failures.push(format!("{}: {error}", secret.name_any()));
                        }
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(1), stopped.changed()).await;
                }
                (checks, failures)
            });
            (stop, task)
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = meshes.get("default").await?.status.unwrap_or_default().root.context("a root")?;
        meshes
            .patch("default", &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "annotations": { "plexus.dev/rotate-root": format!("drill-{}", std::process::id()) } } })))
            .await?;
        let drill = Instant::now();
        eventually("the rotation to complete", Duration::from_secs(90), || async {
            let status = meshes.get("default").await?.status.unwrap_or_default();
            let rotated = status.root.is_some_and(|r| r.fingerprint != before.fingerprint);
            Ok((rotated && status.previous_roots.is_empty()).then_some(()))
        })
        .await?;
        println!("root rotation drill completed in {:?}", drill.elapsed());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = checker.0.send(true);
        let (checks, failures) = checker.1.await?;
        println!("rotation checker: {checks} verifications, {} failures", failures.len());
        ensure!(failures.is_empty(), "leaves that did not verify against their own bundle: {failures:?}");
        ensure!(checks > 20, "the checker ran only {checks} verifications");
        let secret = secrets.get(&identity_secret_name("alpha")).await?;
        let new_root = meshes.get("default").await?.status.unwrap_or_default().root.context("a root")?;
        let bundle = text(&secret, CA_CERT_KEY).context("ca.crt")?;
        ensure!(ca::pem_certificates(&bundle)?.len() == 1, "the old root is still in alpha's bundle");
        ensure!(ca::inspect("bundle", &bundle)?.fingerprint == new_root.fingerprint, "alpha's bundle is not the new root");
        eventually("the caBundle to follow the rotation", Duration::from_secs(20), ca_bundle_is(bundle.clone())).await?;

        // Renewals at a 2-minute TTL, with a restart of the operator between.
        let (_, _, mut fingerprint) = eventually("alpha", Duration::from_secs(10), identity("alpha")).await?;
        let mut renewals = 0;
        let watch_until = Instant::now() + Duration::from_secs(300);
        let mut restarted = false;
        while renewals < 2 && Instant::now() < watch_until {
            let secret = secrets.get(&identity_secret_name("alpha")).await?;
            let (_, _, current) = valid_identity(&secret, &spiffe("alpha")).context("alpha expired or is invalid")?;
            if current != fingerprint {
                renewals += 1;
                println!("alpha renewed ({renewals})");
                fingerprint = current;
                if !restarted {
                    // Restart mid-way: a valid certificate is not issued again.
                    drop(operator);
                    operator = Operator::start(&log, LEASE, None)?;
                    restarted = true;
                    tokio::time::sleep(Duration::from_secs(15)).await;
                    let after = secrets.get(&identity_secret_name("alpha")).await?;
                    let (_, _, unchanged) = valid_identity(&after, &spiffe("alpha")).context("alpha after restart")?;
                    ensure!(unchanged == fingerprint, "the restarted operator re-issued a valid certificate");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        ensure!(renewals >= 2, "alpha was renewed {renewals} times in 5 minutes (TTL 2m)");
        drop(operator);
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        eprintln!(
            "operator log: {}",
            std::fs::read_to_string(&*log).unwrap_or_default()
        );
    }
    namespaces.delete(&ns, &DeleteParams::default()).await?;
    configurations
        .delete("plexus-webhook", &DeleteParams::default())
        .await?;
    let deleted = meshes.delete("default", &DeleteParams::default()).await;
    // The operator stopped with the block above.
    let cleaned = support::clean_up(LEASE);
    result?;
    deleted.context("deleting the Mesh")?;
    cleaned
}
