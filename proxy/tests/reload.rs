//! Under steady load through proxies over mTLS, TCP connections and HTTP
//! requests, a configuration change and a certificate rotation (both swapped
//! in as the kubelet does) cause no failed connection and no failed
//! request: new connections and requests use the new versions, open ones
//! are left alone.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use plexus_config::MtlsMode;
use plexus_operator::ca::generate_root;
use plexus_proxy::state::ProxyState;
use support::*;

/// Reads the mounted files again every 50 ms, as the proxy's own loop does
/// every second.
fn reloading(states: Vec<Arc<ProxyState>>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            for state in &states {
                state.reload();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_change_and_a_certificate_rotation_fail_nothing() {
    let root = generate_root("cluster.local", SystemTime::now(), DAY).expect("root");
    let app = echo_app().await;
    let (server, server_state, server_dir) =
        server_proxy("reload-server", &root, MtlsMode::Strict, app).await;
    let (client, client_state, client_dir) =
        client_proxy("reload-client", &root, &root, server, "web").await;
    let http = mesh("reload-http").await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut states = vec![
        server_state.clone(),
        client_state.clone(),
        http.client_state.clone(),
    ];
    states.extend(http.server_states.iter().cloned());
    let reloader = reloading(states, stop.clone());
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Four clients, each connection in turn: bounded by the stop flag and
    // by the test's own length (about three seconds).
    let load: Vec<_> = (0..4)
        .map(|n| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let message = format!("client {n} request {i}");
                    if exchange(client, message.as_bytes()).await == message.as_bytes() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    // And four HTTP clients, pooled connections, one request after another.
    let (requests_ok, requests_failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let http_load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), requests_ok.clone(), requests_failed.clone());
            let proxy = http.client;
            tokio::spawn(async move {
                let client = http_client(false);
                while !stop.load(Ordering::Relaxed) {
                    match get(&client, proxy, "/", &[]).await {
                        Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("failed request: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    // The HTTP client's routes change: the split turns 50/50.
    let mut split = routed_config(http.server_addrs[0], http.server_addrs[1]);
    let mut services = (*split.services).clone();
    if let Some(route) = services[0].http.last_mut() {
        route.backends[0].weight = 50;
        route.backends[1].weight = 50;
    }
    split.services = Arc::new(services);
    update(
        &http.dirs[0].join("config"),
        &[(plexus_config::CONFIG_KEY, split.to_gzip())],
    );
    // A configuration change: the client's view gains a second service.
    let mut changed = client_config(server, "web");
    let mut services = (*changed.services).clone();
    let mut other = services[0].clone();
    other.name = "billing".into();
    other.addresses = vec!["198.19.0.11".into()];
    services.push(other);
    changed.services = Arc::new(services);
    update(
        &client_dir.join("config"),
        &[(plexus_config::CONFIG_KEY, changed.to_gzip())],
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A certificate rotation on every side (new keys, same root).
    let rotations = [
        (&server_dir, "web", &root),
        (&client_dir, "client", &root),
        (&http.dirs[0], "client", &http.root),
        (&http.dirs[1], "web", &http.root),
        (&http.dirs[2], "web", &http.root),
    ];
    for (dir, sa, root) in rotations {
        let identity = workload(root, sa);
        update(
            &dir.join("identity"),
            &[
                ("tls.crt", identity.cert_pem.into_bytes()),
                ("tls.key", identity.key_pem.into_bytes()),
                ("ca.crt", root.cert_pem.clone().into_bytes()),
            ],
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load.into_iter().chain(http_load) {
        task.await.expect("load task");
    }
    reloader.await.expect("reloader");

    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} connections succeeded, {failed} failed");
    let (requests_ok, requests_failed) = (
        requests_ok.load(Ordering::Relaxed),
        requests_failed.load(Ordering::Relaxed),
    );
    eprintln!("{requests_ok} HTTP requests succeeded, {requests_failed} failed");
    assert!(ok > 100, "too little load to mean anything: {ok}");
    assert!(
        requests_ok > 100,
        "too little load to mean anything: {requests_ok}"
    );
    assert_eq!(failed, 0);
    assert_eq!(requests_failed, 0);
    // The new split is in force: both subsets now answer about as often.
    let version = |state: &ProxyState| state.config_version();
    assert_ne!(version(&http.client_state), None);
    let before = (http.apps[0].served("/"), http.apps[1].served("/"));
    let client = http_client(false);
    for _ in 0..400 {
        assert_eq!(
            get(&client, http.client, "/", &[]).await.map(|(s, _)| s),
            Ok(200)
        );
    }
    let v2 = http.apps[1].served("/") - before.1;
    assert!(
        (120..=280).contains(&v2),
        "v2 answered {v2} of 400 after the change"
    );
    // Both updates were taken, none rejected.
    let client_metrics = metrics(&client_state);
    assert_eq!(
        count(
            &client_metrics,
            r#"plexus_proxy_reloads_total{source="config",result="loaded"}"#
        ),
        2
    );
    for state in [&client_state, &server_state, &http.client_state] {
        let m = metrics(state);
        assert_eq!(
            count(
                &m,
                r#"plexus_proxy_reloads_total{source="identity",result="loaded"}"#
            ),
            2,
            "{m}"
        );
        assert_eq!(
            count(
                &m,
                r#"plexus_proxy_reloads_total{source="identity",result="rejected"}"#
            ),
            0
        );
    }
    assert_eq!(client_state.config().map(|c| c.services.len()), Some(2));
    for dir in [server_dir, client_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The mounted directories are watched: a swapped-in configuration is in
/// force well before the next poll would read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_in_configuration_is_seen_at_once() {
    let root = generate_root("cluster.local", SystemTime::now(), DAY).expect("root");
    let dir = temp("watched");
    let config = client_config("127.0.0.1:1".parse().expect("address"), "web");
    volumes(&dir, &config, &workload(&root, "client"), &root);
    let state = Arc::new(ProxyState::new(
        dir.join("config"),
        dir.join("identity"),
        Arc::new(plexus_proxy::telemetry::Metrics::default()),
    ));
    state.reload();
    let watcher = tokio::spawn(plexus_proxy::watch::files(
        state.clone(),
        vec![dir.join("config"), dir.join("identity")],
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut changed = config.clone();
    changed.namespace = "changed".into();
    let started = std::time::Instant::now();
    update(
        &dir.join("config"),
        &[(plexus_config::CONFIG_KEY, changed.to_gzip())],
    );
    while state.config().map(|c| c.namespace.clone()) != Some("changed".into()) {
        assert!(
            started.elapsed() < plexus_proxy::watch::POLL_INTERVAL / 2,
            "the change was not seen by inotify"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("seen after {:?}", started.elapsed());
    watcher.abort();
    let _ = std::fs::remove_dir_all(dir);
}
