use serde_json::json;

use super::*;

fn only_problem(input: &str) -> Untranslatable {
    let conversion = convert(input).expect("the input holds documents");
    assert!(
        conversion.converted.is_empty(),
        "{:?}",
        conversion.converted
    );
    assert_eq!(conversion.untranslatable.len(), 1);
    conversion.untranslatable[0].clone()
}

fn only_converted(input: &str) -> Converted {
    let conversion = convert(input).expect("the input holds documents");
    assert!(
        conversion.untranslatable.is_empty(),
        "{:?}",
        conversion.untranslatable
    );
    assert_eq!(conversion.converted.len(), 1);
    conversion.converted[0].clone()
}

#[test]
fn empty_input_is_an_error() {
    assert_eq!(convert(""), Err(InputError::Empty));
    assert_eq!(convert("# nothing here\n---\n"), Err(InputError::Empty));
}

#[test]
fn garbage_is_reported_with_its_position() {
    let problem = only_problem("kind: [unclosed");
    assert_eq!(problem.origin.position.document, 1);
    assert_eq!(problem.origin.kind, "?");
    assert!(
        problem.reason.starts_with("not valid YAML"),
        "{}",
        problem.reason
    );

    let problem = only_problem("just a sentence");
    assert!(
        problem.reason.contains("not a Kubernetes object"),
        "{}",
        problem.reason
    );

    let problem = only_problem("apiVersion: v1\nmetadata: {name: x}\n");
    assert!(
        problem.reason.contains("kind is missing"),
        "{}",
        problem.reason
    );
}

#[test]
fn unknown_groups_are_named() {
    let problem = only_problem("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n");
    assert_eq!(problem.origin.kind, "Widget");
    assert_eq!(problem.origin.name, "w");
    assert!(
        problem
            .reason
            .contains(r#"unknown API group "example.com""#),
        "{}",
        problem.reason
    );
}

#[test]
fn kinds_without_an_equivalent_say_why() {
    let operator = only_problem(
        "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: i}\n",
    );
    assert!(
        operator.reason.contains("Helm chart"),
        "{}",
        operator.reason
    );

    let sidecar = only_problem(
        "apiVersion: networking.istio.io/v1beta1\nkind: Sidecar\nmetadata: {name: s}\n",
    );
    assert!(
        sidecar.reason.contains("Istio's Sidecar"),
        "{}",
        sidecar.reason
    );

    let server =
        only_problem("apiVersion: policy.linkerd.io/v1beta1\nkind: Server\nmetadata: {name: s}\n");
    assert!(
        server.reason.contains("no Plexus equivalent"),
        "{}",
        server.reason
    );
}

#[test]
fn a_field_plexus_does_not_model_fails_the_document_by_path() {
    let problem = only_problem(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\n\
         spec:\n  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    mystery: 1\n",
    );
    assert!(
        problem
            .reason
            .contains("spec.http[0].mystery (1) is not understood"),
        "{}",
        problem.reason
    );
}

#[test]
fn a_wrongly_typed_field_is_reported_by_path() {
    let problem = only_problem(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\n\
         spec:\n  http:\n  - retries: {attempts: three}\n",
    );
    assert!(
        problem
            .reason
            .starts_with("spec.http[0].retries.attempts: invalid type"),
        "{}",
        problem.reason
    );
}

#[test]
fn every_istio_version_converts_and_metadata_is_kept() {
    for version in ["v1alpha3", "v1beta1", "v1"] {
        let converted = only_converted(&format!(
            "apiVersion: networking.istio.io/{version}\nkind: DestinationRule\n\
             metadata: {{name: r, namespace: shop, labels: {{team: a}}, annotations: {{note: b}}}}\n\
             spec: {{host: r}}\n"
        ));
        assert_eq!(converted.object["apiVersion"], "plexus.dev/v1alpha1");
        assert_eq!(converted.object["kind"], "DestinationRule");
        assert_eq!(
            converted.object["metadata"],
            json!({"name": "r", "namespace": "shop", "labels": {"team": "a"}, "annotations": {"note": "b"}})
        );
    }
}

#[test]
fn server_set_fields_are_left_out_with_a_note() {
    let converted = only_converted(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata:\n  name: default\n  uid: 1234\n  resourceVersion: '99'\n  generation: 3\n\
         \x20 annotations: {kubectl.kubernetes.io/last-applied-configuration: '{}'}\n\
         spec: {mtls: {mode: STRICT}}\nstatus: {validationMessages: []}\n",
    );
    assert_eq!(converted.object["metadata"], json!({"name": "default"}));
    assert!(converted.object.get("status").is_none());
    assert_eq!(converted.notes.len(), 1);
    assert!(
        converted.notes[0].contains("metadata.uid"),
        "{:?}",
        converted.notes
    );
    assert!(
        converted.notes[0].contains("status"),
        "{:?}",
        converted.notes
    );
}

#[test]
fn integer_port_keys_become_strings() {
    let converted = only_converted(
        "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: p}\n\
         spec:\n  selector: {matchLabels: {app: db}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    5432: {mode: DISABLE}\n",
    );
    assert_eq!(
        converted.object["spec"]["portLevelMtls"]["5432"]["mode"],
        "DISABLE"
    );
}

#[test]
fn lists_are_expanded_item_by_item() {
    let conversion = convert(
        "apiVersion: v1\nkind: List\nitems:\n\
         - {apiVersion: split.smi-spec.io/v1alpha2, kind: TrafficSplit, metadata: {name: a}, spec: {service: s, backends: [{service: s1, weight: 1}]}}\n\
         - {apiVersion: example.com/v1, kind: Thing, metadata: {name: b}}\n",
    )
    .expect("documents");
    assert_eq!(conversion.converted.len(), 1);
    assert_eq!(conversion.untranslatable.len(), 1);
    assert_eq!(
        conversion.untranslatable[0].origin.to_string(),
        "document 1, item 2 (Thing b)"
    );
}

#[test]
fn plexus_documents_pass_through_validated() {
    let converted = only_converted(
        "apiVersion: plexus.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {name: r}\n\
         spec: {tokenBucket: {maxTokens: 10, fillInterval: 1s}, perSourceIdentity: true}\n",
    );
    assert_eq!(converted.object["spec"]["tokenBucket"]["maxTokens"], 10);
    let problem =
        only_problem("apiVersion: plexus.dev/v1alpha1\nkind: Sidecar\nmetadata: {name: s}\n");
    assert!(
        problem.reason.contains("not a kind of plexus.dev"),
        "{}",
        problem.reason
    );
}

#[test]
fn documents_keep_their_order_and_positions() {
    let conversion = convert(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: one}\nspec: {hosts: [a]}\n\
         ---\nbogus: [\n",
    )
    .expect("documents");
    assert_eq!(
        conversion.converted[0].origin.to_string(),
        "document 1 (VirtualService one)"
    );
    assert_eq!(conversion.untranslatable[0].origin.position.document, 2);
}

const LOCAL_RATE_LIMIT: &str = r#"
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-local-ratelimit-svc
  namespace: shop
spec:
  workloadSelector:
    labels:
      app: productpage
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: SIDECAR_INBOUND
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: http_local_rate_limiter
              token_bucket:
                max_tokens: 10
                tokens_per_fill: 10
                fill_interval: 60s
              filter_enabled:
                runtime_key: local_rate_limit_enabled
                default_value:
                  numerator: 100
                  denominator: HUNDRED
              filter_enforced:
                runtime_key: local_rate_limit_enforced
                default_value:
                  numerator: 5000
                  denominator: TEN_THOUSAND
              response_headers_to_add:
                - append: false
                  header:
                    key: x-local-rate-limit
                    value: 'true'
"#;

#[test]
fn envoy_filter_local_rate_limit_becomes_a_rate_limit_policy() {
    let converted = only_converted(LOCAL_RATE_LIMIT);
    assert_eq!(
        converted.object,
        json!({
            "apiVersion": "plexus.dev/v1alpha1",
            "kind": "RateLimitPolicy",
            "metadata": { "name": "filter-local-ratelimit-svc", "namespace": "shop" },
            "spec": {
                "selector": { "matchLabels": { "app": "productpage" } },
                "tokenBucket": { "maxTokens": 10, "tokensPerFill": 10, "fillInterval": "60s" },
                "statPrefix": "http_local_rate_limiter",
                "enabledPercent": 100.0,
                "enforcedPercent": 50.0,
                "limitedResponseHeaders": { "set": { "x-local-rate-limit": "true" } }
            }
        })
    );
    assert_eq!(
        converted.notes.len(),
        2,
        "runtime keys are noted: {:?}",
        converted.notes
    );
}

#[test]
fn envoy_filter_direct_typed_config_and_listener_port() {
    let converted = only_converted(
        r#"
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: per-port}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener: {portNumber: 9080}
    patch:
      operation: INSERT_FIRST
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          stat_prefix: per_port
          status: {code: 503}
          token_bucket: {max_tokens: 5, fill_interval: 1s}
"#,
    );
    let spec = &converted.object["spec"];
    assert!(spec.get("tokenBucket").is_none());
    assert_eq!(spec["statusCode"], 503);
    assert_eq!(
        spec["routes"],
        json!([{ "name": "port-9080", "match": [{ "port": 9080 }],
                 "tokenBucket": { "maxTokens": 5, "fillInterval": "1s" } }])
    );
}

#[test]
fn envoy_filter_fields_without_an_equivalent_fail_by_path() {
    let input = LOCAL_RATE_LIMIT.replace(
        "              stat_prefix: http_local_rate_limiter\n",
        "              stat_prefix: http_local_rate_limiter\n              descriptors: [{entries: [{key: a, value: b}]}]\n",
    );
    let problem = only_problem(&input);
    assert!(
        problem
            .reason
            .contains("spec.configPatches[0].patch.value.typed_config.value.descriptors"),
        "{}",
        problem.reason
    );
}

#[test]
fn envoy_filters_that_are_not_sidecar_inbound_local_rate_limits_say_why() {
    let outbound = only_problem(&LOCAL_RATE_LIMIT.replace("SIDECAR_INBOUND", "SIDECAR_OUTBOUND"));
    assert!(
        outbound.reason.contains("SIDECAR_OUTBOUND"),
        "{}",
        outbound.reason
    );

    let lua = only_problem(&LOCAL_RATE_LIMIT.replace(
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.lua",
    ));
    assert!(
        lua.reason.contains("envoy.filters.http.lua"),
        "{}",
        lua.reason
    );

    let two = only_problem(&format!(
        "{LOCAL_RATE_LIMIT}    - applyTo: HTTP_ROUTE\n      patch: {{operation: MERGE, value: {{}}}}\n"
    ));
    assert!(two.reason.contains("2 configPatches"), "{}", two.reason);
}
