//! The mesh's certificate authority: roots, workload (SPIFFE) and server
//! certificates, and the checks the operator makes on what it finds in
//! Secrets. Pure functions of their inputs (and the clock passed in).

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// Certificates are valid from a little before they are issued, so that a
/// peer whose clock is slightly behind accepts them.
pub const BACKDATE: Duration = Duration::from_secs(30);

/// What can go wrong issuing or checking certificates.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen refused to generate a key or certificate.
    #[error("generating {what}: {source}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A PEM text holds no certificate, or one that does not parse.
    #[error("{what} is not a PEM certificate: {reason}")]
    Parse {
        /// Which certificate.
        what: &'static str,
        /// Why it does not parse.
        reason: String,
    },
    /// A certificate does not chain to any root of the bundle.
    #[error("the certificate does not chain to any root of the trust bundle: {0}")]
    Untrusted(String),
    /// A lifetime that cannot be represented.
    #[error("invalid lifetime {0:?}")]
    Lifetime(Duration),
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM. Never logged.
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A workload identity: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// The mesh's trust domain.
    pub trust_domain: String,
    /// Namespace of the ServiceAccount.
    pub namespace: String,
    /// Name of the ServiceAccount.
    pub service_account: String,
}

impl std::fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

fn generate<T>(what: &'static str, result: Result<T, rcgen::Error>) -> Result<T, CaError> {
    result.map_err(|source| CaError::Generate { what, source })
}

fn validity(params: &mut CertificateParams, now: SystemTime, ttl: Duration) -> Result<(), CaError> {
    let not_before = now.checked_sub(BACKDATE).unwrap_or(now);
    let not_after = now.checked_add(ttl).ok_or(CaError::Lifetime(ttl))?;
    params.not_before = OffsetDateTime::from(not_before);
    params.not_after = OffsetDateTime::from(not_after);
    Ok(())
}

/// A new self-signed root (ECDSA P-256) valid for `ttl` from `now`. Its name
/// carries the issue time, so that two roots in one bundle during a rotation
/// have different subjects.
pub fn generate_root(
    trust_domain: &str,
    now: SystemTime,
    ttl: Duration,
) -> Result<CertifiedKey, CaError> {
    let key = generate("a root key", KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256))?;
    let mut params = CertificateParams::default();
    let issued = OffsetDateTime::from(now).unix_timestamp();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Plexus");
    name.push(
        DnType::CommonName,
        format!("Plexus root CA {trust_domain} {issued}"),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now, ttl)?;
    let cert = generate("the root certificate", params.self_signed(&key))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn leaf(
    root: &CertifiedKey,
    common_name: String,
    subject_alt_names: Vec<SanType>,
    now: SystemTime,
    ttl: Duration,
) -> Result<CertifiedKey, CaError> {
    let root_key = generate("reading the root key", KeyPair::from_pem(&root.key_pem))?;
    let issuer = generate(
        "reading the root certificate",
        Issuer::from_ca_cert_pem(&root.cert_pem, root_key),
    )?;
    let key = generate("a key", KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.subject_alt_names = subject_alt_names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, ttl)?;
    let cert = generate("a certificate", params.signed_by(&key, &issuer))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A workload certificate for `id`, signed by `root`, valid for `ttl`.
pub fn issue_workload(
    root: &CertifiedKey,
    id: &SpiffeId,
    now: SystemTime,
    ttl: Duration,
) -> Result<CertifiedKey, CaError> {
    let uri = generate("the SPIFFE ID", id.to_string().try_into())?;
    leaf(
        root,
        format!("{}.{}", id.service_account, id.namespace),
        vec![SanType::URI(uri)],
        now,
        ttl,
    )
}

/// A TLS server certificate for `dns_names` (the webhook's Service names),
/// signed by `root`, valid for `ttl`.
pub fn issue_server(
    root: &CertifiedKey,
    dns_names: &[String],
    now: SystemTime,
    ttl: Duration,
) -> Result<CertifiedKey, CaError> {
    let sans = dns_names
        .iter()
        .map(|name| generate("a DNS name", name.clone().try_into()).map(SanType::DnsName))
        .collect::<Result<Vec<_>, _>>()?;
    let common_name = dns_names.first().cloned().unwrap_or_default();
    leaf(root, common_name, sans, now, ttl)
}

/// What the operator needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// URI SANs (SPIFFE IDs).
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
}

/// The certificates of a PEM text, as DER, in order.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, CaError> {
    let mut certs = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| CaError::Parse {
            what: "a PEM block",
            reason: e.to_string(),
        })?;
        if block.label == "CERTIFICATE" {
            certs.push(block.contents);
        }
    }
    Ok(certs)
}

fn parse<'a>(what: &'static str, der: &'a [u8]) -> Result<X509Certificate<'a>, CaError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| CaError::Parse {
            what,
            reason: e.to_string(),
        })
}

/// Facts of the first certificate of a PEM text.
pub fn inspect(what: &'static str, pem: &str) -> Result<CertInfo, CaError> {
    let certs = pem_certificates(pem)?;
    let der = certs.first().ok_or_else(|| CaError::Parse {
        what,
        reason: "no CERTIFICATE block".into(),
    })?;
    let cert = parse(what, der)?;
    let mut uris = Vec::new();
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Ok(CertInfo {
        not_before: SystemTime::from(validity.not_before.to_datetime()),
        not_after: SystemTime::from(validity.not_after.to_datetime()),
        uris,
        dns_names,
        is_ca: cert.is_ca(),
        fingerprint: fingerprint(der),
    })
}

/// SHA-256 of DER bytes, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How many intermediates a chain may hold.
const MAX_INTERMEDIATES: usize = 4;

/// Checks that the first certificate of `leaf_pem` is within its validity at
/// `now` and chains to a root of `bundle_pem` that is valid at `now`, through
/// the CA certificates that follow it in `leaf_pem` (intermediates, when the
/// mesh signs with an intermediate under an external root).
pub fn verify_chain(leaf_pem: &str, bundle_pem: &str, now: SystemTime) -> Result<(), CaError> {
    let chain = pem_certificates(leaf_pem)?;
    let Some(leaf_der) = chain.first() else {
        return Err(CaError::Parse {
            what: "the leaf",
            reason: "no CERTIFICATE block".into(),
        });
    };
    let at = x509_parser::time::ASN1Time::from(OffsetDateTime::from(now));
    let leaf = parse("the leaf", leaf_der)?;
    if !leaf.validity().is_valid_at(at) {
        return Err(CaError::Untrusted("the leaf is not valid now".into()));
    }
    let root_ders = pem_certificates(bundle_pem)?;
    let roots = root_ders
        .iter()
        .map(|der| parse("a root of the bundle", der))
        .collect::<Result<Vec<_>, _>>()?;
    if roots.is_empty() {
        return Err(CaError::Untrusted("the bundle holds no certificate".into()));
    }
    let intermediates = chain[1..]
        .iter()
        .map(|der| parse("an intermediate", der))
        .collect::<Result<Vec<_>, _>>()?;
    let signed_by = |child: &X509Certificate<'_>, issuer: &X509Certificate<'_>| {
        issuer.subject() == child.issuer()
            && issuer.validity().is_valid_at(at)
            && child.verify_signature(Some(issuer.public_key())).is_ok()
    };
    let mut current = leaf;
    for _ in 0..=MAX_INTERMEDIATES {
        if roots.iter().any(|root| signed_by(&current, root)) {
            return Ok(());
        }
        match intermediates
            .iter()
            .find(|ca| ca.is_ca() && signed_by(&current, ca))
        {
            Some(intermediate) => current = intermediate.clone(),
            None => break,
        }
    }
    let expired = roots
        .iter()
        .chain(&intermediates)
        .any(|ca| ca.subject() == current.issuer() && !ca.validity().is_valid_at(at));
    let reason = if expired {
        format!(
            "its issuer {} has expired or is not yet valid",
            current.issuer()
        )
    } else {
        format!("no root or intermediate of {} signed it", current.issuer())
    };
    Err(CaError::Untrusted(reason))
}

#[cfg(test)]
mod tests;
