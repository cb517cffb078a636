//! A mock API server for the controllers' tests, after kube-rs's
//! controller-rs (`fixtures.rs`): the Client's requests go to a task that
//! answers each as the test says and records it, so a test asserts exactly
//! which requests a controller made, with no cluster.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher;
use kube::{Client, Resource};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::authority::Authority;
use crate::context::{Config, Context};
use crate::metrics::Metrics;
use crate::settings::CaSettings;

/// A request the controller made.
#[derive(Clone, Debug)]
pub struct Asked {
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    pub query: String,
    /// The body as JSON (`null` when there is none).
    pub body: Value,
}

impl Asked {
    /// `METHOD path`, as tests compare them.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A client, and the task that answers it: `answer` gives each request's
/// status and body. Await the task once the client is dropped (with every
/// clone of it) for what was asked, in order.
pub fn client(
    answer: impl Fn(&Asked) -> (StatusCode, Value) + Send + 'static,
) -> (Client, tokio::task::JoinHandle<Vec<Asked>>) {
    let (service, mut handle): (_, Handle) = tower_test::mock::pair();
    let client = Client::new(service, "default");
    let task = tokio::spawn(async move {
        let mut asked = Vec::new();
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let request = Asked {
                method: parts.method,
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, body) = answer(&request);
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
                .unwrap_or_else(|e| panic!("a response: {e}"));
            respond.send_response(response);
            asked.push(request);
        }
        asked
    });
    (client, task)
}

/// What the API server answers for an object it does not have.
pub fn not_found(name: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": "NotFound", "code": 404, "message": format!("{name} not found")}),
    )
}

/// A store holding `objects`.
pub fn store<K>(objects: Vec<K>) -> reflector::Store<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(object));
    }
    store
}

/// The operator's context around `client`: Namespaces `namespaces`, and
/// `authority` as the CA in force.
pub fn context(
    client: Client,
    namespaces: Vec<Namespace>,
    authority: Option<Authority>,
) -> Arc<Context> {
    let reporter = Reporter {
        controller: "plexus-operator".into(),
        instance: Some("test".into()),
    };
    let (_, authority) = watch::channel(authority.map(Arc::new));
    let (_, settings) = watch::channel(CaSettings::default());
    Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        config: Config {
            mesh_namespace: "plexus-system".into(),
            webhook_service: "plexus-webhook".into(),
            webhook_configuration: "plexus-webhook".into(),
        },
        metrics: Metrics::register(&mut Registry::default()),
        authority,
        settings,
        namespaces: store(namespaces),
        identity_secrets: store(Vec::<Secret>::new()),
    })
}
