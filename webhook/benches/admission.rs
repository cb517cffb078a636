//! Admission latency of a typical pod (a Deployment's, with probes and a
//! projected token volume) through the real HTTPS server on loopback:
//! one client in sequence, then 50 concurrent clients. Run with
//!   cargo bench -p plexus-webhook --bench admission
//! Prints percentiles; goal: p99 ≤ 10 ms on a 2-core machine.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{TestServer, review};

const WARM_UP: usize = 200;
const SEQUENTIAL: usize = 5_000;
const CLIENTS: usize = 50;
const PER_CLIENT: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn report(name: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: {} reviews in {:.2} s ({:.0}/s): p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        samples.len(),
        wall.as_secs_f64(),
        samples.len() as f64 / wall.as_secs_f64(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(percentile(&samples, 0.999)),
        ms(samples[samples.len() - 1]),
    );
}

async fn one(conn: &mut support::Connection, body: &[u8]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let (status, answer) = conn.request("POST", "/mutate", body.to_vec()).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status == 200, "HTTP {status}");
    anyhow::ensure!(
        answer.windows(9).any(|w| w == b"JSONPatch"),
        "the pod was not injected"
    );
    Ok(elapsed)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let body = serde_json::to_vec(&review("demo", "bench"))?;
    println!(
        "admission review of a typical pod: {} bytes; server on {}",
        body.len(),
        server.addr
    );

    let mut conn = server.connect(&server.cert).await?;
    for _ in 0..WARM_UP {
        one(&mut conn, &body).await?;
    }
    let started = Instant::now();
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        samples.push(one(&mut conn, &body).await?);
    }
    report("sequential, 1 client", samples, started.elapsed());

    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(server.connect(&server.cert).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut conn| {
            let body = body.clone();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(PER_CLIENT);
                for _ in 0..PER_CLIENT {
                    samples.push(one(&mut conn, &body).await?);
                }
                anyhow::Ok(samples)
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(CLIENTS * PER_CLIENT);
    for task in tasks {
        samples.extend(task.await??);
    }
    report(
        &format!("concurrent, {CLIENTS} clients"),
        samples,
        started.elapsed(),
    );
    Ok(())
}
