//! The JSON patch operations injection is made of, in an order that
//! applies: parents before what goes into them.

use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde::Serialize;
use serde_json::Value;

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

pub fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: pointer(tokens),
        value,
    })
}

pub fn replace(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation {
        path: pointer(tokens),
        value,
    })
}

pub fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Adds `entries` to the map at `path`, creating the map if it is absent.
pub fn add_entries(
    ops: &mut Vec<PatchOperation>,
    path: &[&str],
    exists: bool,
    entries: Vec<(String, String)>,
) {
    if exists {
        for (key, value) in entries {
            let mut tokens = path.to_vec();
            tokens.push(&key);
            ops.push(add(&tokens, Value::String(value)));
        }
    } else {
        let map: serde_json::Map<String, Value> = entries
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        ops.push(add(path, Value::Object(map)));
    }
}

/// Adds `items` to the array at `path` (at `at`, or at its end), creating
/// the array if it is absent.
pub fn add_items(
    ops: &mut Vec<PatchOperation>,
    path: &[&str],
    exists: bool,
    at: Option<usize>,
    items: Vec<Value>,
) {
    if !exists {
        ops.push(add(path, Value::Array(items)));
        return;
    }
    for (offset, item) in items.into_iter().enumerate() {
        let index = at.map_or_else(|| "-".to_owned(), |at| (at + offset).to_string());
        let mut tokens = path.to_vec();
        tokens.push(&index);
        ops.push(add(&tokens, item));
    }
}
