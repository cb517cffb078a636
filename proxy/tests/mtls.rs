//! Two proxies on loopback with certificates from the mesh's own CA code:
//! the client proxy carries an app's TCP to the server proxy over mTLS, each
//! side checks the other's SPIFFE identity, and the server proxy's mTLS
//! mode decides about plaintext. The redirection (nftables) is replaced by a
//! fixed original destination per listener.

mod support;

use std::time::SystemTime;

use plexus_config::MtlsMode;
use plexus_operator::ca::generate_root;
use support::*;

#[tokio::test]
async fn tcp_between_two_proxies_goes_over_mtls_with_checked_identities() {
    let root = generate_root("cluster.local", SystemTime::now(), DAY).expect("root");
    let app = echo_app().await;

    let (server, server_state, server_dir) =
        server_proxy("server", &root, MtlsMode::Strict, app).await;
    let (client, client_state, client_dir) =
        client_proxy("client", &root, &root, server, "web").await;

    assert_eq!(
        exchange(client, b"hello through the mesh").await,
        b"hello through the mesh"
    );
    let server_metrics = metrics(&server_state);
    assert!(
        server_metrics.contains(
            r#"plexus_proxy_tcp_mtls_total{direction="inbound",peer_identity="spiffe://cluster.local/ns/demo/sa/client"} 1"#
        ),
        "{server_metrics}"
    );
    assert!(metrics(&client_state).contains(
        r#"plexus_proxy_tcp_mtls_total{direction="outbound",peer_identity="spiffe://cluster.local/ns/demo/sa/web"} 1"#
    ));

    // Plaintext straight to the server proxy: refused under STRICT.
    assert_eq!(exchange(server, b"plaintext").await, b"");
    assert!(
        metrics(&server_state).contains(
            r#"plexus_proxy_tcp_refused_total{direction="inbound",reason="plaintext"} 1"#
        )
    );

    // A client proxy that expects another identity at that endpoint.
    let (wrong, wrong_state, wrong_dir) =
        client_proxy("wrong", &root, &root, server, "billing").await;
    assert_eq!(exchange(wrong, b"hello").await, b"");
    assert!(
        metrics(&wrong_state).contains(
            r#"plexus_proxy_tcp_refused_total{direction="outbound",reason="handshake"} 1"#
        )
    );

    settles(
        &server_state,
        r#"plexus_proxy_tcp_refused_total{direction="inbound",reason="handshake"}"#,
        1,
    )
    .await;

    // A client whose certificate another root signed: the server refuses it.
    let other_root = generate_root("cluster.local", SystemTime::now(), DAY).expect("root");
    let (stranger, _, stranger_dir) =
        client_proxy("stranger", &other_root, &root, server, "web").await;
    assert_eq!(exchange(stranger, b"hello").await, b"");
    let handshakes = r#"plexus_proxy_tcp_refused_total{direction="inbound",reason="handshake"}"#;
    // The wrong-identity client gave up its handshake, the stranger's was refused.
    settles(&server_state, handshakes, 2).await;
    let accepted = r#"plexus_proxy_tcp_mtls_total{direction="inbound",peer_identity="spiffe://cluster.local/ns/demo/sa/client"}"#;
    assert_eq!(
        count(&metrics(&server_state), accepted),
        1,
        "only the first client got through"
    );

    for dir in [server_dir, client_dir, wrong_dir, stranger_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn permissive_accepts_plaintext_and_mtls() {
    let root = generate_root("cluster.local", SystemTime::now(), DAY).expect("root");
    let app = echo_app().await;
    let (server, _, server_dir) =
        server_proxy("permissive", &root, MtlsMode::Permissive, app).await;
    assert_eq!(exchange(server, b"plaintext").await, b"plaintext");

    let (client, _, client_dir) =
        client_proxy("permissive-client", &root, &root, server, "web").await;
    assert_eq!(exchange(client, b"over mtls").await, b"over mtls");
    for dir in [server_dir, client_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn the_apps_own_tls_passes_through_and_disable_still_carries_the_mesh() {
    let root = generate_root("cluster.local", SystemTime::now(), DAY).expect("root");
    let app = echo_app().await;
    // A TLS record that is not a peer proxy's ClientHello: an app that
    // terminates TLS itself gets it untouched.
    let app_tls = b"\x16\x03\x01\x00\x05hello";
    for mode in [MtlsMode::Permissive, MtlsMode::Disable] {
        let (server, server_state, server_dir) =
            server_proxy(&format!("{mode:?}-server"), &root, mode, app).await;
        assert_eq!(exchange(server, app_tls).await, app_tls, "{mode:?}");
        assert_eq!(exchange(server, b"plain").await, b"plain", "{mode:?}");

        let (client, _, client_dir) =
            client_proxy(&format!("{mode:?}-client"), &root, &root, server, "web").await;
        assert_eq!(exchange(client, b"meshed").await, b"meshed", "{mode:?}");
        let accepted = r#"plexus_proxy_tcp_mtls_total{direction="inbound",peer_identity="spiffe://cluster.local/ns/demo/sa/client"}"#;
        assert_eq!(count(&metrics(&server_state), accepted), 1, "{mode:?}");
        for dir in [server_dir, client_dir] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
