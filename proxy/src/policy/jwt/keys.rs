//! The keys of a JSON Web Key Set the proxy can verify with, each with the
//! algorithms its type allows: a token's `alg` must be one of them (an
//! RSA key never verifies an HMAC signature: no algorithm confusion).

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

pub(super) struct Key {
    pub kid: Option<String>,
    pub alg: Option<KeyAlgorithm>,
    /// The algorithms this key can verify (by its type and curve).
    pub algorithms: &'static [Algorithm],
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// The keys of a JWKS this proxy can verify with; the others are skipped
/// (encryption keys, curves `jsonwebtoken` does not verify).
pub(super) fn keys(jwks: &str, issuer: &str) -> Vec<Key> {
    let Ok(set) = serde_json::from_str::<Value>(jwks) else {
        tracing::warn!(%issuer, "the key set is not JSON: every token of the issuer is refused");
        return Vec::new();
    };
    let list = set.get("keys").and_then(Value::as_array).cloned();
    list.unwrap_or_default()
        .into_iter()
        .filter_map(|value| {
            let jwk: Jwk = serde_json::from_value(value).ok()?;
            if jwk.common.public_key_use == Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) {
                return None;
            }
            let algorithms: &'static [Algorithm] = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => RSA,
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => &[Algorithm::ES256],
                    EllipticCurve::P384 => &[Algorithm::ES384],
                    _ => return None,
                },
                AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                    EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
                    _ => return None,
                },
                AlgorithmParameters::OctetKey(_) => HMAC,
            };
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(Key {
                kid: jwk.common.key_id.clone(),
                alg: jwk.common.key_algorithm,
                algorithms,
                key,
            })
        })
        .collect()
}

pub(super) fn key_algorithm_is(alg: KeyAlgorithm, algorithm: Algorithm) -> bool {
    format!("{alg:?}") == format!("{algorithm:?}")
}
