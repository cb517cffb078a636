//! The `plexus` binary as a user runs it: exit codes and messages.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn plexus(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writes stdin");
    child.wait_with_output().expect("the binary exits")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_clean_failure(output: &Output, message: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(message), "expected {message:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_group_is_a_clear_error() {
    let output = plexus(
        &["convert"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
    );
    assert_clean_failure(
        &output,
        "error: <stdin>: document 1 (Widget w): not translated: unknown API group \"example.com\"",
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn garbage_is_a_clear_error() {
    let output = plexus(&["convert", "-"], "{{{ this is : not : yaml");
    assert_clean_failure(&output, "document 1 (? ?): not translated: not valid YAML");
}

#[test]
fn empty_input_is_a_clear_error() {
    assert_clean_failure(&plexus(&["convert"], ""), "holds no Kubernetes objects");
    assert_clean_failure(
        &plexus(&["convert"], "# only a comment\n"),
        "holds no Kubernetes objects",
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let output = plexus(&["convert", "/nonexistent/istio.yaml"], "");
    assert_clean_failure(&output, "error: /nonexistent/istio.yaml: reading:");
}

#[test]
fn seed_manifests_convert_and_the_untranslatable_one_is_named() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed-manifests");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path().display().to_string())
        .collect();
    files.sort();
    let mut args = vec!["convert"];
    args.extend(files.iter().map(String::as_str));
    let output = plexus(&args, "");
    assert_clean_failure(
        &output,
        "18-envoyfilter-ratelimit.yaml: document 1 (EnvoyFilter ratelimit): not translated",
    );
    assert!(stderr(&output).contains("25 converted, 1 not translated"));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(
        stdout.matches("apiVersion: plexus.dev/v1alpha1").count(),
        25
    );
}

#[test]
fn valid_input_exits_zero() {
    let output = plexus(
        &["convert"],
        "apiVersion: split.smi-spec.io/v1alpha1\nkind: TrafficSplit\nmetadata: {name: s}\n\
         spec: {service: web, backends: [{service: web-v1, weight: 900m}, {service: web-v2, weight: 100m}]}\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        stdout.contains("kind: TrafficSplit") && stdout.contains("weight: 900m"),
        "{stdout}"
    );
}

#[test]
fn crds_prints_every_crd() {
    let output = plexus(&["crds"], "");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(stdout.matches("kind: CustomResourceDefinition").count(), 12);
}
