//! What the proxy enforces: for every kind of the mesh API, the field paths
//! (and, where it matters, the values) the proxy acts on, each naming the
//! test that shows the proxy doing it ([`list`]). The operator reports
//! every other field a resource sets as not in force, from this list alone
//! ([`unenforced`]); a field joins the list with the change that makes the
//! proxy act on it and the test that proves it.
//!
//! Paths are patterns over the resource's `spec` as JSON: `name` a field,
//! `[]` any list index, `*` any map key, `**` everything below.

use serde_json::Value;

mod list;

pub use list::KINDS;

/// Which values of a field the proxy acts on.
#[derive(Clone, Copy, Debug)]
pub enum Values {
    /// Whatever the field holds.
    Any,
    /// These values of a string field.
    OneOf(&'static [&'static str]),
    /// A comma-separated list (`retryOn`), item by item.
    Items(fn(&str) -> bool),
    /// Values this predicate accepts.
    Only(fn(&str) -> bool),
}

/// One thing the proxy enforces.
#[derive(Clone, Copy, Debug)]
pub struct Capability {
    /// The field's path pattern.
    pub path: &'static str,
    /// Which of its values.
    pub values: Values,
    /// The test that shows it end to end: `<file>::<function>`, the file
    /// relative to the workspace's root.
    pub test: &'static str,
}

/// What the proxy enforces of one kind.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// The kind, as in `kind:`.
    pub kind: &'static str,
    /// A security resource: anything of it not enforced makes it
    /// `Programmed=False` (the operator's NotEnforced), never a partial claim.
    pub security: bool,
    /// What is enforced.
    pub enforced: &'static [Capability],
}

/// The capabilities of `kind`; a kind the list does not name has none.
pub fn of(kind: &str) -> Kind {
    KINDS
        .iter()
        .find(|k| k.kind == kind)
        .copied()
        .unwrap_or(Kind {
            kind: "",
            security: false,
            enforced: &[],
        })
}

/// What of a spec is in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The settings the proxy does not act on: `spec.a[0].b` for a field
    /// (or the root of a subtree no capability reaches), `spec.a=VALUE` for
    /// a value of an enforced field that is not.
    pub unenforced: Vec<String>,
    /// Whether anything it sets is enforced.
    pub enforced_any: bool,
}

/// What of `spec` (a resource of `kind`, as JSON) the proxy enforces.
pub fn unenforced(kind: &str, spec: &Value) -> Report {
    let capabilities = of(kind).enforced;
    let patterns: Vec<(Vec<&str>, Values)> = capabilities
        .iter()
        .map(|c| (parse(c.path), c.values))
        .collect();
    let mut report = Report::default();
    walk(spec, &patterns, &mut Vec::new(), false, &mut report);
    report
}

/// The capabilities of `kinds` whose test does not exist under `root` (the
/// workspace): a test is `<file>::<function>`, the file holding `fn
/// <function>(`.
pub fn missing_tests(kinds: &[Kind], root: &std::path::Path) -> Vec<String> {
    let mut missing = Vec::new();
    for kind in kinds {
        for capability in kind.enforced {
            let Some((file, function)) = capability.test.split_once("::") else {
                missing.push(format!(
                    "{} {}: {:?} is not <file>::<function>",
                    kind.kind, capability.path, capability.test
                ));
                continue;
            };
            let source = std::fs::read_to_string(root.join(file)).unwrap_or_default();
            if !source.contains(&format!("fn {function}(")) {
                missing.push(format!(
                    "{} {}: no test {function} in {file}",
                    kind.kind, capability.path
                ));
            }
        }
    }
    missing
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
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
    patterns: &[(Vec<&str>, Values)],
    path: &mut Vec<Segment<'a>>,
    in_list: bool,
    report: &mut Report,
) {
    let covering: Vec<Values> = patterns
        .iter()
        .filter(|(p, _)| !path.is_empty() && covers(p, path))
        .map(|(_, values)| *values)
        .collect();
    if !covering.is_empty() {
        check(value, &covering, path, report);
        return;
    }
    let children: Vec<(Segment<'a>, &'a Value)> = match value {
        Value::Object(map) => map.iter().map(|(k, v)| (Segment::Key(k), v)).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (Segment::Index(i), v))
            .collect(),
        _ => Vec::new(),
    };
    if children.is_empty() {
        // A scalar is a setting, and so is an empty item of a list (an
        // AuthorizationPolicy's `rules: [{}]` allows everything): enforced
        // when the proxy reads the items of that list. An empty object or
        // list elsewhere sets nothing.
        let setting = !value.is_object() && !value.is_array() || in_list;
        if path.is_empty() || !setting {
            return;
        }
        if in_list && value.is_object() && patterns.iter().any(|(p, _)| reaches(p, path)) {
            report.enforced_any = true;
        } else {
            report.unenforced.push(render(path));
        }
        return;
    }
    if !path.is_empty() && !patterns.iter().any(|(p, _)| reaches(p, path)) {
        report.unenforced.push(render(path));
        return;
    }
    let list = value.is_array();
    for (segment, child) in children {
        path.push(segment);
        walk(child, patterns, path, list, report);
        path.pop();
    }
}

/// A covered field: enforced, unless its value is not one that some
/// capability covering it enforces.
fn check(value: &Value, covering: &[Values], path: &[Segment<'_>], report: &mut Report) {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => {
            report.enforced_any = true;
            return;
        }
    };
    let list = covering.iter().any(|v| matches!(v, Values::Items(_)));
    let items: Vec<&str> = if list {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    } else {
        vec![text.as_str()]
    };
    for item in items {
        let ok = covering.iter().any(|values| match values {
            Values::Any => true,
            Values::OneOf(known) => known.contains(&item),
            Values::Items(ok) | Values::Only(ok) => ok(item),
        });
        if ok {
            report.enforced_any = true;
        } else {
            report.unenforced.push(format!("{}={item}", render(path)));
        }
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
mod tests;
