//! The generated CRDs are accepted by the cluster (server-side apply), and so
//! is every seed manifest after `plexus convert`: each is read back and every
//! field sent is still there, so no field was pruned by a schema that lacks it.

use anyhow::{Context, ensure};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use plexus_cli::convert;
use plexus_e2e::{FIELD_MANAGER, apply_crds, client, in_namespace};

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh runs it on the local cluster, e2e/kind/run.sh on kind"]
async fn generated_crds_and_converted_seed_manifests_apply_server_side() -> anyhow::Result<()> {
    let client = client().await?;
    apply_crds(&client).await?;

    let documents = plexus_e2e::converted_seed_manifests()?;
    ensure!(
        documents.len() == 25,
        "expected 25 converted seed manifests, got {}",
        documents.len()
    );

    let api_client = client.clone();
    in_namespace(&client, "seeds", |ns| async move {
        let client = api_client;
        for (path, mut object) in documents {
            // Each test owns its namespace; the seeds' own (such as `default`) is replaced.
            object["metadata"]["namespace"] = ns.clone().into();
            let kind = object["kind"].as_str().context("kind")?.to_owned();
            let name = object["metadata"]["name"]
                .as_str()
                .context("name")?
                .to_owned();
            let gvk = GroupVersionKind::gvk(plexus_crds::GROUP, plexus_crds::VERSION, &kind);
            let (resource, _) = pinned_kind(&client, &gvk)
                .await
                .with_context(|| format!("discovering {kind}"))?;
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&object),
            )
            .await
            .with_context(|| format!("{}: applying {kind} {name}", path.display()))?;
            let stored = serde_json::to_value(api.get(&name).await?)?;
            let lost = convert::leaves::lost_leaves(&object["spec"], &stored["spec"]);
            ensure!(
                lost.is_empty(),
                "{}: the API server dropped fields of {kind} {name}: {lost:?}",
                path.display()
            );
        }
        Ok(())
    })
    .await
}
