//! `plexus-bench`: the cost of the mesh on one request, in one run, over
//! three paths on loopback to the same upstream HTTP server:
//!
//! - **direct**: the load generator to the upstream;
//! - **plexus**: through a client and a server `plexus-proxy` (HTTP/1.1 from
//!   the app, HTTP/2 over mTLS with SPIFFE identities between the proxies);
//! - **nginx**: through a client and a server nginx doing the same mTLS
//!   forwarding (TLS 1.3, client certificates, kept-alive upstream
//!   connections), the reference.
//!
//! Each path gets a fixed-rate phase (open loop, 1 KB request and response
//! bodies), where latency and each proxy's CPU and RSS are measured, and a
//! maximum-throughput phase (closed loop over 64 connections). The report
//! gives p50/p99/p99.9 and what each proxy pair adds to the direct path.
//! Everything listens on 127.0.0.1; nothing else is contacted.

//!
//! Files: `procs` (the measured processes), `pairs` (the upstream, the
//! certificates, the Plexus and nginx pairs), `load` (the two phases),
//! `report`.

mod balancers;
mod load;
mod pairs;
mod policy;
mod procs;
mod report;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;
use clap::Parser;
use plexus_config::{
    Endpoint, Inbound, MtlsMode, MtlsRule, Protocol, ProxyConfig, SCHEMA, Service, ServicePort,
};

use load::measure;
use pairs::{certs, get_status, nginx_pair, plexus_proxy, upstream};
use report::report;

#[derive(Parser)]
#[command(
    name = "plexus-bench",
    about = "Plexus sidecar pair against direct and an nginx pair"
)]
pub struct Args {
    /// The proxy binary (build it with --release).
    #[arg(long, default_value = "target/release/plexus-proxy")]
    pub proxy: PathBuf,
    /// nginx, the reference pair.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,
    /// Requests per second of the fixed-rate phase.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Length of the fixed-rate phase, seconds.
    #[arg(long, default_value_t = 20)]
    pub fixed_seconds: u64,
    /// Connections of the maximum-throughput phase.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Length of the maximum-throughput phase, seconds.
    #[arg(long, default_value_t = 10)]
    pub max_seconds: u64,
    /// Request and response body size, bytes.
    #[arg(long, default_value_t = 1024)]
    pub body: usize,
    /// Only the Plexus pair (no direct path, no nginx): for profiling.
    #[arg(long)]
    pub plexus_only: bool,
    /// Only the Plexus pair, without and with security policy on the server
    /// proxy (10 AuthorizationPolicy rules, a JWT rule with a repeated
    /// token, a rate limit that never triggers), measured alternately.
    #[arg(long, conflicts_with = "plexus_only")]
    pub policy: bool,
    /// Only the load balancers: ROUND_ROBIN, LEAST_REQUEST and PEAK_EWMA
    /// client proxies over three endpoints, one slowed tenfold.
    #[arg(long, conflicts_with_all = ["plexus_only", "policy"])]
    pub balancers: bool,
    /// With --policy: instead of timing, run every proxy under valgrind's
    /// callgrind and count the instructions of this many sequential
    /// requests per pair (after a warm-up): a figure the machine's noise
    /// does not move.
    #[arg(long, requires = "policy")]
    pub instructions: Option<u64>,
    /// Where certificates, configurations and logs go (a new temporary
    /// directory by default).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// A Plexus pair to `upstream`: the server proxy (STRICT mTLS, and the
/// inbound `policy`) in front of it, the client proxy sending the app's
/// requests for the service to it. The proxies, and the client's address.
async fn plexus_pair(
    args: &Args,
    dir: &std::path::Path,
    certs: &pairs::Certs,
    upstream: SocketAddr,
    policy: Inbound,
) -> anyhow::Result<(procs::Proc, procs::Proc, SocketAddr)> {
    let callgrind = |name: &str| {
        args.instructions
            .map(|_| dir.join(format!("callgrind.{name}.out")))
    };
    let server_config = ProxyConfig {
        schema: SCHEMA.into(),
        namespace: "bench".into(),
        trust_domain: "cluster.local".into(),
        inbound: Inbound {
            mtls: vec![MtlsRule {
                name: "Mesh/default".into(),
                selector: BTreeMap::new(),
                mode: MtlsMode::Strict,
                ports: BTreeMap::new(),
            }],
            ..policy
        },
        ..Default::default()
    };
    let (server_proxy, server_port) = plexus_proxy(
        &args.proxy,
        &dir.join("server"),
        &server_config,
        &certs.plexus_server,
        &certs.root,
        ("--inbound-original-dst", upstream),
        callgrind("server").as_deref(),
    )
    .await?;
    let client_config = ProxyConfig {
        schema: SCHEMA.into(),
        namespace: "bench".into(),
        trust_domain: "cluster.local".into(),
        services: Arc::new(vec![Service {
            namespace: "bench".into(),
            name: "upstream".into(),
            hosts: vec![HOST.into()],
            addresses: vec![SERVICE_IP.into()],
            ports: vec![ServicePort {
                port: 80,
                name: Some("http".into()),
                protocol: Protocol::Http,
                target_port: Some(upstream.port()),
            }],
            endpoints: vec![Endpoint {
                ip: "127.0.0.1".into(),
                sa: Some("upstream".into()),
                meshed: true,
                ports: [(80, server_port)].into(),
                ..Default::default()
            }],
            ..Default::default()
        }]),
        ..Default::default()
    };
    let service: SocketAddr = format!("{SERVICE_IP}:80").parse()?;
    let (client_proxy, client_port) = plexus_proxy(
        &args.proxy,
        &dir.join("client"),
        &client_config,
        &certs.plexus_client,
        &certs.root,
        ("--outbound-original-dst", service),
        callgrind("client").as_deref(),
    )
    .await?;
    let addr: SocketAddr = format!("127.0.0.1:{client_port}").parse()?;
    Ok((client_proxy, server_proxy, addr))
}

/// `--policy`: the pair with no policy (A) and with the policy of
/// [`policy`] (B), measured alternately, A B A B, every request carrying
/// the same token in both.
async fn compare_policy(
    args: &Args,
    dir: &std::path::Path,
    certs: &pairs::Certs,
    upstream: SocketAddr,
    body: &Bytes,
    plain: (procs::Proc, procs::Proc, SocketAddr),
) -> anyhow::Result<()> {
    let (plain_client, plain_server, plain_addr) = plain;
    let inbound = policy::inbound()?;
    let (policy_client, policy_server, policy_addr) =
        plexus_pair(args, &dir.join("plexus-policy"), certs, upstream, inbound).await?;
    // The policy is in force: no token, 403; the token, 200.
    let refused = get_status(&policy_addr.to_string(), "/").await;
    anyhow::ensure!(
        refused == Some(403),
        "a request without the token must be refused, got {refused:?}"
    );
    load::set_token(policy::token()?);
    if let Some(requests) = args.instructions {
        let mut counted = Vec::new();
        for (name, addr, pair_dir, procs) in [
            (
                "none",
                plain_addr,
                dir.join("plexus"),
                [&plain_client, &plain_server],
            ),
            (
                "policy",
                policy_addr,
                dir.join("plexus-policy"),
                [&policy_client, &policy_server],
            ),
        ] {
            eprintln!("{name}: {requests} requests under callgrind");
            load::sequential(addr, 200, body).await?;
            for proc in procs {
                callgrind_control("-z", proc)?;
            }
            load::sequential(addr, requests, body).await?;
            let mut per_proxy = Vec::new();
            for (proc, proxy) in procs.into_iter().zip(["client", "server"]) {
                callgrind_control("-d", proc)?;
                per_proxy.push(procs::instructions(
                    &pair_dir.join(format!("callgrind.{proxy}.out")),
                )?);
            }
            counted.push((name, per_proxy[0], per_proxy[1]));
        }
        report::instructions_report(requests, &counted);
        return Ok(());
    }
    let plain_proxies = [("client", &plain_client), ("server", &plain_server)];
    let policy_proxies = [("client", &policy_client), ("server", &policy_server)];
    let mut runs = Vec::new();
    for round in 0..2 {
        eprintln!("round {}", round + 1);
        runs.push((
            "none",
            measure("no policy", plain_addr, &plain_proxies, args, body).await?,
        ));
        runs.push((
            "policy",
            measure("policy", policy_addr, &policy_proxies, args, body).await?,
        ));
    }
    report::policy_report(args, &runs);
    Ok(())
}

/// `callgrind_control <what> <pid>`: -z zeroes the counters, -d dumps them.
fn callgrind_control(what: &str, proc: &procs::Proc) -> anyhow::Result<()> {
    let status = std::process::Command::new("callgrind_control")
        .args([what, &proc.child.id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "callgrind_control {what} failed");
    // The guest acts on the request at its next scheduling point.
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

/// The upstream Service's address in the client proxy's configuration. The
/// proxy routes it to the endpoint; it is a loopback address all the same,
/// so that even a lookup miss (passed through as TCP) stays on the machine.
pub const SERVICE_IP: &str = "127.0.0.10";
pub const HOST: &str = "upstream.bench.svc.cluster.local";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let needed = if args.plexus_only || args.policy || args.balancers {
        vec![&args.proxy]
    } else {
        vec![&args.proxy, &args.nginx]
    };
    for binary in needed {
        if !binary.exists() {
            bail!("{} not found (see bench/README.md)", binary.display());
        }
    }
    let dir = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("plexus-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    // nginx's workers may run as another user: let them read what they need.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let body = Bytes::from(vec![b'p'; args.body]);
    let upstream = upstream(args.body).await?;
    let certs = certs()?;
    if args.balancers {
        return balancers::compare(&args, &dir, &certs).await;
    }

    let (client_proxy, server_proxy, plexus_addr) = plexus_pair(
        &args,
        &dir.join("plexus"),
        &certs,
        upstream,
        Inbound::default(),
    )
    .await?;
    if args.policy {
        return compare_policy(
            &args,
            &dir,
            &certs,
            upstream,
            &body,
            (client_proxy, server_proxy, plexus_addr),
        )
        .await;
    }
    let plexus_proxies = [("client", &client_proxy), ("server", &server_proxy)];
    let measure_plexus = || measure("plexus", plexus_addr, &plexus_proxies, &args, &body);
    if args.plexus_only {
        let plexus = measure_plexus().await?;
        report(&args, &plexus, &plexus, &plexus);
        return Ok(());
    }
    let (nginx_server, nginx_client, nginx_port) = nginx_pair(&args.nginx, &dir, &certs, upstream)?;
    let nginx_addr: SocketAddr = format!("127.0.0.1:{nginx_port}").parse()?;
    for _ in 0..100 {
        if get_status(&nginx_addr.to_string(), "/").await == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if get_status(&nginx_addr.to_string(), "/").await != Some(200) {
        bail!(
            "the nginx pair does not answer; see {}/nginx-*/error.log",
            dir.display()
        );
    }

    let direct = measure("direct", upstream, &[], &args, &body).await?;
    let plexus = measure_plexus().await?;
    let nginx = measure(
        "nginx",
        nginx_addr,
        &[("client", &nginx_client), ("server", &nginx_server)],
        &args,
        &body,
    )
    .await?;
    drop((client_proxy, server_proxy, nginx_client, nginx_server));
    report(&args, &direct, &plexus, &nginx);
    Ok(())
}
