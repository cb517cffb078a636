use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

fn id(sa: &str) -> SpiffeId {
    SpiffeId {
        trust_domain: "cluster.local".into(),
        namespace: "shop".into(),
        service_account: sa.into(),
    }
}

fn root() -> CertifiedKey {
    generate_root("cluster.local", now(), 365 * DAY).expect("a root")
}

#[test]
fn a_root_is_a_ca_valid_for_its_ttl() {
    let root = root();
    let info = inspect("root", &root.cert_pem).expect("parses");
    assert!(info.is_ca);
    assert_eq!(info.not_before, now() - BACKDATE);
    assert_eq!(info.not_after, now() + 365 * DAY);
    assert_eq!(info.fingerprint.len(), 64);
    assert!(root.key_pem.contains("PRIVATE KEY"));
}

#[test]
fn a_workload_certificate_carries_its_spiffe_id_and_chains_to_the_root() {
    let root = root();
    let leaf = issue_workload(&root, &id("reviews"), now(), DAY).expect("issued");
    let info = inspect("leaf", &leaf.cert_pem).expect("parses");
    assert_eq!(
        info.uris,
        vec!["spiffe://cluster.local/ns/shop/sa/reviews".to_owned()]
    );
    assert!(!info.is_ca);
    assert_eq!(info.not_after, now() + DAY);
    verify_chain(&leaf.cert_pem, &root.cert_pem, now()).expect("chains to its root");
}

#[test]
fn a_leaf_does_not_chain_to_another_root() {
    let leaf = issue_workload(&root(), &id("reviews"), now(), DAY).expect("issued");
    let other =
        generate_root("cluster.local", now() + Duration::from_secs(1), 365 * DAY).expect("root");
    let error = verify_chain(&leaf.cert_pem, &other.cert_pem, now()).expect_err("foreign root");
    assert!(matches!(error, CaError::Untrusted(_)), "{error}");
}

#[test]
fn during_a_rotation_a_bundle_of_both_roots_trusts_old_and_new_leaves() {
    let old = root();
    let new =
        generate_root("cluster.local", now() + Duration::from_secs(60), 365 * DAY).expect("root");
    let bundle = format!("{}{}", new.cert_pem, old.cert_pem);
    let old_leaf = issue_workload(&old, &id("a"), now(), DAY).expect("issued");
    let new_leaf =
        issue_workload(&new, &id("a"), now() + Duration::from_secs(60), DAY).expect("issued");
    let later = now() + Duration::from_secs(120);
    verify_chain(&old_leaf.cert_pem, &bundle, later).expect("old leaf, both roots");
    verify_chain(&new_leaf.cert_pem, &bundle, later).expect("new leaf, both roots");
    assert!(verify_chain(&old_leaf.cert_pem, &new.cert_pem, later).is_err());
}

#[test]
fn expired_leaves_and_roots_are_not_trusted() {
    let root = root();
    let leaf = issue_workload(&root, &id("a"), now(), Duration::from_secs(120)).expect("issued");
    assert!(
        verify_chain(
            &leaf.cert_pem,
            &root.cert_pem,
            now() + Duration::from_secs(121)
        )
        .is_err()
    );
    let short_root = generate_root("cluster.local", now(), Duration::from_secs(60)).expect("root");
    let leaf = issue_workload(&short_root, &id("a"), now(), DAY).expect("issued");
    let error = verify_chain(
        &leaf.cert_pem,
        &short_root.cert_pem,
        now() + Duration::from_secs(61),
    )
    .expect_err("root expired");
    assert!(error.to_string().contains("expired"), "{error}");
}

#[test]
fn a_tampered_signature_is_not_trusted() {
    let root = root();
    let leaf = issue_workload(&root, &id("a"), now(), DAY).expect("issued");
    // Change one base64 character of the line before the last: signature bytes.
    let mut lines: Vec<String> = leaf.cert_pem.lines().map(str::to_owned).collect();
    let index = lines.len() - 3;
    let line = &mut lines[index];
    let middle = line.len() / 2;
    let flipped = if &line[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    line.replace_range(middle..=middle, flipped);
    let tampered = lines.join("\n");
    assert_ne!(tampered.trim(), leaf.cert_pem.trim());
    assert!(verify_chain(&tampered, &root.cert_pem, now()).is_err());
}

#[test]
fn server_certificates_name_the_service() {
    let names = vec![
        "plexus-webhook.plexus-system.svc".to_owned(),
        "plexus-webhook.plexus-system.svc.cluster.local".to_owned(),
    ];
    let root = root();
    let cert = issue_server(&root, &names, now(), DAY).expect("issued");
    assert_eq!(
        inspect("server", &cert.cert_pem).expect("parses").dns_names,
        names
    );
    verify_chain(&cert.cert_pem, &root.cert_pem, now()).expect("chains");
}

#[test]
fn garbage_is_a_parse_error_and_an_empty_bundle_trusts_nothing() {
    assert!(matches!(
        inspect("x", "not a certificate"),
        Err(CaError::Parse { .. })
    ));
    let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(inspect("x", bad), Err(CaError::Parse { .. })));
    let leaf = issue_workload(&root(), &id("a"), now(), DAY).expect("issued");
    assert!(matches!(
        verify_chain(&leaf.cert_pem, "", now()),
        Err(CaError::Untrusted(_))
    ));
}

#[test]
fn private_keys_never_appear_in_debug_output() {
    let root = root();
    let shown = format!("{root:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(shown.contains("<redacted>"));
}
