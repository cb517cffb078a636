//! The configuration controller: watches the mesh's resources, Services,
//! endpoints, Pods and Namespaces; on a change (debounced) compiles them
//! ([`crate::compile`]), writes the ConfigMaps that changed and the status of
//! every resource whose verdict changed, with an Event when one is rejected.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use plexus_config::{CONFIG_KEY, CONFIGMAP_NAME, REVISION_ANNOTATION};
use plexus_crds::common::{CONDITION_ACCEPTED, CONDITION_PROGRAMMED, ResourceStatus};
use plexus_crds::keys::{MANAGED_BY_LABEL, MANAGED_BY_OPERATOR, OPERATOR_FIELD_MANAGER};
use plexus_crds::mesh::Mesh;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::compile::{self, Input, Key, Kind, Verdict};
use crate::context::{self, Context};
use crate::jwks::Jwks;
use crate::snapshot::{self, PodView};

/// Label on the ConfigMaps the controller writes.
pub const CONFIG_LABEL: &str = "plexus.dev/config";

/// How long the inputs must be quiet before a pass, and the longest a pass
/// waits for quiet.
const QUIET: Duration = Duration::from_millis(50);
const MAX_WAIT: Duration = Duration::from_millis(500);
/// The most a ConfigMap's payload may hold (the API server's limit is 1 MiB
/// for the whole object).
const MAX_CONFIGMAP_BYTES: usize = 1_000_000;
/// Concurrent status writes.
const WRITERS: usize = 16;

/// Kinds with a [`ResourceStatus`].
trait HasStatus:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    fn resource_status(&self) -> Option<&ResourceStatus>;
}

/// The per-kind parts of the controller, from the one table of kinds
/// (`crate::kinds`): a store each, their watches, their first lists, their
/// objects in the compiler's input, and their status writers.
macro_rules! kind_stores {
    ($($kind:ident => $field:ident: $ty:ty),+ $(,)?) => {
        $(
            impl HasStatus for $ty {
                const KIND: Kind = Kind::$kind;
                fn resource_status(&self) -> Option<&ResourceStatus> {
                    self.status.as_ref()
                }
            }
        )+

        /// A store per mesh kind.
        struct KindStores {
            $($field: Store<$ty>,)+
        }

        impl KindStores {
            /// Watches every mesh kind; a change of a spec's generation
            /// starts a pass.
            fn start(client: &Client, dirty: &Arc<Notify>) -> Self {
                Self {
                    $($field: watch(
                        Api::all(client.clone()),
                        watcher::Config::default(),
                        dirty,
                        no_fields,
                        generation,
                    ),)+
                }
            }

            async fn wait_ready(&self) {
                $(wait_ready(&self.$field).await;)+
            }

            /// Copies every object into the compiler's input.
            fn fill(&self, input: &mut Input) {
                $(input.$field = objects(&self.$field);)+
            }

            /// Writes the statuses that changed: how many, and whether all
            /// writes succeeded, per kind.
            async fn statuses(
                &self,
                ctx: &Context,
                verdicts: &BTreeMap<Key, Verdict>,
                proxies: &BTreeMap<String, usize>,
            ) -> Vec<(usize, bool)> {
                vec![$(statuses_of(ctx, &self.$field, verdicts, proxies).await,)+]
            }
        }
    };
}

crate::for_each_kind!(kind_stores);

/// Stores holding the mesh's objects among `objects` (JSON), for tests.
#[cfg(test)]
macro_rules! kind_stores_holding {
    ($($kind:ident => $field:ident: $ty:ty),+ $(,)?) => {
        impl KindStores {
            fn holding(objects: &[serde_json::Value]) -> Self {
                Self {
                    $($field: crate::fixtures::store(tests::of_kind::<$ty>(objects, stringify!($kind))),)+
                }
            }
        }
    };
}

#[cfg(test)]
crate::for_each_kind!(kind_stores_holding);

fn objects<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> Vec<K> {
    store.state().iter().map(|o| (**o).clone()).collect()
}

/// Where endpoints come from.
enum Endpoints {
    Slices(Store<EndpointSlice>),
    Pods,
}

/// The watched objects.
struct Stores {
    kinds: KindStores,
    meshes: Store<Mesh>,
    services: Store<Service>,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    /// Only metadata: the revision annotation says what each one holds.
    config_maps: Store<PartialObjectMeta<ConfigMap>>,
    endpoints: Endpoints,
    /// The key sets of the RequestAuthentications' `jwksUri`s.
    jwks: Arc<Jwks>,
    /// Secrets, slimmed to their CA certificates (`credentialName`).
    secrets: Store<Secret>,
}

/// Watches `api` into a store, signalling `dirty` when an object appears or
/// goes, or when its `fingerprint` (what the compiler reads of it) changes.
/// The operator's own writes (status, ConfigMaps) leave fingerprints alone,
/// so they do not start another pass.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    dirty: &Arc<Notify>,
    slim: fn(&mut K),
    fingerprint: fn(&K) -> u64,
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let dirty = dirty.clone();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let key = |o: &K| o.meta().uid.clone().unwrap_or_else(|| o.name_any());
    let events = watcher(api, config)
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .for_each(move |event| {
            let changed = match event {
                Ok(watcher::Event::InitApply(object)) => {
                    seen.insert(key(&object), fingerprint(&object));
                    false
                }
                Ok(watcher::Event::Apply(object)) => {
                    seen.insert(key(&object), fingerprint(&object)) != Some(fingerprint(&object))
                }
                Ok(watcher::Event::Delete(object)) => {
                    seen.remove(&key(&object));
                    true
                }
                Ok(watcher::Event::Init) => false,
                Ok(watcher::Event::InitDone) => true,
                Err(error) => {
                    tracing::warn!(%error, kind = %K::kind(&()), "watch failed; retrying");
                    false
                }
            };
            if changed {
                dirty.notify_one();
            }
            async {}
        });
    tokio::spawn(events);
    store
}

fn hash(value: &impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

/// The spec's generation: status updates do not change it.
fn generation<K: Resource>(object: &K) -> u64 {
    object.meta().generation.map_or(0, |g| g.unsigned_abs())
}

/// Any change.
fn version<K: Resource>(object: &K) -> u64 {
    hash(&object.meta().resource_version)
}

/// What the compiler reads of a pod.
fn pod_fingerprint(pod: &Pod) -> u64 {
    hash(&snapshot::pod_view(pod))
}

/// The CA certificates a Secret holds (all that is kept of it).
fn secret_fingerprint(secret: &Secret) -> u64 {
    hash(&snapshot::credential(secret))
}

/// Nothing: only creation and deletion count (the operator's own ConfigMaps).
fn existence<K>(_: &K) -> u64 {
    0
}

fn no_fields<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// Keeps only what [`snapshot::pod_view`] reads: 5,000 pods stay small.
fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
    if let Some(spec) = &mut pod.spec {
        spec.volumes = None;
        spec.affinity = None;
        spec.tolerations = None;
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            *c = k8s_openapi::api::core::v1::Container {
                name: std::mem::take(&mut c.name),
                ports: c.ports.take(),
                ..Default::default()
            };
        }
    }
    if let Some(status) = &mut pod.status {
        status.container_statuses = None;
        status.init_container_statuses = None;
    }
}

async fn wait_ready<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>) {
    let kind = K::kind(&()).to_string();
    tokio::select! {
        result = store.wait_until_ready() => if result.is_err() {
            tracing::error!(%kind, "watch ended before its first list");
        },
        () = async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            tracing::warn!(%kind, "still waiting for the first list (is the CRD installed, and RBAC granted?)");
            std::future::pending::<()>().await
        } => {}
    }
}

impl Stores {
    async fn start(client: &Client, dirty: &Arc<Notify>, jwks: Arc<Jwks>) -> Self {
        let all = watcher::Config::default;
        let slices = client
            .list_api_group_resources("discovery.k8s.io/v1")
            .await
            .map(|list| list.resources.iter().any(|r| r.name == "endpointslices"))
            .unwrap_or(false);
        let endpoints = if slices {
            tracing::info!("endpoints from discovery.k8s.io/v1 EndpointSlices");
            Endpoints::Slices(watch(
                Api::all(client.clone()),
                all(),
                dirty,
                no_fields,
                version,
            ))
        } else {
            tracing::info!(
                "no discovery.k8s.io/v1: endpoints from ready Pods matched to Service selectors"
            );
            Endpoints::Pods
        };
        let stores = Self {
            kinds: KindStores::start(client, dirty),
            meshes: watch(
                Api::all(client.clone()),
                all(),
                dirty,
                no_fields,
                generation,
            ),
            services: watch(Api::all(client.clone()), all(), dirty, no_fields, version),
            pods: watch(
                Api::all(client.clone()),
                all(),
                dirty,
                slim_pod,
                pod_fingerprint,
            ),
            // `Api<PartialObjectMeta<_>>` requests metadata only.
            config_maps: watch(
                Api::all(client.clone()),
                all().labels(&format!("{CONFIG_LABEL}=proxy")),
                dirty,
                no_fields,
                existence,
            ),
            namespaces: watch(Api::all(client.clone()), all(), dirty, no_fields, version),
            // Not the kinds that never hold a CA (the cluster's tokens, Helm's
            // releases); a change elsewhere than the CA keys starts no pass.
            secrets: watch(
                Api::all(client.clone()),
                all().fields("type!=kubernetes.io/service-account-token,type!=helm.sh/release.v1"),
                dirty,
                snapshot::slim_secret,
                secret_fingerprint,
            ),
            endpoints,
            jwks,
        };
        stores.kinds.wait_ready().await;
        wait_ready(&stores.meshes).await;
        wait_ready(&stores.services).await;
        wait_ready(&stores.pods).await;
        wait_ready(&stores.config_maps).await;
        wait_ready(&stores.namespaces).await;
        wait_ready(&stores.secrets).await;
        if let Endpoints::Slices(s) = &stores.endpoints {
            wait_ready(s).await;
        }
        stores
    }

    /// The compiler's input, converted once from the stores.
    fn input(&self, ctx: &Context, cluster_domain: &str) -> Input {
        let namespaces = objects(&self.namespaces);
        let pods: Vec<PodView> = self
            .pods
            .state()
            .iter()
            .map(|p| snapshot::pod_view(p))
            .collect();
        let services: Vec<_> = self
            .services
            .state()
            .iter()
            .filter_map(|s| snapshot::service_input(s))
            .collect();
        let endpoints = match &self.endpoints {
            Endpoints::Pods => snapshot::endpoints_from_pods(&services, &pods),
            Endpoints::Slices(store) => {
                let by_name: HashMap<(String, String), PodView> = pods
                    .iter()
                    .map(|p| ((p.namespace.clone(), p.name.clone()), p.clone()))
                    .collect();
                snapshot::endpoints_from_slices(&services, &objects(store), &by_name)
            }
        };
        let mesh = self
            .meshes
            .state()
            .iter()
            .find(|m| m.name_any() == "default")
            .map(|m| m.spec.clone())
            .unwrap_or_default();
        let mut input = Input {
            mesh,
            root_namespace: ctx.config.mesh_namespace.clone(),
            cluster_domain: cluster_domain.to_owned(),
            namespaces: namespaces.iter().map(|n| n.name_any()).collect(),
            injected: snapshot::injected_namespaces(&namespaces, &pods, &ctx.config.mesh_namespace),
            services,
            endpoints,
            jwks: self.jwks.snapshot(),
            credentials: self
                .secrets
                .state()
                .iter()
                .filter_map(|s| snapshot::credential(s))
                .collect(),
            ..Default::default()
        };
        self.kinds.fill(&mut input);
        input
    }
}

/// Runs the controller until the process stops.
pub async fn run(ctx: Arc<Context>, cluster_domain: String, jwks: Arc<Jwks>) {
    let dirty = Arc::new(Notify::new());
    let stores = Stores::start(&ctx.client, &dirty, jwks.clone()).await;
    let requests = stores.kinds.request_authentications.clone();
    tokio::spawn(jwks.run(
        move || crate::jwks::wanted(requests.state().iter().map(|ra| &**ra)),
        dirty.clone(),
    ));
    tracing::info!("configuration controller started");
    let mut retry = false;
    loop {
        if retry {
            // A failed write is retried after a pause even without changes.
            tokio::select! {
                () = dirty.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        } else {
            dirty.notified().await;
        }
        let first = Instant::now();
        while first.elapsed() < MAX_WAIT {
            if tokio::time::timeout(QUIET, dirty.notified()).await.is_err() {
                break;
            }
        }
        let started = Instant::now();
        let ok = pass(&ctx, &stores, &cluster_domain).await;
        let metrics = &ctx.metrics.config;
        metrics.reconciles.inc();
        metrics.duration.observe(started.elapsed().as_secs_f64());
        if !ok {
            metrics.errors.inc();
        }
        retry = !ok;
    }
}

/// One pass: compile, then write what changed. Returns whether every write
/// succeeded.
async fn pass(ctx: &Context, stores: &Stores, cluster_domain: &str) -> bool {
    let metrics = &ctx.metrics.config;
    let started = Instant::now();
    let input = stores.input(ctx, cluster_domain);
    let input_ms = started.elapsed().as_millis();
    let kinds = input
        .counts()
        .into_iter()
        .map(|(kind, n)| (kind.as_str(), n));
    let others = [
        ("Service", input.services.len()),
        ("Endpoint", input.endpoints.len()),
        ("Pod", stores.pods.state().len()),
        ("Namespace", input.namespaces.len()),
    ];
    for (kind, count) in kinds.chain(others) {
        metrics
            .objects
            .get_or_create(&crate::metrics::KindLabels { kind: kind.into() })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    let compiled_at = Instant::now();
    let output = tokio::task::block_in_place(|| compile::compile(&input));
    metrics
        .compile_duration
        .observe(compiled_at.elapsed().as_secs_f64());

    let compile_ms = compiled_at.elapsed().as_millis();
    let written_at = Instant::now();
    let (written, configs_ok) = write_configs(ctx, stores, output.configs).await;
    let configs_ms = written_at.elapsed().as_millis();
    let (statuses, statuses_ok) = statuses(ctx, stores, &output.verdicts, &input.injected).await;
    tracing::info!(
        input_ms,
        compile_ms,
        configs_ms,
        total_ms = started.elapsed().as_millis(),
        configmaps = written,
        statuses,
        resources = output.verdicts.len(),
        "configuration pass"
    );
    configs_ok && statuses_ok
}

/// Writes the ConfigMaps whose content changed (by revision), deletes those
/// of namespaces that no longer have injected workloads. Returns the number
/// written and whether every write succeeded.
async fn write_configs(
    ctx: &Context,
    stores: &Stores,
    configs: BTreeMap<String, plexus_config::ProxyConfig>,
) -> (usize, bool) {
    let metrics = &ctx.metrics.config;
    let existing: HashMap<String, Option<String>> = stores
        .config_maps
        .state()
        .into_iter()
        .filter(|c| c.name_any() == CONFIGMAP_NAME)
        .map(|c| {
            (
                c.namespace().unwrap_or_default(),
                c.annotations().get(REVISION_ANNOTATION).cloned(),
            )
        })
        .collect();
    let stale: Vec<String> = existing
        .keys()
        .filter(|ns| !configs.contains_key(*ns))
        .cloned()
        .collect();
    let mut writes = Vec::new();
    let (mut total, mut largest) = (0usize, 0usize);
    for (namespace, config) in configs {
        let json = match serde_json::to_vec(&config) {
            Ok(json) => json,
            Err(error) => {
                tracing::error!(%error, %namespace, "cannot serialize a configuration");
                continue;
            }
        };
        drop(config);
        let revision = revision(&json);
        let compressed = if existing.get(&namespace) == Some(&Some(revision.clone())) {
            // Unchanged: written before; only its size is reported.
            None
        } else {
            Some(plexus_config::compress(&json))
        };
        let size = compressed.as_ref().map_or(0, Vec::len);
        total += size;
        largest = largest.max(size);
        match compressed {
            Some(bytes) if bytes.len() > MAX_CONFIGMAP_BYTES => {
                // The API server would refuse it; the last configuration stays.
                tracing::error!(
                    %namespace,
                    bytes = bytes.len(),
                    "the proxy configuration is over the ConfigMap size limit even compressed; the previous one stays in force"
                );
                metrics.wrote("configmap", false);
            }
            Some(bytes) => writes.push((namespace, revision, bytes)),
            None => {}
        }
    }
    if !writes.is_empty() {
        metrics
            .config_bytes
            .set(i64::try_from(total).unwrap_or(i64::MAX));
        metrics
            .largest_config_bytes
            .set(i64::try_from(largest).unwrap_or(i64::MAX));
    }
    let count = writes.len();
    let results: Vec<bool> = stream::iter(writes)
        .map(|(namespace, revision, bytes)| async move {
            let ok = apply_config(&ctx.client, &namespace, revision, bytes).await;
            metrics.wrote("configmap", ok);
            ok
        })
        .buffer_unordered(WRITERS)
        .collect()
        .await;
    let mut ok = results.iter().all(|r| *r);
    for namespace in stale {
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
        let result = api.delete(CONFIGMAP_NAME, &DeleteParams::default()).await;
        let deleted = match result {
            Ok(_) => {
                tracing::info!(%namespace, "proxy configuration deleted: no injected workloads");
                true
            }
            Err(kube::Error::Api(e)) if e.code == 404 => true,
            Err(error) => {
                tracing::warn!(%error, %namespace, "cannot delete a stale proxy configuration");
                false
            }
        };
        metrics.wrote("configmap-delete", deleted);
        ok &= deleted;
    }
    (count, ok)
}

async fn apply_config(client: &Client, namespace: &str, revision: String, bytes: Vec<u8>) -> bool {
    let size = bytes.len();
    let config_map = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(CONFIGMAP_NAME.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.into(), MANAGED_BY_OPERATOR.into()),
                (CONFIG_LABEL.into(), "proxy".into()),
            ])),
            annotations: Some(BTreeMap::from([(
                REVISION_ANNOTATION.into(),
                revision.clone(),
            )])),
            ..Default::default()
        },
        binary_data: Some(BTreeMap::from([(CONFIG_KEY.into(), ByteString(bytes))])),
        ..Default::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(OPERATOR_FIELD_MANAGER).force();
    match api
        .patch(CONFIGMAP_NAME, &params, &Patch::Apply(&config_map))
        .await
    {
        Ok(_) => {
            tracing::info!(%namespace, %revision, bytes = size, "proxy configuration written");
            true
        }
        Err(error) => {
            tracing::warn!(%error, %namespace, "cannot write the proxy configuration");
            false
        }
    }
}

/// The first 16 hex digits of the SHA-256 of a configuration.
pub fn revision(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes every status whose verdict changed.
async fn statuses(
    ctx: &Context,
    stores: &Stores,
    verdicts: &BTreeMap<Key, Verdict>,
    proxies: &BTreeMap<String, usize>,
) -> (usize, bool) {
    let mut rejected: BTreeMap<Kind, i64> = BTreeMap::new();
    for (key, verdict) in verdicts {
        if verdict.acceptance.is_err() {
            *rejected.entry(key.kind).or_default() += 1;
        }
    }
    for kind in Kind::ALL {
        ctx.metrics
            .config
            .rejected
            .get_or_create(&crate::metrics::KindLabels {
                kind: kind.as_str().into(),
            })
            .set(rejected.get(kind).copied().unwrap_or(0));
    }
    let results = stores.kinds.statuses(ctx, verdicts, proxies).await;
    (
        results.iter().map(|r| r.0).sum(),
        results.iter().all(|r| r.1),
    )
}

/// The Warning Event a status change deserves: a resource newly rejected,
/// a security resource newly not enforced, or one whose keys could not be
/// fetched (each message once).
fn warning(
    verdict: &Verdict,
    previous: &[Condition],
    wanted: &[Condition],
) -> Option<(&'static str, String)> {
    let said = |type_: &str| {
        previous
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.as_str(), c.message.as_str()))
    };
    match &verdict.acceptance {
        Err(rejection) if said(CONDITION_ACCEPTED) != Some(("False", &rejection.message)) => {
            Some((rejection.reason, rejection.message.clone()))
        }
        Ok(accepted) => {
            let reason = if accepted.unavailable.is_some() {
                compile::KEYS_UNAVAILABLE
            } else if verdict.not_enforced_security() {
                compile::NOT_ENFORCED
            } else {
                return None;
            };
            let programmed = wanted.iter().find(|c| c.type_ == CONDITION_PROGRAMMED)?;
            (said(CONDITION_PROGRAMMED) != Some(("False", &programmed.message)))
                .then(|| (reason, programmed.message.clone()))
        }
        Err(_) => None,
    }
}

/// Whether a condition already says this (lastTransitionTime aside).
fn same(current: Option<&Condition>, wanted: &Condition) -> bool {
    current.is_some_and(|c| {
        c.status == wanted.status
            && c.reason == wanted.reason
            && c.message == wanted.message
            && c.observed_generation == wanted.observed_generation
    })
}

async fn statuses_of<K: HasStatus>(
    ctx: &Context,
    store: &Store<K>,
    verdicts: &BTreeMap<Key, Verdict>,
    proxies: &BTreeMap<String, usize>,
) -> (usize, bool) {
    let mut changes = Vec::new();
    for object in store.state() {
        let key = Key {
            kind: K::KIND,
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
        };
        let Some(verdict) = verdicts.get(&key) else {
            continue;
        };
        let previous: &[Condition] = object
            .resource_status()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let generation = verdict.generation;
        let wanted: Vec<Condition> = [
            (CONDITION_ACCEPTED, verdict.accepted()),
            (CONDITION_PROGRAMMED, verdict.programmed(proxies)),
        ]
        .into_iter()
        .map(|(type_, parts)| {
            context::condition(
                previous,
                type_,
                parts.status,
                &parts.reason,
                parts.message,
                generation,
            )
        })
        .collect();
        let unchanged = wanted
            .iter()
            .all(|w| same(previous.iter().find(|c| c.type_ == w.type_), w))
            && object.resource_status().and_then(|s| s.observed_generation) == generation;
        if unchanged {
            continue;
        }
        let event = warning(verdict, previous, &wanted);
        changes.push((object, key, wanted, generation, event));
    }
    let count = changes.len();
    let results: Vec<bool> = stream::iter(changes)
        .map(|(object, key, conditions, generation, event)| async move {
            let api: Api<K> = Api::namespaced(ctx.client.clone(), &key.namespace);
            let patch = serde_json::json!({
                "status": ResourceStatus { observed_generation: generation, conditions }
            });
            let result = api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            let ok = match result {
                Ok(_) => true,
                // Deleted meanwhile: nothing to report.
                Err(kube::Error::Api(e)) if e.code == 404 => true,
                Err(error) => {
                    tracing::warn!(%error, resource = %key.origin(), "cannot write status");
                    false
                }
            };
            ctx.metrics.config.wrote("status", ok);
            if let Some((reason, message)) = event {
                tracing::warn!(resource = %key.origin(), reason, %message, "resource not accepted or not enforced");
                context::publish(
                    &ctx.recorder,
                    &context::reference(&*object),
                    EventType::Warning,
                    reason,
                    message,
                )
                .await;
                ctx.metrics.config.wrote("event", true);
            }
            ok
        })
        .buffer_unordered(WRITERS)
        .collect()
        .await;
    (count, results.iter().all(|r| *r))
}

#[cfg(test)]
mod tests;
