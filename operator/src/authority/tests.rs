use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn t(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000 + seconds)
}

fn all(n: usize) -> Progress {
    Progress {
        identities: n,
        with_current_bundle: n,
        signed_by_signing_root: n,
    }
}

#[test]
fn a_new_authority_is_steady_and_round_trips_through_its_secret() {
    let authority = Authority::generate("cluster.local", t(0), YEAR).expect("generated");
    assert_eq!(authority.phase, Phase::Steady);
    assert_eq!(authority.bundle, vec![authority.signing.cert_pem.clone()]);
    let (data, annotations) = authority.to_secret();
    let read = Authority::from_secret(&data, &annotations).expect("reads back");
    assert_eq!(read, authority);
}

#[test]
fn a_root_rotates_when_due_or_forced_once_per_annotation_value() {
    let authority = Authority::generate("cluster.local", t(0), YEAR).expect("generated");
    let fraction = 2.0 / 3.0;
    assert_eq!(
        authority
            .next_step(fraction, None, all(3), t(0) + DAY)
            .expect("step"),
        Step::Wait
    );
    assert_eq!(
        authority
            .next_step(fraction, None, all(3), t(0) + YEAR.mul_f64(0.7))
            .expect("step"),
        Step::StartRotation(RotationReason::Due)
    );
    let forced = authority
        .next_step(fraction, Some("drill-1"), all(3), t(10))
        .expect("step");
    assert_eq!(
        forced,
        Step::StartRotation(RotationReason::Forced("drill-1".into()))
    );
    let rotating = authority
        .start_rotation(
            "cluster.local",
            YEAR,
            &RotationReason::Forced("drill-1".into()),
            t(10),
        )
        .expect("rotation");
    let done = rotating.promote().expect("promoted").finish();
    assert_eq!(
        done.next_step(fraction, Some("drill-1"), all(3), t(20))
            .expect("step"),
        Step::Wait,
        "the same annotation value does not rotate twice"
    );
}

#[test]
fn a_rotation_waits_for_every_identity_at_each_phase() {
    let old = Authority::generate("cluster.local", t(0), YEAR).expect("generated");
    let phase1 = old
        .start_rotation("cluster.local", YEAR, &RotationReason::Due, t(100))
        .expect("phase 1");
    assert_eq!(phase1.phase, Phase::TrustingNext);
    assert_eq!(phase1.signing, old.signing, "the old root still signs");
    assert_eq!(phase1.bundle.len(), 2);

    let behind = Progress {
        identities: 3,
        with_current_bundle: 2,
        signed_by_signing_root: 3,
    };
    assert_eq!(
        phase1.next_step(0.66, None, behind, t(101)).expect("step"),
        Step::Wait
    );
    assert_eq!(
        phase1.next_step(0.66, None, all(3), t(101)).expect("step"),
        Step::Promote
    );

    let phase2 = phase1.promote().expect("phase 2");
    assert_eq!(phase2.phase, Phase::SigningNext);
    assert_eq!(Some(phase2.signing.clone()), phase1.next);
    assert_eq!(
        phase2.bundle[0], phase2.signing.cert_pem,
        "signing root first"
    );
    assert_eq!(phase2.bundle.len(), 2);
    let unsigned = Progress {
        identities: 3,
        with_current_bundle: 3,
        signed_by_signing_root: 1,
    };
    assert_eq!(
        phase2
            .next_step(0.66, None, unsigned, t(102))
            .expect("step"),
        Step::Wait
    );
    assert_eq!(
        phase2.next_step(0.66, None, all(3), t(102)).expect("step"),
        Step::Finish
    );

    let steady = phase2.finish();
    assert_eq!(steady.phase, Phase::Steady);
    assert_eq!(steady.bundle, vec![steady.signing.cert_pem.clone()]);

    // Each phase survives a restart of the operator.
    for state in [&phase1, &phase2, &steady] {
        let (data, annotations) = state.to_secret();
        assert_eq!(
            &Authority::from_secret(&data, &annotations).expect("reads"),
            state
        );
    }
}

#[test]
fn with_no_identities_a_rotation_completes_at_once() {
    let old = Authority::generate("cluster.local", t(0), YEAR).expect("generated");
    let phase1 = old
        .start_rotation("cluster.local", YEAR, &RotationReason::Due, t(1))
        .expect("phase 1");
    assert_eq!(
        phase1.next_step(0.66, None, all(0), t(2)).expect("step"),
        Step::Promote
    );
}

#[test]
fn a_user_supplied_root_is_used_but_never_replaced() {
    let user = crate::ca::generate_root("example.org", t(0), YEAR).expect("root");
    let data = BTreeMap::from([
        ("tls.crt".to_owned(), user.cert_pem.clone()),
        ("tls.key".to_owned(), user.key_pem.clone()),
    ]);
    let authority = Authority::from_secret(&data, &BTreeMap::new()).expect("reads");
    assert!(!authority.generated);
    assert_eq!(authority.bundle, vec![user.cert_pem.clone()]);
    let error = authority
        .start_rotation(
            "cluster.local",
            YEAR,
            &RotationReason::Forced("x".into()),
            t(1),
        )
        .expect_err("not replaced");
    assert!(
        error.to_string().contains("supplied by the user"),
        "{error}"
    );
}

#[test]
fn a_broken_ca_secret_is_reported() {
    let empty = BTreeMap::new();
    assert!(Authority::from_secret(&empty, &empty).is_err());
    let garbage = BTreeMap::from([
        ("tls.crt".to_owned(), "garbage".to_owned()),
        ("tls.key".to_owned(), "garbage".to_owned()),
    ]);
    let error = Authority::from_secret(&garbage, &empty).expect_err("garbage");
    assert!(error.to_string().contains("tls.crt"), "{error}");
}

/// An intermediate under an external root: leaves carry the intermediate and
/// verify against the external root alone.
#[test]
fn a_user_supplied_intermediate_signs_leaves_that_chain_to_the_external_root() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        PKCS_ECDSA_P256_SHA256,
    };
    let external = crate::ca::generate_root("example.org", t(0), YEAR).expect("root");
    let issuer = Issuer::from_ca_cert_pem(
        &external.cert_pem,
        KeyPair::from_pem(&external.key_pem).expect("key"),
    )
    .expect("issuer");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "mesh intermediate");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time::OffsetDateTime::from(t(0));
    params.not_after = time::OffsetDateTime::from(t(0) + YEAR);
    let intermediate = params.signed_by(&key, &issuer).expect("intermediate");
    let data = BTreeMap::from([
        ("tls.crt".to_owned(), intermediate.pem()),
        ("tls.key".to_owned(), key.serialize_pem()),
        ("ca.crt".to_owned(), external.cert_pem.clone()),
    ]);
    let authority = Authority::from_secret(&data, &BTreeMap::new()).expect("reads");
    assert_eq!(authority.bundle, vec![external.cert_pem.clone()]);
    assert_eq!(authority.chain_pem(), intermediate.pem());

    let id = crate::identity::Subject::Workload(crate::ca::SpiffeId {
        trust_domain: "example.org".into(),
        namespace: "shop".into(),
        service_account: "a".into(),
    });
    let secret =
        crate::identity::issue(&authority, &id, Duration::from_secs(3600), t(10)).expect("issued");
    let chain = &secret["tls.crt"];
    assert_eq!(
        crate::ca::pem_certificates(chain).expect("pem").len(),
        2,
        "leaf and intermediate"
    );
    crate::ca::verify_chain(chain, &external.cert_pem, t(20)).expect("chains to the external root");
    assert!(
        matches!(
            crate::identity::plan(Some(&secret), &authority, &id, 2.0 / 3.0, t(20)),
            crate::identity::Plan::Keep { .. }
        ),
        "a good leaf under the intermediate is kept"
    );
    let leaf_only = crate::ca::issue_workload(
        &authority.signing,
        &crate::ca::SpiffeId {
            trust_domain: "example.org".into(),
            namespace: "shop".into(),
            service_account: "a".into(),
        },
        t(10),
        Duration::from_secs(3600),
    )
    .expect("issued");
    assert!(
        crate::ca::verify_chain(&leaf_only.cert_pem, &external.cert_pem, t(20)).is_err(),
        "without the intermediate there is no chain"
    );
}
