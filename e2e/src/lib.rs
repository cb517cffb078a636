//! Helpers for end-to-end tests against the cluster `KUBECONFIG` points at
//! (kind, or the local cluster of `e2e/cluster/cluster.sh`). Each test runs in
//! a namespace of its own, deleted when the test ends.
#![forbid(unsafe_code)]

pub mod demo;
pub mod tls;

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, LogParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, ResourceExt};

/// Tag of every image the project builds: the workspace version.
pub const IMAGE_TAG: &str = env!("CARGO_PKG_VERSION");

/// The image of the test server (`src/bin/test-server.rs`).
pub fn test_server_image() -> String {
    format!("plexus/test-server:{IMAGE_TAG}")
}

/// A small image with busybox (`sh`, `nc`, `nslookup`) for client pods.
pub fn toolbox_image() -> String {
    format!("plexus/toolbox:{IMAGE_TAG}")
}

/// Label on every namespace the tests create, so that leftovers can be found.
pub const TEST_LABEL: &str = "plexus.dev/e2e";

/// A client for the cluster of `KUBECONFIG`.
pub async fn client() -> anyhow::Result<Client> {
    Client::try_default()
        .await
        .context("connecting to the cluster named by KUBECONFIG")
}

/// Field manager of what the tests apply.
pub const FIELD_MANAGER: &str = "plexus-e2e";

/// Applies the CRDs the types generate (server-side) and waits until each is
/// Established.
pub async fn apply_crds(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    for crd in plexus_crds::crds() {
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        crds.patch(&name, &apply, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established after 30s"))??;
    }
    Ok(())
}

/// Removes what an operator that a test ran on this machine created, once
/// it is stopped: `plexus-operator cleanup` (the chart's uninstall hook)
/// deletes the identities, proxy ConfigMaps and Roles, the generated root,
/// the webhook certificate, and its leader Lease `lease`. So the next test,
/// or a `helm install`, finds the cluster as it was.
pub fn operator_cleanup(operator: &std::path::Path, lease: &str) -> anyhow::Result<()> {
    demo::run(
        operator,
        &["--log-format", "text", "--lease-name", lease, "cleanup"],
        None,
    )
    .map(drop)
    .with_context(|| format!("cleaning up after the operator (Lease {lease})"))
}

/// Runs `test` in a fresh namespace named `<prefix>-<random>`, then deletes
/// the namespace whatever the outcome.
pub async fn in_namespace<F, Fut>(client: &Client, prefix: &str, test: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let name = format!("{prefix}-{:08x}", rand_suffix());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([(TEST_LABEL.to_owned(), prefix.to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    let outcome = match wait_for_default_service_account(client, &name).await {
        Ok(()) => test(name.clone()).await,
        Err(error) => Err(error),
    };
    let deleted = namespaces.delete(&name, &DeleteParams::default()).await;
    outcome?;
    deleted.with_context(|| format!("deleting namespace {name}"))?;
    Ok(())
}

/// Pods cannot be created in a namespace before the controller manager has
/// given it its `default` ServiceAccount and, before Kubernetes 1.24, that
/// account's token Secret.
async fn wait_for_default_service_account(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let version = client
        .apiserver_version()
        .await
        .context("reading the server version")?;
    let minor: u32 = version
        .minor
        .trim_end_matches('+')
        .parse()
        .unwrap_or(u32::MAX);
    let needs_token = version.major == "1" && minor < 24;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let usable = move |account: Option<&ServiceAccount>| {
        account.is_some_and(|a| !needs_token || a.secrets.as_ref().is_some_and(|s| !s.is_empty()))
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(accounts, "default", usable),
    )
    .await
    .with_context(|| {
        format!("namespace {namespace} has no usable default ServiceAccount after 30s")
    })?
    .with_context(|| format!("watching the ServiceAccounts of {namespace}"))?;
    Ok(())
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    nanos ^ std::process::id().rotate_left(16)
}

/// Waits until `condition` holds for the pod, or fails after `timeout` with
/// the pod's status in the message.
pub async fn wait_for_pod(
    pods: &Api<Pod>,
    name: &str,
    what: &str,
    timeout: Duration,
    condition: impl Condition<Pod>,
) -> anyhow::Result<Pod> {
    match tokio::time::timeout(timeout, await_condition(pods.clone(), name, condition)).await {
        Ok(Ok(Some(pod))) => Ok(pod),
        Ok(Ok(None)) => bail!("pod {name} was deleted while waiting until it is {what}"),
        Ok(Err(error)) => Err(error).with_context(|| format!("watching pod {name}")),
        Err(_) => {
            let status = pods
                .get(name)
                .await
                .map(|p| serde_json::to_string(&p.status).unwrap_or_default())
                .unwrap_or_else(|e| format!("(cannot read it: {e})"));
            bail!("pod {name} is not {what} after {timeout:?}; status: {status}")
        }
    }
}

/// The pod is Ready.
pub fn is_ready() -> impl Condition<Pod> {
    |pod: Option<&Pod>| pod.is_some_and(pod_is_ready)
}

/// Whether the pod's Ready condition is True.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// The pod has finished, successfully or not.
pub fn has_finished() -> impl Condition<Pod> {
    |pod: Option<&Pod>| {
        pod.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
    }
}

/// The logs of a pod's only (or first) container.
pub async fn logs(pods: &Api<Pod>, pod: &Pod) -> anyhow::Result<String> {
    pods.logs(&pod.name_any(), &LogParams::default())
        .await
        .with_context(|| format!("reading the logs of pod {}", pod.name_any()))
}

/// Every seed manifest of `cli/tests/fixtures/seed-manifests` after `plexus
/// convert`, in file order, with the file it came from.
pub fn converted_seed_manifests() -> anyhow::Result<Vec<(std::path::PathBuf, serde_json::Value)>> {
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cli/tests/fixtures/seed-manifests"
    );
    let mut paths: Vec<_> = std::fs::read_dir(fixtures)
        .context("reading the seed manifests")?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    let mut documents = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        let conversion =
            plexus_cli::convert::convert(&text).with_context(|| path.display().to_string())?;
        documents.extend(
            conversion
                .converted
                .into_iter()
                .map(|c| (path.clone(), c.object)),
        );
    }
    Ok(documents)
}

/// Polls `probe` every 250 ms until it gives a value, or fails after
/// `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    poll(what, timeout, Duration::from_millis(250), probe).await
}

/// Polls `probe` every `every` until it gives a value, or fails after
/// `timeout`, with the probe's last error (which may say what it saw
/// instead) as the cause.
pub async fn poll<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) if std::time::Instant::now() >= deadline => {
                return Err(error.context(format!("{what} after {timeout:?}")));
            }
            Err(_) => {}
        }
        if std::time::Instant::now() >= deadline {
            bail!("{what}: not after {timeout:?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until `selector` matches a pod, and returns the first one.
pub async fn eventually_one(
    pods: &Api<Pod>,
    selector: &str,
    timeout: Duration,
) -> anyhow::Result<Pod> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let list = pods
            .list(&kube::api::ListParams::default().labels(selector))
            .await
            .with_context(|| format!("listing pods {selector}"))?;
        if let Some(pod) = list.items.into_iter().next() {
            return Ok(pod);
        }
        if std::time::Instant::now() > deadline {
            bail!("no pod matches {selector} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
