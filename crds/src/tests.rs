use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};

use super::*;

fn root_schema(crd: &CustomResourceDefinition) -> &JSONSchemaProps {
    crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("every CRD has a schema")
}

/// Visits every schema node with its path and whether it is an object
/// property (a field a user writes).
fn visit<'a>(
    node: &'a JSONSchemaProps,
    path: &str,
    is_field: bool,
    f: &mut dyn FnMut(&str, &'a JSONSchemaProps, bool),
) {
    f(path, node, is_field);
    for (name, child) in node.properties.iter().flatten() {
        visit(child, &format!("{path}.{name}"), true, f);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &node.items {
        visit(items, &format!("{path}[]"), false, f);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(values)) =
        &node.additional_properties
    {
        visit(values, &format!("{path}{{}}"), false, f);
    }
}

#[test]
fn kinds_lists_every_crd_in_order() {
    let kinds: Vec<String> = crds().iter().map(|c| c.spec.names.kind.clone()).collect();
    assert_eq!(kinds, KINDS);
    for crd in crds() {
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.versions.len(), 1);
        assert_eq!(crd.spec.versions[0].name, VERSION);
        let expected_scope = if crd.spec.names.kind == "Mesh" {
            "Cluster"
        } else {
            "Namespaced"
        };
        assert_eq!(crd.spec.scope, expected_scope, "{}", crd.spec.names.kind);
    }
}

#[test]
fn every_field_has_a_description() {
    let mut missing = Vec::new();
    let mut fields = 0;
    for crd in crds() {
        let kind = crd.spec.names.kind.clone();
        visit(
            root_schema(&crd),
            &kind,
            true,
            &mut |path, node, is_field| {
                if is_field {
                    fields += 1;
                    if node
                        .description
                        .as_deref()
                        .is_none_or(|d| d.trim().is_empty())
                    {
                        missing.push(path.to_owned());
                    }
                }
            },
        );
    }
    assert!(
        fields > 500,
        "only {fields} fields: did the walk reach the specs?"
    );
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
}

#[test]
fn every_kind_has_status_subresource_and_useful_columns() {
    for crd in crds() {
        let kind = &crd.spec.names.kind;
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{kind} has no status subresource"
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns.last(), Some(&"Age"), "{kind}: {columns:?}");
        let status_column = if kind == "Mesh" { "Ready" } else { "Accepted" };
        assert!(columns.contains(&status_column), "{kind}: {columns:?}");
        let status = &root_schema(&crd).properties.as_ref().expect("properties")["status"];
        let status = status.properties.as_ref().expect("status has properties");
        assert!(status.contains_key("observedGeneration"), "{kind}");
        assert!(status.contains_key("conditions"), "{kind}");
        assert!(
            crd.spec
                .names
                .categories
                .iter()
                .flatten()
                .any(|c| c == "plexus")
        );
    }
}

/// Kubernetes requires structural schemas (1.20 included): every node has a
/// type, unless it is int-or-string or keeps unknown fields; no `$ref`; no
/// properties hidden in `anyOf`/`oneOf`/`allOf`. CEL rules (1.25+) and
/// selectable fields (1.30+) would be refused by 1.20.
#[test]
fn schemas_are_structural_and_valid_on_kubernetes_1_20() {
    let mut problems = Vec::new();
    for crd in crds() {
        let kind = crd.spec.names.kind.clone();
        let version = &crd.spec.versions[0];
        if version.selectable_fields.is_some() {
            problems.push(format!("{kind}: selectableFields needs Kubernetes 1.30"));
        }
        visit(root_schema(&crd), &kind, true, &mut |path, node, _| {
            let typed = node.type_.is_some()
                || node.x_kubernetes_int_or_string == Some(true)
                || node.x_kubernetes_preserve_unknown_fields == Some(true);
            if !typed {
                problems.push(format!("{path}: no type"));
            }
            if node.ref_path.is_some() {
                problems.push(format!("{path}: $ref"));
            }
            for branches in [&node.any_of, &node.one_of, &node.all_of]
                .into_iter()
                .flatten()
            {
                if branches
                    .iter()
                    .any(|b| b.properties.is_some() || b.type_.is_some())
                {
                    problems.push(format!(
                        "{path}: types or properties inside anyOf/oneOf/allOf"
                    ));
                }
            }
            if node.x_kubernetes_validations.is_some() {
                problems.push(format!("{path}: CEL validation needs Kubernetes 1.25"));
            }
            if node.type_.as_deref() == Some("object")
                && node.properties.is_some()
                && node.additional_properties.is_some()
            {
                problems.push(format!("{path}: both properties and additionalProperties"));
            }
        });
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn manifests_are_named_after_group_and_plural_and_marked_generated() {
    let manifests = manifests().expect("renders");
    assert_eq!(manifests.len(), KINDS.len());
    assert!(
        manifests
            .iter()
            .any(|m| m.file_name == "plexus.dev_virtualservices.yaml")
    );
    for manifest in &manifests {
        assert!(manifest.yaml.starts_with(GENERATED_HEADER));
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&manifest.yaml).expect("the YAML reads back as a CRD");
        assert_eq!(
            crd.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(PART_OF_LABEL.0))
                .map(String::as_str),
            Some(PART_OF_LABEL.1)
        );
    }
}

#[test]
fn an_empty_mesh_gets_documented_defaults() {
    let mesh: Mesh = serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "Mesh",
        "metadata": { "name": mesh::MESH_NAME },
        "spec": {}
    }))
    .expect("an empty spec is valid");
    assert_eq!(mesh.spec.trust_domain, "cluster.local");
    assert_eq!(
        mesh.spec.certificates.workload_ttl.parse(),
        Ok(std::time::Duration::from_secs(24 * 3600))
    );
    assert!((mesh.spec.certificates.workload_renewal_fraction - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        mesh.spec.mtls.mode,
        peer_authentication::MtlsMode::Permissive
    );
    assert_eq!(
        mesh.spec.outbound_traffic_policy.mode,
        mesh::OutboundTrafficMode::AllowAny
    );
    assert_eq!(mesh.spec, mesh::MeshSpec::default());
}

#[test]
fn an_unknown_enum_value_is_kept_for_the_operator_to_report() {
    let pa: PeerAuthentication = serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "PeerAuthentication",
        "metadata": { "name": "default" },
        "spec": { "mtls": { "mode": "STRIKT" } }
    }))
    .expect("an unknown mode still deserializes");
    let mode = pa.spec.mtls.and_then(|m| m.mode).expect("mode is set");
    assert!(!mode.is_known());
    assert_eq!(mode.as_str(), "STRIKT");
}

#[test]
fn istio_field_names_round_trip() {
    // Names whose camelCase conversion is easy to get wrong.
    let dr: DestinationRule = serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": { "name": "r" },
        "spec": {
            "host": "r",
            "trafficPolicy": {
                "connectionPool": { "http": {
                    "http1MaxPendingRequests": 1, "http2MaxRequests": 2, "h2UpgradePolicy": "UPGRADE"
                } },
                "outlierDetection": { "consecutive5xxErrors": 3, "consecutiveErrors": 4 },
                "loadBalancer": { "consistentHash": { "httpCookie": { "name": "c", "ttl": "10s" } } },
                "retryBudget": { "percent": 25.0, "minRetryConcurrency": 5 }
            }
        }
    }))
    .expect("Istio names deserialize");
    let policy = dr.spec.traffic_policy.expect("trafficPolicy");
    let http = policy.connection_pool.and_then(|p| p.http).expect("http");
    assert_eq!(http.http1_max_pending_requests, Some(1));
    assert_eq!(http.http2_max_requests, Some(2));
    assert_eq!(
        http.h2_upgrade_policy,
        Some(destination_rule::H2UpgradePolicy::Upgrade)
    );
    let outlier = policy.outlier_detection.expect("outlierDetection");
    assert_eq!(outlier.consecutive_5xx_errors, Some(3));
    assert_eq!(outlier.consecutive_errors, Some(4));
    assert_eq!(
        policy.retry_budget.and_then(|b| b.min_retry_concurrency),
        Some(5)
    );
}
