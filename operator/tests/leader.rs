//! Leader election on a real cluster: of two operator replicas one leads;
//! when the leader gets SIGTERM it gives the Lease up on its way out, so the
//! replica standing by takes over at its next try instead of waiting for
//! the Lease to lapse. The operator binaries run outside the cluster with
//! the test's KUBECONFIG.

use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use plexus_crds::keys::DEFAULT_MESH_NAMESPACE;
use plexus_operator::leader::LEASE_DURATION;

mod support;
use support::{Operator, eventually};

/// This test's Lease: no other test's operator competes for it.
const LEASE: &str = "plexus-operator-leader-test";

async fn holder(leases: &Api<Lease>) -> anyhow::Result<Option<String>> {
    Ok(leases
        .get_opt(LEASE)
        .await?
        .and_then(|lease| lease.spec)
        .and_then(|spec| spec.holder_identity))
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh runs it on the local cluster, e2e/kind/run.sh on kind"]
async fn a_terminated_leader_hands_over_at_once() -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    support::prepare(&client).await?;
    let leases: Api<Lease> = Api::namespaced(client, DEFAULT_MESH_NAMESPACE);
    let dir = std::env::temp_dir().join(format!("plexus-leader-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log = |name: &str| {
        dir.join(format!("{name}.log"))
            .to_string_lossy()
            .into_owned()
    };

    let result = async {
        let mut first = Operator::start(&log("first"), LEASE, Some("first"))?;
        eventually(
            "the first replica leads",
            Duration::from_secs(60),
            || async { Ok((holder(&leases).await?.as_deref() == Some("first")).then_some(())) },
        )
        .await?;
        let _second = Operator::start(&log("second"), LEASE, Some("second"))?;
        // Standing by: the Lease stays with the first.
        tokio::time::sleep(Duration::from_secs(3)).await;
        ensure!(
            holder(&leases).await?.as_deref() == Some("first"),
            "the Lease changed hands while its holder ran"
        );

        let status = first.terminate()?;
        ensure!(
            status.success(),
            "the leader exited with {status} on SIGTERM"
        );
        // Right after the exit the Lease is free or already the second's:
        // never still the first's (that would leave the mesh without a CA
        // until the Lease lapsed, {LEASE_DURATION:?} after its last renewal).
        let after_exit = holder(&leases).await?;
        ensure!(
            after_exit.as_deref() != Some("first"),
            "the terminated leader still holds the Lease; its log: {}",
            std::fs::read_to_string(log("first")).unwrap_or_default()
        );
        eventually("the second replica leads", LEASE_DURATION, || async {
            Ok((holder(&leases).await?.as_deref() == Some("second")).then_some(()))
        })
        .await?;
        // The Lease is written before the new leader logs that it leads.
        let said = eventually(
            "the second replica's log says it leads",
            Duration::from_secs(10),
            || async {
                let text = std::fs::read_to_string(log("second")).context("the second's log")?;
                Ok(text.contains("leading").then_some(()))
            },
        )
        .await;
        let second_log = std::fs::read_to_string(log("second")).unwrap_or_default();
        ensure!(
            said.is_ok(),
            "the second replica's log says nothing of leading: {second_log}"
        );
        println!("Lease after the leader's exit: {after_exit:?}; then the second's");
        Ok(())
    }
    .await;
    // Both replicas are stopped (dropped) before what they made is removed.
    let cleaned = support::clean_up(LEASE);
    result?;
    cleaned
}
