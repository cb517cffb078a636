//! The load: an open loop at a fixed rate (latency percentiles) and a
//! closed loop over many connections (maximum throughput), and one path's
//! measurement of both with its proxies' CPU and memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::procs::{Proc, rss};
use crate::{Args, HOST};

/// The `authorization` header every request carries, once set.
static AUTHORIZATION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Makes every request from now on carry `Bearer <token>`.
pub fn set_token(token: String) {
    let _ = AUTHORIZATION.set(format!("Bearer {token}"));
}

/// One HTTP/1.1 request with a body, on a kept-alive connection.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    body: &Bytes,
) -> anyhow::Result<()> {
    let mut request = Request::post("/").header("host", HOST);
    if let Some(authorization) = AUTHORIZATION.get() {
        request = request.header("authorization", authorization.as_str());
    }
    let request = request.body(Full::new(body.clone()))?;
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

/// `n` requests one after the other on one connection.
pub async fn sequential(addr: SocketAddr, n: u64, body: &Bytes) -> anyhow::Result<()> {
    let mut sender = connect(addr).await?;
    for _ in 0..n {
        sender.ready().await?;
        send(&mut sender, body).await?;
    }
    Ok(())
}

/// Latency percentiles, microseconds.
#[derive(Default, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
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
pub async fn fixed_rate(
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
pub struct Measured {
    pub latency: Latency,
    pub fixed_errors: u64,
    pub rps: f64,
    pub max_errors: u64,
    /// Per proxy: name, peak RSS bytes, CPU cores used at the fixed rate,
    /// and the kernel's share of that time.
    pub proxies: Vec<(String, u64, f64, f64)>,
}

pub async fn measure(
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
