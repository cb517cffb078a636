//! The authority task (leader only): loads or creates the CA Secret, steps
//! root rotations, publishes the authority to the identity controller, keeps
//! the webhook's serving certificate and `caBundle`, and reports in the
//! Mesh's status.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::runtime::events::EventType;
use plexus_crds::common::CONDITION_READY;
use plexus_crds::keys::{
    CA_SECRET, OPERATOR_FIELD_MANAGER, ROTATE_ROOT_ANNOTATION, TLS_CERT_KEY, WEBHOOK_TLS_SECRET,
};
use plexus_crds::mesh::{MESH_NAME, MeshStatus, RootStatus};
use plexus_crds::{API_VERSION, Mesh};
use serde_json::json;
use tokio::sync::watch;

use crate::authority::{Authority, AuthorityError, Progress, RotationReason, Step};
use crate::ca;
use crate::context::{
    Context, Error, apply_secret, condition, kube_context, plan_secret, publish, reference,
    secret_text,
};
use crate::identity::{self, Plan, Subject};
use crate::settings::CaSettings;
use crate::timing;

/// How often the authority looks at the world.
pub const TICK: Duration = Duration::from_secs(2);
/// Condition type: a root or identity is near expiry without a renewal.
pub const CONDITION_EXPIRING_SOON: &str = "CertificateExpiringSoon";

/// The sending ends of what the task publishes.
pub struct Publisher {
    /// The current authority.
    pub authority: watch::Sender<Option<Arc<Authority>>>,
    /// The last valid settings.
    pub settings: watch::Sender<CaSettings>,
}

/// What one pass found, for the Mesh's status.
struct Observed {
    authority: Authority,
    identities: usize,
    overdue: Vec<String>,
    invalid_spec: Option<String>,
}

/// Runs until the process ends; `ready` is called after the first good pass.
pub async fn run(ctx: Arc<Context>, publisher: Publisher, ready: impl Fn()) {
    let meshes: Api<Mesh> = Api::all(ctx.client.clone());
    loop {
        // The Mesh is read once a pass; the pass and its status use that copy.
        let (mesh, outcome) = match kube_context(meshes.get_opt(MESH_NAME).await, || {
            "reading the Mesh".into()
        }) {
            Ok(mesh) => {
                let outcome = tick(&ctx, &publisher, mesh.as_ref()).await;
                (mesh, outcome)
            }
            Err(error) => (None, Err(error)),
        };
        match &outcome {
            Ok(_) => ready(),
            Err(error) => {
                tracing::warn!(%error, "certificate authority pass failed");
                ctx.metrics.failed("root-rotation");
                if let Some(mesh) = &mesh {
                    // The recorder folds repeats of one Event into a series.
                    publish(
                        &ctx.recorder,
                        &reference(mesh),
                        EventType::Warning,
                        "CertificateAuthorityFailed",
                        error.to_string(),
                    )
                    .await;
                }
            }
        }
        if let Some(mesh) = &mesh
            && let Err(error) =
                write_status(&ctx, mesh, outcome.as_ref().map_err(ToString::to_string)).await
        {
            tracing::warn!(%error, "could not write the Mesh status");
            ctx.metrics.failed("mesh-status");
        }
        tokio::time::sleep(TICK).await;
    }
}

async fn tick(
    ctx: &Context,
    publisher: &Publisher,
    mesh: Option<&Mesh>,
) -> Result<Observed, Error> {
    let mut invalid_spec = None;
    if let Some(mesh) = mesh {
        match CaSettings::try_from(&mesh.spec) {
            Ok(settings) => {
                publisher.settings.send_if_modified(|current| {
                    let changed = *current != settings;
                    *current = settings;
                    changed
                });
            }
            // The last valid settings stay in force.
            Err(message) => invalid_spec = Some(message),
        }
    }
    let settings = publisher.settings.borrow().clone();
    let now = SystemTime::now();

    let authority = load_or_create(ctx, &settings, now).await?;
    let (progress, overdue) = progress(ctx, &authority, &settings, now);
    let force = mesh.and_then(|m| m.annotations().get(ROTATE_ROOT_ANNOTATION).cloned());
    let step = authority.next_step(
        settings.root_renewal_fraction,
        force.as_deref(),
        progress,
        now,
    )?;
    let authority = match step {
        Step::Wait => authority,
        Step::StartRotation(reason) => {
            let next = authority.start_rotation(
                &settings.trust_domain,
                settings.root_ttl,
                &reason,
                now,
            )?;
            let why = match &reason {
                RotationReason::Due => "the root passed its renewal point".to_owned(),
                RotationReason::Forced(value) => format!("{ROTATE_ROOT_ANNOTATION}={value}"),
            };
            ctx.metrics.issued(
                "root",
                if matches!(reason, RotationReason::Due) {
                    "Renewal"
                } else {
                    "Forced"
                },
            );
            store(
                ctx,
                &next,
                "RootRotationStarted",
                format!(
                    "root rotation started ({why}): a new root is trusted beside the current one"
                ),
            )
            .await?;
            next
        }
        Step::Promote => {
            let next = authority.promote()?;
            store(ctx, &next, "RootPromoted", format!("every identity trusts the new root; it now signs ({} identities re-issued next)", progress.identities)).await?;
            next
        }
        Step::Finish => {
            let next = authority.finish();
            store(
                ctx,
                &next,
                "RootRotationCompleted",
                "every identity is signed by the new root; the old root left the trust bundle"
                    .into(),
            )
            .await?;
            next
        }
    };
    publisher.authority.send_if_modified(|current| {
        if current.as_deref() == Some(&authority) {
            return false;
        }
        *current = Some(Arc::new(authority.clone()));
        true
    });
    if let Err(error) = webhook_certificate(ctx, &authority, &settings, now).await {
        tracing::warn!(%error, "keeping the webhook certificate failed");
        ctx.metrics.failed("webhook");
    }
    for pem in &authority.bundle {
        if let Ok(info) = ca::inspect("a root", pem) {
            ctx.metrics
                .expires("root", &info.fingerprint[..16], info.not_after);
        }
    }
    Ok(Observed {
        authority,
        identities: progress.identities,
        overdue,
        invalid_spec,
    })
}

async fn load_or_create(
    ctx: &Context,
    settings: &CaSettings,
    now: SystemTime,
) -> Result<Authority, Error> {
    let namespace = &ctx.config.mesh_namespace;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = kube_context(secrets.get_opt(CA_SECRET).await, || {
        format!("reading Secret {namespace}/{CA_SECRET}")
    })?;
    match existing {
        Some(secret) => {
            let data = secret_text(&secret).map_err(AuthorityError::Invalid)?;
            // A broken CA Secret is reported, never overwritten: it may be the
            // user's root.
            Ok(Authority::from_secret(&data, secret.annotations())?)
        }
        None => {
            let authority = Authority::generate(&settings.trust_domain, now, settings.root_ttl)?;
            ctx.metrics.issued("root", "Missing");
            store(
                ctx,
                &authority,
                "RootGenerated",
                format!(
                    "generated a root for trust domain {}",
                    settings.trust_domain
                ),
            )
            .await?;
            Ok(authority)
        }
    }
}

/// Writes the CA Secret and says so in an Event.
async fn store(
    ctx: &Context,
    authority: &Authority,
    reason: &str,
    note: String,
) -> Result<(), Error> {
    let (data, annotations) = authority.to_secret();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(CA_SECRET.into()),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    let written = apply_secret(&ctx.client, &ctx.config.mesh_namespace, secret, data).await?;
    tracing::info!(reason, "{note}");
    publish(
        &ctx.recorder,
        &reference(&written),
        EventType::Normal,
        reason,
        note,
    )
    .await;
    Ok(())
}

/// How far the identity Secrets have caught up, and which are overdue: past
/// their renewal point by half of what remained, so a renewal has failed.
fn progress(
    ctx: &Context,
    authority: &Authority,
    settings: &CaSettings,
    now: SystemTime,
) -> (Progress, Vec<String>) {
    let bundle = authority.bundle_pem();
    let mut progress = Progress::default();
    let mut overdue = Vec::new();
    for secret in ctx.identity_secrets.state() {
        progress.identities += 1;
        let Ok(data) = secret_text(&secret) else {
            continue;
        };
        if data.get(plexus_crds::keys::CA_CERT_KEY) == Some(&bundle) {
            progress.with_current_bundle += 1;
        }
        let Some(cert) = data.get(TLS_CERT_KEY) else {
            continue;
        };
        if ca::verify_chain(cert, &authority.signing.cert_pem, now).is_ok() {
            progress.signed_by_signing_root += 1;
        }
        if let Ok(info) = ca::inspect(TLS_CERT_KEY, cert) {
            let renewal = timing::renewal_time(
                info.not_before,
                info.not_after,
                settings.workload_renewal_fraction,
            );
            let grace = info.not_after.duration_since(renewal).unwrap_or_default() / 2;
            if now > renewal + grace {
                overdue.push(format!(
                    "{}/{}",
                    secret.namespace().unwrap_or_default(),
                    secret.name_any()
                ));
            }
        }
    }
    (progress, overdue)
}

async fn webhook_certificate(
    ctx: &Context,
    authority: &Authority,
    settings: &CaSettings,
    now: SystemTime,
) -> Result<(), Error> {
    let namespace = &ctx.config.mesh_namespace;
    let subject = Subject::Server(ctx.config.webhook_dns_names());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = kube_context(secrets.get_opt(WEBHOOK_TLS_SECRET).await, || {
        format!("reading Secret {namespace}/{WEBHOOK_TLS_SECRET}")
    })?;
    let (plan, mut data) = plan_secret(
        existing.as_ref(),
        authority,
        &subject,
        settings.workload_renewal_fraction,
        now,
    );
    let template = Secret {
        metadata: ObjectMeta {
            name: Some(WEBHOOK_TLS_SECRET.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        ..Default::default()
    };
    match plan {
        Plan::Keep { .. } => {}
        Plan::RefreshBundle { .. } => {
            data.insert(
                plexus_crds::keys::CA_CERT_KEY.into(),
                authority.bundle_pem(),
            );
            apply_secret(&ctx.client, namespace, template, data).await?;
        }
        Plan::Issue(reason) => {
            let data = identity::issue(authority, &subject, settings.workload_ttl, now)?;
            let written = apply_secret(&ctx.client, namespace, template, data).await?;
            ctx.metrics.issued("webhook", reason.as_str());
            publish(
                &ctx.recorder,
                &reference(&written),
                EventType::Normal,
                "WebhookCertificateIssued",
                format!("{reason}; issued a new serving certificate"),
            )
            .await;
        }
    }
    ca_bundle(ctx, &authority.bundle_pem()).await
}

/// Writes the trust bundle into every webhook of the
/// MutatingWebhookConfiguration, when it exists (the Helm chart creates it).
async fn ca_bundle(ctx: &Context, bundle: &str) -> Result<(), Error> {
    let name = &ctx.config.webhook_configuration;
    let api: Api<MutatingWebhookConfiguration> = Api::all(ctx.client.clone());
    let Some(configuration) = kube_context(api.get_opt(name).await, || {
        format!("reading MutatingWebhookConfiguration {name}")
    })?
    else {
        return Ok(());
    };
    let encoded = serde_json::to_value(ByteString(bundle.as_bytes().to_vec())).unwrap_or_default();
    let operations: Vec<_> = configuration
        .webhooks
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, webhook)| webhook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(bundle.as_bytes()))
        .map(|(index, _)| json!({ "op": "add", "path": format!("/webhooks/{index}/clientConfig/caBundle"), "value": encoded }))
        .collect();
    if operations.is_empty() {
        return Ok(());
    }
    let patch: json_patch::Patch =
        serde_json::from_value(json!(operations)).unwrap_or_else(|_| json_patch::Patch(Vec::new()));
    kube_context(
        api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await,
        || format!("writing the caBundle of MutatingWebhookConfiguration {name}"),
    )?;
    tracing::info!(configuration = %name, "caBundle updated");
    Ok(())
}

async fn write_status(
    ctx: &Context,
    mesh: &Mesh,
    outcome: Result<&Observed, String>,
) -> Result<(), Error> {
    let meshes: Api<Mesh> = Api::all(ctx.client.clone());
    let previous = mesh.status.clone().unwrap_or_default();
    let generation = mesh.metadata.generation;
    let old = &previous.conditions;
    let mut status = MeshStatus {
        observed_generation: generation,
        ..previous.clone()
    };
    match outcome {
        Err(error) => {
            status.conditions = vec![condition(
                old,
                CONDITION_READY,
                false,
                "CertificateAuthorityFailed",
                error,
                generation,
            )];
        }
        Ok(observed) => {
            let roots: Vec<RootStatus> = observed
                .authority
                .bundle
                .iter()
                .filter_map(|pem| ca::inspect("a root", pem).ok())
                .map(|info| RootStatus {
                    fingerprint: info.fingerprint,
                    not_after: Timestamp::try_from(info.not_after)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                })
                .collect();
            let signing =
                ca::inspect("the signing root", &observed.authority.signing.cert_pem).ok();
            let (current, previous_roots): (Vec<_>, Vec<_>) = roots.into_iter().partition(|root| {
                signing
                    .as_ref()
                    .is_some_and(|s| s.fingerprint == root.fingerprint)
            });
            status.root = current.into_iter().next();
            status.previous_roots = previous_roots;
            status.identities = u32::try_from(observed.identities).ok();
            let ready = match &observed.invalid_spec {
                Some(message) => condition(
                    old,
                    CONDITION_READY,
                    false,
                    "InvalidSpec",
                    format!("{message}; the last valid settings stay in force"),
                    generation,
                ),
                None => condition(
                    old,
                    CONDITION_READY,
                    true,
                    "Serving",
                    format!(
                        "issuing identities under trust domain {}",
                        ctx.settings.borrow().trust_domain
                    ),
                    generation,
                ),
            };
            let root_overdue = signing.as_ref().is_some_and(|info| {
                timing::expires_within(
                    info.not_after,
                    info.not_after
                        .duration_since(info.not_before)
                        .unwrap_or_default()
                        / 10,
                    SystemTime::now(),
                )
            });
            let expiring = if observed.overdue.is_empty() && !root_overdue {
                condition(
                    old,
                    CONDITION_EXPIRING_SOON,
                    false,
                    "RenewedInTime",
                    "every certificate is renewed before expiry".into(),
                    generation,
                )
            } else {
                let mut what = observed.overdue.clone();
                if root_overdue {
                    what.insert(0, "the root".into());
                }
                condition(
                    old,
                    CONDITION_EXPIRING_SOON,
                    true,
                    "RenewalOverdue",
                    format!("not renewed in time: {}", what.join(", ")),
                    generation,
                )
            };
            status.conditions = vec![ready, expiring];
        }
    }
    if status == previous {
        return Ok(());
    }
    let patch = json!({ "apiVersion": API_VERSION, "kind": "Mesh", "status": status });
    let params = PatchParams::apply(OPERATOR_FIELD_MANAGER).force();
    kube_context(
        meshes
            .patch_status(MESH_NAME, &params, &Patch::Apply(&patch))
            .await,
        || "writing the Mesh status".into(),
    )?;
    Ok(())
}
