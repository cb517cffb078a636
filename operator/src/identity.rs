//! What to do with a certificate Secret the operator keeps (a
//! ServiceAccount's identity, or the webhook's serving certificate): a pure
//! decision from what the Secret holds, the authority and the clock.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use plexus_crds::keys::{CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY};

use crate::authority::{Authority, Phase};
use crate::ca::{self, SpiffeId};
use crate::timing;

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The Secret is good; look again after this long (its renewal point).
    Keep {
        /// Time until renewal.
        refresh_in: Duration,
    },
    /// Issue a new certificate (and write leaf, key and bundle together).
    Issue(Reason),
    /// The leaf is good but the bundle beside it is not the current one.
    RefreshBundle {
        /// Time until renewal of the leaf.
        refresh_in: Duration,
    },
}

/// Why a certificate is issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// There is no identity Secret.
    Missing,
    /// The Secret's content is unusable (garbage in `tls.crt`, a key that
    /// does not match, ...).
    Corrupt(String),
    /// The certificate names another identity (the trust domain changed).
    WrongIdentity(String),
    /// The certificate does not chain to the trust bundle, or not to the
    /// signing root while a rotation re-issues leaves.
    NotSignedByCurrentRoot,
    /// The certificate has passed its renewal point.
    DueForRenewal,
}

impl Reason {
    /// A short CamelCase reason, for Events and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Missing => "Missing",
            Reason::Corrupt(_) => "Corrupt",
            Reason::WrongIdentity(_) => "WrongIdentity",
            Reason::NotSignedByCurrentRoot => "RootRotated",
            Reason::DueForRenewal => "Renewal",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Missing => f.write_str("the identity Secret does not exist"),
            Reason::Corrupt(why) => write!(f, "the identity Secret is corrupt: {why}"),
            Reason::WrongIdentity(found) => write!(f, "the certificate is for {found}"),
            Reason::NotSignedByCurrentRoot => {
                f.write_str("the certificate is not signed by the current root")
            }
            Reason::DueForRenewal => f.write_str("the certificate is due for renewal"),
        }
    }
}

/// Whom a certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A workload: its SPIFFE ID is the only URI SAN.
    Workload(SpiffeId),
    /// A TLS server: these DNS names, in this order.
    Server(Vec<String>),
}

impl From<SpiffeId> for Subject {
    fn from(id: SpiffeId) -> Self {
        Subject::Workload(id)
    }
}

impl Subject {
    /// Whether the certificate names exactly this subject; otherwise what it names.
    fn check(&self, info: &ca::CertInfo) -> Result<(), String> {
        match self {
            Subject::Workload(id) if info.uris == [id.to_string()] => Ok(()),
            Subject::Server(names) if info.dns_names == *names => Ok(()),
            Subject::Workload(_) => Err(info.uris.join(", ")),
            Subject::Server(_) => Err(info.dns_names.join(", ")),
        }
    }
}

/// Decides what to do with the Secret of `subject`, whose string data is
/// `data` (`None`: no Secret).
pub fn plan(
    data: Option<&BTreeMap<String, String>>,
    authority: &Authority,
    subject: &Subject,
    renewal_fraction: f64,
    now: SystemTime,
) -> Plan {
    let Some(data) = data else {
        return Plan::Issue(Reason::Missing);
    };
    let corrupt = |why: String| Plan::Issue(Reason::Corrupt(why));
    let Some(cert) = data.get(TLS_CERT_KEY) else {
        return corrupt("tls.crt is missing".into());
    };
    let Some(key) = data.get(TLS_KEY_KEY) else {
        return corrupt("tls.key is missing".into());
    };
    let info = match ca::inspect(TLS_CERT_KEY, cert) {
        Ok(info) => info,
        Err(error) => return corrupt(error.to_string()),
    };
    match key_matches(cert, key) {
        Ok(true) => {}
        Ok(false) => return corrupt("tls.key does not match tls.crt".into()),
        Err(why) => return corrupt(why),
    }
    if let Err(found) = subject.check(&info) {
        return Plan::Issue(Reason::WrongIdentity(found));
    }
    if ca::verify_chain(cert, &authority.bundle_pem(), now).is_err() {
        return Plan::Issue(Reason::NotSignedByCurrentRoot);
    }
    // While new leaves are being issued (phase 2), and in steady state,
    // every leaf must come from the signing root.
    let must_be_signed_by_signing_root =
        matches!(authority.phase, Phase::SigningNext | Phase::Steady);
    if must_be_signed_by_signing_root
        && ca::verify_chain(cert, &authority.signing.cert_pem, now).is_err()
    {
        return Plan::Issue(Reason::NotSignedByCurrentRoot);
    }
    if timing::needs_rotation(info.not_before, info.not_after, renewal_fraction, now) {
        return Plan::Issue(Reason::DueForRenewal);
    }
    let refresh_in = timing::refresh_in(info.not_before, info.not_after, renewal_fraction, now);
    if data.get(CA_CERT_KEY) != Some(&authority.bundle_pem()) {
        return Plan::RefreshBundle { refresh_in };
    }
    Plan::Keep { refresh_in }
}

/// Whether the private key belongs to the certificate's public key.
fn key_matches(cert_pem: &str, key_pem: &str) -> Result<bool, String> {
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| format!("tls.key: {e}"))?;
    let der = ca::pem_certificates(cert_pem)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("tls.crt holds no certificate")?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| format!("tls.crt: {e}"))?;
    Ok(cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
}

/// The Secret data for a new certificate of `subject`.
pub fn issue(
    authority: &Authority,
    subject: &Subject,
    ttl: Duration,
    now: SystemTime,
) -> Result<BTreeMap<String, String>, ca::CaError> {
    let leaf = match subject {
        Subject::Workload(id) => ca::issue_workload(&authority.signing, id, now, ttl)?,
        Subject::Server(names) => ca::issue_server(&authority.signing, names, now, ttl)?,
    };
    Ok(BTreeMap::from([
        (
            TLS_CERT_KEY.to_owned(),
            format!("{}{}", leaf.cert_pem, authority.chain_pem()),
        ),
        (TLS_KEY_KEY.to_owned(), leaf.key_pem),
        (CA_CERT_KEY.to_owned(), authority.bundle_pem()),
    ]))
}

#[cfg(test)]
mod tests;
