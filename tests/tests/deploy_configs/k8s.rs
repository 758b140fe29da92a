//! `deploy/k8s/` read as data: manifests by kind, and what backs a path
//! inside a container (an emptyDir, a ConfigMap key, or the image).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, ensure};
use serde_yaml_ng::Value;

use crate::image::is_under;
use crate::repo;

/// Every manifest of `deploy/k8s/` (all `*.yaml` but kustomization.yaml).
pub struct Manifests {
    pub docs: Vec<(PathBuf, Value)>,
}

impl Manifests {
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut docs = Vec::new();
        for path in repo::files_under(dir)? {
            if !repo::is_yaml(&path) || path.file_name().is_some_and(|n| n == "kustomization.yaml")
            {
                continue;
            }
            for doc in repo::read_yaml(&path)? {
                if !doc.is_null() {
                    docs.push((path.clone(), doc));
                }
            }
        }
        Ok(Self { docs })
    }

    /// The manifest of `kind` named `name`.
    pub fn one(&self, kind: &str, name: &str) -> anyhow::Result<&Value> {
        let found: Vec<&Value> = self
            .docs
            .iter()
            .map(|(_, d)| d)
            .filter(|d| {
                d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name)
            })
            .collect();
        ensure!(
            found.len() == 1,
            "expected one {kind} `{name}` in deploy/k8s, found {}",
            found.len()
        );
        Ok(found[0])
    }

    /// Every manifest of `kind`.
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs
            .iter()
            .map(|(_, d)| d)
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect()
    }

    /// `data.<key>` of ConfigMap `name`.
    pub fn configmap_key(&self, name: &str, key: &str) -> Option<&str> {
        self.one("ConfigMap", name).ok()?["data"][key].as_str()
    }
}

/// What a path inside a container is.
#[derive(Debug, PartialEq, Eq)]
pub enum Backing {
    /// Part of the image's (read-only) root filesystem.
    Image,
    /// Inside an emptyDir volume (writable).
    EmptyDir,
    /// Key `key` of ConfigMap `name`.
    ConfigMapKey { name: String, key: String },
    /// A directory holding keys of ConfigMap volumes.
    ConfigMapDir,
    /// Some other volume.
    Other(String),
}

/// A container of a pod template.
pub fn container<'a>(pod: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    pod["containers"]
        .as_sequence()
        .and_then(|cs| cs.iter().find(|c| c["name"].as_str() == Some(name)))
        .with_context(|| format!("the pod has no container `{name}`"))
}

/// What backs `path` in `container` of `pod`: the volume mounted at the
/// longest prefix of `path`.
pub fn backing(pod: &Value, container: &Value, path: &str) -> Backing {
    let mounts = container["volumeMounts"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let Some(mount) = mounts
        .iter()
        .filter(|m| m["mountPath"].as_str().is_some_and(|mp| is_under(path, mp)))
        .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))
    else {
        return Backing::Image;
    };
    let mount_path = mount["mountPath"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('/');
    let rel = path[mount_path.len()..].trim_start_matches('/');
    let Some(volume) = pod["volumes"]
        .as_sequence()
        .and_then(|vs| vs.iter().find(|v| v["name"] == mount["name"]))
    else {
        return Backing::Other(format!("missing volume {:?}", mount["name"]));
    };
    if volume["emptyDir"].is_mapping() {
        return Backing::EmptyDir;
    }
    let sources: Vec<&Value> = if volume["configMap"].is_mapping() {
        vec![&volume["configMap"]]
    } else if let Some(srcs) = volume["projected"]["sources"].as_sequence() {
        srcs.iter()
            .map(|s| &s["configMap"])
            .filter(|c| c.is_mapping())
            .collect()
    } else {
        return Backing::Other(format!("volume {:?}", volume["name"]));
    };
    if rel.is_empty() {
        return Backing::ConfigMapDir;
    }
    for cm in sources {
        let name = cm["name"].as_str().unwrap_or_default().to_string();
        match cm["items"].as_sequence() {
            // Without items, every key is a file at the top of the mount.
            None if !rel.contains('/') => {
                return Backing::ConfigMapKey {
                    name,
                    key: rel.to_string(),
                };
            }
            None => {}
            Some(items) => {
                for item in items {
                    let item_path = item["path"].as_str().unwrap_or_default();
                    if item_path == rel {
                        return Backing::ConfigMapKey {
                            name,
                            key: item["key"].as_str().unwrap_or_default().to_string(),
                        };
                    }
                    if is_under(item_path, rel) {
                        return Backing::ConfigMapDir;
                    }
                }
            }
        }
    }
    Backing::Other(format!("nothing at `{rel}` in volume {:?}", volume["name"]))
}

/// The container port number a probe or Service `port` refers to (a
/// number, or the name of a container port).
pub fn port_number(container: &Value, port: &Value) -> Option<u64> {
    port.as_u64().or_else(|| {
        let name = port.as_str()?;
        container["ports"]
            .as_sequence()?
            .iter()
            .find(|p| p["name"].as_str() == Some(name))?["containerPort"]
            .as_u64()
    })
}

/// Whether every label of `selector` is in `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_mapping()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}
