//! The report: latencies, what each pair adds, throughput, each proxy's
//! memory and CPU, and the goals met or not.

use crate::Args;
use crate::load::Measured;

pub fn report(args: &Args, direct: &Measured, plexus: &Measured, nginx: &Measured) {
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
