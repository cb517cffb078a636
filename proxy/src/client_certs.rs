//! Client certificates for MUTUAL origination: a DestinationRule's
//! `credentialName` Secret (in the client's namespace) with `tls.crt` and
//! `tls.key` (or `cert` and `key`).
//!
//! Least privilege: nobody copies the key anywhere. The proxy reads the
//! Secret itself, through the API, as its pod's ServiceAccount, which may
//! read it only if the user granted that (a Role naming the Secret: `get`,
//! `list` and `watch`). A proxy whose account may not read it fails closed,
//! saying so. The operator sees only the Secret's CA (`ca.crt`), which is
//! public, and compiles it into the configuration as for SIMPLE.
//!
//! The table of each configuration says which names it wants (`want`); the
//! API watch (`watch::client_certificates`) follows each of them. A Secret
//! update that does not parse is rejected and the last good certificate
//! stays in force; a deleted Secret, or one never readable, refuses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;

/// The Secret keys of the certificate chain and of its key, in the order
/// they are looked for (`kubernetes.io/tls` first, then Istio's generic).
const CERT_KEYS: [&str; 2] = ["tls.crt", "cert"];
const KEY_KEYS: [&str; 2] = ["tls.key", "key"];

#[derive(Clone)]
enum Held {
    Loaded(Arc<CertifiedKey>),
    Refused(String),
}

/// The client certificates this proxy holds, by Secret name, and the names
/// its configuration wants.
pub struct ClientCertificates {
    held: RwLock<BTreeMap<String, Held>>,
    wanted: tokio::sync::watch::Sender<BTreeSet<String>>,
}

impl Default for ClientCertificates {
    fn default() -> Self {
        Self {
            held: RwLock::default(),
            wanted: tokio::sync::watch::Sender::new(BTreeSet::new()),
        }
    }
}

impl std::fmt::Debug for ClientCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self
            .held
            .read()
            .map(|h| h.keys().cloned().collect::<Vec<_>>());
        f.debug_struct("ClientCertificates")
            .field("held", &held.unwrap_or_default())
            .finish_non_exhaustive()
    }
}

impl ClientCertificates {
    /// The Secrets the configuration in force names for MUTUAL; the
    /// certificates of the others are dropped.
    pub fn want(&self, names: BTreeSet<String>) {
        if let Ok(mut held) = self.held.write() {
            held.retain(|name, _| names.contains(name));
        }
        self.wanted.send_if_modified(|current| {
            let changed = *current != names;
            *current = names;
            changed
        });
    }

    /// Follows what [`want`](Self::want) is given.
    pub fn wanted(&self) -> tokio::sync::watch::Receiver<BTreeSet<String>> {
        self.wanted.subscribe()
    }

    /// The certificate and key of Secret `name`; why not, when there is none.
    pub fn get(&self, name: &str) -> Result<Arc<CertifiedKey>, String> {
        match self.held.read().ok().and_then(|h| h.get(name).cloned()) {
            Some(Held::Loaded(key)) => Ok(key),
            Some(Held::Refused(why)) => Err(why),
            None => Err(format!(
                "the client certificate of Secret {name:?} is not loaded: the proxy reads it \
                 through the API as its pod's ServiceAccount (none answered yet)"
            )),
        }
    }

    /// Takes Secret `name`'s data (from `origin`): a parseable certificate
    /// and matching key replace the one in force; anything else is
    /// rejected, and the last good one stays.
    pub fn apply(&self, name: &str, data: &BTreeMap<String, Vec<u8>>, origin: &str) {
        match parse(data) {
            Ok(key) => {
                tracing::info!(secret = name, origin, "client certificate loaded");
                self.set(name, Held::Loaded(Arc::new(key)));
            }
            Err(why) => {
                let why = format!("Secret {name:?}: {why}");
                tracing::error!(error = %why, origin,
                    "client certificate rejected; the last good one stays in force");
                self.refuse_unless_loaded(name, why);
            }
        }
    }

    /// Secret `name` is gone (deleted, or there is none: `why`): its
    /// certificate is no longer used.
    pub fn gone(&self, name: &str, why: String) {
        tracing::warn!(secret = name, why, "no client certificate");
        self.set(name, Held::Refused(why));
    }

    /// Secret `name` cannot be read (`why`): refused until it can, unless a
    /// certificate read earlier is in force.
    pub fn refuse_unless_loaded(&self, name: &str, why: String) {
        if let Ok(mut held) = self.held.write()
            && !matches!(held.get(name), Some(Held::Loaded(_)))
            && self.wanted.borrow().contains(name)
        {
            held.insert(name.to_owned(), Held::Refused(why));
        }
    }

    fn set(&self, name: &str, value: Held) {
        if let Ok(mut held) = self.held.write()
            && self.wanted.borrow().contains(name)
        {
            held.insert(name.to_owned(), value);
        }
    }

    /// What a TLS handshake presents for Secret `name`.
    pub fn resolver(self: &Arc<Self>, name: &str) -> Arc<dyn ResolvesClientCert> {
        Arc::new(FromSecret {
            name: name.to_owned(),
            certificates: self.clone(),
        })
    }
}

/// The certificate of a Secret's data, with its key.
fn parse(data: &BTreeMap<String, Vec<u8>>) -> Result<CertifiedKey, String> {
    let find = |keys: [&'static str; 2]| {
        keys.into_iter()
            .find_map(|k| data.get(k).map(|v| (k, v.as_slice())))
            .ok_or_else(|| format!("holds neither {} nor {}", keys[0], keys[1]))
    };
    let (cert_key, cert) = find(CERT_KEYS)?;
    let (key_key, key) = find(KEY_KEYS)?;
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert_key}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{cert_key} holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("{key_key}: {e}"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("{key_key}: {e}"))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| format!("{key_key} does not belong to {cert_key}: {e}"))?;
    Ok(certified)
}

/// Presents, at each handshake, the certificate in force for one Secret:
/// a rotated Secret is used from the next connection on.
#[derive(Debug)]
struct FromSecret {
    name: String,
    certificates: Arc<ClientCertificates>,
}

impl ResolvesClientCert for FromSecret {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.certificates.get(&self.name).ok()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_operator::ca::{generate_root, issue_server};
    use std::time::{Duration, SystemTime};

    const DAY: Duration = Duration::from_secs(86_400);

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    fn wanting(names: &[&str]) -> Arc<ClientCertificates> {
        let certificates = Arc::new(ClientCertificates::default());
        certificates.want(names.iter().map(|n| (*n).to_owned()).collect());
        certificates
    }

    #[test]
    fn a_secret_loads_and_a_bad_update_keeps_the_last_good_one() {
        let now = SystemTime::now();
        let root = generate_root("client.test", now, DAY).expect("a CA");
        let first = issue_server(&root, &["one.test".into()], now, DAY).expect("a leaf");
        let second = issue_server(&root, &["two.test".into()], now, DAY).expect("a leaf");
        let certificates = wanting(&["client", "generic"]);

        certificates.apply(
            "client",
            &data(&[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)]),
            "test",
        );
        let loaded = certificates.get("client").expect("loaded");
        // Istio's generic keys are read too.
        certificates.apply(
            "generic",
            &data(&[("cert", &second.cert_pem), ("key", &second.key_pem)]),
            "test",
        );
        assert!(certificates.get("generic").is_ok());

        // Garbage, a key of another certificate, a missing key: rejected,
        // and the first certificate stays in force.
        for bad in [
            data(&[("tls.crt", "garbage"), ("tls.key", &first.key_pem)]),
            data(&[("tls.crt", &first.cert_pem), ("tls.key", &second.key_pem)]),
            data(&[("tls.crt", &first.cert_pem)]),
        ] {
            certificates.apply("client", &bad, "test");
            let kept = certificates.get("client").expect("the last good one");
            assert_eq!(kept.cert, loaded.cert);
        }
        // A read failure does not unload it either; a deletion does.
        certificates.refuse_unless_loaded("client", "forbidden".into());
        assert!(certificates.get("client").is_ok());
        certificates.gone("client", "Secret \"client\" was deleted".into());
        let why = certificates.get("client").expect_err("deleted");
        assert!(why.contains("deleted"), "{why}");
    }

    #[test]
    fn a_bad_or_unreadable_secret_refuses_with_the_reason() {
        let now = SystemTime::now();
        let root = generate_root("client.test", now, DAY).expect("a CA");
        let leaf = issue_server(&root, &["one.test".into()], now, DAY).expect("a leaf");
        let other = issue_server(&root, &["two.test".into()], now, DAY).expect("a leaf");
        let certificates = wanting(&["absent", "forbidden", "mismatched", "empty"]);

        let why = certificates.get("absent").expect_err("nothing read yet");
        assert!(why.contains("not loaded"), "{why}");
        certificates.refuse_unless_loaded("forbidden", "secrets is forbidden".into());
        assert_eq!(
            certificates.get("forbidden").expect_err("unreadable"),
            "secrets is forbidden"
        );
        certificates.apply(
            "mismatched",
            &data(&[("tls.crt", &leaf.cert_pem), ("tls.key", &other.key_pem)]),
            "test",
        );
        let why = certificates.get("mismatched").expect_err("mismatched");
        assert!(why.contains("does not belong to tls.crt"), "{why}");
        certificates.apply("empty", &data(&[("ca.crt", &root.cert_pem)]), "test");
        let why = certificates.get("empty").expect_err("no certificate");
        assert!(why.contains("neither tls.crt nor cert"), "{why}");
    }

    #[test]
    fn only_wanted_secrets_are_held() {
        let now = SystemTime::now();
        let root = generate_root("client.test", now, DAY).expect("a CA");
        let leaf = issue_server(&root, &["one.test".into()], now, DAY).expect("a leaf");
        let pair = data(&[("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)]);
        let certificates = wanting(&["kept", "dropped"]);
        let mut wanted = certificates.wanted();
        certificates.apply("kept", &pair, "test");
        certificates.apply("dropped", &pair, "test");
        certificates.apply("stranger", &pair, "test");
        assert!(certificates.get("stranger").is_err(), "never wanted");

        certificates.want(["kept".to_owned()].into());
        assert!(wanted.has_changed().expect("open"));
        assert_eq!(*wanted.borrow_and_update(), ["kept".to_owned()].into());
        assert!(certificates.get("kept").is_ok());
        assert!(certificates.get("dropped").is_err(), "no longer wanted");
        // The same names again: no change to follow.
        certificates.want(["kept".to_owned()].into());
        assert!(!wanted.has_changed().expect("open"));
    }
}
