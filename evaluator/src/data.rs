//! Policy data: JSON/YAML files and directories merged into one document.
//!
//! A file given directly is merged at the root of `data`. In a directory,
//! files named `data.json`, `data.yaml` or `data.yml` are placed by their
//! relative directory, as `opa run`/`opa test` do: `dir/a/b/data.json` is
//! merged at `data.a.b`. Merging two documents that disagree on a leaf is an
//! error naming the path.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::SetupError;

/// Loads and merges every path in order.
pub fn load_data(paths: &[PathBuf]) -> Result<Value, SetupError> {
    let mut root = Value::Object(Map::new());
    for p in paths {
        if p.is_dir() {
            load_dir(p, p, &mut root)?;
        } else {
            let doc = read_doc(p)?;
            merge(&mut root, doc, &mut Vec::new()).map_err(|reason| SetupError::Data {
                file: p.clone(),
                reason,
            })?;
        }
    }
    Ok(root)
}

fn load_dir(root_dir: &Path, dir: &Path, into: &mut Value) -> Result<(), SetupError> {
    let err = |reason: String| SetupError::Data {
        file: dir.into(),
        reason,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            load_dir(root_dir, &path, into)?;
        } else if matches!(name.as_str(), "data.json" | "data.yaml" | "data.yml") {
            let doc = read_doc(&path)?;
            let rel = dir.strip_prefix(root_dir).unwrap_or(Path::new(""));
            let mut prefix: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let nested = prefix.iter().rev().fold(doc, |acc, key| {
                let mut m = Map::new();
                m.insert(key.clone(), acc);
                Value::Object(m)
            });
            prefix.clear();
            merge(into, nested, &mut prefix).map_err(|reason| SetupError::Data {
                file: path.clone(),
                reason,
            })?;
        }
    }
    Ok(())
}

fn read_doc(path: &Path) -> Result<Value, SetupError> {
    let err = |reason: String| SetupError::Data {
        file: path.into(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let doc: Value = if is_yaml {
        serde_yaml_ng::from_str(&text).map_err(|e| err(e.to_string()))?
    } else {
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))?
    };
    if !doc.is_object() {
        return Err(err("the document must be an object".into()));
    }
    Ok(doc)
}

/// Deep-merges `from` into `into`; objects merge, equal leaves are fine,
/// differing leaves are a conflict.
pub fn merge(into: &mut Value, from: Value, path: &mut Vec<String>) -> Result<(), String> {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                path.push(k.clone());
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v, path)?,
                    None => {
                        a.insert(k, v);
                    }
                }
                path.pop();
            }
            Ok(())
        }
        (a, b) if *a == b => Ok(()),
        _ => Err(format!("conflicting values at `data.{}`", path.join("."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn directories_place_data_by_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("policy_data/apiKeyAuth")).unwrap();
        std::fs::write(
            dir.path().join("policy_data/apiKeyAuth/data.json"),
            r#"{"keys": {"ab": {"user_id": "u"}}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("data.yaml"), "top: 1\n").unwrap();
        std::fs::write(dir.path().join("ignored.json"), "not json").unwrap();
        let data = load_data(&[dir.path().into()]).unwrap();
        assert_eq!(
            data["policy_data"]["apiKeyAuth"]["keys"]["ab"]["user_id"],
            "u"
        );
        assert_eq!(data["top"], 1);
    }

    #[test]
    fn conflicts_and_bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        std::fs::write(&a, r#"{"x": {"y": 1}}"#).unwrap();
        std::fs::write(&b, r#"{"x": {"y": 2}}"#).unwrap();
        let err = load_data(&[a.clone(), b]).unwrap_err().to_string();
        assert!(err.contains("conflicting values at `data.x.y`"), "{err}");
        let c = dir.path().join("c.json");
        std::fs::write(&c, "[1]").unwrap();
        let err = load_data(&[c]).unwrap_err().to_string();
        assert!(err.contains("must be an object"), "{err}");
        let mut v = json!({"x": 1});
        assert!(merge(&mut v, json!({"x": 1}), &mut vec![]).is_ok());
    }
}
