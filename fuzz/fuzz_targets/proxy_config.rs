//! What the proxy does with a configuration update (`ProxyState::
//! apply_config`: gunzip, decode, compile the routing table and the inbound
//! policy), fed arbitrary bytes: as the ConfigMap holds them (gzip), and,
//! so that the fuzzer reaches the decoder and the compilers, as JSON
//! compressed the way the operator does. A bad update is rejected and the
//! last good configuration stays in force; nothing panics.
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use plexus_proxy::state::ProxyState;

/// A configuration with routes, a ServiceEntry and inbound policy: the one
/// in force before each update.
const GOOD: &str = include_str!("../seeds/proxy_config/splits-and-subsets-demo.json");

static STATE: LazyLock<ProxyState> = LazyLock::new(|| {
    let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
    ProxyState::new(PathBuf::new(), PathBuf::new(), Arc::default()).with_labels(labels)
});
static GOOD_GZIP: LazyLock<Vec<u8>> = LazyLock::new(|| plexus_config::compress(GOOD.as_bytes()));

fuzz_target!(|data: &[u8]| {
    let state = &*STATE;
    state.apply_config(GOOD_GZIP.clone(), "good");
    let good = state
        .snapshot()
        .expect("the good configuration is in force");
    let bytes = if data.starts_with(&[0x1f, 0x8b]) {
        data.to_vec()
    } else {
        plexus_config::compress(data)
    };
    let decodable = plexus_config::ProxyConfig::from_gzip(&bytes).is_ok();
    state.apply_config(bytes, "fuzz");
    let now = state.snapshot().expect("a configuration stays in force");
    if !decodable {
        assert!(
            Arc::ptr_eq(&good, &now),
            "an undecodable update replaced the configuration"
        );
    }
});
