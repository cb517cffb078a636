//! The webhook's whole decision on a request body (`server::review`:
//! decode, injection, patch), fed arbitrary bytes. A malformed review is an
//! error (answered 400), never a panic; an answer's patch applies to the
//! pod it was computed for, and its response names the request's uid.
#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use libfuzzer_sys::fuzz_target;
use plexus_crds::mesh::ProxyDefaults;
use plexus_webhook::inject::InjectConfig;
use plexus_webhook::server;
use plexus_webhook::state::State;
use serde_json::{Value, json};

/// Namespace `demo` is labelled for injection, `other` is not; with and
/// without native sidecars.
fn state(native_sidecars: bool) -> State {
    let (reader, mut writer) = reflector::store::<Namespace>();
    for (name, labels) in [
        ("demo", json!({"plexus.dev/inject": "enabled"})),
        ("other", json!({})),
    ] {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                .expect("a namespace");
        writer.apply_watcher_event(&Event::Apply(namespace));
    }
    let config = InjectConfig::new(ProxyDefaults::default(), native_sidecars, "plexus-system");
    State::new(reader, config)
}

static CLASSIC: LazyLock<State> = LazyLock::new(|| state(false));
static NATIVE: LazyLock<State> = LazyLock::new(|| state(true));

fuzz_target!(|data: &[u8]| {
    let state = if data.len() % 2 == 0 {
        &*CLASSIC
    } else {
        &*NATIVE
    };
    let Ok(answer) = server::review(state, data) else {
        return;
    };
    let request: Value = serde_json::from_slice(data).expect("an answered review is JSON");
    let response = &answer["response"];
    assert_eq!(response["uid"], request["request"]["uid"], "{answer}");
    if let Some(patch) = response["patch"].as_str() {
        let patch = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("the patch is base64");
        let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("a JSON patch");
        let mut pod = request["request"]["object"].clone();
        json_patch::patch(&mut pod, &patch).unwrap_or_else(|e| {
            panic!(
                "the patch does not apply to the pod: {e}\npod: {}",
                request["request"]["object"]
            )
        });
    }
});
