//! Finding and reading the repository's deployment files.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, ensure};
use serde::Deserialize as _;
use serde_yaml_ng::Value;

/// Directories never searched: build output, VCS data, vendored code.
const SKIPPED_DIRS: &[&str] = &["target", "third_party", "node_modules"];

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// `deploy/` of the workspace.
pub fn deploy() -> PathBuf {
    root().join("deploy")
}

/// `path` relative to the workspace root, for messages.
pub fn rel(path: &Path) -> String {
    let root = root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every file under `dir`, sorted, skipping hidden and [`SKIPPED_DIRS`]
/// directories.
pub fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_dir() {
                if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_str()) {
                    stack.push(path);
                }
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `path` names a YAML file.
pub fn is_yaml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

/// Every document of a (multi-document) YAML text.
pub fn yaml_docs(text: &str) -> Result<Vec<Value>, serde_yaml_ng::Error> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(Value::deserialize)
        .collect()
}

/// Every document of the YAML file `path`.
pub fn read_yaml(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = read(path)?;
    yaml_docs(&text).with_context(|| format!("parsing {}", rel(path)))
}

/// The single document of the YAML file `path`.
pub fn read_yaml_doc(path: &Path) -> anyhow::Result<Value> {
    let mut docs = read_yaml(path)?;
    ensure!(
        docs.len() == 1,
        "{}: expected one YAML document, found {}",
        rel(path),
        docs.len()
    );
    Ok(docs.remove(0))
}

/// The text of `path`.
pub fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", rel(path)))
}

/// A file a Kubernetes ConfigMap carries: `data.<key>` of ConfigMap `name`.
pub struct ConfigMapFile {
    /// The manifest that holds the ConfigMap.
    pub manifest: PathBuf,
    pub name: String,
    pub key: String,
    pub text: String,
}

/// Every `data` entry of every ConfigMap in `docs`, read from `manifest`.
pub fn configmap_files(manifest: &Path, docs: &[Value]) -> Vec<ConfigMapFile> {
    let mut out = Vec::new();
    for doc in docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some("ConfigMap"))
    {
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let Some(data) = doc["data"].as_mapping() else {
            continue;
        };
        for (k, v) in data {
            if let (Some(key), Some(text)) = (k.as_str(), v.as_str()) {
                out.push(ConfigMapFile {
                    manifest: manifest.to_path_buf(),
                    name: name.to_string(),
                    key: key.to_string(),
                    text: text.to_string(),
                });
            }
        }
    }
    out
}

/// Whether a file name looks like an Envoy configuration (`envoy*.yaml`).
pub fn is_envoy_name(name: &str) -> bool {
    name.starts_with("envoy") && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// Whether a YAML document is an Envoy bootstrap (has `static_resources`
/// or `dynamic_resources` at the top level).
pub fn is_envoy_bootstrap(doc: &Value) -> bool {
    doc.as_mapping()
        .is_some_and(|m| m.contains_key("static_resources") || m.contains_key("dynamic_resources"))
}
