//! The proxy's own DNS: the names of DNS and DNS_ROUND_ROBIN destinations
//! and the hosts of hosts-only ServiceEntries (`routing::entries::names`)
//! are looked up here, through the pod's resolver configuration
//! (`/etc/resolv.conf`) or a given server, and looked up again when their
//! answer's TTL runs out. What they resolved to is given to the state,
//! which compiles the configuration again with it: endpoints come and go as
//! DNS says, their balance state kept.
//!
//! The cache is bounded: at most [`MAX_NAMES`] names are resolved (a log
//! line says when a configuration asks for more), names the configuration
//! no longer has are forgotten, and the resolver's own answer cache holds
//! [`MAX_NAMES`] entries. A failed lookup keeps the last good answer (and
//! is tried again after [`RETRY`]), as Envoy keeps its DNS hosts.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::routing::Resolved;
use crate::state::ProxyState;

/// Names resolved at most.
pub const MAX_NAMES: usize = 1024;
/// The shortest wait between two lookups of a name (TTL 0 included).
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// The longest an answer is kept without a lookup, whatever its TTL.
pub const MAX_REFRESH: Duration = Duration::from_secs(300);
/// When a failed lookup is tried again.
pub const RETRY: Duration = Duration::from_secs(5);
/// How long one lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A resolver of the pod's configuration, or asking `server` only.
pub fn resolver(server: Option<SocketAddr>) -> anyhow::Result<TokioResolver> {
    let mut builder = match server {
        Some(server) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
                server.ip(),
                true,
                vec![udp, tcp],
            )]);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        }
        None => TokioResolver::builder_tokio()?,
    };
    let options = builder.options_mut();
    options.cache_size = MAX_NAMES as u64;
    options.timeout = Duration::from_secs(2);
    Ok(builder.build()?)
}

/// One name's last good answer.
struct Answer {
    addresses: Vec<IpAddr>,
    /// When it is looked up again.
    refresh: Instant,
}

/// Keeps the state's names resolved, until the process ends.
pub async fn run(state: Arc<ProxyState>, resolver: TokioResolver) {
    let mut cache: HashMap<String, Answer> = HashMap::new();
    let mut warned = false;
    loop {
        let names: BTreeSet<String> = state
            .snapshot()
            .map(|s| s.table.names().clone())
            .unwrap_or_default();
        if names.len() > MAX_NAMES && !warned {
            tracing::warn!(
                names = names.len(),
                resolved = MAX_NAMES,
                "more names to resolve than the cache holds; the rest are not resolved"
            );
        }
        warned = names.len() > MAX_NAMES;
        let wanted: BTreeSet<&String> = names.iter().take(MAX_NAMES).collect();
        let before = cache.len();
        cache.retain(|name, _| wanted.contains(name));
        let mut changed = cache.len() != before;
        let now = Instant::now();
        let due: Vec<&String> = wanted
            .iter()
            .filter(|name| cache.get(name.as_str()).is_none_or(|a| a.refresh <= now))
            .copied()
            .collect();
        let lookups = futures::future::join_all(due.iter().map(|name| lookup(&resolver, name)));
        for (name, result) in due.into_iter().zip(lookups.await) {
            let now = Instant::now();
            match result {
                Ok((mut addresses, valid_until)) => {
                    addresses.dedup();
                    let refresh = valid_until.clamp(now + MIN_REFRESH, now + MAX_REFRESH);
                    let old = cache.insert(name.clone(), Answer { addresses, refresh });
                    let new = &cache[name].addresses;
                    if old.is_none_or(|old| &old.addresses != new) {
                        tracing::info!(name = %name, addresses = ?new, "resolved");
                        state.metrics.egress.looked_up("changed");
                        changed = true;
                    } else {
                        state.metrics.egress.looked_up("resolved");
                    }
                }
                Err(error) => {
                    tracing::warn!(name = %name, %error, "DNS lookup failed; the last answer stays");
                    state.metrics.egress.looked_up("failed");
                    cache
                        .entry(name.clone())
                        .or_insert(Answer {
                            addresses: Vec::new(),
                            refresh: now,
                        })
                        .refresh = now + RETRY;
                }
            }
        }
        if changed {
            let resolved: Resolved = cache
                .iter()
                .filter(|(_, a)| !a.addresses.is_empty())
                .map(|(name, a)| (name.clone(), a.addresses.clone()))
                .collect();
            state.set_resolved(resolved);
        }
        let next = cache
            .values()
            .map(|a| a.refresh)
            .min()
            .unwrap_or(Instant::now() + MAX_REFRESH);
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = state.names_changed.notified() => {}
        }
    }
}

/// The addresses of `name` and until when they are valid (its TTL).
async fn lookup(resolver: &TokioResolver, name: &str) -> Result<(Vec<IpAddr>, Instant), String> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup_ip(name)).await {
        Ok(Ok(lookup)) => {
            let addresses: Vec<IpAddr> = lookup.iter().collect();
            if addresses.is_empty() {
                return Err("no address".into());
            }
            Ok((addresses, lookup.valid_until()))
        }
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".into()),
    }
}
