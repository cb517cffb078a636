//! Compares two JSON documents leaf by leaf, to prove a conversion lost nothing.

use serde_json::Value;

/// A leaf of the original document that the converted one lacks or changed.
#[derive(Debug, Clone, PartialEq)]
pub struct LostLeaf {
    /// Where the leaf is, such as `spec.http[0].timeout`.
    pub path: String,
    /// The original value.
    pub expected: Value,
    /// What the converted document has there, if anything.
    pub found: Option<Value>,
}

impl std::fmt::Display for LostLeaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.found {
            None => write!(
                f,
                "{} ({}) is not understood by Plexus",
                self.path, self.expected
            ),
            Some(found) => write!(
                f,
                "{} changed from {} to {}",
                self.path, self.expected, found
            ),
        }
    }
}

/// Every scalar of `original` (strings, numbers, booleans) that `converted`
/// does not hold at the same path with the same value. Nulls and empty lists
/// and maps carry no information and are not leaves. Numbers compare by value
/// (`10` equals `10.0`).
pub fn lost_leaves(original: &Value, converted: &Value) -> Vec<LostLeaf> {
    let mut lost = Vec::new();
    walk(original, Some(converted), &mut String::new(), &mut lost);
    lost
}

fn walk(original: &Value, converted: Option<&Value>, path: &mut String, lost: &mut Vec<LostLeaf>) {
    match original {
        Value::Null => {}
        Value::Object(map) => {
            for (key, value) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                walk(value, converted.and_then(|c| c.get(key)), path, lost);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (index, value) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                walk(value, converted.and_then(|c| c.get(index)), path, lost);
                path.truncate(len);
            }
        }
        scalar => {
            if !converted.is_some_and(|c| same_scalar(scalar, c)) {
                lost.push(LostLeaf {
                    path: path.clone(),
                    expected: scalar.clone(),
                    found: converted.cloned(),
                });
            }
        }
    }
}

fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identical_documents_lose_nothing() {
        let doc = json!({"spec": {"hosts": ["a"], "http": [{"timeout": "3s", "retries": {"attempts": 3}}]}});
        assert!(lost_leaves(&doc, &doc).is_empty());
    }

    #[test]
    fn reports_missing_and_changed_leaves_by_path() {
        let original =
            json!({"spec": {"http": [{"timeout": "3s", "mystery": true}], "weight": 10}});
        let converted = json!({"spec": {"http": [{"timeout": "5s"}], "weight": 10.0}});
        let lost = lost_leaves(&original, &converted);
        assert_eq!(lost.len(), 2, "{lost:?}");
        assert_eq!(lost[0].path, "spec.http[0].mystery");
        assert_eq!(lost[0].found, None);
        assert_eq!(lost[1].path, "spec.http[0].timeout");
        assert_eq!(
            lost[1].to_string(),
            r#"spec.http[0].timeout changed from "3s" to "5s""#
        );
    }

    #[test]
    fn nulls_and_empty_containers_are_not_leaves() {
        let original = json!({"spec": {"exportTo": [], "selector": {}, "x": null}});
        assert!(lost_leaves(&original, &json!({})).is_empty());
    }
}
