//! `plexus-operator cleanup`: removes what the operator created, so that
//! uninstalling the Helm chart (whose post-delete hook runs this) leaves
//! nothing behind but the CRDs. It waits for the operator's own pods to be
//! gone first, since a running operator would re-create what it deletes.
//!
//! Deleted: every Secret, ConfigMap, Role and RoleBinding labelled
//! `app.kubernetes.io/managed-by=plexus-operator` in any namespace (workload
//! identities, proxy configurations, the proxies' read access, the generated
//! root and the webhook's serving certificate), and the leader Lease. A root
//! the user supplied carries no such label and is kept.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, Resource, ResourceExt};
use plexus_crds::keys::{MANAGED_BY_LABEL, MANAGED_BY_OPERATOR};
use serde::de::DeserializeOwned;

/// What to clean up and how long to wait for the operator to stop.
pub struct Cleanup {
    pub mesh_namespace: String,
    pub lease_name: String,
    /// Label selector of the operator's pods in the mesh namespace.
    pub operator_pods: String,
    pub wait: Duration,
}

/// Deletes everything the operator created; returns how many objects went.
pub async fn run(client: &Client, cleanup: &Cleanup) -> anyhow::Result<usize> {
    wait_for_operator_gone(client, cleanup).await?;
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_OPERATOR}");
    let mut deleted = 0;
    deleted += delete_labelled::<Secret>(client, &selector).await?;
    deleted += delete_labelled::<ConfigMap>(client, &selector).await?;
    deleted += delete_labelled::<RoleBinding>(client, &selector).await?;
    deleted += delete_labelled::<Role>(client, &selector).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &cleanup.mesh_namespace);
    if leases
        .delete(&cleanup.lease_name, &DeleteParams::default())
        .await
        .map(|_| true)
        .or_else(not_found)?
    {
        tracing::info!(lease = %cleanup.lease_name, "deleted the leader Lease");
        deleted += 1;
    }
    Ok(deleted)
}

async fn wait_for_operator_gone(client: &Client, cleanup: &Cleanup) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &cleanup.mesh_namespace);
    let params = ListParams::default().labels(&cleanup.operator_pods);
    let deadline = Instant::now() + cleanup.wait;
    loop {
        let left = pods.list(&params).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{left} operator pod(s) ({}) still exist after {:?}; a running operator would re-create what cleanup deletes",
                cleanup.operator_pods,
                cleanup.wait
            );
        }
        tracing::info!(left, "waiting for the operator's pods to stop");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn delete_labelled<K>(client: &Client, selector: &str) -> anyhow::Result<usize>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let all: Api<K> = Api::all(client.clone());
    let mut deleted = 0;
    for object in all.list(&ListParams::default().labels(selector)).await? {
        let namespace = object.namespace().unwrap_or_default();
        let name = object.name_any();
        let api: Api<K> = Api::namespaced(client.clone(), &namespace);
        if api
            .delete(&name, &DeleteParams::default())
            .await
            .map(|_| true)
            .or_else(not_found)?
        {
            tracing::info!(kind = %K::kind(&Default::default()), %namespace, %name, "deleted");
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// A 404 means someone else deleted it first: nothing to do.
fn not_found(error: kube::Error) -> Result<bool, kube::Error> {
    match error {
        kube::Error::Api(response) if response.code == 404 => Ok(false),
        error => Err(error),
    }
}
