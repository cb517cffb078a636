//! The composition root of `plexus-proxy run`: the state, the listeners,
//! the admin server and the watches, each on a task; then the wait for
//! SIGTERM (or the app's exit, or `/shutdown`) and the drain.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use plexus_config::sidecar::PODINFO_LABELS;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::admin::{self, Admin, AppProbes};
use crate::ctx::Ctx;
use crate::original_dst::{Netfilter, OriginalDst, Static};
use crate::state::ProxyState;
use crate::telemetry::{Direction, Metrics};
use crate::{lifecycle, listen};

/// What the proxy runs with (the `run` command's arguments).
pub struct Settings {
    pub inbound_port: u16,
    pub outbound_port: u16,
    pub admin_port: u16,
    pub config_dir: PathBuf,
    pub identity_dir: PathBuf,
    pub podinfo_dir: PathBuf,
    pub app_probes: AppProbes,
    pub exit_with_app: bool,
    pub drain_timeout: Duration,
    /// The pod's namespace and ServiceAccount: the identity its
    /// certificate must carry.
    pub namespace: Option<String>,
    pub service_account: Option<String>,
    /// The identity Secret watched through the API (with `namespace`).
    pub identity_secret: Option<String>,
    /// Fixed original destinations of the outbound and inbound ports.
    pub outbound_original_dst: Option<SocketAddr>,
    pub inbound_original_dst: Option<SocketAddr>,
    /// The DNS server for ServiceEntry names (else the pod's resolver).
    pub dns_server: Option<SocketAddr>,
}

/// Runs the proxy until it is told to stop and has drained.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let mut state = ProxyState::new(
        settings.config_dir.clone(),
        settings.identity_dir.clone(),
        metrics.clone(),
    )
    .with_labels(pod_labels(&settings.podinfo_dir));
    if let (Some(namespace), Some(account)) = (&settings.namespace, &settings.service_account) {
        state = state.expect_identity(namespace, account);
    }
    let state = Arc::new(state);
    state.reload();
    // Without a resolver configuration the proxy still runs: DNS
    // destinations then have no endpoints, and the log says why.
    match crate::dns::resolver(settings.dns_server) {
        Ok(resolver) => {
            let dns = crate::dns::run(state.clone(), resolver);
            tokio::spawn(dns.instrument(tracing::info_span!("dns")));
        }
        Err(error) => {
            tracing::error!(%error, "no DNS resolver: ServiceEntry names will not resolve");
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let bind = |port: u16| TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    let inbound = bind(settings.inbound_port)
        .await
        .context("binding the inbound port")?;
    let outbound = bind(settings.outbound_port)
        .await
        .context("binding the outbound port")?;
    let admin_listener = bind(settings.admin_port)
        .await
        .context("binding the admin port")?;
    let statics: BTreeMap<u16, SocketAddr> = [
        (settings.inbound_port, settings.inbound_original_dst),
        (settings.outbound_port, settings.outbound_original_dst),
    ]
    .into_iter()
    .filter_map(|(port, addr)| Some((port, addr?)))
    .collect();
    let original: Box<dyn OriginalDst> = if statics.is_empty() {
        Box::new(Netfilter)
    } else {
        Box::new(Static(statics))
    };
    let ctx = Arc::new(Ctx::new(state.clone(), original));
    for (listener, direction) in [
        (inbound, Direction::Inbound),
        (outbound, Direction::Outbound),
    ] {
        let span = tracing::info_span!("listener", direction = direction.as_str());
        tokio::spawn(
            listen::serve(listener, direction, ctx.clone(), stop_rx.clone()).instrument(span),
        );
    }
    let (hook_tx, hook_rx) = watch::channel(None);
    let admin = Admin {
        state: state.clone(),
        probes: Arc::new(settings.app_probes),
        shutdown: stop_tx.clone(),
        hook_done: hook_tx,
    };
    let app = admin::router(admin).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(
        async move {
            if let Err(error) = axum::serve(admin_listener, app).await {
                tracing::error!(%error, "the admin server stopped");
            }
        }
        .instrument(tracing::info_span!("admin")),
    );
    tokio::spawn(
        crate::watch::files(
            state.clone(),
            vec![state.config_dir.clone(), state.identity_dir.clone()],
        )
        .instrument(tracing::info_span!("files")),
    );
    if let (Some(namespace), Some(secret)) = (settings.namespace, settings.identity_secret) {
        tokio::spawn(
            crate::watch::api(state.clone(), namespace, secret)
                .instrument(tracing::info_span!("api-watch")),
        );
    }
    tracing::info!(
        inbound = settings.inbound_port,
        outbound = settings.outbound_port,
        admin = settings.admin_port,
        "proxy started"
    );

    let exit_with_app = settings.exit_with_app;
    let app_exited = async move {
        if exit_with_app {
            lifecycle::app_exited(hook_rx).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let mut stop = stop_rx.clone();
    tokio::select! {
        () = terminated() => tracing::info!("SIGTERM: draining"),
        () = app_exited => {},
        _ = stop.wait_for(|s| *s) => {},
    }
    state.drain();
    stop_tx.send_replace(true);
    let deadline = Instant::now() + settings.drain_timeout;
    while metrics.tcp_active.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(left = metrics.tcp_active.get(), "stopped");
    Ok(())
}

/// The pod's labels from the downward API's `labels` file (`key="value"`
/// lines, values quoted as Go strings); none when it cannot be read.
fn pod_labels(podinfo: &std::path::Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(podinfo.join(PODINFO_LABELS)).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            let value = serde_json::from_str::<String>(value).ok()?;
            Some((key.to_owned(), value))
        })
        .collect()
}

async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
        }
    }
}
