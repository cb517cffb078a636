//! An in-process webhook on loopback with a self-issued certificate, and a
//! client that trusts it: shared by the server tests and the benchmark.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use plexus_crds::mesh::ProxyDefaults;
use plexus_webhook::inject::InjectConfig;
use plexus_webhook::server;
use plexus_webhook::state::State;
use plexus_webhook::tls::certified_key;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

/// A self-issued serving certificate for `localhost`: (cert PEM, key PEM, DER).
pub fn self_issued() -> (String, String, CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    pub cert: CertificateDer<'static>,
}

impl TestServer {
    /// Serves on 127.0.0.1; namespace `demo` is labelled for injection,
    /// `other` is not.
    pub async fn start() -> anyhow::Result<Self> {
        let (reader, mut writer) = reflector::store::<Namespace>();
        for (name, labels) in [
            ("demo", json!({"plexus.dev/inject": "enabled"})),
            ("other", json!({})),
        ] {
            let ns: Namespace =
                serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))?;
            writer.apply_watcher_event(&Event::Apply(ns));
        }
        let config = InjectConfig::new(ProxyDefaults::default(), false, "plexus-system");
        let state = Arc::new(State::new(reader, config));
        let (cert_pem, key_pem, der) = self_issued();
        state
            .certs
            .set(certified_key(cert_pem.as_bytes(), key_pem.as_bytes())?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tls = state.certs.server_config();
        let router = server::router(state.clone());
        tokio::spawn(server::serve(listener, router, tls, std::future::pending()));
        Ok(Self {
            addr,
            state,
            cert: der,
        })
    }

    /// A new HTTPS connection (HTTP/1.1, kept alive) trusting `cert`.
    pub async fn connect(&self, cert: &CertificateDer<'static>) -> anyhow::Result<Connection> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone())?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = connector
            .connect(ServerName::try_from("localhost")?, tcp)
            .await
            .context("TLS handshake")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(Connection(sender))
    }
}

pub struct Connection(SendRequest<Full<Bytes>>);

impl Connection {
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        self.0.ready().await?;
        let response = self.0.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        Ok((status, body))
    }
}

/// An AdmissionReview of the creation of a typical Deployment pod in `namespace`.
pub fn review(namespace: &str, uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": "web-7d4b9c8f6d-",
                    "namespace": namespace,
                    "labels": {"app": "web", "version": "v1", "pod-template-hash": "7d4b9c8f6d"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "web-7d4b9c8f6d", "uid": "0b5c6c1e-1111-4b4e-9b7e-5d1f7e1c2a01",
                        "controller": true, "blockOwnerDeletion": true}]
                },
                "spec": {
                    "serviceAccountName": "web",
                    "restartPolicy": "Always",
                    "containers": [{
                        "name": "web",
                        "image": "plexus/test-server:0.1.0",
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
                        "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}},
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                        "volumeMounts": [{"name": "kube-api-access-x1", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]
                    }],
                    "volumes": [{"name": "kube-api-access-x1", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]
                }
            },
            "oldObject": null,
            "dryRun": false
        }
    })
}
