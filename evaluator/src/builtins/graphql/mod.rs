//! `graphql.*` builtins with OPA v1.20's semantics (`v1/topdown/graphql.go`,
//! built on gqlparser v2).
//!
//! Queries and schemas are parsed with gqlparser's grammar and messages,
//! schemas are validated the way `ValidateSchemaDocument` does it (with the
//! prelude's built-in scalars, directives and introspection types merged
//! in), and queries are checked against the standard validation rules.
//! Parsed documents are returned as Rego objects with gqlparser's JSON
//! field names, pruned as OPA prunes them (no positions, no null or empty
//! members). Arguments that take a document also accept such an object.
//!
//! Known differences, all on unusual input: error messages for documents
//! with several validation errors can list them in another order; where
//! OPA panics (a document object missing a type reference) this is a plain
//! error; lists, objects, selection sets and type references nested more
//! than 256 levels deep are a parse error (OPA has no limit).

mod ast;
mod json;
mod lexer;
mod parser;
mod schema;
mod suggest;
mod validate;

#[cfg(test)]
mod tests;

use regorus::Value;

use self::ast::{QueryDocument, SchemaDocument};
use self::lexer::Pos;
use super::{BuiltinError, arg_str};

pub(crate) const BUILTINS: &[(&str, usize)] = &[
    ("graphql.is_valid", 2),
    ("graphql.parse", 2),
    ("graphql.parse_and_verify", 2),
    ("graphql.parse_query", 1),
    ("graphql.parse_schema", 1),
    ("graphql.schema_is_valid", 1),
];

/// A parse or validation error at a source position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GqlError {
    pub(crate) message: String,
    pub(crate) pos: Pos,
}

/// Errors from the tokenizer and parser.
pub(crate) type SyntaxError = GqlError;

impl GqlError {
    /// gqlparser's rendering (`input:LINE:COL: message`).
    fn render(&self) -> String {
        format!(
            "input:{}:{}: {}",
            self.pos.line, self.pos.column, self.message
        )
    }
}

pub(crate) fn call(name: &str, args: &[Value]) -> Result<Value, BuiltinError> {
    match name {
        "graphql.parse_query" => {
            let text = arg_str("graphql.parse_query", args, 0)?;
            let doc = parse_query_text("graphql.parse_query", text)?;
            Ok(json::query_to_value(&doc))
        }
        "graphql.parse_schema" => {
            let text = arg_str("graphql.parse_schema", args, 0)?;
            let doc = parse_schema_text("graphql.parse_schema", text)?;
            Ok(json::schema_to_value(&doc))
        }
        "graphql.parse" => {
            let (query, schema) = verify("graphql.parse", args)?;
            Ok(Value::from(vec![
                json::query_to_value(&query),
                json::schema_to_value(&schema),
            ]))
        }
        "graphql.parse_and_verify" => Ok(match verify("graphql.parse_and_verify", args) {
            Ok((query, schema)) => Value::from(vec![
                Value::from(true),
                json::query_to_value(&query),
                json::schema_to_value(&schema),
            ]),
            Err(_) => Value::from(vec![
                Value::from(false),
                Value::new_object(),
                Value::new_object(),
            ]),
        }),
        "graphql.is_valid" => Ok(Value::from(verify("graphql.is_valid", args).is_ok())),
        "graphql.schema_is_valid" => {
            let valid = schema_arg("graphql.schema_is_valid", args, 0)
                .and_then(|doc| build_schema("graphql.schema_is_valid", &doc).map(|_| ()))
                .is_ok();
            Ok(Value::from(valid))
        }
        _ => Err(BuiltinError::Unknown(name.to_string())),
    }
}

/// OPA's wording for a parse error: the message, then where it happened.
fn syntax_error(name: &'static str, e: &GqlError) -> BuiltinError {
    BuiltinError::Invalid {
        name,
        reason: format!(
            "{} in GraphQL string at location {}:{}",
            e.message, e.pos.line, e.pos.column
        ),
    }
}

fn parse_query_text(name: &'static str, text: &str) -> Result<QueryDocument, BuiltinError> {
    parser::parse_query(text).map_err(|e| syntax_error(name, &e))
}

fn parse_schema_text(name: &'static str, text: &str) -> Result<SchemaDocument, BuiltinError> {
    parser::parse_schema(text, false).map_err(|e| syntax_error(name, &e))
}

fn decode_error(name: &'static str, reason: String) -> BuiltinError {
    BuiltinError::Invalid { name, reason }
}

fn query_arg(
    name: &'static str,
    args: &[Value],
    position: usize,
) -> Result<QueryDocument, BuiltinError> {
    match args.get(position) {
        Some(Value::String(s)) => parse_query_text(name, s),
        Some(v @ Value::Object(_)) => json::query_from_value(v).map_err(|e| decode_error(name, e)),
        _ => Err(BuiltinError::Operand {
            name,
            position: position + 1,
            expected: "a string or an object",
        }),
    }
}

fn schema_arg(
    name: &'static str,
    args: &[Value],
    position: usize,
) -> Result<SchemaDocument, BuiltinError> {
    match args.get(position) {
        Some(Value::String(s)) => parse_schema_text(name, s),
        Some(v @ Value::Object(_)) => json::schema_from_value(v).map_err(|e| decode_error(name, e)),
        _ => Err(BuiltinError::Operand {
            name,
            position: position + 1,
            expected: "a string or an object",
        }),
    }
}

fn build_schema(name: &'static str, doc: &SchemaDocument) -> Result<schema::Schema, BuiltinError> {
    schema::build(doc).map_err(|e| BuiltinError::Invalid {
        name,
        reason: format!(
            "Error in gqlparser SchemaDocument to Schema conversion: {}",
            e.render()
        ),
    })
}

/// Parses (or decodes) both documents and validates the query against the
/// schema, as `graphql.parse` does.
fn verify(
    name: &'static str,
    args: &[Value],
) -> Result<(QueryDocument, SchemaDocument), BuiltinError> {
    let query = query_arg(name, args, 0)?;
    let schema_doc = schema_arg(name, args, 1)?;
    let schema = build_schema(name, &schema_doc)?;
    let errors = validate::validate(&schema, &query);
    if !errors.is_empty() {
        return Err(BuiltinError::Invalid {
            name,
            reason: validation_message(&errors),
        });
    }
    Ok((query, schema_doc))
}

/// OPA's rendering of gqlparser's error list: the first error's position,
/// then the list's text from the first message on (without the final
/// period).
fn validation_message(errors: &[GqlError]) -> String {
    let all: String = errors.iter().map(|e| format!("{}\n", e.render())).collect();
    let parts: Vec<&str> = all.splitn(4, ':').collect();
    let (line, column, rest) = match parts.as_slice() {
        [_, line, column, rest] => (*line, *column, *rest),
        _ => ("0", "0", all.as_str()),
    };
    let rest = rest.trim_start_matches(' ');
    let message = rest.strip_suffix(".\n").unwrap_or(rest);
    format!("{message} in GraphQL string at location {line}:{column}")
}
