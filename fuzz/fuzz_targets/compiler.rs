//! The operator's compiler over arbitrary objects: YAML documents (mesh
//! resources, Namespaces, Services, Pods...) read as the operator's
//! snapshot reads them, then compiled. An invalid resource gets a verdict
//! (its status conditions), never a crash; every configuration the
//! compiler writes is one the proxy reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_config::ProxyConfig;
use plexus_operator::compile::compile;
use plexus_operator::snapshot::input_from_objects;
use serde::Deserialize;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        match serde_json::Value::deserialize(document) {
            Ok(object) if object.is_object() => objects.push(object),
            Ok(_) => {}
            Err(_) => return,
        }
    }
    let Ok(input) = input_from_objects(objects, "plexus-system", "cluster.local") else {
        return;
    };
    let output = compile(&input);
    let proxies = input.injected.clone();
    for verdict in output.verdicts.values() {
        let accepted = verdict.accepted();
        let programmed = verdict.programmed(&proxies);
        assert!(!accepted.message.is_empty() && !programmed.message.is_empty());
        assert!(
            accepted.status || !programmed.status,
            "programmed but not accepted"
        );
    }
    for config in output.configs.values() {
        let read = ProxyConfig::from_gzip(&config.to_gzip()).expect("the proxy reads it");
        assert_eq!(&read, config);
    }
});
