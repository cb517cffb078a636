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

/// `--policy`: each measurement, then the policy's cost against none,
/// averaged over the rounds: CPU per request of each proxy and of the pair
/// (the policy runs in the server proxy), and the p99 it adds.
pub fn policy_report(args: &Args, runs: &[(&str, Measured)]) {
    let ms = |us: f64| us / 1000.0;
    let per_1k = |cores: f64| cores / (args.rate as f64 / 1000.0);
    println!(
        "\nplexus-bench --policy: {} rps for {} s, {} B bodies; max throughput over {} connections for {} s",
        args.rate, args.fixed_seconds, args.body, args.connections, args.max_seconds
    );
    println!(
        "\n{:<7} {:>9} {:>9} {:>10} {:>16} {:>16} {:>8}",
        "policy", "p50 ms", "p99 ms", "max rps", "client c/1k rps", "server c/1k rps", "errors"
    );
    let cores =
        |m: &Measured, proxy: &str| m.proxies.iter().find(|p| p.0 == proxy).map_or(0.0, |p| p.2);
    for (name, m) in runs {
        println!(
            "{:<7} {:>9.3} {:>9.3} {:>10.0} {:>16.3} {:>16.3} {:>8}",
            name,
            ms(m.latency.p50),
            ms(m.latency.p99),
            m.rps,
            per_1k(cores(m, "client")),
            per_1k(cores(m, "server")),
            m.fixed_errors + m.max_errors
        );
    }
    let mean = |which: &str, f: &dyn Fn(&Measured) -> f64| {
        let values: Vec<f64> = runs
            .iter()
            .filter(|r| r.0 == which)
            .map(|r| f(&r.1))
            .collect();
        values.iter().sum::<f64>() / values.len().max(1) as f64
    };
    let server = |m: &Measured| cores(m, "server");
    let pair = |m: &Measured| cores(m, "client") + cores(m, "server");
    let p99 = |m: &Measured| m.latency.p99;
    let rps = |m: &Measured| m.rps;
    let ratio = |f: &dyn Fn(&Measured) -> f64| mean("policy", f) / mean("none", f);
    println!("\npolicy against none (means of the rounds):");
    println!(
        "  server proxy CPU per request: {:.3} vs {:.3} cores/1k rps: x{:.3}",
        per_1k(mean("policy", &server)),
        per_1k(mean("none", &server)),
        ratio(&server)
    );
    println!(
        "  pair CPU per request: {:.3} vs {:.3} cores/1k rps: x{:.3} (goal: at most x1.05: {})",
        per_1k(mean("policy", &pair)),
        per_1k(mean("none", &pair)),
        ratio(&pair),
        if ratio(&pair) <= 1.05 { "yes" } else { "NO" }
    );
    println!(
        "  added p99: {:+.3} ms ({:.3} vs {:.3} ms); max throughput x{:.3}",
        ms(mean("policy", &p99) - mean("none", &p99)),
        ms(mean("policy", &p99)),
        ms(mean("none", &p99)),
        ratio(&rps)
    );
}

/// `--policy --instructions`: instructions per request of each proxy and
/// of the pair, without and with the policy.
pub fn instructions_report(requests: u64, counted: &[(&str, u64, u64)]) {
    println!(
        "\nplexus-bench --policy --instructions {requests}: instructions per request (callgrind)"
    );
    println!(
        "\n{:<7} {:>12} {:>12} {:>12}",
        "policy", "client", "server", "pair"
    );
    let per = |n: u64| n as f64 / requests as f64;
    for (name, client, server) in counted {
        println!(
            "{:<7} {:>12.0} {:>12.0} {:>12.0}",
            name,
            per(*client),
            per(*server),
            per(client + server)
        );
    }
    if let [(_, c0, s0), (_, c1, s1)] = counted {
        let pair = (c1 + s1) as f64 / (c0 + s0) as f64;
        println!(
            "\npolicy against none: server x{:.3}, pair x{:.3} (goal: at most x1.05: {})",
            *s1 as f64 / *s0 as f64,
            pair,
            if pair <= 1.05 { "yes" } else { "NO" }
        );
    }
}
