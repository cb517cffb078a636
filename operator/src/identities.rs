//! The identity controller: every ServiceAccount in a namespace labelled
//! `plexus.dev/inject=enabled`, and every ServiceAccount of a pod labelled
//! so in another namespace (a pod that opted in), gets a Secret
//! `plexus-identity-<sa>` holding
//! its SPIFFE certificate (`tls.crt`), key (`tls.key`) and the trust bundle
//! (`ca.crt`), kept valid, renewed and re-issued on root rotation. A deleted
//! or corrupted Secret is rewritten at once (the controller watches them).
//! With it, a Role and RoleBinding `plexus-proxy-<sa>` let the
//! ServiceAccount's proxies read and watch exactly two objects: that Secret
//! and the namespace's proxy ConfigMap (they watch them through the API to
//! see updates before the kubelet refreshes the mounted files).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plexus_crds::keys::{
    IDENTITY_LABEL, INJECT_ENABLED, INJECT_LABEL, MANAGED_BY_LABEL, MANAGED_BY_OPERATOR,
    SPIFFE_ID_ANNOTATION, TLS_CERT_KEY, identity_secret_name,
};

use crate::ca::SpiffeId;
use crate::context::{Context, Error, apply_secret, kube_context, plan_secret, publish, reference};
use crate::identity::{self, Plan, Reason, Subject};

/// Label selector of the Secrets the operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY_OPERATOR},{IDENTITY_LABEL}")
}

/// Whether injection (and so identities) is enabled in `namespace`.
pub fn injection_enabled(namespace: &Namespace) -> bool {
    namespace.labels().get(INJECT_LABEL).map(String::as_str) == Some(INJECT_ENABLED)
}

/// Label selector of pods that opted in to the mesh themselves.
fn opted_in_selector() -> String {
    format!("{INJECT_LABEL}={INJECT_ENABLED}")
}

/// Whether a pod of `account` in `namespace` opted in (outside labelled
/// namespaces, those are the pods the webhook injects).
async fn has_opted_in_pod(ctx: &Context, namespace: &str, account: &str) -> Result<bool, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = kube_context(
        pods.list(&ListParams::default().labels(&opted_in_selector()))
            .await,
        || format!("listing the opted-in pods of {namespace}"),
    )?;
    Ok(list.items.iter().any(|pod| {
        pod.spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref())
            .unwrap_or("default")
            == account
    }))
}

/// Runs the controller until `shutdown`; `bundle_changed` fires when the
/// authority changes (every identity is then looked at again).
pub async fn run(
    ctx: Arc<Context>,
    bundle_changed: impl Stream<Item = ()> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client);
    let controller = Controller::new(accounts, watcher::Config::default());
    let store = controller.store();
    controller
        .owns(
            secrets,
            watcher::Config::default().labels(&managed_selector()),
        )
        .watches(
            namespaces,
            watcher::Config::default(),
            move |namespace: Namespace| {
                let name = namespace.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|account| account.namespace().as_deref() == Some(name.as_str()))
                    .map(|account| ObjectRef::from_obj(&*account))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            pods,
            watcher::Config::default().labels(&opted_in_selector()),
            |pod: Pod| {
                let account = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_else(|| "default".into());
                pod.namespace()
                    .map(|ns| ObjectRef::<ServiceAccount>::new(&account).within(&ns))
            },
        )
        .reconcile_all_on(bundle_changed)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "identity reconcile");
            }
        })
        .await;
}

/// The mesh's namespace and kube-system never get identities.
fn is_system(ctx: &Context, namespace: &str) -> bool {
    namespace == ctx.config.mesh_namespace || namespace == "kube-system"
}

fn error_policy(account: Arc<ServiceAccount>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(
        namespace = account.namespace().unwrap_or_default(),
        name = account.name_any(),
        %error,
        "reconciling the identity failed"
    );
    ctx.metrics.failed("identity");
    Action::requeue(Duration::from_secs(5))
}

#[tracing::instrument(skip_all, fields(namespace = account.namespace().unwrap_or_default(), name = account.name_any()))]
async fn reconcile(account: Arc<ServiceAccount>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = account.namespace().unwrap_or_default();
    let name = account.name_any();
    let secret_name = identity_secret_name(&name);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut enabled = ctx
        .namespaces
        .get(&ObjectRef::new(&namespace))
        .is_some_and(|ns| injection_enabled(&ns));
    if !enabled && account.meta().deletion_timestamp.is_none() && !is_system(&ctx, &namespace) {
        enabled = has_opted_in_pod(&ctx, &namespace, &name).await?;
    }
    if !enabled || account.meta().deletion_timestamp.is_some() {
        remove_identity(&ctx, &secrets, &namespace, &name).await?;
        remove_proxy_access(&ctx, &namespace, &name).await?;
        return Ok(Action::await_change());
    }
    apply_proxy_access(&ctx, &account, &namespace, &secret_name).await?;
    let Some(authority) = ctx.authority.borrow().clone() else {
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    let settings = ctx.settings.borrow().clone();
    let subject = Subject::Workload(SpiffeId {
        trust_domain: settings.trust_domain.clone(),
        namespace: namespace.clone(),
        service_account: name.clone(),
    });
    let existing = kube_context(secrets.get_opt(&secret_name).await, || {
        format!("reading Secret {namespace}/{secret_name}")
    })?;
    let now = SystemTime::now();
    let (plan, mut data) = plan_secret(
        existing.as_ref(),
        &authority,
        &subject,
        settings.workload_renewal_fraction,
        now,
    );
    let template = identity_secret(&account, &secret_name, &subject);
    let (refresh_in, cert_pem) = match plan {
        Plan::Keep { refresh_in } => (refresh_in, data.remove(TLS_CERT_KEY)),
        Plan::RefreshBundle { refresh_in } => {
            let cert_pem = data.get(TLS_CERT_KEY).cloned();
            data.insert(
                plexus_crds::keys::CA_CERT_KEY.into(),
                authority.bundle_pem(),
            );
            apply_secret(&ctx.client, &namespace, template, data).await?;
            tracing::info!("trust bundle updated");
            (refresh_in, cert_pem)
        }
        Plan::Issue(reason) => {
            let data = identity::issue(&authority, &subject, settings.workload_ttl, now)?;
            let cert_pem = data.get(TLS_CERT_KEY).cloned();
            let written = apply_secret(&ctx.client, &namespace, template, data).await?;
            ctx.metrics.issued("identity", reason.as_str());
            let (type_, event_reason) = match reason {
                Reason::Corrupt(_) => (EventType::Warning, "CorruptIdentityReplaced"),
                Reason::Missing => (EventType::Normal, "IdentityIssued"),
                _ => (EventType::Normal, "IdentityRenewed"),
            };
            let note = format!(
                "{subject_id}: {reason}; issued a new certificate",
                subject_id = spiffe(&subject)
            );
            tracing::info!(reason = reason.as_str(), "certificate issued");
            publish(
                &ctx.recorder,
                &reference(&written),
                type_,
                event_reason,
                note,
            )
            .await;
            (
                settings
                    .workload_ttl
                    .mul_f64(settings.workload_renewal_fraction),
                cert_pem,
            )
        }
    };
    if let Some(info) = cert_pem.and_then(|pem| crate::ca::inspect(TLS_CERT_KEY, &pem).ok()) {
        ctx.metrics
            .expires("identity", &format!("{namespace}/{name}"), info.not_after);
    }
    Ok(Action::requeue(refresh_in + Duration::from_secs(1)))
}

fn spiffe(subject: &Subject) -> String {
    match subject {
        Subject::Workload(id) => id.to_string(),
        Subject::Server(names) => names.join(", "),
    }
}

/// The identity Secret's metadata: owned by the ServiceAccount, so that it
/// is garbage-collected with it.
fn identity_secret(account: &ServiceAccount, secret_name: &str, subject: &Subject) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_owned()),
            labels: Some(BTreeMap::from([(
                IDENTITY_LABEL.to_owned(),
                account.name_any(),
            )])),
            annotations: Some(BTreeMap::from([(
                SPIFFE_ID_ANNOTATION.to_owned(),
                spiffe(subject),
            )])),
            owner_references: account.controller_owner_ref(&()).map(|owner| vec![owner]),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        ..Default::default()
    }
}

/// The name of the Role and RoleBinding of a ServiceAccount's proxies.
pub fn proxy_access_name(service_account: &str) -> String {
    format!("plexus-proxy-{service_account}")
}

/// The Role (read and watch the identity Secret and the proxy ConfigMap,
/// nothing else) and its RoleBinding to the ServiceAccount, both owned by
/// it. Server-side apply: unchanged objects are not written again.
async fn apply_proxy_access(
    ctx: &Context,
    account: &ServiceAccount,
    namespace: &str,
    secret_name: &str,
) -> Result<(), Error> {
    use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
    let name = proxy_access_name(&account.name_any());
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_OPERATOR.to_owned()),
            (IDENTITY_LABEL.to_owned(), account.name_any()),
        ])),
        owner_references: account.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..Default::default()
    };
    let read = |resource: &str, object: &str| PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec![resource.to_owned()]),
        resource_names: Some(vec![object.to_owned()]),
        verbs: ["get", "list", "watch"].map(String::from).to_vec(),
        ..Default::default()
    };
    let role = Role {
        metadata: metadata.clone(),
        rules: Some(vec![
            read("configmaps", plexus_config::CONFIGMAP_NAME),
            read("secrets", secret_name),
        ]),
    };
    let binding = RoleBinding {
        metadata,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account.name_any(),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        }]),
    };
    let params = kube::api::PatchParams::apply(plexus_crds::keys::OPERATOR_FIELD_MANAGER).force();
    let roles: Api<Role> = Api::namespaced(ctx.client.clone(), namespace);
    kube_context(
        roles
            .patch(&name, &params, &kube::api::Patch::Apply(&role))
            .await,
        || format!("writing Role {namespace}/{name}"),
    )?;
    let bindings: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), namespace);
    kube_context(
        bindings
            .patch(&name, &params, &kube::api::Patch::Apply(&binding))
            .await,
        || format!("writing RoleBinding {namespace}/{name}"),
    )?;
    Ok(())
}

async fn remove_proxy_access(ctx: &Context, namespace: &str, account: &str) -> Result<(), Error> {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let name = proxy_access_name(account);
    let roles: Api<Role> = Api::namespaced(ctx.client.clone(), namespace);
    let bindings: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), namespace);
    for result in [
        bindings
            .delete(&name, &DeleteParams::default())
            .await
            .map(|_| ()),
        roles
            .delete(&name, &DeleteParams::default())
            .await
            .map(|_| ()),
    ] {
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                return kube_context(Err(error), || {
                    format!("deleting the proxy's Role and RoleBinding {namespace}/{name}")
                });
            }
        }
    }
    Ok(())
}

async fn remove_identity(
    ctx: &Context,
    secrets: &Api<Secret>,
    namespace: &str,
    account: &str,
) -> Result<(), Error> {
    let secret_name = identity_secret_name(account);
    let existing = kube_context(secrets.get_opt(&secret_name).await, || {
        format!("reading Secret {namespace}/{secret_name}")
    })?;
    let ours = existing.as_ref().is_some_and(|s| {
        s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_OPERATOR)
    });
    if ours {
        kube_context(
            secrets.delete(&secret_name, &DeleteParams::default()).await,
            || format!("deleting Secret {namespace}/{secret_name}"),
        )?;
        ctx.metrics
            .forget("identity", &format!("{namespace}/{account}"));
        tracing::info!("identity removed: injection is not enabled in the namespace");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
