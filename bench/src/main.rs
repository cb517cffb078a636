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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use plexus_config::{
    Endpoint, Inbound, MtlsMode, MtlsRule, Protocol, ProxyConfig, SCHEMA, Service, ServicePort,
};
use plexus_operator::ca::{self, SpiffeId};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(
    name = "plexus-bench",
    about = "Plexus sidecar pair against direct and an nginx pair"
)]
struct Args {
    /// The proxy binary (build it with --release).
    #[arg(long, default_value = "target/release/plexus-proxy")]
    proxy: PathBuf,
    /// nginx, the reference pair.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// Requests per second of the fixed-rate phase.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Length of the fixed-rate phase, seconds.
    #[arg(long, default_value_t = 20)]
    fixed_seconds: u64,
    /// Connections of the maximum-throughput phase.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Length of the maximum-throughput phase, seconds.
    #[arg(long, default_value_t = 10)]
    max_seconds: u64,
    /// Request and response body size, bytes.
    #[arg(long, default_value_t = 1024)]
    body: usize,
    /// Only the Plexus pair (no direct path, no nginx): for profiling.
    #[arg(long)]
    plexus_only: bool,
    /// Where certificates, configurations and logs go (a new temporary
    /// directory by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// The upstream Service's address in the client proxy's configuration. The
/// proxy routes it to the endpoint; it is a loopback address all the same,
/// so that even a lookup miss (passed through as TCP) stays on the machine.
const SERVICE_IP: &str = "127.0.0.10";
const HOST: &str = "upstream.bench.svc.cluster.local";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

/// A proxy process and its children (nginx's workers), for /proc readings.
struct Proc {
    child: Child,
}

impl Proc {
    /// The process and its direct children.
    fn pids(&self) -> Vec<u32> {
        let root = self.child.id();
        let mut pids = vec![root];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // pid (comm) state ppid ...: comm may hold spaces, so after ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(root) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    /// CPU time used so far, all its processes: (user, system).
    fn cpu(&self) -> (Duration, Duration) {
        let (user, system) = self
            .pids()
            .iter()
            .map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                // After the comm: state is field 3, utime 14, stime 15.
                let field = |n: usize| {
                    fields
                        .get(n - 3)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                (field(14), field(15))
            })
            .fold((0, 0), |(u, s), (pu, ps)| (u + pu, s + ps));
        let seconds = |ticks: u64| Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64);
        (seconds(user), seconds(system))
    }

    /// Resident memory now, all its processes, bytes.
    fn rss(&self) -> u64 {
        rss(&self.pids())
    }
}

/// Resident memory of processes now, bytes.
fn rss(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        })
        .sum()
}

impl Drop for Proc {
    /// Kills the process group the process leads (see [`own_group`]):
    /// nginx's workers would outlive a killed master.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the command as the leader of its own process group.
fn own_group(command: &mut Command) -> &mut Command {
    std::os::unix::process::CommandExt::process_group(command, 0)
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// A free port on loopback.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The upstream: answers every request with `size` bytes.
async fn upstream(size: usize) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let body = Bytes::from(vec![b'x'; size]);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        // Read the request's body before answering.
                        let _ = request.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(body)))
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

struct Certs {
    root: ca::CertifiedKey,
    plexus_client: ca::CertifiedKey,
    plexus_server: ca::CertifiedKey,
    nginx_client: ca::CertifiedKey,
    nginx_server: ca::CertifiedKey,
}

fn certs() -> anyhow::Result<Certs> {
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let root = ca::generate_root("cluster.local", now, day)?;
    let workload = |sa: &str| {
        let id = SpiffeId {
            trust_domain: "cluster.local".into(),
            namespace: "bench".into(),
            service_account: sa.into(),
        };
        ca::issue_workload(&root, &id, now, day)
    };
    // nginx checks a DNS name, which SPIFFE certificates do not carry: the
    // same CA and key type, DNS names instead.
    let server = |name: &str| ca::issue_server(&root, &[name.to_owned()], now, day);
    Ok(Certs {
        plexus_client: workload("client")?,
        plexus_server: workload("upstream")?,
        nginx_client: server("client.bench.local")?,
        nginx_server: server("server.bench.local")?,
        root,
    })
}

/// Starts a proxy and waits until its admin port says ready.
async fn plexus_proxy(
    binary: &Path,
    dir: &Path,
    config: &ProxyConfig,
    identity: &ca::CertifiedKey,
    root: &ca::CertifiedKey,
    original: (&str, SocketAddr),
) -> anyhow::Result<(Proc, u16)> {
    let config_dir = dir.join("config");
    let identity_dir = dir.join("identity");
    std::fs::create_dir_all(&config_dir)?;
    std::fs::create_dir_all(&identity_dir)?;
    write(
        &config_dir.join(plexus_config::CONFIG_KEY),
        config.to_gzip(),
    )?;
    write(&identity_dir.join("tls.crt"), &identity.cert_pem)?;
    write(&identity_dir.join("tls.key"), &identity.key_pem)?;
    write(&identity_dir.join("ca.crt"), &root.cert_pem)?;
    let (inbound, outbound, admin) = (free_port()?, free_port()?, free_port()?);
    let log = std::fs::File::create(dir.join("proxy.log"))?;
    let child = own_group(&mut Command::new(binary))
        .arg("run")
        .args(["--inbound-port", &inbound.to_string()])
        .args(["--outbound-port", &outbound.to_string()])
        .args(["--admin-port", &admin.to_string()])
        .arg("--config-dir")
        .arg(&config_dir)
        .arg("--identity-dir")
        .arg(&identity_dir)
        .arg("--podinfo-dir")
        .arg(dir.join("podinfo"))
        .args([original.0, &original.1.to_string()])
        .args(["--log", "warn"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let proc = Proc { child };
    let ready = format!("127.0.0.1:{admin}");
    for _ in 0..100 {
        if get_status(&ready, "/ready").await == Some(200) {
            let port = if original.0 == "--inbound-original-dst" {
                inbound
            } else {
                outbound
            };
            return Ok((proc, port));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{} did not become ready; see {}",
        binary.display(),
        dir.join("proxy.log").display()
    )
}

/// The status of a plain GET, if any answer came.
async fn get_status(addr: &str, path: &str) -> Option<u16> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", addr)
        .body(Full::new(Bytes::new()))
        .ok()?;
    Some(sender.send_request(request).await.ok()?.status().as_u16())
}

fn nginx_conf(dir: &Path, body: &str) -> anyhow::Result<PathBuf> {
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes auto;\npid {pid};\nerror_log {log} warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
         fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
         keepalive_requests 1000000;\n{body}\n}}\n",
        pid = dir.join("nginx.pid").display(),
        log = dir.join("error.log").display(),
        dir = dir.display(),
    );
    let path = dir.join("nginx.conf");
    write(&path, conf)?;
    Ok(path)
}

/// The nginx pair: client side on `client_port` (plain HTTP from the
/// app), mTLS to the server side, which forwards to the upstream.
fn nginx_pair(
    binary: &Path,
    dir: &Path,
    certs: &Certs,
    upstream: SocketAddr,
) -> anyhow::Result<(Proc, Proc, u16)> {
    let (client_port, server_port) = (free_port()?, free_port()?);
    let server_dir = dir.join("nginx-server");
    let client_dir = dir.join("nginx-client");
    for d in [&server_dir, &client_dir] {
        std::fs::create_dir_all(d)?;
    }
    write(&dir.join("ca.crt"), &certs.root.cert_pem)?;
    write(&server_dir.join("tls.crt"), &certs.nginx_server.cert_pem)?;
    write(&server_dir.join("tls.key"), &certs.nginx_server.key_pem)?;
    write(&client_dir.join("tls.crt"), &certs.nginx_client.cert_pem)?;
    write(&client_dir.join("tls.key"), &certs.nginx_client.key_pem)?;
    let ca = dir.join("ca.crt");
    let server = format!(
        "  upstream app {{ server {upstream}; keepalive 64; }}\n\
         server {{\n    listen 127.0.0.1:{server_port} ssl;\n    ssl_protocols TLSv1.3;\n\
         ssl_certificate {sd}/tls.crt;\n    ssl_certificate_key {sd}/tls.key;\n\
         ssl_client_certificate {ca};\n    ssl_verify_client on;\n\
         location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}",
        sd = server_dir.display(),
        ca = ca.display(),
    );
    let client = format!(
        "  upstream mesh {{ server 127.0.0.1:{server_port}; keepalive 64; }}\n\
         server {{\n    listen 127.0.0.1:{client_port};\n\
         location / {{\n      proxy_pass https://mesh;\n      proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n      proxy_ssl_protocols TLSv1.3;\n\
         proxy_ssl_certificate {cd}/tls.crt;\n      proxy_ssl_certificate_key {cd}/tls.key;\n\
         proxy_ssl_trusted_certificate {ca};\n      proxy_ssl_verify on;\n\
         proxy_ssl_name server.bench.local;\n      proxy_ssl_session_reuse on;\n    }}\n  }}",
        cd = client_dir.display(),
        ca = ca.display(),
    );
    let start = |dir: &Path, body: &str| -> anyhow::Result<Proc> {
        let conf = nginx_conf(dir, body)?;
        let child = own_group(&mut Command::new(binary))
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Proc { child })
    };
    Ok((
        start(&server_dir, &server)?,
        start(&client_dir, &client)?,
        client_port,
    ))
}

/// One HTTP/1.1 request with a body, on a kept-alive connection.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    body: &Bytes,
) -> anyhow::Result<()> {
    let request = Request::post("/")
        .header("host", HOST)
        .body(Full::new(body.clone()))?;
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        bail!("status {}", response.status());
    }
    response.into_body().collect().await?;
    Ok(())
}

async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Latency percentiles, microseconds.
#[derive(Default, Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
}

fn percentiles(mut micros: Vec<u64>) -> Latency {
    micros.sort_unstable();
    let at = |q: f64| {
        if micros.is_empty() {
            return 0.0;
        }
        let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
        micros[i] as f64
    };
    Latency {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
    }
}

/// Open loop at `rate` for `seconds`: each request is sent at its time on
/// an idle connection of a pool (opened as needed), whatever the others do.
async fn fixed_rate(
    addr: SocketAddr,
    rate: u64,
    seconds: u64,
    body: &Bytes,
) -> anyhow::Result<(Latency, u64)> {
    let pool: Arc<tokio::sync::Mutex<Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>> =
        Arc::default();
    let samples = Arc::new(std::sync::Mutex::new(Vec::with_capacity(
        (rate * seconds) as usize,
    )));
    let errors = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now();
    let total = rate * seconds;
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_nanos(i * 1_000_000_000 / rate)).await;
        let (pool, samples, errors, body) =
            (pool.clone(), samples.clone(), errors.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let idle = pool.lock().await.pop();
            let began = Instant::now();
            let mut sender = match idle {
                Some(sender) => sender,
                None => match connect(addr).await {
                    Ok(sender) => sender,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
            };
            match send(&mut sender, &body).await {
                Ok(()) => {
                    let micros = began.elapsed().as_micros() as u64;
                    samples
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(micros);
                    pool.lock().await.push(sender);
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((percentiles(samples), errors.load(Ordering::Relaxed)))
}

/// Closed loop: `connections` connections, each sending its next request
/// when the last is answered, for `seconds`. Requests per second.
async fn max_throughput(
    addr: SocketAddr,
    connections: usize,
    seconds: u64,
    body: &Bytes,
) -> anyhow::Result<(f64, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(addr).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            let (stop, done, errors, body) =
                (stop.clone(), done.clone(), errors.clone(), body.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match send(&mut sender, &body).await {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let counted = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    for task in tasks {
        let _ = task.await;
    }
    Ok((
        counted as f64 / elapsed.as_secs_f64(),
        errors.load(Ordering::Relaxed),
    ))
}

/// What one path measured.
struct Measured {
    latency: Latency,
    fixed_errors: u64,
    rps: f64,
    max_errors: u64,
    /// Per proxy: name, peak RSS bytes, CPU cores used at the fixed rate,
    /// and the kernel's share of that time.
    proxies: Vec<(String, u64, f64, f64)>,
}

async fn measure(
    path: &str,
    addr: SocketAddr,
    proxies: &[(&str, &Proc)],
    args: &Args,
    body: &Bytes,
) -> anyhow::Result<Measured> {
    eprintln!("{path}: warming up");
    fixed_rate(addr, args.rate, 2, body).await?;
    eprintln!("{path}: {} rps for {} s", args.rate, args.fixed_seconds);
    let cpu_before: Vec<(Duration, Duration)> = proxies.iter().map(|(_, p)| p.cpu()).collect();
    let peak: Arc<std::sync::Mutex<Vec<u64>>> =
        Arc::new(std::sync::Mutex::new(vec![0; proxies.len()]));
    let sampling = Arc::new(AtomicBool::new(true));
    let pids: Vec<Vec<u32>> = proxies.iter().map(|(_, p)| p.pids()).collect();
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                let now: Vec<u64> = pids.iter().map(|p| rss(p)).collect();
                {
                    let mut peak = peak.lock().unwrap_or_else(|p| p.into_inner());
                    for (p, n) in peak.iter_mut().zip(now) {
                        *p = (*p).max(n);
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let started = Instant::now();
    let (latency, fixed_errors) = fixed_rate(addr, args.rate, args.fixed_seconds, body).await?;
    let wall = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let peak = peak.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let proxies_measured = proxies
        .iter()
        .zip(cpu_before)
        .zip(peak)
        .map(|(((name, p), (user_before, system_before)), peak)| {
            let (user, system) = p.cpu();
            let (user, system) = (user - user_before, system - system_before);
            let total = (user + system).as_secs_f64();
            let kernel = if total > 0.0 {
                system.as_secs_f64() / total
            } else {
                0.0
            };
            (name.to_string(), peak.max(p.rss()), total / wall, kernel)
        })
        .collect();
    eprintln!(
        "{path}: {} connections, maximum throughput for {} s",
        args.connections, args.max_seconds
    );
    let (rps, max_errors) = max_throughput(addr, args.connections, args.max_seconds, body).await?;
    Ok(Measured {
        latency,
        fixed_errors,
        rps,
        max_errors,
        proxies: proxies_measured,
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let needed = if args.plexus_only {
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

    // The Plexus pair: the server proxy in front of the upstream, the client
    // proxy sending the app's requests for the service to it.
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
            ..Default::default()
        },
        ..Default::default()
    };
    let (server_proxy, server_port) = plexus_proxy(
        &args.proxy,
        &dir.join("plexus-server"),
        &server_config,
        &certs.plexus_server,
        &certs.root,
        ("--inbound-original-dst", upstream),
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
        &dir.join("plexus-client"),
        &client_config,
        &certs.plexus_client,
        &certs.root,
        ("--outbound-original-dst", service),
    )
    .await?;
    let plexus_addr: SocketAddr = format!("127.0.0.1:{client_port}").parse()?;
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

fn report(args: &Args, direct: &Measured, plexus: &Measured, nginx: &Measured) {
    let ms = |us: f64| us / 1000.0;
    println!(
        "\nplexus-bench: {} rps for {} s, {} B bodies; max throughput over {} connections for {} s; loopback, {} cores",
        args.rate,
        args.fixed_seconds,
        args.body,
        args.connections,
        args.max_seconds,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "\n{:<8} {:>9} {:>9} {:>9}   {:>10} {:>10} {:>10}   {:>10}  {:>7}",
        "path",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "+p50 ms",
        "+p99 ms",
        "+p99.9 ms",
        "max rps",
        "errors"
    );
    for (name, m) in [("direct", direct), ("plexus", plexus), ("nginx", nginx)] {
        println!(
            "{:<8} {:>9.3} {:>9.3} {:>9.3}   {:>10.3} {:>10.3} {:>10.3}   {:>10.0}  {:>7}",
            name,
            ms(m.latency.p50),
            ms(m.latency.p99),
            ms(m.latency.p999),
            ms(m.latency.p50 - direct.latency.p50),
            ms(m.latency.p99 - direct.latency.p99),
            ms(m.latency.p999 - direct.latency.p999),
            m.rps,
            m.fixed_errors + m.max_errors,
        );
    }
    println!(
        "\n{:<8} {:<7} {:>9} {:>12} {:>16} {:>9}",
        "pair", "proxy", "RSS MB", "CPU cores", "cores/1k rps", "kernel"
    );
    for (name, m) in [("plexus", plexus), ("nginx", nginx)] {
        for (proxy, rss, cores, kernel) in &m.proxies {
            println!(
                "{:<8} {:<7} {:>9.1} {:>12.3} {:>16.3} {:>8.0}%",
                name,
                proxy,
                *rss as f64 / 1e6,
                cores,
                cores / (args.rate as f64 / 1000.0),
                kernel * 100.0
            );
        }
    }
    let added = |m: &Measured| m.latency.p99 - direct.latency.p99;
    let max_rss = plexus.proxies.iter().map(|p| p.1).max().unwrap_or(0);
    let max_cpu = plexus
        .proxies
        .iter()
        .map(|p| p.2 / (args.rate as f64 / 1000.0))
        .fold(0.0, f64::max);
    let verdict = |ok: bool| if ok { "yes" } else { "NO" };
    println!("\ngoals:");
    println!(
        "  plexus added p99 <= nginx added p99 at {} rps: {:.3} ms vs {:.3} ms: {}",
        args.rate,
        ms(added(plexus)),
        ms(added(nginx)),
        verdict(added(plexus) <= added(nginx))
    );
    println!(
        "  plexus max throughput >= nginx: {:.0} vs {:.0} rps: {}",
        plexus.rps,
        nginx.rps,
        verdict(plexus.rps >= nginx.rps)
    );
    println!(
        "  plexus proxy RSS <= 15 MB at {} rps: {:.1} MB: {}",
        args.rate,
        max_rss as f64 / 1e6,
        verdict(max_rss <= 15_000_000)
    );
    println!(
        "  plexus proxy CPU <= 0.05 core per 1,000 rps: {:.3}: {}",
        max_cpu,
        verdict(max_cpu <= 0.05)
    );
    if plexus.fixed_errors + plexus.max_errors + nginx.fixed_errors + nginx.max_errors > 0 {
        println!("  (some requests failed: see the errors column)");
    }
}
