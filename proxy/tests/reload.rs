//! Under steady load through two proxies over mTLS, a configuration change
//! and a certificate rotation (both swapped in as the kubelet does) cause no
//! failed connection: new connections use the new versions, open ones are
//! left alone.

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

    let stop = Arc::new(AtomicBool::new(false));
    let reloader = reloading(
        vec![server_state.clone(), client_state.clone()],
        stop.clone(),
    );
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

    tokio::time::sleep(Duration::from_secs(1)).await;
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

    // A certificate rotation on both sides (new keys, same root).
    for (dir, sa) in [(&server_dir, "web"), (&client_dir, "client")] {
        let identity = workload(&root, sa);
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
    for task in load {
        task.await.expect("load task");
    }
    reloader.await.expect("reloader");

    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} connections succeeded, {failed} failed");
    assert!(ok > 100, "too little load to mean anything: {ok}");
    assert_eq!(failed, 0);
    // Both updates were taken, none rejected.
    let client_metrics = metrics(&client_state);
    assert_eq!(
        count(
            &client_metrics,
            r#"plexus_proxy_reloads_total{source="config",result="loaded"}"#
        ),
        2
    );
    for state in [&client_state, &server_state] {
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
