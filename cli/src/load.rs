//! Policies and data from files and directories, placed the way
//! `opa eval -d` and `opa test` place them, and the engine built from them.
//!
//! - A `.rego` file is a module (Rego v1), whatever directory it is in.
//! - In a directory, `data.json`, `data.yaml` and `data.yml` are documents
//!   merged under `data` at the directory's path relative to the path given:
//!   `<root>/a/b/data.json` goes to `data.a.b`, `<root>/data.json` to `data`.
//!   Other files are ignored, as are hidden files and directories.
//! - A JSON or YAML file named directly (`-d users.json`) is merged at `data`.
//!
//! Documents must not conflict: two files giving the same path different
//! values is an error naming the second file.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use policy_agent::builtins::{NativeBuiltins, RateLimiter};
use regorus::{Engine, Value};

use crate::diagnostic;

/// Why policies or data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}`: unsupported file type (expected .rego, .json, .yaml or .yml)")]
    UnsupportedFile { path: PathBuf },
    #[error("`{path}`: invalid {format}: {reason}")]
    DataSyntax {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("`{path}`: a document loaded at `data` must be an object")]
    DataNotObject { path: PathBuf },
    #[error("`{path}`: conflicts with data loaded earlier under `{at}`: {reason}")]
    DataConflict {
        path: PathBuf,
        at: String,
        reason: String,
    },
    /// `location` is `file:row:col`, or the file alone.
    #[error("{location}: parse error: {reason}")]
    Parse {
        path: PathBuf,
        location: String,
        reason: String,
    },
    #[error("cannot register native builtins: {reason}")]
    Builtins { reason: String },
}

/// A Rego module read from disk.
#[derive(Debug)]
pub struct PolicyFile {
    pub path: PathBuf,
    pub source: String,
}

/// A data document read from disk and the path under `data` it goes to.
#[derive(Debug)]
pub struct DataFile {
    pub path: PathBuf,
    pub prefix: Vec<String>,
    pub value: Value,
}

/// Everything found under the given paths, in a stable order.
#[derive(Debug, Default)]
pub struct Loaded {
    pub policies: Vec<PolicyFile>,
    pub data: Vec<DataFile>,
    seen_policies: HashSet<PathBuf>,
}

impl Loaded {
    /// Reads every policy and data file under `paths`.
    pub fn read(paths: &[PathBuf]) -> Result<Self, LoadError> {
        let mut loaded = Self::default();
        for path in paths {
            let meta = std::fs::metadata(path).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
            if meta.is_dir() {
                loaded.read_dir(path, &mut Vec::new())?;
            } else if is_rego(path) {
                loaded.read_policy(path)?;
            } else if data_format(path).is_some() {
                loaded.read_data(path, Vec::new())?;
            } else {
                return Err(LoadError::UnsupportedFile { path: path.clone() });
            }
        }
        Ok(loaded)
    }

    fn read_dir(&mut self, dir: &Path, prefix: &mut Vec<String>) -> Result<(), LoadError> {
        let read_err = |source| LoadError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut entries = std::fs::read_dir(dir)
            .map_err(read_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_err)?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            // Follows symlinks, as `opa` does.
            let meta = std::fs::metadata(&path).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
            if meta.is_dir() {
                prefix.push(name);
                self.read_dir(&path, prefix)?;
                prefix.pop();
            } else if is_rego(&path) {
                self.read_policy(&path)?;
            } else if matches!(name.as_str(), "data.json" | "data.yaml" | "data.yml") {
                self.read_data(&path, prefix.clone())?;
            }
        }
        Ok(())
    }

    fn read_policy(&mut self, path: &Path) -> Result<(), LoadError> {
        // The same file reached through two given paths is loaded once.
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if !self.seen_policies.insert(canonical) {
            return Ok(());
        }
        let source = read_to_string(path)?;
        self.policies.push(PolicyFile {
            path: path.to_path_buf(),
            source,
        });
        Ok(())
    }

    fn read_data(&mut self, path: &Path, prefix: Vec<String>) -> Result<(), LoadError> {
        let text = read_to_string(path)?;
        let format = data_format(path).unwrap_or(DataFormat::Json);
        let value = format
            .parse(&text)
            .map_err(|reason| LoadError::DataSyntax {
                path: path.to_path_buf(),
                format: format.name(),
                reason,
            })?;
        if prefix.is_empty() && !matches!(value, Value::Object(_)) {
            return Err(LoadError::DataNotObject {
                path: path.to_path_buf(),
            });
        }
        self.data.push(DataFile {
            path: path.to_path_buf(),
            prefix,
            value,
        });
        Ok(())
    }

    /// A Rego v1 engine with every module and document loaded and the
    /// agent's native builtins registered.
    pub fn into_engine(self) -> Result<Engine, LoadError> {
        let mut engine = policy_agent::new_engine();
        engine.set_rego_v0(false);
        // As in OPA: a builtin error makes the expression undefined.
        engine.set_strict_builtin_errors(false);
        NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default())))
            .register_extensions(&mut engine)
            .map_err(|e| LoadError::Builtins {
                reason: diagnostic::chain_one_line(&e),
            })?;
        for policy in self.policies {
            let label = policy.path.display().to_string();
            engine
                .add_policy(label.clone(), policy.source)
                .map_err(|e| {
                    let (location, reason) = diagnostic::split(&e.to_string());
                    LoadError::Parse {
                        path: policy.path,
                        location: location.unwrap_or(label),
                        reason,
                    }
                })?;
        }
        for doc in self.data {
            let at = std::iter::once("data")
                .chain(doc.prefix.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(".");
            let wrapped = doc.prefix.into_iter().rev().fold(doc.value, |inner, key| {
                Value::from(BTreeMap::from([(Value::from(key), inner)]))
            });
            engine
                .add_data(wrapped)
                .map_err(|e| LoadError::DataConflict {
                    path: doc.path,
                    at,
                    reason: diagnostic::one_line(&e.to_string()),
                })?;
        }
        Ok(engine)
    }
}

/// Reads policies and data under `paths` and builds the engine.
pub fn engine_from_paths(paths: &[PathBuf]) -> Result<Engine, LoadError> {
    Loaded::read(paths)?.into_engine()
}

fn read_to_string(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn is_rego(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rego")
}

/// The text formats a document can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    Json,
    Yaml,
}

impl DataFormat {
    /// Parses `text` in this format.
    pub fn parse(self, text: &str) -> Result<Value, String> {
        match self {
            Self::Json => {
                Value::from_json_str(text).map_err(|e| diagnostic::one_line(&e.to_string()))
            }
            Self::Yaml => serde_yaml_ng::from_str::<Value>(text).map_err(|e| e.to_string()),
        }
    }

    /// The format's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Yaml => "YAML",
        }
    }
}

/// The format of a data file, from its extension.
pub fn data_format(path: &Path) -> Option<DataFormat> {
    match path.extension()?.to_str()? {
        "json" => Some(DataFormat::Json),
        "yaml" | "yml" => Some(DataFormat::Yaml),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn places_data_files_by_directory() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "data.json", r#"{"top": 1}"#);
        write(dir.path(), "a/b/data.yaml", "x: 2\n");
        write(dir.path(), "a/other.json", r#"{"ignored": true}"#);
        write(dir.path(), ".hidden/data.json", r#"{"hidden": true}"#);
        write(dir.path(), "p.rego", "package p\nv := data.a.b.x\n");
        let mut engine = engine_from_paths(&[dir.path().to_path_buf()]).unwrap();
        let data = engine.eval_query("data".into(), false).unwrap();
        let got = serde_json::to_value(&data.result[0].expressions[0].value).unwrap();
        assert_eq!(
            got,
            serde_json::json!({"top": 1, "a": {"b": {"x": 2}}, "p": {"v": 2}})
        );
    }

    #[test]
    fn a_data_file_named_directly_goes_at_the_root() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sub/users.json", r#"{"users": ["a"]}"#);
        let mut engine = engine_from_paths(&[dir.path().join("sub/users.json")]).unwrap();
        let r = engine.eval_query("data.users[0]".into(), false).unwrap();
        assert_eq!(r.result[0].expressions[0].value, Value::from("a"));
    }

    #[test]
    fn conflicting_documents_name_the_second_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "data.json", r#"{"a": {"b": 1}}"#);
        write(dir.path(), "a/data.json", r#"{"b": 2}"#);
        let err = engine_from_paths(&[dir.path().to_path_buf()]).unwrap_err();
        let msg = err.to_string();
        // `a/` sorts before `data.json`, so the root document comes second.
        let LoadError::DataConflict { path, at, .. } = err else {
            panic!("{msg}");
        };
        assert_eq!((path, at.as_str()), (dir.path().join("data.json"), "data"));
    }

    #[test]
    fn bad_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "x/data.json", "{nope");
        let msg = Loaded::read(&[dir.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("x/data.json") && msg.contains("invalid JSON"),
            "{msg}"
        );
    }

    #[test]
    fn root_document_must_be_an_object() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "data.json", "[1]");
        let err = Loaded::read(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(matches!(err, LoadError::DataNotObject { .. }));
    }

    #[test]
    fn the_same_module_given_twice_is_loaded_once() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "p.rego", "package p\nf(x) := 1\n");
        let paths = [dir.path().to_path_buf(), dir.path().join("p.rego")];
        assert_eq!(Loaded::read(&paths).unwrap().policies.len(), 1);
    }
}
