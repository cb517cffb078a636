//! Golden tests of the compiler: objects in (`tests/golden/<case>/input.yaml`),
//! exact configuration and verdicts out (`expected.json`).
//!
//! After an intended change, `PLEXUS_BLESS=1 cargo test -p plexus-operator
//! --test golden` rewrites the expected files; review their diff.

use std::collections::BTreeMap;
use std::path::Path;

use plexus_operator::compile::{Input, compile};
use plexus_operator::snapshot;
use serde::Deserialize;
use serde_json::{Value, json};

fn load(path: &Path) -> Input {
    let text = std::fs::read_to_string(path).expect("input.yaml");
    let objects = serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("YAML"))
        .filter(|value| !value.is_null());
    snapshot::input_from_objects(objects, "plexus-system", "cluster.local")
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn render(input: &Input) -> Value {
    let output = compile(input);
    let verdicts: BTreeMap<String, Value> = output
        .verdicts
        .iter()
        .map(|(key, verdict)| {
            let accepted = verdict.accepted();
            let programmed = verdict.programmed(&input.injected);
            (
                key.origin(),
                json!({
                    "accepted": accepted,
                    "programmed": programmed,
                }),
            )
        })
        .collect();
    json!({ "verdicts": verdicts, "configs": output.configs })
}

#[test]
fn golden() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("PLEXUS_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/golden")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in cases {
        let input = load(&case.join("input.yaml"));
        let actual = render(&input);
        // Compiling twice gives the same bytes: output is deterministic.
        assert_eq!(actual, render(&input), "{}", case.display());
        let text = serde_json::to_string_pretty(&actual).expect("JSON") + "\n";
        let expected_path = case.join("expected.json");
        if bless {
            std::fs::write(&expected_path, &text).expect("write expected.json");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != text {
            let actual_path = case.join("actual.json");
            std::fs::write(&actual_path, &text).expect("write actual.json");
            failures.push(format!(
                "{}: output differs from expected.json (see diff -u {} {})",
                case.display(),
                expected_path.display(),
                actual_path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
