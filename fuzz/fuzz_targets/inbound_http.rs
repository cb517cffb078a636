//! The inbound HTTP server path fed raw bytes: a connection, as HTTP/1.1
//! or (after the preface the target adds) HTTP/2, from a plaintext caller
//! or an mTLS peer, through `inbound::http::serve`: the whole request
//! pipeline (normalization, JWT, authorization, rate limits) and on to an
//! app on loopback. The first byte picks protocol and peer; the rest is
//! what the caller sends before closing its side. Nothing panics, and the
//! connection ends once the caller has closed (bounded by a timeout that
//! libFuzzer's own would catch if it were ever reached).
#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use plexus_proxy::ctx::Ctx;
use plexus_proxy::detect::Detected;
use plexus_proxy::inbound::Connection;
use plexus_proxy::original_dst::Static;
use plexus_proxy::policy::Peer;
use plexus_proxy::state::ProxyState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const PEER: &str = "spiffe://cluster.local/ns/demo/sa/client";

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

/// The app: answers every request 200 with its path, on loopback.
async fn app() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind on loopback");
    let port = listener.local_addr().expect("an address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: http::Request<_>| async move {
                    let body = http_body_util::Full::new(bytes_of(request.uri().path()));
                    Ok::<_, std::convert::Infallible>(http::Response::new(body))
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    port
}

fn bytes_of(path: &str) -> hyper::body::Bytes {
    hyper::body::Bytes::copy_from_slice(path.as_bytes())
}

static WORLD: LazyLock<(Arc<Ctx>, u16)> = LazyLock::new(|| {
    RUNTIME.block_on(async {
        let port = app().await;
        let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        let state =
            ProxyState::new(PathBuf::new(), PathBuf::new(), Arc::default()).with_labels(labels);
        let config = plexus_fuzz::policy_config().to_string();
        state.apply_config(plexus_config::compress(config.as_bytes()), "fuzz");
        assert!(state.snapshot().is_some(), "the configuration is in force");
        let ctx = Ctx::new(Arc::new(state), Box::new(Static(BTreeMap::new())));
        (Arc::new(ctx), port)
    })
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, sent)) = data.split_first() else {
        return;
    };
    let (ctx, port) = &*WORLD;
    let protocol = if mode & 1 == 0 {
        Detected::Http1
    } else {
        Detected::Http2
    };
    let peer = (mode & 2 != 0).then(|| Peer::from_spiffe(PEER).expect("a SPIFFE ID"));
    let address = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let conn = Connection {
        peer_id: peer.as_ref().map(|_| Arc::from(PEER)),
        peer,
        source: address(40_000),
        destination: address(*port),
        sni: None,
    };
    RUNTIME.block_on(async {
        let (mut caller, proxy) = tokio::io::duplex(64 * 1024);
        let (_stop, stop) = tokio::sync::watch::channel(false);
        let served =
            plexus_proxy::inbound::http::serve(ctx.clone(), proxy, conn, protocol, *port, stop);
        let call = async move {
            if protocol == Detected::Http2 {
                let _ = caller.write_all(H2_PREFACE).await;
            }
            let _ = caller.write_all(sent).await;
            let _ = caller.shutdown().await;
            let mut answer = Vec::new();
            let _ = caller.read_to_end(&mut answer).await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(served, call) })
            .await;
    });
});
