//! Helpers of the operator's cluster tests: the operator binary as a child
//! process, and polling with a deadline.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The operator as a child process, killed when dropped.
pub struct Operator(Child);

/// Once the test's operator is stopped: removes what it created and its
/// Lease `lease`.
pub fn clean_up(lease: &str) -> anyhow::Result<()> {
    plexus_e2e::operator_cleanup(env!("CARGO_BIN_EXE_plexus-operator").as_ref(), lease)
}

impl Operator {
    /// Starts the operator with the test's KUBECONFIG, logging to `log`.
    /// Each test names its own leader Lease, so that it does not wait for the
    /// Lease of an operator an earlier test killed.
    pub fn start(log: &str, lease: &str) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log).context("creating the operator's log")?;
        let child = Command::new(env!("CARGO_BIN_EXE_plexus-operator"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "text",
                "--lease-name",
                lease,
            ])
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting the operator")?;
        Ok(Self(child))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `probe` every 250 ms until it gives a value, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) if Instant::now() >= deadline => {
                return Err(error.context(format!("{what} after {timeout:?}")));
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            bail!("{what}: not after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
