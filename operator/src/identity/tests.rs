use super::*;
use crate::authority::{Progress, RotationReason, Step};

const DAY: Duration = Duration::from_secs(24 * 3600);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
const FRACTION: f64 = 2.0 / 3.0;

fn t(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000 + seconds)
}

fn id(sa: &str) -> Subject {
    Subject::Workload(SpiffeId {
        trust_domain: "cluster.local".into(),
        namespace: "shop".into(),
        service_account: sa.into(),
    })
}

fn authority() -> Authority {
    Authority::generate("cluster.local", t(0), YEAR).expect("generated")
}

#[test]
fn missing_then_issued_then_kept_until_renewal() {
    let authority = authority();
    assert_eq!(
        plan(None, &authority, &id("a"), FRACTION, t(0)),
        Plan::Issue(Reason::Missing)
    );
    let data = issue(&authority, &id("a"), DAY, t(0)).expect("issued");
    match plan(Some(&data), &authority, &id("a"), FRACTION, t(60)) {
        Plan::Keep { refresh_in } => {
            assert!(
                refresh_in > Duration::from_secs(15 * 3600) && refresh_in < DAY,
                "{refresh_in:?}"
            )
        }
        other => panic!("expected Keep, got {other:?}"),
    }
    assert_eq!(
        plan(Some(&data), &authority, &id("a"), FRACTION, t(17 * 3600)),
        Plan::Issue(Reason::DueForRenewal)
    );
}

#[test]
fn corruption_is_detected() {
    let authority = authority();
    let good = issue(&authority, &id("a"), DAY, t(0)).expect("issued");
    let mut garbage = good.clone();
    garbage.insert(TLS_CERT_KEY.into(), "garbage".into());
    assert!(matches!(
        plan(Some(&garbage), &authority, &id("a"), FRACTION, t(1)),
        Plan::Issue(Reason::Corrupt(_))
    ));

    let other = issue(&authority, &id("a"), DAY, t(0)).expect("issued");
    let mut mismatched = good.clone();
    mismatched.insert(TLS_KEY_KEY.into(), other[TLS_KEY_KEY].clone());
    assert_eq!(
        plan(Some(&mismatched), &authority, &id("a"), FRACTION, t(1)),
        Plan::Issue(Reason::Corrupt("tls.key does not match tls.crt".into()))
    );

    let mut keyless = good;
    keyless.remove(TLS_KEY_KEY);
    assert!(matches!(
        plan(Some(&keyless), &authority, &id("a"), FRACTION, t(1)),
        Plan::Issue(Reason::Corrupt(_))
    ));
}

#[test]
fn server_certificates_are_checked_against_their_dns_names() {
    let authority = authority();
    let names = Subject::Server(vec!["plexus-webhook.plexus-system.svc".into()]);
    let data = issue(&authority, &names, DAY, t(0)).expect("issued");
    assert!(matches!(
        plan(Some(&data), &authority, &names, FRACTION, t(1)),
        Plan::Keep { .. }
    ));
    let renamed = Subject::Server(vec!["other.plexus-system.svc".into()]);
    assert!(matches!(
        plan(Some(&data), &authority, &renamed, FRACTION, t(1)),
        Plan::Issue(Reason::WrongIdentity(_))
    ));
}

#[test]
fn a_certificate_of_another_identity_is_replaced() {
    let authority = authority();
    let data = issue(&authority, &id("a"), DAY, t(0)).expect("issued");
    assert!(matches!(
        plan(Some(&data), &authority, &id("b"), FRACTION, t(1)),
        Plan::Issue(Reason::WrongIdentity(_))
    ));
}

/// Walks a whole rotation over three identities. At every step, every
/// Secret's leaf verifies against the bundle in the same Secret.
#[test]
fn a_rotation_never_leaves_a_leaf_its_bundle_cannot_verify() {
    let ids = [id("a"), id("b"), id("c")];
    let mut authority = authority();
    let mut secrets: Vec<BTreeMap<String, String>> = ids
        .iter()
        .map(|id| issue(&authority, id, DAY, t(0)).expect("issued"))
        .collect();
    let mut now = t(10);

    let check = |secrets: &[BTreeMap<String, String>], now| {
        for secret in secrets {
            ca::verify_chain(&secret[TLS_CERT_KEY], &secret[CA_CERT_KEY], now)
                .expect("leaf verifies against its own bundle");
        }
    };
    // One reconcile pass over every identity, as the controller does.
    let reconcile = |authority: &Authority, secrets: &mut Vec<BTreeMap<String, String>>, now| {
        for (secret, id) in secrets.iter_mut().zip(&ids) {
            match plan(Some(secret), authority, id, FRACTION, now) {
                Plan::Keep { .. } => {}
                Plan::RefreshBundle { .. } => {
                    secret.insert(CA_CERT_KEY.into(), authority.bundle_pem());
                }
                Plan::Issue(_) => *secret = issue(authority, id, DAY, now).expect("issued"),
            }
        }
    };
    let progress = |authority: &Authority, secrets: &[BTreeMap<String, String>], now| Progress {
        identities: secrets.len(),
        with_current_bundle: secrets
            .iter()
            .filter(|s| s[CA_CERT_KEY] == authority.bundle_pem())
            .count(),
        signed_by_signing_root: secrets
            .iter()
            .filter(|s| {
                ca::verify_chain(&s[TLS_CERT_KEY], &authority.signing.cert_pem, now).is_ok()
            })
            .count(),
    };

    check(&secrets, now);
    let old_root = authority.signing.cert_pem.clone();
    let mut steps = Vec::new();
    for _ in 0..10 {
        now += Duration::from_secs(1);
        let step = authority
            .next_step(
                FRACTION,
                Some("drill"),
                progress(&authority, &secrets, now),
                now,
            )
            .expect("step");
        authority = match &step {
            Step::Wait => authority,
            Step::StartRotation(reason) => authority
                .start_rotation("cluster.local", YEAR, reason, now)
                .expect("start"),
            Step::Promote => authority.promote().expect("promote"),
            Step::Finish => authority.finish(),
        };
        steps.push(step);
        check(&secrets, now);
        reconcile(&authority, &mut secrets, now);
        check(&secrets, now);
    }
    assert_eq!(
        steps[..3],
        [
            Step::StartRotation(RotationReason::Forced("drill".into())),
            Step::Promote,
            Step::Finish
        ]
    );
    assert_ne!(authority.signing.cert_pem, old_root);
    assert!(
        secrets
            .iter()
            .all(|s| s[CA_CERT_KEY] == authority.signing.cert_pem),
        "old root left every bundle"
    );
}
