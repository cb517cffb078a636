//! Seeing updates of the configuration and the certificate quickly. The
//! kubelet refreshes mounted ConfigMaps and Secrets only every minute or
//! so; the proxy also watches the two objects through the API (its
//! ServiceAccount may read exactly those two: the operator's Role) and
//! applies what it sees at once. The mounted directories are watched with
//! inotify besides, and re-read every few seconds in case an event is lost.
//! The Secrets of MUTUAL origination's client certificates are watched
//! through the API only, as far as the user let the ServiceAccount read
//! them (`client_certs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use notify::Watcher;
use plexus_config::sidecar::{CA_CERT_KEY, CONFIG_KEY, CONFIGMAP_NAME, TLS_CERT_KEY, TLS_KEY_KEY};

use crate::client_certs::ClientCertificates;
use crate::state::ProxyState;

/// How often the mounted files are read even without an event.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Re-reads the mounted files when their directories change (inotify), and
/// every [`POLL_INTERVAL`] anyway.
pub async fn files(state: Arc<ProxyState>, dirs: Vec<PathBuf>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| changes(&event.kind)) {
            let _ = tx.try_send(());
        }
    });
    let _watcher = match watcher {
        Ok(mut watcher) => {
            for dir in &dirs {
                if let Err(error) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                    tracing::warn!(%error, dir = %dir.display(), "not watching: polling only");
                }
            }
            Some(watcher)
        }
        Err(error) => {
            tracing::warn!(%error, "no inotify: polling the mounted files only");
            None
        }
    };
    loop {
        tokio::select! {
            _ = rx.recv() => {
                // A symlink swap is several events: let them settle.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while rx.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        state.reload();
    }
}

/// Whether an inotify event can mean new content. Opening and reading a
/// file are events too, and the proxy's own reading must not trigger the
/// next read: that is a loop. A file closed after writing is a change.
fn changes(kind: &notify::EventKind) -> bool {
    use notify::EventKind::Access;
    use notify::event::{AccessKind, AccessMode};
    !matches!(kind, Access(_)) || matches!(kind, Access(AccessKind::Close(AccessMode::Write)))
}

/// Watches the namespace's proxy ConfigMap and the identity Secret through
/// the API, when the pod has an API token; without one, or when the API
/// refuses, the mounted files alone are used.
pub async fn api(state: Arc<ProxyState>, namespace: String, secret: String) {
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            tracing::info!(%error, "no API access: the mounted files alone are read");
            return;
        }
    };
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    tokio::join!(
        follow(state.clone(), configs, CONFIGMAP_NAME.to_owned(), true),
        follow(state.clone(), secrets.clone(), secret, false),
        client_certificates(state.client_certificates.clone(), secrets),
    );
}

/// Follows each Secret whose client certificate MUTUAL origination
/// presents, as the configuration in force names them: a watch of each, as
/// the pod's ServiceAccount (which may read them only if the user said so).
async fn client_certificates(certificates: Arc<ClientCertificates>, secrets: Api<Secret>) {
    let mut wanted = certificates.wanted();
    let mut followed: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        let names = wanted.borrow_and_update().clone();
        followed.retain(|name, task| {
            let keep = names.contains(name);
            if !keep {
                task.abort();
            }
            keep
        });
        for name in names {
            followed.entry(name.clone()).or_insert_with(|| {
                tokio::spawn(follow_certificate(
                    certificates.clone(),
                    secrets.clone(),
                    name,
                ))
            });
        }
        if wanted.changed().await.is_err() {
            return;
        }
    }
}

async fn follow_certificate(
    certificates: Arc<ClientCertificates>,
    secrets: Api<Secret>,
    name: String,
) {
    let origin = format!("API Secret {name}");
    let watch = watcher::watcher(
        secrets,
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff();
    futures::pin_mut!(watch);
    let mut listed = false;
    while let Some(event) = watch.next().await {
        match event {
            Ok(Event::Apply(secret) | Event::InitApply(secret)) => {
                listed = true;
                let data = secret.data.unwrap_or_default();
                let data = data.into_iter().map(|(k, v)| (k, v.0)).collect();
                certificates.apply(&name, &data, &origin);
            }
            Ok(Event::Init) => listed = false,
            Ok(Event::InitDone) if !listed => certificates.gone(
                &name,
                format!("there is no Secret {name:?} in this pod's namespace"),
            ),
            Ok(Event::InitDone) => {}
            Ok(Event::Delete(_)) => {
                certificates.gone(&name, format!("Secret {name:?} was deleted"));
            }
            Err(error) => {
                tracing::warn!(%error, secret = %name, "watching a client certificate failed");
                certificates.refuse_unless_loaded(
                    &name,
                    format!(
                        "Secret {name:?} cannot be read as this pod's ServiceAccount \
                         (grant it get, list and watch on that Secret): {error}"
                    ),
                );
            }
        }
    }
}

/// What the proxy takes from one watched object.
trait Watched: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + 'static
where
    Self: serde::de::DeserializeOwned,
{
    fn apply(&self, state: &ProxyState, origin: &str);
}

impl Watched for ConfigMap {
    fn apply(&self, state: &ProxyState, origin: &str) {
        if let Some(bytes) = self
            .binary_data
            .as_ref()
            .and_then(|data| data.get(CONFIG_KEY))
        {
            state.apply_config(bytes.0.clone(), origin);
        }
    }
}

impl Watched for Secret {
    fn apply(&self, state: &ProxyState, origin: &str) {
        let data = self.data.clone().unwrap_or_default();
        let get = |key: &str| data.get(key).map(|b| b.0.as_slice());
        if let (Some(cert), Some(key), Some(ca)) =
            (get(TLS_CERT_KEY), get(TLS_KEY_KEY), get(CA_CERT_KEY))
        {
            state.apply_identity(cert, key, ca, origin);
        }
    }
}

async fn follow<K: Watched>(state: Arc<ProxyState>, api: Api<K>, name: String, config: bool) {
    let kind = if config { "ConfigMap" } else { "Secret" };
    let origin = format!("API {kind} {name}");
    let watch = watcher::watcher(
        api,
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff();
    futures::pin_mut!(watch);
    while let Some(event) = watch.next().await {
        match event {
            Ok(Event::Apply(object) | Event::InitApply(object)) => {
                state.set_api_live(config, true);
                object.apply(&state, &origin);
            }
            Ok(Event::Init | Event::InitDone) => state.set_api_live(config, true),
            Ok(Event::Delete(_)) => {}
            Err(error) => {
                // The files take over until the watch is back.
                state.set_api_live(config, false);
                tracing::warn!(%error, kind, %name, "API watch failed; reading the mounted files");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn reading_the_files_is_no_change() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert!(!changes(&kind), "{kind:?}");
        }
        // Kubernetes swaps the `..data` symlink: a new directory, a rename.
        for kind in [
            EventKind::Create(CreateKind::Any),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Remove(RemoveKind::Any),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
        ] {
            assert!(changes(&kind), "{kind:?}");
        }
    }
}
