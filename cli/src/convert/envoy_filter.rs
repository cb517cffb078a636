//! Istio EnvoyFilters that insert Envoy's local rate limit filter into
//! sidecars' inbound HTTP chain become RateLimitPolicies.
//!
//! The input is consumed field by field: every field is either translated,
//! checked to be the value this pattern requires, or left over, and a left
//! over field fails the document with its path. Nothing is dropped silently.

use serde_json::{Map, Value, json};

const LOCAL_RATE_LIMIT_FILTERS: &[&str] = &[
    "envoy.filters.http.local_ratelimit",
    "envoy.local_ratelimit",
];
const LOCAL_RATE_LIMIT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
const TYPED_STRUCTS: &[&str] = &[
    "type.googleapis.com/udpa.type.v1.TypedStruct",
    "type.googleapis.com/xds.type.v3.TypedStruct",
];
const HTTP_CONNECTION_MANAGERS: &[&str] = &[
    "envoy.filters.network.http_connection_manager",
    "envoy.http_connection_manager",
];
const ROUTERS: &[&str] = &["envoy.filters.http.router", "envoy.router"];
const INSERT_OPERATIONS: &[&str] = &["INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "ADD"];

/// Translates the EnvoyFilter into a RateLimitPolicy object, with notes for
/// the user, or says why it cannot be.
pub fn translate(object: &Value) -> Result<(Value, Vec<String>), String> {
    let mut notes = Vec::new();
    let mut metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut stripped = json!({ "metadata": metadata.take() });
    notes.extend(super::strip_server_fields(&mut stripped));

    let mut spec = Fields::new(
        "spec",
        object.get("spec").cloned().unwrap_or_else(|| json!({})),
    )?;
    let mut policy = Map::new();

    if let Some(mut selector) = spec.child("workloadSelector")? {
        if let Some(labels) = selector.take("labels") {
            policy.insert("selector".into(), json!({ "matchLabels": labels }));
        }
        selector.finish()?;
    }

    let patches = spec
        .take("configPatches")
        .and_then(|patches| patches.as_array().cloned())
        .unwrap_or_default();
    let [patch] = patches.as_slice() else {
        return Err(format!(
            "has {} configPatches; only an EnvoyFilter with exactly one patch, inserting \
             the local rate limit filter, is translated",
            patches.len()
        ));
    };
    translate_patch(
        Fields::new("spec.configPatches[0]", patch.clone())?,
        &mut policy,
        &mut notes,
    )?;
    spec.finish()?;

    let policy = json!({
        "apiVersion": plexus_crds::API_VERSION,
        "kind": "RateLimitPolicy",
        "metadata": stripped["metadata"],
        "spec": policy,
    });
    Ok((policy, notes))
}

fn translate_patch(
    mut patch: Fields,
    policy: &mut Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let mut value = patch.required_child("patch")?;
    let mut filter = value.required_child("value")?;
    let filter_name = filter.required_str("name")?;
    if filter_name == "envoy.filters.http.ratelimit" || filter_name == "envoy.ratelimit" {
        return Err(
            "inserts Envoy's global rate limit filter (envoy.filters.http.ratelimit), which \
             calls an external rate-limit service; Plexus has no equivalent. RateLimitPolicy \
             covers local (per-proxy) rate limits"
                .into(),
        );
    }
    if !LOCAL_RATE_LIMIT_FILTERS.contains(&filter_name.as_str()) {
        return Err(format!(
            "inserts the Envoy filter {filter_name}; only local rate limits \
             (envoy.filters.http.local_ratelimit) have a Plexus equivalent"
        ));
    }
    patch.expect_str("applyTo", &["HTTP_FILTER"])?;
    value.expect_str("operation", INSERT_OPERATIONS)?;
    value.finish()?;

    let mut matching = patch.required_child("match")?;
    let context = matching.required_str("context")?;
    if context != "SIDECAR_INBOUND" {
        return Err(format!(
            "applies to context {context}; RateLimitPolicy limits the requests a workload's \
             sidecar receives (SIDECAR_INBOUND)"
        ));
    }
    let mut port = None;
    if let Some(mut listener) = matching.child("listener")? {
        port = listener.take("portNumber");
        if let Some(mut chain) = listener.child("filterChain")? {
            if let Some(mut network_filter) = chain.child("filter")? {
                network_filter.expect_str("name", HTTP_CONNECTION_MANAGERS)?;
                if let Some(mut sub_filter) = network_filter.child("subFilter")? {
                    sub_filter.expect_str("name", ROUTERS)?;
                    sub_filter.finish()?;
                }
                network_filter.finish()?;
            }
            chain.finish()?;
        }
        listener.finish()?;
    }
    matching.finish()?;
    patch.finish()?;

    let config = filter_config(&mut filter)?;
    filter.finish()?;
    let bucket = translate_local_rate_limit(config, policy, notes)?;
    match (bucket, port) {
        (Some(bucket), Some(port)) => {
            policy.insert(
                "routes".into(),
                json!([{ "name": format!("port-{port}"), "match": [{ "port": port }], "tokenBucket": bucket }]),
            );
        }
        (Some(bucket), None) => {
            policy.insert("tokenBucket".into(), bucket);
        }
        (None, _) => {
            return Err(
                "the local rate limit filter has no token_bucket, so it limits nothing by itself \
                 (its buckets are set per route elsewhere); nothing to translate"
                    .into(),
            );
        }
    }
    Ok(())
}

/// The LocalRateLimit message, whether given directly or in a TypedStruct.
fn filter_config(filter: &mut Fields) -> Result<Fields, String> {
    let key = if filter.has("typed_config") {
        "typed_config"
    } else {
        "typedConfig"
    };
    let mut typed = filter.required_child(key)?;
    let type_name = typed.required_str("@type")?;
    if TYPED_STRUCTS.contains(&type_name.as_str()) {
        typed.expect_str("type_url", &[LOCAL_RATE_LIMIT_TYPE])?;
        let config = typed.required_child("value")?;
        typed.finish()?;
        Ok(config)
    } else if type_name == LOCAL_RATE_LIMIT_TYPE {
        Ok(typed)
    } else {
        Err(format!(
            "{}.@type {type_name:?} is not the local rate limit configuration",
            typed.path
        ))
    }
}

fn translate_local_rate_limit(
    mut config: Fields,
    policy: &mut Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<Option<Value>, String> {
    if let Some(prefix) = config.take("stat_prefix") {
        policy.insert("statPrefix".into(), prefix);
    }
    let bucket = match config.child("token_bucket")? {
        Some(mut bucket) => {
            let mut out = Map::new();
            for (from, to) in [
                ("max_tokens", "maxTokens"),
                ("tokens_per_fill", "tokensPerFill"),
                ("fill_interval", "fillInterval"),
            ] {
                if let Some(value) = bucket.take(from) {
                    out.insert(to.into(), value);
                }
            }
            bucket.finish()?;
            Some(Value::Object(out))
        }
        None => None,
    };
    if let Some(mut status) = config.child("status")? {
        let code = status.take("code").unwrap_or(Value::Null);
        if !code.is_u64() {
            return Err(format!(
                "{}.code {code} is not a numeric HTTP status",
                status.path
            ));
        }
        policy.insert("statusCode".into(), code);
        status.finish()?;
    }
    for (from, to) in [
        ("filter_enabled", "enabledPercent"),
        ("filter_enforced", "enforcedPercent"),
    ] {
        if let Some(fraction) = config.child(from)? {
            policy.insert(to.into(), runtime_fraction_percent(fraction, notes)?);
        }
    }
    if let Some(headers) = config.take("response_headers_to_add") {
        let operations = header_operations(&config.path, headers)?;
        policy.insert("limitedResponseHeaders".into(), operations);
    }
    if let Some(per_connection) = config.take("local_rate_limit_per_downstream_connection")
        && per_connection != Value::Bool(false)
    {
        return Err(format!(
            "{}.local_rate_limit_per_downstream_connection: per-connection buckets have no \
                 Plexus equivalent (perSourceIdentity gives one bucket per calling workload)",
            config.path
        ));
    }
    config.finish()?;
    Ok(bucket)
}

/// Envoy's RuntimeFractionalPercent as a percentage. Plexus has no runtime
/// overrides, so the runtime key is noted, not kept.
fn runtime_fraction_percent(
    mut fraction: Fields,
    notes: &mut Vec<String>,
) -> Result<Value, String> {
    if let Some(key) = fraction.take("runtime_key") {
        notes.push(format!(
            "{}.runtime_key {key} not kept: Plexus has no runtime overrides; the default value \
             is what applies",
            fraction.path
        ));
    }
    let mut default = fraction.required_child("default_value")?;
    let numerator = default
        .take("numerator")
        .and_then(|n| n.as_f64())
        .unwrap_or(0.0);
    let scale = match default.take("denominator").as_ref().and_then(Value::as_str) {
        None | Some("HUNDRED") => 100.0,
        Some("TEN_THOUSAND") => 10_000.0,
        Some("MILLION") => 1_000_000.0,
        Some(other) => return Err(format!("{}.denominator {other:?} is unknown", default.path)),
    };
    default.finish()?;
    fraction.finish()?;
    Ok(json!(numerator * 100.0 / scale))
}

/// Envoy's HeaderValueOption list as set/add operations.
fn header_operations(path: &str, headers: Value) -> Result<Value, String> {
    let mut set = Map::new();
    let mut add = Map::new();
    let items = headers.as_array().cloned().unwrap_or_default();
    for (index, item) in items.into_iter().enumerate() {
        let mut option = Fields::new(&format!("{path}.response_headers_to_add[{index}]"), item)?;
        let mut header = option.required_child("header")?;
        let key = header.required_str("key")?;
        let value = header.take("value").unwrap_or_else(|| Value::from(""));
        header.finish()?;
        let append = match option
            .take("append_action")
            .as_ref()
            .and_then(Value::as_str)
        {
            Some("APPEND_IF_EXISTS_OR_ADD") => true,
            Some("OVERWRITE_IF_EXISTS_OR_ADD") | Some("ADD_IF_ABSENT") => false,
            Some(other) => {
                return Err(format!(
                    "{}.append_action {other:?} is unknown",
                    option.path
                ));
            }
            None => option
                .take("append")
                .and_then(|a| a.as_bool())
                .unwrap_or(true),
        };
        option.finish()?;
        if append { &mut add } else { &mut set }.insert(key, value);
    }
    let mut operations = Map::new();
    if !set.is_empty() {
        operations.insert("set".into(), Value::Object(set));
    }
    if !add.is_empty() {
        operations.insert("add".into(), Value::Object(add));
    }
    Ok(Value::Object(operations))
}

/// A mapping being consumed; whatever is not taken is reported by `finish`.
struct Fields {
    path: String,
    map: Map<String, Value>,
}

impl Fields {
    fn new(path: &str, value: Value) -> Result<Self, String> {
        match value {
            Value::Object(map) => Ok(Self {
                path: path.to_owned(),
                map,
            }),
            other => Err(format!("{path} should be a mapping, not {other}")),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|value| !value.is_null())
    }

    fn child(&mut self, key: &str) -> Result<Option<Fields>, String> {
        let path = format!("{}.{key}", self.path);
        self.take(key)
            .map(|value| Fields::new(&path, value))
            .transpose()
    }

    fn required_child(&mut self, key: &str) -> Result<Fields, String> {
        self.child(key)?
            .ok_or_else(|| format!("{}.{key} is missing", self.path))
    }

    fn required_str(&mut self, key: &str) -> Result<String, String> {
        match self.take(key) {
            Some(Value::String(text)) => Ok(text),
            Some(other) => Err(format!(
                "{}.{key} should be a string, not {other}",
                self.path
            )),
            None => Err(format!("{}.{key} is missing", self.path)),
        }
    }

    fn expect_str(&mut self, key: &str, allowed: &[&str]) -> Result<(), String> {
        let value = self.required_str(key)?;
        if allowed.contains(&value.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "{}.{key} is {value:?}; the local rate limit pattern has {}",
                self.path,
                allowed.join(" or ")
            ))
        }
    }

    fn finish(self) -> Result<(), String> {
        let left: Vec<String> = self
            .map
            .into_iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, _)| format!("{}.{key}", self.path))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("no Plexus equivalent for {}", left.join(", ")))
        }
    }
}
