//! Finds the fields of a spec that Plexus does not implement, so that status
//! can name them instead of ignoring them silently.
//!
//! Each kind lists the paths it implements as patterns over the spec's JSON:
//! `name` a field, `[]` any list index, `*` any map key, `**` everything below.

use serde_json::Value;

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// The spec's paths (as `spec.a[0].b`) that no pattern covers; a subtree no
/// pattern reaches is reported once, by its root.
pub fn unimplemented(spec: &Value, implemented: &[&str]) -> Vec<String> {
    let patterns: Vec<Vec<&str>> = implemented.iter().map(|p| parse(p)).collect();
    let mut found = Vec::new();
    let mut path = Vec::new();
    walk(spec, &patterns, &mut path, &mut found);
    found
}

fn parse(pattern: &str) -> Vec<&str> {
    let mut segments = Vec::new();
    for token in pattern.split('.') {
        match token.strip_suffix("[]") {
            Some(name) => segments.extend([name, "[]"]),
            None => segments.push(token),
        }
    }
    segments
}

fn walk<'a>(
    value: &'a Value,
    patterns: &[Vec<&str>],
    path: &mut Vec<Segment<'a>>,
    found: &mut Vec<String>,
) {
    let children: Vec<(Segment<'a>, &'a Value)> = match value {
        Value::Object(map) => map.iter().map(|(k, v)| (Segment::Key(k), v)).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (Segment::Index(i), v))
            .collect(),
        _ => Vec::new(),
    };
    if !path.is_empty() && patterns.iter().any(|p| covers(p, path)) {
        return;
    }
    if children.is_empty() {
        // An empty object or list sets nothing; a scalar is a setting.
        if !path.is_empty() && !value.is_object() && !value.is_array() {
            found.push(render(path));
        }
        return;
    }
    if !path.is_empty() && !patterns.iter().any(|p| reaches(p, path)) {
        found.push(render(path));
        return;
    }
    for (segment, child) in children {
        path.push(segment);
        walk(child, patterns, path, found);
        path.pop();
    }
}

fn matches(pattern: &str, segment: &Segment<'_>) -> bool {
    match segment {
        Segment::Index(_) => pattern == "[]",
        Segment::Key(key) => pattern == "*" || pattern == *key,
    }
}

/// How a pattern relates to a path.
enum Relation {
    /// It covers the whole subtree at the path.
    Covers,
    /// It may match something below the path.
    Reaches,
    /// Neither.
    Misses,
}

fn relation(pattern: &[&str], path: &[Segment<'_>]) -> Relation {
    let mut p = pattern.iter();
    for segment in path {
        match p.next() {
            Some(&"**") => return Relation::Covers,
            Some(expected) if matches(expected, segment) => {}
            _ => return Relation::Misses,
        }
    }
    match p.next() {
        None | Some(&"**") => Relation::Covers,
        Some(_) => Relation::Reaches,
    }
}

fn covers(pattern: &[&str], path: &[Segment<'_>]) -> bool {
    matches!(relation(pattern, path), Relation::Covers)
}

fn reaches(pattern: &[&str], path: &[Segment<'_>]) -> bool {
    !matches!(relation(pattern, path), Relation::Misses)
}

fn render(path: &[Segment<'_>]) -> String {
    let mut out = String::from("spec");
    for segment in path {
        match segment {
            Segment::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_the_root_of_what_no_pattern_reaches() {
        let spec = json!({
            "hosts": ["a"],
            "http": [{
                "match": [{"headers": {"x": {"exact": "1"}}, "statPrefix": "s"}],
                "corsPolicy": {"allowOrigins": [{"exact": "o"}]},
                "route": [{"destination": {"host": "a", "subset": "v1"}}]
            }]
        });
        let found = unimplemented(
            &spec,
            &["hosts", "http[].match[].headers.*.*", "http[].route[].**"],
        );
        assert_eq!(
            found,
            [
                "spec.http[0].corsPolicy",
                "spec.http[0].match[0].statPrefix"
            ]
        );
    }

    #[test]
    fn everything_covered_reports_nothing() {
        let spec = json!({"mtls": {"mode": "STRICT"}, "selector": {"matchLabels": {"app": "a"}}});
        assert!(unimplemented(&spec, &["mtls.mode", "selector.**"]).is_empty());
    }
}
