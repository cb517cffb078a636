//! The two proxy pairs and what they forward to: the upstream, the
//! certificates from the mesh's own CA code, a Plexus proxy started and
//! ready, and the nginx reference pair.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use plexus_config::ProxyConfig;
use plexus_config::sidecar::{CA_CERT_KEY, CONFIG_KEY, READY_PATH, TLS_CERT_KEY, TLS_KEY_KEY};
use plexus_operator::ca::{self, SpiffeId};
use tokio::net::{TcpListener, TcpStream};

use crate::procs::{Proc, free_port, own_group};

/// The upstream: answers every request with `size` bytes.
pub async fn upstream(size: usize) -> anyhow::Result<SocketAddr> {
    Ok(upstream_on("127.0.0.1", size, Duration::ZERO).await?.0)
}

/// An upstream on `ip` answering after `delay`; it counts the requests.
pub async fn upstream_on(
    ip: &str,
    size: usize,
    delay: Duration,
) -> anyhow::Result<(SocketAddr, Arc<AtomicU64>)> {
    let listener = TcpListener::bind((ip, 0)).await?;
    let addr = listener.local_addr()?;
    let body = Bytes::from(vec![b'x'; size]);
    let served = Arc::new(AtomicU64::new(0));
    let counted = served.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (body, counted) = (body.clone(), counted.clone());
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (body, counted) = (body.clone(), counted.clone());
                    async move {
                        // Read the request's body before answering.
                        let _ = request.into_body().collect().await;
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        counted.fetch_add(1, Ordering::Relaxed);
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
    Ok((addr, served))
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

pub struct Certs {
    pub root: ca::CertifiedKey,
    pub plexus_client: ca::CertifiedKey,
    pub plexus_server: ca::CertifiedKey,
    pub nginx_client: ca::CertifiedKey,
    pub nginx_server: ca::CertifiedKey,
}

pub fn certs() -> anyhow::Result<Certs> {
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
pub async fn plexus_proxy(
    binary: &Path,
    dir: &Path,
    config: &ProxyConfig,
    identity: &ca::CertifiedKey,
    root: &ca::CertifiedKey,
    original: (&str, SocketAddr),
    callgrind: Option<&Path>,
) -> anyhow::Result<(Proc, u16)> {
    let config_dir = dir.join("config");
    let identity_dir = dir.join("identity");
    std::fs::create_dir_all(&config_dir)?;
    std::fs::create_dir_all(&identity_dir)?;
    write(&config_dir.join(CONFIG_KEY), config.to_gzip())?;
    write(&identity_dir.join(TLS_CERT_KEY), &identity.cert_pem)?;
    write(&identity_dir.join(TLS_KEY_KEY), &identity.key_pem)?;
    write(&identity_dir.join(CA_CERT_KEY), &root.cert_pem)?;
    let (inbound, outbound, admin) = (free_port()?, free_port()?, free_port()?);
    let log = std::fs::File::create(dir.join("proxy.log"))?;
    // Under callgrind (`--instructions`), the proxy is valgrind's guest.
    let mut command = match callgrind {
        Some(out) => {
            let mut command = Command::new("valgrind");
            command
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(binary);
            command
        }
        None => Command::new(binary),
    };
    let child = own_group(&mut command)
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
    let tries = if callgrind.is_some() { 1200 } else { 100 };
    for _ in 0..tries {
        if get_status(&ready, READY_PATH).await == Some(200) {
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
pub async fn get_status(addr: &str, path: &str) -> Option<u16> {
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
pub fn nginx_pair(
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
