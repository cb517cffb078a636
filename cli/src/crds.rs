//! `plexus crds`: the CRD manifests, printed or written into a directory.

use std::path::{Path, PathBuf};

use plexus_crds::{CrdManifest, GROUP};

/// Writing the manifests failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A manifest could not be rendered.
    #[error(transparent)]
    Render(#[from] plexus_crds::RenderError),
    /// A file could not be written or removed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Every manifest as one multi-document YAML text.
pub fn render_all() -> Result<String, plexus_crds::RenderError> {
    let manifests = plexus_crds::manifests()?;
    Ok(manifests
        .iter()
        .map(|m| m.yaml.as_str())
        .collect::<Vec<_>>()
        .join("---\n"))
}

/// Writes one file per CRD into `dir` and removes manifests of kinds that no
/// longer exist. Returns the files written.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>, WriteError> {
    let manifests = plexus_crds::manifests()?;
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    remove_stale(dir, &manifests).map_err(io("cleaning", dir))?;
    let mut written = Vec::new();
    for manifest in manifests {
        let path = dir.join(&manifest.file_name);
        std::fs::write(&path, &manifest.yaml).map_err(io("writing", &path))?;
        written.push(path);
    }
    Ok(written)
}

fn remove_stale(dir: &Path, manifests: &[CrdManifest]) -> std::io::Result<()> {
    let prefix = format!("{GROUP}_");
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with(&prefix) && name.ends_with(".yaml");
        if ours && !manifests.iter().any(|m| m.file_name == name) {
            std::fs::remove_file(dir.join(name.as_ref()))?;
        }
    }
    Ok(())
}
