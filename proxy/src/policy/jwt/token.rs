//! Reading a compact JWS and its claims, strictly typed: a claim of the
//! wrong type makes the token malformed (never "absent").

use serde_json::{Map, Value};

use super::Reason;

/// Splits a compact JWS into its three segments (the signature may be
/// empty, as in an unsigned token: verification refuses it).
pub(super) fn segments(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || header.is_empty() || payload.is_empty() {
        return None;
    }
    Some((header, payload, signature))
}

/// A numeric date claim: absent, or a number; anything else is malformed.
pub(super) fn numeric(payload: &Map<String, Value>, name: &str) -> Result<Option<f64>, Reason> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or("malformed"),
        Some(_) => Err("malformed"),
    }
}

/// `aud`: a string or a list of strings.
pub(super) fn audiences(payload: &Map<String, Value>) -> Result<Vec<String>, Reason> {
    match payload.get("aud") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or("malformed"))
            .collect(),
        Some(_) => Err("malformed"),
    }
}

pub(super) fn optional_string(
    payload: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, Reason> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err("malformed"),
    }
}
