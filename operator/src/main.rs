use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use plexus_crds::keys::DEFAULT_MESH_NAMESPACE;
use plexus_operator::authority_task::{self, Publisher};
use plexus_operator::cleanup;
use plexus_operator::context::{Config, Context};
use plexus_operator::identities::{self, managed_selector};
use plexus_operator::jwks::{self, Jwks};
use plexus_operator::leader::Elector;
use plexus_operator::mesh_config;
use plexus_operator::metrics::Metrics;
use plexus_operator::server::{self, Health};
use plexus_operator::settings::CaSettings;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

/// The Plexus operator: the mesh's certificate authority and the compiler of
/// mesh resources into proxy configuration.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Namespace of the control plane (CA Secret, webhook Secret, Lease).
    #[arg(long, env = "PLEXUS_MESH_NAMESPACE", default_value = DEFAULT_MESH_NAMESPACE, global = true)]
    mesh_namespace: String,
    /// The webhook's Service, named in its serving certificate.
    #[arg(long, env = "PLEXUS_WEBHOOK_SERVICE", default_value = "plexus-webhook")]
    webhook_service: String,
    /// The MutatingWebhookConfiguration whose caBundle is kept.
    #[arg(
        long,
        env = "PLEXUS_WEBHOOK_CONFIGURATION",
        default_value = "plexus-webhook"
    )]
    webhook_configuration: String,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "PLEXUS_LISTEN", default_value = "0.0.0.0:9090")]
    listen: SocketAddr,
    /// This replica's name in the leader Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = "plexus-operator", global = true)]
    lease_name: String,
    /// The cluster's DNS domain.
    #[arg(long, env = "PLEXUS_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Log format.
    #[arg(long, env = "PLEXUS_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Seconds between two fetches of a RequestAuthentication's jwksUri
    /// (Istio's default: 20 minutes); a failed fetch is retried sooner.
    #[arg(long, env = "PLEXUS_JWKS_REFRESH_SECONDS", default_value_t = 1200)]
    jwks_refresh_seconds: u64,
    /// Hosts jwksUris may be fetched from, comma-separated (`*.example.com`
    /// for its subdomains); any host when unset.
    #[arg(long, env = "PLEXUS_JWKS_ALLOWED_HOSTS", value_delimiter = ',')]
    jwks_allowed_hosts: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Delete everything the operator created (identities, proxy
    /// configurations and their Roles, the generated root, the webhook's
    /// certificate, the leader Lease), once the operator's pods are gone.
    /// The Helm chart's post-delete hook runs it.
    Cleanup {
        /// Label selector of the operator's pods in the mesh namespace.
        #[arg(long, default_value = "app.kubernetes.io/name=plexus-operator")]
        operator_pods: String,
        /// How long to wait for them to stop, in seconds.
        #[arg(long, default_value_t = 120)]
        wait_seconds: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter)
            .init(),
    }

    let client = kube::Client::try_default()
        .await
        .context("connecting to the API server")?;
    if let Some(Command::Cleanup {
        operator_pods,
        wait_seconds,
    }) = args.command
    {
        let cleanup = cleanup::Cleanup {
            mesh_namespace: args.mesh_namespace,
            lease_name: args.lease_name,
            operator_pods,
            wait: std::time::Duration::from_secs(wait_seconds),
        };
        let deleted = cleanup::run(&client, &cleanup).await?;
        tracing::info!(deleted, "cleanup done");
        return Ok(());
    }
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let health = Health::new(registry);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }
    };
    tokio::spawn(server::serve(args.listen, health.clone(), stopped()));

    let identity = match args.pod_name {
        Some(name) => name,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| format!("plexus-operator-{}", std::process::id())),
    };
    let elector = Elector::new(
        Api::<Lease>::namespaced(client.clone(), &args.mesh_namespace),
        &args.lease_name,
        &identity,
    );
    // A replica standing by is healthy and ready.
    health.set_ready(true);
    tracing::info!(%identity, lease = %args.lease_name, "waiting to lead");
    tokio::select! {
        () = elector.acquire() => {}
        () = terminated() => return Ok(()),
    }
    tracing::info!(%identity, "leading");
    metrics.leader.set(1);
    health.set_ready(false);

    let (namespaces, namespaces_writer) = reflector::store();
    let namespace_events = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(namespaces_writer)
    .for_each(|_| async {});
    let (identity_secrets, secrets_writer) = reflector::store();
    let secret_events = watcher(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default().labels(&managed_selector()),
    )
    .default_backoff()
    .reflect(secrets_writer)
    .for_each(|_| async {});
    tokio::spawn(namespace_events);
    tokio::spawn(secret_events);
    namespaces
        .wait_until_ready()
        .await
        .context("watching Namespaces")?;
    identity_secrets
        .wait_until_ready()
        .await
        .context("watching identity Secrets")?;

    let (authority_tx, authority_rx) = watch::channel(None);
    let (settings_tx, settings_rx) = watch::channel(CaSettings::default());
    let reporter = Reporter {
        controller: "plexus-operator".into(),
        instance: Some(identity.clone()),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        config: Config {
            mesh_namespace: args.mesh_namespace,
            webhook_service: args.webhook_service,
            webhook_configuration: args.webhook_configuration,
        },
        recorder: Recorder::new(client, reporter),
        metrics,
        authority: authority_rx.clone(),
        settings: settings_rx,
        namespaces,
        identity_secrets,
    });
    let publisher = Publisher {
        authority: authority_tx,
        settings: settings_tx,
    };
    let ready = {
        let health = health.clone();
        move || health.set_ready(true)
    };
    let bundle_changed = WatchStream::from_changes(authority_rx).map(|_| ());
    let refresh = Duration::from_secs(args.jwks_refresh_seconds.max(1));
    let jwks = Arc::new(
        Jwks::new(jwks::Settings {
            refresh,
            retry: Duration::from_secs(10),
            allowed_hosts: args
                .jwks_allowed_hosts
                .iter()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .collect(),
        })
        .context("the key set fetcher's TLS client")?,
    );
    let result = tokio::select! {
        () = authority_task::run(ctx.clone(), publisher, ready) => Ok(()),
        () = identities::run(ctx.clone(), bundle_changed, stopped()) => Ok(()),
        () = mesh_config::run(ctx, args.cluster_domain, jwks) => Ok(()),
        () = elector.hold() => Err(anyhow::anyhow!("lost the leader lease; exiting so that only one replica issues certificates")),
        () = terminated() => Ok(()),
    };
    let _ = stop_tx.send(true);
    // The work above has stopped (its futures are dropped): the replica
    // standing by may take over now rather than when the Lease lapses.
    if result.is_ok() {
        match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
            Ok(Ok(())) => tracing::info!(lease = %args.lease_name, "released the leader lease"),
            Ok(Err(error)) => tracing::warn!(%error, "could not release the leader lease"),
            Err(_) => tracing::warn!("could not release the leader lease in {RELEASE_TIMEOUT:?}"),
        }
    }
    result
}

/// How long shutdown waits for the API to take the Lease back.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// SIGTERM (what the kubelet sends) or SIGINT.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping");
}
