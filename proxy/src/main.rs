//! `plexus-proxy`: `init` programs the pod's redirection, `run` is the
//! sidecar, `wait-ready` holds the app back until the sidecar is ready.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use plexus_proxy::admin::{self, Admin, AppProbes};
use plexus_proxy::forward::{Forwarder, Netfilter, OriginalDst, Static};
use plexus_proxy::init::{self, Cidr, PortRange, Redirect};
use plexus_proxy::metrics::{Direction, Metrics};
use plexus_proxy::state::ProxyState;
use plexus_proxy::{forward, lifecycle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "plexus-proxy", version, about = "The Plexus sidecar proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Redirects the pod's inbound and outbound TCP to the proxy (nftables).
    Init(InitArgs),
    /// Runs the proxy.
    Run(RunArgs),
    /// Waits until the proxy on this pod is ready (the postStart hook that
    /// holds the app back on clusters without native sidecars).
    WaitReady {
        #[arg(long, env = "PLEXUS_ADMIN_PORT", default_value_t = 4191)]
        admin_port: u16,
        /// Gives up (exit 1) after this long, e.g. 120s.
        #[arg(long, default_value = "120s", value_parser = parse_seconds)]
        timeout: Duration,
    },
}

#[derive(clap::Args)]
struct InitArgs {
    #[arg(long, default_value_t = 2102)]
    proxy_uid: u32,
    #[arg(long, default_value_t = 4143)]
    inbound_port: u16,
    #[arg(long, default_value_t = 4140)]
    outbound_port: u16,
    /// Comma-separated ports or ranges not redirected inbound.
    #[arg(long, value_delimiter = ',')]
    skip_inbound_ports: Vec<PortRange>,
    #[arg(long, value_delimiter = ',')]
    skip_outbound_ports: Vec<PortRange>,
    /// Comma-separated CIDRs not redirected outbound.
    #[arg(long, value_delimiter = ',')]
    skip_outbound_cidrs: Vec<Cidr>,
    /// Prints the nft script instead of applying it.
    #[arg(long)]
    dry_run: bool,
    /// The nft binary.
    #[arg(long, env = "PLEXUS_NFT", default_value = "/usr/sbin/nft")]
    nft: String,
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, env = "PLEXUS_INBOUND_PORT", default_value_t = 4143)]
    inbound_port: u16,
    #[arg(long, env = "PLEXUS_OUTBOUND_PORT", default_value_t = 4140)]
    outbound_port: u16,
    #[arg(long, env = "PLEXUS_ADMIN_PORT", default_value_t = 4191)]
    admin_port: u16,
    #[arg(
        long,
        env = "PLEXUS_CONFIG_DIR",
        default_value = "/var/run/plexus/config"
    )]
    config_dir: PathBuf,
    #[arg(
        long,
        env = "PLEXUS_IDENTITY_DIR",
        default_value = "/var/run/plexus/identity"
    )]
    identity_dir: PathBuf,
    /// The pod's labels (downward API file `labels`), which mTLS rules select.
    #[arg(
        long,
        env = "PLEXUS_PODINFO_DIR",
        default_value = "/var/run/plexus/podinfo"
    )]
    podinfo_dir: PathBuf,
    /// The app's HTTP probes the webhook rewrote (JSON).
    #[arg(long, env = "PLEXUS_APP_PROBES", default_value = "{}")]
    app_probes: String,
    /// Exit once the app's processes have (run-to-completion pods without
    /// native sidecars).
    #[arg(long, env = "PLEXUS_EXIT_WITH_APP", default_value_t = false)]
    exit_with_app: bool,
    /// How long in-flight connections may take to finish after SIGTERM.
    #[arg(long, env = "PLEXUS_DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_seconds)]
    drain_timeout: Duration,
    /// Log filter, e.g. info or info,plexus_proxy=debug.
    #[arg(long, env = "PLEXUS_LOG", default_value = "info")]
    log: String,
    /// The pod's namespace: with `--identity-secret`, the proxy watches its
    /// ConfigMap and identity Secret through the API (in-cluster token).
    #[arg(long, env = "PLEXUS_POD_NAMESPACE")]
    namespace: Option<String>,
    /// The identity Secret of the pod's ServiceAccount.
    #[arg(long, env = "PLEXUS_IDENTITY_SECRET")]
    identity_secret: Option<String>,
    /// Threads serving traffic.
    #[arg(long, env = "PLEXUS_PROXY_THREADS", default_value_t = 1)]
    threads: usize,
    /// Without the init container's redirection (a benchmark, a workload
    /// outside Kubernetes): where every connection to the outbound port was
    /// going, e.g. a service's address and port.
    #[arg(long, env = "PLEXUS_OUTBOUND_ORIGINAL_DST")]
    outbound_original_dst: Option<SocketAddr>,
    /// Likewise for the inbound port: the app's address (its port is the
    /// one forwarded to on localhost).
    #[arg(long, env = "PLEXUS_INBOUND_ORIGINAL_DST")]
    inbound_original_dst: Option<SocketAddr>,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let digits = s.strip_suffix('s').unwrap_or(s);
    digits
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("{s:?} is not a duration in seconds, e.g. 30s"))
}

fn logs(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .json()
        .flatten_event(true)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => run_init(args),
        Command::Run(args) => run_proxy(args),
        Command::WaitReady {
            admin_port,
            timeout,
        } => wait_ready(admin_port, timeout),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_init(args: InitArgs) -> anyhow::Result<()> {
    let redirect = Redirect {
        proxy_uid: args.proxy_uid,
        inbound_port: args.inbound_port,
        outbound_port: args.outbound_port,
        skip_inbound_ports: args.skip_inbound_ports,
        skip_outbound_ports: args.skip_outbound_ports,
        skip_outbound_cidrs: args.skip_outbound_cidrs,
    };
    if args.dry_run {
        print!("{}", redirect.ruleset());
        return Ok(());
    }
    init::apply(&redirect, &args.nft)?;
    // What the kernel now holds, for the init container's log.
    print!("{}", init::list(&args.nft)?);
    Ok(())
}

/// One thread by default, as Linkerd's proxy: a sidecar should not take
/// cores from its app, and one thread spends no CPU handing work between
/// threads. More for pods whose traffic needs them.
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build().context("starting the runtime")
}

fn run_proxy(args: RunArgs) -> anyhow::Result<()> {
    logs(&args.log);
    let probes: AppProbes =
        serde_json::from_str(&args.app_probes).context("PLEXUS_APP_PROBES is not valid")?;
    runtime(args.threads)?.block_on(async move {
        let metrics = Arc::new(Metrics::default());
        let state = Arc::new(ProxyState::new(
            args.config_dir,
            args.identity_dir,
            metrics.clone(),
        ));
        state.reload();
        let (stop_tx, stop_rx) = watch::channel(false);
        let bind = |port: u16| TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
        let inbound = bind(args.inbound_port)
            .await
            .context("binding the inbound port")?;
        let outbound = bind(args.outbound_port)
            .await
            .context("binding the outbound port")?;
        let admin_listener = bind(args.admin_port)
            .await
            .context("binding the admin port")?;
        let labels = pod_labels(&args.podinfo_dir);
        let statics: std::collections::BTreeMap<u16, SocketAddr> = [
            (args.inbound_port, args.inbound_original_dst),
            (args.outbound_port, args.outbound_original_dst),
        ]
        .into_iter()
        .filter_map(|(port, addr)| Some((port, addr?)))
        .collect();
        let original: Box<dyn OriginalDst> = if statics.is_empty() {
            Box::new(Netfilter)
        } else {
            Box::new(Static(statics))
        };
        let forwarder = Arc::new(Forwarder::new(state.clone(), labels, original));
        tokio::spawn(forward::serve(
            inbound,
            Direction::Inbound,
            forwarder.clone(),
            stop_rx.clone(),
        ));
        tokio::spawn(forward::serve(
            outbound,
            Direction::Outbound,
            forwarder,
            stop_rx.clone(),
        ));
        let (hook_tx, hook_rx) = watch::channel(None);
        let admin = Admin {
            state: state.clone(),
            probes: Arc::new(probes),
            shutdown: stop_tx.clone(),
            hook_done: hook_tx,
        };
        let app = admin::router(admin).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(admin_listener, app).await {
                tracing::error!(%error, "the admin server stopped");
            }
        });
        tokio::spawn(plexus_proxy::watch::files(
            state.clone(),
            vec![state.config_dir.clone(), state.identity_dir.clone()],
        ));
        if let (Some(namespace), Some(secret)) = (args.namespace, args.identity_secret) {
            tokio::spawn(plexus_proxy::watch::api(state.clone(), namespace, secret));
        }
        tracing::info!(
            inbound = args.inbound_port,
            outbound = args.outbound_port,
            admin = args.admin_port,
            "proxy started"
        );

        let exit_with_app = args.exit_with_app;
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
        let deadline = Instant::now() + args.drain_timeout;
        while metrics.tcp_active.get() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(left = metrics.tcp_active.get(), "stopped");
        anyhow::Ok(())
    })
}

/// The pod's labels from the downward API's `labels` file (`key="value"`
/// lines, values quoted as Go strings); none when it cannot be read.
fn pod_labels(podinfo: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(podinfo.join("labels")).unwrap_or_default();
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

/// Polls the admin port's /ready until it answers 200.
fn wait_ready(admin_port: u16, timeout: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let deadline = Instant::now() + timeout;
        loop {
            if ready_once(admin_port).await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!("the proxy was not ready after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

async fn ready_once(admin_port: u16) -> std::io::Result<bool> {
    let mut stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, admin_port)).await?;
    stream
        .write_all(b"GET /ready?hook=post-start HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok(response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200"))
}
