//! The shape of `src/`: no module imports, directly or through others, a
//! module that imports it, and no file is longer than the layout allows.
//!
//! A module is a file. Its imports are every `crate::…` and `super::…`
//! path it names (in `use` or in code) and every `mod child;` it declares,
//! resolved to the deepest module file the path names. Tests (`tests.rs`,
//! and what follows `#[cfg(test)]` in a file) are left out: they may look
//! at their parent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The longest a source file may be (lines), tests aside.
const MAX_LINES: usize = 500;

/// Every module of `src/` (`a::b` for `src/a/b.rs` or `src/a/b/mod.rs`;
/// the crate root and `main.rs` are not modules of the layering) with its
/// source, tests cut off.
fn modules(src: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("src/")
            .map(|e| e.expect("an entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") || name == "tests" {
                continue;
            }
            let mut module = prefix.to_vec();
            if name != "mod" {
                module.push(name.clone());
            }
            if module.is_empty() || (prefix.is_empty() && (name == "lib" || name == "main")) {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file");
            let code = match text.find("#[cfg(test)]") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            out.insert(module.join("::"), code);
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &[], &mut out);
    out
}

/// The deepest module `segments` names, if any.
fn resolve(segments: &[&str], modules: &BTreeMap<String, String>) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

/// The paths a `use` tree or a path expression starting at `text` names:
/// `a::b::{c, d::e}` gives `a::b::c` and `a::b::d::e`.
fn paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut prefix = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' || c == ':' {
            prefix.push(c);
            i += 1;
            continue;
        }
        if c == '{' {
            // Split the group at its top-level commas.
            let mut depth = 0;
            let mut item = String::new();
            let mut j = i + 1;
            while j < chars.len() {
                match chars[j] {
                    '{' => {
                        depth += 1;
                        item.push('{');
                    }
                    '}' if depth == 0 => break,
                    '}' => {
                        depth -= 1;
                        item.push('}');
                    }
                    ',' if depth == 0 => {
                        out.extend(paths(&format!("{prefix}{}", item.trim())));
                        item.clear();
                    }
                    other => item.push(other),
                }
                j += 1;
            }
            if !item.trim().is_empty() {
                out.extend(paths(&format!("{prefix}{}", item.trim())));
            }
            return out;
        }
        break;
    }
    out.push(prefix);
    out
}

/// What each module imports.
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (module, code) in modules {
        let segments: Vec<&str> = module.split("::").collect();
        let mut edges = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            for path in paths(&code[at + "crate::".len()..]) {
                let parts: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                edges.extend(resolve(&parts, modules));
            }
        }
        for (at, _) in code.match_indices("super::") {
            // Only the first `super::` of a path.
            if code[..at].ends_with("super::") {
                continue;
            }
            let mut rest = &code[at..];
            let mut base = segments[..segments.len() - 1].to_vec();
            while let Some(r) = rest.strip_prefix("super::") {
                rest = r;
                if rest.starts_with("super::") {
                    base.pop();
                }
            }
            for path in paths(rest) {
                let mut parts = base.clone();
                parts.extend(path.split("::").filter(|s| !s.is_empty()));
                edges.extend(resolve(&parts, modules));
            }
        }
        for line in code.lines() {
            let line = line.trim();
            let declared = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("mod "))
                .and_then(|l| l.strip_suffix(';'));
            if let Some(child) = declared {
                let mut parts = segments.clone();
                parts.push(child);
                edges.extend(resolve(&parts, modules));
            }
        }
        edges.remove(module);
        graph.insert(module.clone(), edges);
    }
    graph
}

/// A cycle of `graph`, if it has one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn imports_only_go_down() {
    let modules = modules(&src());
    assert!(
        modules.contains_key("outbound::http"),
        "{:?}",
        modules.keys()
    );
    let graph = imports(&modules);
    // What the layering rests on is seen at all.
    assert!(graph["outbound::http"].contains("outbound::attempts"));
    assert!(graph["outbound::attempts"].contains("outbound::retry"));
    let attempts = &graph["outbound::attempts"];
    assert!(attempts.contains("ctx") && attempts.contains("balance"));
    assert!(graph["listen"].contains("inbound") && graph["listen"].contains("outbound"));
    assert!(graph["routing::route"].contains("routing::matches"));
    if let Some(cycle) = cycle(&graph) {
        panic!("an import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn a_cycle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &[][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
    .collect();
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(paths("a::{b, c::{d, e}};"), ["a::b", "a::c::d", "a::c::e"]);
}

#[test]
fn files_stay_short() {
    let long: Vec<String> = modules(&src())
        .into_iter()
        .map(|(module, code)| (module, code.lines().count()))
        .filter(|(_, lines)| *lines > MAX_LINES)
        .map(|(module, lines)| format!("{module}: {lines} lines"))
        .collect();
    assert!(long.is_empty(), "{}", long.join("\n"));
}
