//! `plexus-webhook`: the mutating admission webhook that injects the proxy.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use plexus_crds::keys::{DEFAULT_MESH_NAMESPACE, WEBHOOK_TLS_SECRET};
use plexus_crds::mesh::ProxyDefaults;
use plexus_webhook::inject::InjectConfig;
use plexus_webhook::state::{self, State};
use plexus_webhook::{server, tls};
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Injects the Plexus proxy into pods (mutating admission webhook)"
)]
struct Args {
    /// Address of the HTTPS server (/mutate, /healthz, /readyz, /metrics).
    #[arg(long, env = "PLEXUS_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Namespace of the control plane: never injected; holds the TLS Secret.
    #[arg(long, env = "PLEXUS_MESH_NAMESPACE", default_value = DEFAULT_MESH_NAMESPACE)]
    mesh_namespace: String,
    /// Secret (in the mesh namespace) with the serving certificate the
    /// operator issues; watched, and reloaded when it changes.
    #[arg(long, env = "PLEXUS_WEBHOOK_TLS_SECRET", default_value = WEBHOOK_TLS_SECRET)]
    tls_secret: String,
    /// Inject the proxy as a native sidecar: `auto` when the API server is
    /// Kubernetes 1.29 or later.
    #[arg(long, env = "PLEXUS_NATIVE_SIDECARS", value_enum, default_value_t = NativeSidecars::Auto)]
    native_sidecars: NativeSidecars,
    /// Log format: json (one object per line) or text.
    #[arg(long, env = "PLEXUS_LOG_FORMAT", default_value = "json")]
    log_format: String,
}

/// How long the webhook keeps answering after SIGTERM.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone, Copy, Debug, ValueEnum)]
enum NativeSidecars {
    Auto,
    Always,
    Never,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_format == "text" {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init();
    } else {
        builder.json().flatten_event(true).init();
    }

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let native = match args.native_sidecars {
        NativeSidecars::Always => true,
        NativeSidecars::Never => false,
        NativeSidecars::Auto => state::detect_native_sidecars(&client)
            .await
            .context("reading the API server's version")?,
    };
    tracing::info!(native_sidecars = native, "lifecycle of injected proxies");

    let (namespaces, reflector) = state::namespace_reflector(client.clone());
    let config = InjectConfig::new(ProxyDefaults::default(), native, &args.mesh_namespace);
    let state = Arc::new(State::new(namespaces.clone(), config));
    tokio::spawn(reflector);
    tokio::spawn(state::follow_mesh(client.clone(), state.clone()));
    let (certs, metrics) = (state.certs.clone(), state.metrics.clone());
    let (mesh_namespace, secret) = (args.mesh_namespace.clone(), args.tls_secret.clone());
    tokio::spawn(async move {
        tls::watch_secret(client, &mesh_namespace, &secret, certs, metrics).await;
    });
    namespaces
        .wait_until_ready()
        .await
        .context("the namespace watch ended before its first list")?;

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving admission reviews");
    let tls = state.certs.server_config();
    let draining = state.clone();
    let shutdown = async move {
        shutdown_signal().await;
        // Not ready any more, but still answering while the endpoint is
        // taken out of the Service and reviews already sent arrive.
        draining
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(grace = ?DRAIN, "draining");
        tokio::time::sleep(DRAIN).await;
    };
    server::serve(listener, server::router(state), tls, shutdown).await;
    // Reviews in flight finish (each takes well under a millisecond).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
