//! Helpers of the operator's cluster tests: the operator binary as a child
//! process, and polling with a deadline.

use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// The operator as a child process, killed when dropped.
pub struct Operator(Child);

/// Once the test's operator is stopped: removes what it created and its
/// Lease `lease`.
pub fn clean_up(lease: &str) -> anyhow::Result<()> {
    plexus_e2e::operator_cleanup(env!("CARGO_BIN_EXE_plexus-operator").as_ref(), lease)
}

/// What the operator needs in the cluster before it starts: the CRDs and
/// the mesh's namespace (the leader Lease and the CA live there).
pub async fn prepare(client: &kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, Patch, PatchParams};
    use plexus_crds::keys::DEFAULT_MESH_NAMESPACE;

    plexus_e2e::apply_crds(client).await?;
    Api::<Namespace>::all(client.clone())
        .patch(
            DEFAULT_MESH_NAMESPACE,
            &PatchParams::apply(plexus_e2e::FIELD_MANAGER),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": DEFAULT_MESH_NAMESPACE }
            })),
        )
        .await
        .context("creating the mesh's namespace")?;
    Ok(())
}

impl Operator {
    /// Starts the operator with the test's KUBECONFIG, logging to `log`,
    /// named `pod` in the Lease (the pod name; the host name by default).
    /// Each test names its own leader Lease, so that it does not wait for the
    /// Lease of an operator an earlier test killed.
    pub fn start(log: &str, lease: &str, pod: Option<&str>) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log).context("creating the operator's log")?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_plexus-operator"));
        command.args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            "--lease-name",
            lease,
            // The seeds' jwksUris name example.com: a test's operator never
            // reaches past this machine, so it may fetch from no real host.
            "--jwks-allowed-hosts",
            "jwks.test.invalid",
        ]);
        if let Some(pod) = pod {
            command.args(["--pod-name", pod]);
        }
        let child = command
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting the operator")?;
        Ok(Self(child))
    }
}

impl Operator {
    /// Sends SIGTERM, as the kubelet does, and waits for the exit.
    #[allow(
        dead_code,
        reason = "each test binary compiles this module; not all stop operators this way"
    )]
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill -TERM {}: {status}", self.0.id());
        self.0.wait().context("waiting for the operator")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls until a value or a timeout (shared with the e2e suite).
pub use plexus_e2e::eventually;
