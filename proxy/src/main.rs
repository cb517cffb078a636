//! `plexus-proxy`: `init` programs the pod's redirection, `run` is the
//! sidecar, `wait-ready` holds the app back until the sidecar is ready.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use plexus_config::sidecar::*;
use plexus_proxy::admin::AppProbes;
use plexus_proxy::app::{self, Settings};
use plexus_proxy::init::{self, Cidr, PortRange, Redirect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(name = "plexus-proxy", version, about = "The Plexus sidecar proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once at start: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Redirects the pod's inbound and outbound TCP to the proxy (nftables).
    Init(InitArgs),
    /// Runs the proxy.
    Run(RunArgs),
    /// Waits until the proxy on this pod is ready (the postStart hook that
    /// holds the app back on clusters without native sidecars).
    WaitReady {
        #[arg(long, env = ENV_ADMIN_PORT, default_value_t = ADMIN_PORT)]
        admin_port: u16,
        /// Gives up (exit 1) after this long, e.g. 120s.
        #[arg(long, default_value = "120s", value_parser = parse_seconds)]
        timeout: Duration,
    },
}

#[derive(clap::Args)]
struct InitArgs {
    #[arg(long, default_value_t = PROXY_UID)]
    proxy_uid: u32,
    #[arg(long, default_value_t = INBOUND_PORT)]
    inbound_port: u16,
    #[arg(long, default_value_t = OUTBOUND_PORT)]
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
    #[arg(long, env = ENV_INBOUND_PORT, default_value_t = INBOUND_PORT)]
    inbound_port: u16,
    #[arg(long, env = ENV_OUTBOUND_PORT, default_value_t = OUTBOUND_PORT)]
    outbound_port: u16,
    #[arg(long, env = ENV_ADMIN_PORT, default_value_t = ADMIN_PORT)]
    admin_port: u16,
    #[arg(long, env = ENV_CONFIG_DIR, default_value = CONFIG_DIR)]
    config_dir: PathBuf,
    #[arg(long, env = ENV_IDENTITY_DIR, default_value = IDENTITY_DIR)]
    identity_dir: PathBuf,
    /// The pod's labels (downward API file `labels`), which policies select.
    #[arg(long, env = ENV_PODINFO_DIR, default_value = PODINFO_DIR)]
    podinfo_dir: PathBuf,
    /// The app's HTTP probes the webhook rewrote (JSON).
    #[arg(long, env = ENV_APP_PROBES, default_value = "{}")]
    app_probes: String,
    /// Exit once the app's processes have (run-to-completion pods without
    /// native sidecars).
    #[arg(long, env = ENV_EXIT_WITH_APP, default_value_t = false)]
    exit_with_app: bool,
    /// How long in-flight connections may take to finish after SIGTERM.
    #[arg(long, env = ENV_DRAIN_TIMEOUT, default_value = "20s", value_parser = parse_seconds)]
    drain_timeout: Duration,
    /// Log filter, e.g. info or info,plexus_proxy=debug.
    #[arg(long, env = ENV_LOG, default_value = "info")]
    log: String,
    /// The pod's namespace: with `--identity-secret`, the proxy watches its
    /// ConfigMap and identity Secret through the API (in-cluster token).
    #[arg(long, env = ENV_POD_NAMESPACE)]
    namespace: Option<String>,
    /// The pod's ServiceAccount: with `--namespace`, a certificate for
    /// another identity is refused.
    #[arg(long, env = ENV_SERVICE_ACCOUNT)]
    service_account: Option<String>,
    /// The identity Secret of the pod's ServiceAccount.
    #[arg(long, env = ENV_IDENTITY_SECRET)]
    identity_secret: Option<String>,
    /// Threads serving traffic.
    #[arg(long, env = ENV_THREADS, default_value_t = 1)]
    threads: usize,
    /// Without the init container's redirection (a benchmark, a workload
    /// outside Kubernetes): where every connection to the outbound port was
    /// going, e.g. a service's address and port.
    #[arg(long, env = ENV_OUTBOUND_ORIGINAL_DST)]
    outbound_original_dst: Option<SocketAddr>,
    /// Likewise for the inbound port: the app's address (its port is the
    /// one forwarded to on localhost).
    #[arg(long, env = ENV_INBOUND_ORIGINAL_DST)]
    inbound_original_dst: Option<SocketAddr>,
    /// The DNS server the proxy asks for ServiceEntry names, instead of
    /// the pod's `/etc/resolv.conf`.
    #[arg(long)]
    dns_server: Option<SocketAddr>,
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
    let app_probes: AppProbes = serde_json::from_str(&args.app_probes)
        .with_context(|| format!("{ENV_APP_PROBES} is not valid"))?;
    let settings = Settings {
        inbound_port: args.inbound_port,
        outbound_port: args.outbound_port,
        admin_port: args.admin_port,
        config_dir: args.config_dir,
        identity_dir: args.identity_dir,
        podinfo_dir: args.podinfo_dir,
        app_probes,
        exit_with_app: args.exit_with_app,
        drain_timeout: args.drain_timeout,
        namespace: args.namespace,
        service_account: args.service_account,
        identity_secret: args.identity_secret,
        outbound_original_dst: args.outbound_original_dst,
        inbound_original_dst: args.inbound_original_dst,
        dns_server: args.dns_server,
    };
    runtime(args.threads)?.block_on(app::run(settings))
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
        .write_all(
            format!("GET {READY_PATH}?hook=post-start HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok(response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The `run` command reads exactly the variables the webhook may set.
    #[test]
    fn run_reads_every_variable_the_webhook_may_set() {
        let command = Cli::command();
        let run = command.find_subcommand("run").expect("run");
        let mut read: Vec<String> = run
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        read.sort();
        let mut shared: Vec<String> = PROXY_ENV.iter().map(|e| (*e).to_owned()).collect();
        shared.sort();
        assert_eq!(read, shared);
    }
}
