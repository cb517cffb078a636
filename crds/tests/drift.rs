//! The CRD manifests committed in the Helm chart are exactly what the types
//! generate. Fix a failure with:
//! `cargo run -p plexus-cli -- crds --output-dir helm/plexus/crds`

use std::collections::BTreeSet;
use std::path::PathBuf;

const REGENERATE: &str = "cargo run -p plexus-cli -- crds --output-dir helm/plexus/crds";

fn chart_crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../helm/plexus/crds")
}

#[test]
fn committed_crds_match_the_types() {
    let dir = chart_crds_dir();
    let manifests = plexus_crds::manifests().expect("the CRDs render");
    let mut drifted = Vec::new();
    for manifest in &manifests {
        let path = dir.join(&manifest.file_name);
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == manifest.yaml => {}
            Ok(_) => drifted.push(format!("{} differs", path.display())),
            Err(error) => drifted.push(format!("{} cannot be read: {error}", path.display())),
        }
    }
    assert!(
        drifted.is_empty(),
        "the committed CRDs differ from the types: {drifted:#?}\nregenerate them with `{REGENERATE}`"
    );
}

#[test]
fn no_stale_crds_in_the_chart() {
    let expected: BTreeSet<String> = plexus_crds::manifests()
        .expect("the CRDs render")
        .into_iter()
        .map(|m| m.file_name)
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(chart_crds_dir())
        .expect("helm/plexus/crds exists")
        .map(|entry| {
            entry
                .expect("readable entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let stale: Vec<&String> = present.difference(&expected).collect();
    assert!(
        stale.is_empty(),
        "files in helm/plexus/crds that no type generates: {stale:?}; `{REGENERATE}` removes them"
    );
}
