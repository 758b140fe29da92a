// policy-engine patch: `json.verify_schema` and `json.match_schema` with
// OPA's argument handling and result shapes. OPA validates with gojsonschema;
// validation itself is done by the `jsonschema` crate here, and its errors
// are reported in gojsonschema's form (`error`, `type`, `field`, `desc`).

#![allow(clippy::pattern_type_mismatch)]

use crate::ast::{Expr, Ref};
use crate::builtins::utils::ensure_args_count;
use crate::lexer::Span;
use crate::value::Value;
use crate::*;

use anyhow::Result;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::ValidationError;

/// The primitive types gojsonschema accepts in a schema's `type`.
const SCHEMA_TYPES: [&str; 7] = [
    "array", "boolean", "integer", "number", "null", "object", "string",
];

/// Keywords whose value is a schema.
const SCHEMA_KEYWORDS: [&str; 9] = [
    "additionalItems",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "items",
];

/// Keywords whose value is an array of schemas.
const SCHEMA_ARRAY_KEYWORDS: [&str; 4] = ["allOf", "anyOf", "oneOf", "items"];

/// Keywords whose value maps names to schemas.
const SCHEMA_MAP_KEYWORDS: [&str; 5] = [
    "properties",
    "patternProperties",
    "definitions",
    "$defs",
    "dependencies",
];

/// A JSON document or schema given as a Rego value, as OPA's
/// `astValueToJSONSchemaLoader` reads one: a string holds JSON text; an
/// object or array is the document itself.
fn to_json(value: &Value) -> core::result::Result<serde_json::Value, String> {
    match value {
        Value::String(text) => {
            serde_json::from_str(text).map_err(|_| "invalid JSON string".to_string())
        }
        Value::Object(_) | Value::Array(_) => value
            .to_json_str()
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .ok_or_else(|| "invalid JSON document".to_string()),
        _ => Err("wrong type, expected string or object".to_string()),
    }
}

/// The first `type` that gojsonschema rejects while parsing `schema`.
fn check_types(schema: &serde_json::Value) -> core::result::Result<(), String> {
    let serde_json::Value::Object(map) = schema else {
        return Ok(());
    };
    let invalid = |given: &str| {
        format!(
            "has a primitive type that is NOT VALID -- given: /{given}/ Expected valid values are:[{}]",
            SCHEMA_TYPES.join(" ")
        )
    };
    match map.get("type") {
        Some(serde_json::Value::String(t)) if !SCHEMA_TYPES.contains(&t.as_str()) => {
            return Err(invalid(t));
        }
        Some(serde_json::Value::Array(types)) => {
            for t in types {
                if let serde_json::Value::String(t) = t {
                    if !SCHEMA_TYPES.contains(&t.as_str()) {
                        return Err(invalid(t));
                    }
                }
            }
        }
        _ => {}
    }
    for (key, value) in map {
        if SCHEMA_KEYWORDS.contains(&key.as_str()) {
            check_types(value)?;
        }
        if SCHEMA_ARRAY_KEYWORDS.contains(&key.as_str()) {
            if let serde_json::Value::Array(items) = value {
                items.iter().try_for_each(check_types)?;
            }
        }
        if SCHEMA_MAP_KEYWORDS.contains(&key.as_str()) {
            if let serde_json::Value::Object(children) = value {
                children.values().try_for_each(check_types)?;
            }
        }
    }
    Ok(())
}

/// Compiles a schema operand; the error is gojsonschema's message where
/// this engine knows it.
fn compile(schema: &Value) -> core::result::Result<jsonschema::Validator, String> {
    let schema = to_json(schema)?;
    // gojsonschema's `parseSchemaURL`: a schema is an object or a boolean.
    if !matches!(
        schema,
        serde_json::Value::Object(_) | serde_json::Value::Bool(_)
    ) {
        return Err("schema is invalid".to_string());
    }
    check_types(&schema)?;
    jsonschema::validator_for(&schema).map_err(|e| e.to_string())
}

/// gojsonschema's name for the type of a JSON value.
fn given_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(n) => {
            let is_integer = n.is_i64()
                || n.is_u64()
                || n.as_f64()
                    .is_some_and(|f| f.is_finite() && f.fract() == 0.0);
            if is_integer {
                "integer"
            } else {
                "number"
            }
        }
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// A JSON value as gojsonschema prints it in a description.
fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// gojsonschema's (type, description) for one validation error; `field`
/// is the failing location as gojsonschema names it.
fn describe(
    kind: &ValidationErrorKind,
    instance: &serde_json::Value,
    field: &str,
) -> (String, String) {
    let (t, d): (&str, String) = match kind {
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(set) => {
                    let names: Vec<String> = set.iter().map(|t| t.to_string()).collect();
                    format!("[{}]", names.join(","))
                }
            };
            (
                "invalid_type",
                format!(
                    "Invalid type. Expected: {expected}, given: {}",
                    given_type(instance)
                ),
            )
        }
        ValidationErrorKind::Required { property } => {
            ("required", format!("{} is required", json_text(property)))
        }
        ValidationErrorKind::Enum { options } => {
            let allowed = match options.as_ref() {
                serde_json::Value::Array(items) if items.is_empty() => "(none)".to_string(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            (
                "enum",
                format!("{field} must be one of the following: {allowed}"),
            )
        }
        ValidationErrorKind::Constant { expected_value } => {
            ("const", format!("{field} does not match: {expected_value}"))
        }
        ValidationErrorKind::MinLength { limit } => (
            "string_gte",
            format!("String length must be greater than or equal to {limit}"),
        ),
        ValidationErrorKind::MaxLength { limit } => (
            "string_lte",
            format!("String length must be less than or equal to {limit}"),
        ),
        ValidationErrorKind::Minimum { limit } => (
            "number_gte",
            format!("Must be greater than or equal to {limit}"),
        ),
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            ("number_gt", format!("Must be greater than {limit}"))
        }
        ValidationErrorKind::Maximum { limit } => (
            "number_lte",
            format!("Must be less than or equal to {limit}"),
        ),
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            ("number_lt", format!("Must be less than {limit}"))
        }
        ValidationErrorKind::MinItems { limit } => (
            "array_min_items",
            format!("Array must have at least {limit} items"),
        ),
        ValidationErrorKind::MaxItems { limit } => (
            "array_max_items",
            format!("Array must have at most {limit} items"),
        ),
        ValidationErrorKind::UniqueItems => ("unique", "array items must be unique".to_string()),
        ValidationErrorKind::MinProperties { limit } => (
            "array_min_properties",
            format!("Must have at least {limit} properties"),
        ),
        ValidationErrorKind::MaxProperties { limit } => (
            "array_max_properties",
            format!("Must have at most {limit} properties"),
        ),
        ValidationErrorKind::Pattern { pattern } => {
            ("pattern", format!("Does not match pattern '{pattern}'"))
        }
        ValidationErrorKind::Format { format } => {
            ("format", format!("Does not match format '{format}'"))
        }
        ValidationErrorKind::MultipleOf { multiple_of } => (
            "multiple_of",
            format!("Must be a multiple of {multiple_of}"),
        ),
        ValidationErrorKind::AnyOf { .. } => (
            "number_any_of",
            "Must validate at least one schema (anyOf)".to_string(),
        ),
        ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. } => (
            "number_one_of",
            "Must validate one and only one schema (oneOf)".to_string(),
        ),
        ValidationErrorKind::Not { .. } => (
            "number_not",
            "Must not validate the schema (not)".to_string(),
        ),
        ValidationErrorKind::FalseSchema => ("false", "False always fails validation".to_string()),
        ValidationErrorKind::Contains => (
            "contains",
            "At least one of the items must match".to_string(),
        ),
        ValidationErrorKind::AdditionalItems { .. } => (
            "array_no_additional_items",
            "No additional items allowed on array".to_string(),
        ),
        other => ("internal", format!("Internal Error {other:?}")),
    };
    (t.to_string(), d)
}

/// gojsonschema's field name for a location: `(Root)` at the root (the
/// name OPA's copy gives the root context), else the path joined with dots
/// (`a.0.b`).
fn field_name<'a>(segments: impl Iterator<Item = LocationSegment<'a>>) -> String {
    let parts: Vec<String> = segments.map(|s| s.to_string()).collect();
    if parts.is_empty() {
        "(Root)".to_string()
    } else {
        parts.join(".")
    }
}

/// One gojsonschema result error object; additional properties give one
/// error each, as in gojsonschema.
fn result_errors(error: &ValidationError<'_>) -> Vec<Value> {
    let field = field_name(error.instance_path().iter());
    let entry = |t: String, desc: String| {
        let mut obj = alloc::collections::BTreeMap::new();
        obj.insert(
            Value::from("error"),
            Value::from(format!("{field}: {desc}")),
        );
        obj.insert(Value::from("type"), Value::from(t));
        obj.insert(Value::from("field"), Value::from(field.clone()));
        obj.insert(Value::from("desc"), Value::from(desc));
        Value::from_map(obj)
    };
    if let ValidationErrorKind::AdditionalProperties { unexpected } = error.kind() {
        return unexpected
            .iter()
            .map(|p| {
                entry(
                    "additional_property_not_allowed".to_string(),
                    format!("Additional property {p} is not allowed"),
                )
            })
            .collect();
    }
    let (t, desc) = describe(error.kind(), error.instance(), &field);
    vec![entry(t, desc)]
}

pub fn json_verify_schema(
    span: &Span,
    params: &[Ref<Expr>],
    args: &[Value],
    _strict: bool,
) -> Result<Value> {
    let name = "json.verify_schema";
    ensure_args_count(span, name, params, args, 1)?;
    Ok(Value::from_array(match compile(&args[0]) {
        Ok(_) => vec![Value::Bool(true), Value::Null],
        Err(e) => vec![Value::Bool(false), Value::from(format!("jsonschema: {e}"))],
    }))
}

pub fn json_match_schema(
    span: &Span,
    params: &[Ref<Expr>],
    args: &[Value],
    _strict: bool,
) -> Result<Value> {
    let name = "json.match_schema";
    ensure_args_count(span, name, params, args, 2)?;
    let builtin_error = |e: String| span.error(&format!("eval_builtin_error: {name}: {e}"));
    let document = to_json(&args[0]).map_err(builtin_error)?;
    let validator = compile(&args[1]).map_err(builtin_error)?;
    let errors: Vec<Value> = validator
        .iter_errors(&document)
        .flat_map(|e| result_errors(&e))
        .collect();
    Ok(Value::from_array(vec![
        Value::Bool(errors.is_empty()),
        Value::from_array(errors),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> Value {
        Value::from(text)
    }

    #[test]
    fn invalid_type_is_reported_as_gojsonschema_does() {
        let validator = compile(&schema(r#"{"properties": {"id": {"type": "integer"}}}"#))
            .expect("valid schema");
        let document = serde_json::json!({"id": "foo"});
        let errors: Vec<Value> = validator
            .iter_errors(&document)
            .flat_map(|e| result_errors(&e))
            .collect();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0]["error"],
            Value::from("id: Invalid type. Expected: integer, given: string")
        );
        assert_eq!(errors[0]["field"], Value::from("id"));
        assert_eq!(errors[0]["type"], Value::from("invalid_type"));
    }

    #[test]
    fn required_property_is_reported_on_the_root() {
        let validator = compile(&schema(r#"{"required": ["id"]}"#)).expect("valid schema");
        let document = serde_json::json!({});
        let errors: Vec<Value> = validator
            .iter_errors(&document)
            .flat_map(|e| result_errors(&e))
            .collect();
        assert_eq!(errors[0]["error"], Value::from("(Root): id is required"));
    }

    #[test]
    fn unknown_primitive_type_is_rejected() {
        let err = compile(&schema(r#"{"properties": {"a": {"type": "unknown"}}}"#))
            .expect_err("invalid schema");
        assert!(err.starts_with("has a primitive type that is NOT VALID -- given: /unknown/"));
    }

    #[test]
    fn a_schema_that_is_not_an_object_or_boolean_is_invalid() {
        assert_eq!(
            compile(&schema("-3")).err().as_deref(),
            Some("schema is invalid")
        );
        assert_eq!(
            compile(&schema("[]")).err().as_deref(),
            Some("schema is invalid")
        );
        assert!(compile(&schema("true")).is_ok());
    }

    #[test]
    fn operands_other_than_string_object_or_array_are_rejected() {
        assert!(to_json(&Value::from(1)).is_err());
        assert!(to_json(&Value::from("{not json")).is_err());
        assert!(to_json(&Value::from("{\"a\": 1}")).is_ok());
    }
}
