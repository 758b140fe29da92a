// policy-engine patch: `internal.template_string`, the builtin that template
// strings (`$"…{expr}…"`) are desugared into by the parser.
//
// Its argument is an array of parts: a string, number, boolean or null part is
// written as is (strings without quotes); every other part is a set holding
// the values of one template expression, empty when the expression is
// undefined (written `<undefined>`), and must not hold more than one value.
// Values are written as OPA writes terms: strings inside collections quoted as
// Go does, sets as `{…}` (`set()` when empty), objects as `{"k": v}`.

use crate::ast::{Expr, Ref};
use crate::builtins;
use crate::builtins::utils::{ensure_args_count, ensure_array, operand};
use crate::lexer::Span;
use crate::value::Value;
use crate::*;

use anyhow::{bail, Result};
use core::fmt::Write as _;

pub fn register(m: &mut builtins::BuiltinsMap<&'static str, builtins::BuiltinFcn>) {
    m.insert("internal.template_string", (template_string, 1));
}

fn template_string(
    span: &Span,
    params: &[Ref<Expr>],
    args: &[Value],
    _strict: bool,
) -> Result<Value> {
    let name = "internal.template_string";
    ensure_args_count(span, name, params, args, 1)?;
    let parts = ensure_array(name, operand(params, 0), args[0].clone())?;

    let mut out = String::new();
    for part in parts.iter() {
        match part {
            Value::String(s) => out.push_str(s),
            Value::Number(_) | Value::Bool(_) | Value::Null => write_term(&mut out, part)?,
            Value::Set(values) => {
                let mut values = values.iter();
                match (values.next(), values.next()) {
                    (None, _) => out.push_str("<undefined>"),
                    (Some(Value::String(s)), None) => out.push_str(s),
                    (Some(v), None) => write_term(&mut out, v)?,
                    (Some(_), Some(_)) => bail!(span.error(
                        "eval_conflict_error: template-strings must not produce multiple outputs"
                    )),
                }
            }
            other => bail!(span.error(&format!(
                "eval_internal_error: illegal argument type: {}",
                type_name(other)
            ))),
        }
    }
    Ok(Value::from(out))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Set(_) => "set",
        Value::Object(_) => "object",
        Value::Undefined => "undefined",
    }
}

/// Writes `v` as OPA writes a term.
fn write_term(out: &mut String, v: &Value) -> Result<()> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(_) => out.push_str(&v.to_json_str()?),
        Value::String(s) => write_go_quoted(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_term(out, item)?;
            }
            out.push(']');
        }
        Value::Set(items) if items.is_empty() => out.push_str("set()"),
        Value::Set(items) => {
            out.push('{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_term(out, item)?;
            }
            out.push('}');
        }
        Value::Object(fields) => {
            out.push('{');
            for (i, (k, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_term(out, k)?;
                out.push_str(": ");
                write_term(out, item)?;
            }
            out.push('}');
        }
        Value::Undefined => out.push_str("<undefined>"),
    }
    Ok(())
}

/// Writes `s` quoted as Go's `strconv.Quote` does.
fn write_go_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// Go's `unicode.IsPrint` for the characters that matter in practice: control
/// and format characters and the non-ASCII spaces are not printable.
fn is_go_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(
            c,
            '\u{a0}'
                | '\u{ad}'
                | '\u{1680}'
                | '\u{2000}'..='\u{200f}'
                | '\u{2028}'..='\u{202f}'
                | '\u{205f}'..='\u{2064}'
                | '\u{3000}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        ))
}
