//! What the operator's tasks share, and the Kubernetes plumbing they have in
//! common: Secret data as text, server-side apply, Events, conditions.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use plexus_crds::keys::{MANAGED_BY_LABEL, MANAGED_BY_OPERATOR, OPERATOR_FIELD_MANAGER};
use tokio::sync::watch;

use crate::authority::Authority;
use crate::metrics::Metrics;
use crate::settings::CaSettings;

/// Where the control plane lives and what it serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The mesh's namespace (CA Secret, webhook Secret, Lease).
    pub mesh_namespace: String,
    /// The webhook's Service, whose names its certificate carries.
    pub webhook_service: String,
    /// The MutatingWebhookConfiguration whose caBundle the operator keeps.
    pub webhook_configuration: String,
}

impl Config {
    /// The DNS names of the webhook's Service.
    pub fn webhook_dns_names(&self) -> Vec<String> {
        let (service, namespace) = (&self.webhook_service, &self.mesh_namespace);
        vec![
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
            format!("{service}.{namespace}"),
            service.clone(),
        ]
    }
}

/// Shared by the authority task and the identity controller.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Static configuration.
    pub config: Config,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// The current authority; `None` until loaded.
    pub authority: watch::Receiver<Option<Arc<Authority>>>,
    /// The last valid certificate settings of the Mesh.
    pub settings: watch::Receiver<CaSettings>,
    /// Namespaces, to know which have injection enabled.
    pub namespaces: Store<Namespace>,
    /// The identity Secrets the operator manages.
    pub identity_secrets: Store<Secret>,
}

/// Errors of the reconcilers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Issuing a certificate failed.
    #[error("issuing a certificate: {0}")]
    Ca(#[from] crate::ca::CaError),
    /// The CA Secret or the authority's state is unusable.
    #[error(transparent)]
    Authority(#[from] crate::authority::AuthorityError),
}

/// Adds context to a kube error.
pub fn kube_context<T>(
    result: Result<T, kube::Error>,
    action: impl FnOnce() -> String,
) -> Result<T, Error> {
    result.map_err(|source| Error::Kube {
        action: action(),
        source,
    })
}

/// The Secret's data as text; a value that is not UTF-8 is reported.
pub fn secret_text(secret: &Secret) -> Result<BTreeMap<String, String>, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| {
            String::from_utf8(value.0.clone())
                .map(|text| (key.clone(), text))
                .map_err(|_| format!("{key} is not UTF-8 text"))
        })
        .collect()
}

/// What to do with a certificate Secret as read from the API (`None`: it
/// does not exist), and its data as text (empty unless it was readable).
pub fn plan_secret(
    existing: Option<&Secret>,
    authority: &crate::authority::Authority,
    subject: &crate::identity::Subject,
    renewal_fraction: f64,
    now: std::time::SystemTime,
) -> (crate::identity::Plan, BTreeMap<String, String>) {
    use crate::identity::{Plan, Reason, plan};
    match existing.map(secret_text) {
        None => (Plan::Issue(Reason::Missing), BTreeMap::new()),
        Some(Err(why)) => (Plan::Issue(Reason::Corrupt(why)), BTreeMap::new()),
        Some(Ok(data)) => (
            plan(Some(&data), authority, subject, renewal_fraction, now),
            data,
        ),
    }
}

/// Writes a Secret the operator owns, whole, with server-side apply.
pub async fn apply_secret(
    client: &Client,
    namespace: &str,
    mut secret: Secret,
    data: BTreeMap<String, String>,
) -> Result<Secret, Error> {
    let name = secret.name_any();
    secret.metadata.namespace = Some(namespace.to_owned());
    secret
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(MANAGED_BY_LABEL.into(), MANAGED_BY_OPERATOR.into());
    secret.data = Some(
        data.into_iter()
            .map(|(k, v)| (k, ByteString(v.into_bytes())))
            .collect(),
    );
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(OPERATOR_FIELD_MANAGER).force();
    kube_context(
        api.patch(&name, &params, &Patch::Apply(&secret)).await,
        || format!("writing Secret {namespace}/{name}"),
    )
}

/// Publishes an Event about `object`; a failure is logged, never fatal.
pub async fn publish(
    recorder: &Recorder,
    object: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: reason.to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, object).await {
        tracing::warn!(%error, reason, "could not publish an Event");
    }
}

/// A reference to `object` for Events.
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    object.object_ref(&())
}

/// A condition that keeps its lastTransitionTime while its status does not change.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_owned();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()));
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}
