//! The data document degraded mode caches (DESIGN §7): role bindings,
//! command whitelists, platform admins and two-person approvals, as one
//! JSON object that `PutData` replaces and `GetData` serves.
//!
//! [`DataDocument::try_from_json`] is the one validation: strict (unknown
//! keys, duplicate keys, wrong types, empty strings and bad timestamps are
//! errors naming the path, e.g. `role_bindings.alice[1]`), and lenient only
//! in that a missing section is an empty one. [`DataDocument::to_json`] is
//! the normalized form the journal stores: every section present, keys
//! sorted, no whitespace.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The largest document `PutData` accepts, in bytes (as sent and once
/// normalized).
pub const MAX_DATA_BYTES: usize = 4 * 1024 * 1024;

/// The largest gRPC message the journal decodes, and what a client reading
/// the document should accept: room for a document of [`MAX_DATA_BYTES`]
/// and its envelope, so that a document over the limit is answered
/// `INVALID_ARGUMENT` rather than refused by the transport.
pub const MAX_MESSAGE_BYTES: usize = 2 * MAX_DATA_BYTES;

/// The four sections, in the order of the normalized document.
pub const SECTIONS: [&str; 4] = [
    "role_bindings",
    "command_whitelists",
    "platform_admins",
    "approvals",
];

/// The document, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataDocument {
    /// User → roles.
    #[serde(default)]
    pub role_bindings: BTreeMap<String, Vec<String>>,
    /// Whitelist name → commands.
    #[serde(default)]
    pub command_whitelists: BTreeMap<String, Vec<String>>,
    /// Users.
    #[serde(default)]
    pub platform_admins: Vec<String>,
    /// Approval id → approval.
    #[serde(default)]
    pub approvals: BTreeMap<String, Approval>,
}

/// One two-person approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub operation: String,
    pub requested_by: String,
    pub approved_by: String,
    pub approver_roles: Vec<String>,
    /// RFC 3339, as written.
    pub expires_at: String,
}

/// Why a document was refused. Paths are written like
/// `approvals.op-7.approver_roles[0]` (keys that are not plain names as
/// `role_bindings["a b"]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("document is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("document is not JSON: {reason}")]
    NotJson { reason: String },
    #[error("{path} has the key `{key}` twice")]
    DuplicateKey { path: String, key: String },
    #[error("document must be a JSON object, not {found}")]
    NotObject { found: &'static str },
    #[error(
        "unknown top-level key `{key}` (expected role_bindings, command_whitelists, \
         platform_admins or approvals)"
    )]
    UnknownSection { key: String },
    #[error("{path} must be {expected}, not {found}")]
    WrongType {
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{path} must not be empty")]
    Empty { path: String },
    #[error("{path} has an empty key")]
    EmptyKey { path: String },
    #[error("{path} is missing the field `{field}`")]
    MissingField { path: String, field: &'static str },
    #[error("{path} has an unknown field `{field}`")]
    UnknownField { path: String, field: String },
    #[error("{path} must be an RFC 3339 timestamp, not `{value}`")]
    BadTimestamp { path: String, value: String },
}

impl DataDocument {
    /// Validates a document as sent to `PutData`.
    pub fn try_from_json(bytes: &[u8]) -> Result<Self, DataError> {
        too_large(bytes.len())?;
        let value = parse_strict(bytes)?;
        let Value::Object(top) = value else {
            return Err(DataError::NotObject {
                found: kind(&value),
            });
        };
        let mut doc = Self::default();
        for (key, value) in &top {
            match key.as_str() {
                "role_bindings" => doc.role_bindings = string_lists(key, value)?,
                "command_whitelists" => doc.command_whitelists = string_lists(key, value)?,
                "platform_admins" => doc.platform_admins = strings(key.clone(), value)?,
                "approvals" => doc.approvals = approvals(value)?,
                _ => return Err(DataError::UnknownSection { key: key.clone() }),
            }
        }
        too_large(doc.to_json().len())?;
        Ok(doc)
    }

    /// The normalized JSON: every section, keys sorted, compact.
    pub fn to_json(&self) -> String {
        #[expect(
            clippy::expect_used,
            reason = "maps with string keys and string values always serialize"
        )]
        serde_json::to_string(self).expect("a data document serializes")
    }
}

fn too_large(size: usize) -> Result<(), DataError> {
    if size > MAX_DATA_BYTES {
        return Err(DataError::TooLarge {
            size,
            limit: MAX_DATA_BYTES,
        });
    }
    Ok(())
}

fn string_lists(section: &str, value: &Value) -> Result<BTreeMap<String, Vec<String>>, DataError> {
    let mut out = BTreeMap::new();
    for (key, list) in object(section.to_owned(), value)? {
        out.insert(key.clone(), strings(child(section, key), list)?);
    }
    Ok(out)
}

fn approvals(value: &Value) -> Result<BTreeMap<String, Approval>, DataError> {
    const FIELDS: [&str; 5] = [
        "operation",
        "requested_by",
        "approved_by",
        "approver_roles",
        "expires_at",
    ];
    let mut out = BTreeMap::new();
    for (id, approval) in object("approvals".to_owned(), value)? {
        let path = child("approvals", id);
        let fields = match approval {
            Value::Object(fields) => fields,
            other => {
                return Err(DataError::WrongType {
                    path,
                    expected: "an object",
                    found: kind(other),
                });
            }
        };
        if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(DataError::UnknownField {
                path,
                field: unknown.clone(),
            });
        }
        let field = |name: &'static str| {
            fields.get(name).ok_or_else(|| DataError::MissingField {
                path: path.clone(),
                field: name,
            })
        };
        let text = |name: &'static str| -> Result<String, DataError> {
            string(format!("{path}.{name}"), field(name)?)
        };
        let approval = Approval {
            operation: text("operation")?,
            requested_by: text("requested_by")?,
            approved_by: text("approved_by")?,
            approver_roles: strings(format!("{path}.approver_roles"), field("approver_roles")?)?,
            expires_at: text("expires_at")?,
        };
        if !is_rfc3339(&approval.expires_at) {
            return Err(DataError::BadTimestamp {
                path: format!("{path}.expires_at"),
                value: approval.expires_at,
            });
        }
        out.insert(id.clone(), approval);
    }
    Ok(out)
}

/// The members of an object with non-empty keys.
fn object(path: String, value: &Value) -> Result<&Map<String, Value>, DataError> {
    match value {
        Value::Object(map) => {
            if map.contains_key("") {
                return Err(DataError::EmptyKey { path });
            }
            Ok(map)
        }
        other => Err(DataError::WrongType {
            path,
            expected: "an object",
            found: kind(other),
        }),
    }
}

fn strings(path: String, value: &Value) -> Result<Vec<String>, DataError> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(format!("{path}[{i}]"), item))
            .collect(),
        other => Err(DataError::WrongType {
            path,
            expected: "an array of strings",
            found: kind(other),
        }),
    }
}

fn string(path: String, value: &Value) -> Result<String, DataError> {
    match value {
        Value::String(s) if s.is_empty() => Err(DataError::Empty { path }),
        Value::String(s) => Ok(s.clone()),
        other => Err(DataError::WrongType {
            path,
            expected: "a string",
            found: kind(other),
        }),
    }
}

fn is_rfc3339(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

/// `parent.key`, or `parent["key"]` when the key is not a plain name.
fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@' | ':'));
    if plain {
        format!("{parent}.{key}")
    } else {
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"));
        format!("{parent}[{quoted}]")
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses JSON, refusing an object with the same key twice (which parsers
/// resolve differently: the journal and an agent must not disagree on what
/// a document says).
fn parse_strict(bytes: &[u8]) -> Result<Value, DataError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictSeed {
        path: String::new(),
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| {
        duplicate.take().unwrap_or_else(|| DataError::NotJson {
            reason: e.to_string(),
        })
    })
}

/// Deserializes a [`Value`]; on a duplicate key, notes the error (with its
/// path) in `duplicate` and fails.
struct StrictSeed<'a> {
    path: String,
    duplicate: &'a RefCell<Option<DataError>>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictSeed {
            path: format!("{}[{}]", self.path, items.len()),
            duplicate: self.duplicate,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let path = if self.path.is_empty() {
                    "document".to_owned()
                } else {
                    self.path
                };
                self.duplicate
                    .replace(Some(DataError::DuplicateKey { path, key }));
                return Err(A::Error::custom("duplicate key"));
            }
            let path = if self.path.is_empty() {
                child("", &key).trim_start_matches('.').to_owned()
            } else {
                child(&self.path, &key)
            };
            let value = map.next_value_seed(StrictSeed {
                path,
                duplicate: self.duplicate,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn err(json: &str) -> String {
        DataDocument::try_from_json(json.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn missing_sections_are_empty_and_normalized() {
        let doc = DataDocument::try_from_json(br#" { "platform_admins": ["root"] } "#).unwrap();
        assert_eq!(
            doc.to_json(),
            r#"{"role_bindings":{},"command_whitelists":{},"platform_admins":["root"],"approvals":{}}"#
        );
        assert_eq!(
            DataDocument::default().to_json(),
            r#"{"role_bindings":{},"command_whitelists":{},"platform_admins":[],"approvals":{}}"#
        );
    }

    #[test]
    fn errors_name_the_path() {
        assert_eq!(
            err(r#"{"role_bindings": {"alice": ["admin", 3]}}"#),
            "role_bindings.alice[1] must be a string, not a number"
        );
        assert_eq!(
            err(r#"{"command_whitelists": {"a b": "ls"}}"#),
            r#"command_whitelists["a b"] must be an array of strings, not a string"#
        );
        assert_eq!(
            err(r#"{"platform_admins": [""]}"#),
            "platform_admins[0] must not be empty"
        );
        assert_eq!(
            err(r#"{"role_bindings": {"": []}}"#),
            "role_bindings has an empty key"
        );
        assert_eq!(
            err(r#"{"role_bindings": {"bob": []}, "role_bindings": {}}"#),
            "document has the key `role_bindings` twice"
        );
        assert_eq!(
            err(r#"{"role_bindings": {"bob": [], "bob": ["x"]}}"#),
            "role_bindings has the key `bob` twice"
        );
        assert!(err("[1]").contains("must be a JSON object, not an array"));
        assert!(err("{").starts_with("document is not JSON"));
        assert!(err(r#"{} {}"#).starts_with("document is not JSON"));
        assert!(err(r#"{"admins": []}"#).contains("unknown top-level key `admins`"));
    }

    #[test]
    fn approvals_are_checked_field_by_field() {
        let good = r#"{"operation": "drop-db", "requested_by": "alice", "approved_by": "bob",
            "approver_roles": ["dba"], "expires_at": "2026-11-23T10:00:00Z"}"#;
        let doc =
            DataDocument::try_from_json(format!(r#"{{"approvals": {{"a1": {good}}}}}"#).as_bytes())
                .unwrap();
        assert_eq!(doc.approvals["a1"].approver_roles, ["dba"]);
        let with = |from: &str, to: &str| {
            err(&format!(
                r#"{{"approvals": {{"a1": {}}}}}"#,
                good.replace(from, to)
            ))
        };
        assert_eq!(
            with("2026-11-23T10:00:00Z", "tomorrow"),
            "approvals.a1.expires_at must be an RFC 3339 timestamp, not `tomorrow`"
        );
        assert_eq!(
            with(r#""operation": "drop-db", "#, ""),
            "approvals.a1 is missing the field `operation`"
        );
        assert_eq!(
            with(r#""approved_by""#, r#""approved""#),
            "approvals.a1 has an unknown field `approved`"
        );
        assert_eq!(
            with(r#"["dba"]"#, r#"[null]"#),
            "approvals.a1.approver_roles[0] must be a string, not null"
        );
    }

    #[test]
    fn the_size_limit_counts_bytes_as_sent() {
        let mut big = br#"{"platform_admins": ["root"]}"#.to_vec();
        big.resize(MAX_DATA_BYTES + 1, b' ');
        assert!(err(std::str::from_utf8(&big).unwrap()).contains("over the limit of 4194304"));
        big.truncate(MAX_DATA_BYTES);
        assert!(DataDocument::try_from_json(&big).is_ok());
    }
}
