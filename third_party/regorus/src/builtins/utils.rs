// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

#![allow(clippy::pattern_type_mismatch)]
use crate::ast::{Expr, Ref};
use crate::lexer::Span;
use crate::number::Number;
use crate::value::{Array, Object, Set};
use crate::Rc;
use crate::Value;
use crate::*;

use anyhow::{bail, Result};

#[inline]
pub fn enforce_limit() -> Result<()> {
    crate::utils::limits::check_memory_limit_if_needed().map_err(anyhow::Error::new)
}

pub fn ensure_args_count(
    span: &Span,
    fcn: &'static str,
    params: &[Ref<Expr>],
    args: &[Value],
    expected: usize,
) -> Result<()> {
    if args.len() != expected {
        let span = match args.len() > expected {
            false => span,
            true => params[args.len() - 1].span(),
        };
        if expected == 1 {
            bail!(span.error(format!("`{fcn}` expects 1 argument").as_str()))
        } else {
            bail!(span.error(format!("`{fcn}` expects {expected} arguments").as_str()))
        }
    }
    Ok(())
}

/// policy-engine patch: a builtin's operand expression and, where the call
/// site gives it, its 1-based position, so that a type error can be worded
/// as OPA's (`eval_type_error: fcn: operand 2 must be string but got number`).
pub struct Operand<'a> {
    expr: &'a Expr,
    pos: Option<usize>,
}

/// What the `ensure_*` checks accept as the operand: an expression (no
/// position, regorus's own message) or an [`Operand`] from [`operand`].
pub trait IntoOperand<'a> {
    fn into_operand(self) -> Operand<'a>;
}

impl<'a> IntoOperand<'a> for &'a Expr {
    fn into_operand(self) -> Operand<'a> {
        Operand {
            expr: self,
            pos: None,
        }
    }
}

impl<'a> IntoOperand<'a> for &'a Ref<Expr> {
    fn into_operand(self) -> Operand<'a> {
        Operand {
            expr: self.as_ref(),
            pos: None,
        }
    }
}

impl<'a> IntoOperand<'a> for Operand<'a> {
    fn into_operand(self) -> Operand<'a> {
        self
    }
}

/// Operand `idx` (0-based) of a builtin call.
pub fn operand(params: &[Ref<Expr>], idx: usize) -> Operand<'_> {
    Operand {
        expr: params[idx].as_ref(),
        pos: Some(idx + 1),
    }
}

/// The type error for `v` given where `expected` is needed: OPA's wording
/// when the position is known, else `legacy`.
fn type_error(
    fcn: &str,
    arg: &Operand<'_>,
    expected: &str,
    v: &Value,
    legacy: String,
) -> anyhow::Error {
    match arg.pos {
        Some(pos) => operand_type_error(arg.expr.span(), fcn, pos, &[expected], v),
        None => arg.expr.span().error(&legacy),
    }
}

pub fn ensure_numeric<'a>(fcn: &str, arg: impl IntoOperand<'a>, v: &Value) -> Result<Number> {
    Ok(match &v {
        Value::Number(n) => n.clone(),
        _ => {
            let legacy = format!("`{fcn}` expects numeric argument. Got `{v}` instead");
            return Err(type_error(fcn, &arg.into_operand(), "number", v, legacy));
        }
    })
}

pub fn validate_integer_arg(
    fcn: &str,
    param: &Ref<Expr>,
    original_value: &Value,
    numeric_value: &Number,
    strict: bool,
    allow_negative: bool,
) -> Result<bool> {
    if !numeric_value.is_integer() {
        if strict {
            bail!(param.span().error(
                format!("`{fcn}` expects integer arguments. Got `{original_value}`").as_str()
            ));
        }
        return Ok(false);
    }

    if !allow_negative {
        if let Some(int_value) = numeric_value.as_i128() {
            if int_value < 0 {
                if strict {
                    bail!(param.span().error(
                        format!("`{fcn}` expects non-negative integer arguments. Got `{original_value}`")
                            .as_str(),
                    ));
                }
                return Ok(false);
            }
        } else if !numeric_value.is_positive() {
            if strict {
                bail!(param.span().error(
                    format!(
                        "`{fcn}` expects non-negative integer arguments. Got `{original_value}`"
                    )
                    .as_str(),
                ));
            }
            return Ok(false);
        }
    }

    Ok(true)
}

pub fn ensure_string<'a>(fcn: &str, arg: impl IntoOperand<'a>, v: &Value) -> Result<Rc<str>> {
    Ok(match &v {
        Value::String(s) => s.clone(),
        _ => {
            let legacy = format!("`{fcn}` expects string argument. Got `{v}` instead");
            return Err(type_error(fcn, &arg.into_operand(), "string", v, legacy));
        }
    })
}

pub fn ensure_string_element<'a>(
    fcn: &str,
    arg: &Expr,
    v: &'a Value,
    idx: usize,
) -> Result<&'a str> {
    Ok(match &v {
        Value::String(s) => s.as_ref(),
        _ => {
            let span = arg.span();
            bail!(span.error(
                format!("`{fcn}` expects string collection. Element {idx} is not a string.")
                    .as_str()
            ))
        }
    })
}

pub fn ensure_string_collection<'a>(fcn: &str, arg: &Expr, v: &'a Value) -> Result<Vec<&'a str>> {
    let mut collection = vec![];
    match &v {
        Value::Array(a) => {
            for (idx, elem) in a.iter().enumerate() {
                collection.push(ensure_string_element(fcn, arg, elem, idx)?);
                // Enforce allocator limit while materializing the string collection.
                enforce_limit()?;
            }
        }
        Value::Set(s) => {
            for (idx, elem) in s.iter().enumerate() {
                collection.push(ensure_string_element(fcn, arg, elem, idx)?);
                // Enforce allocator limit while materializing the string collection.
                enforce_limit()?;
            }
        }
        _ => {
            let span = arg.span();
            bail!(span.error(format!("`{fcn}` expects array/set of strings.").as_str()))
        }
    }
    Ok(collection)
}

pub fn ensure_array<'a>(fcn: &str, arg: impl IntoOperand<'a>, v: Value) -> Result<Rc<Array>> {
    Ok(match v {
        Value::Array(a) => a,
        _ => {
            let legacy = format!("`{fcn}` expects array argument. Got `{v}` instead");
            return Err(type_error(fcn, &arg.into_operand(), "array", &v, legacy));
        }
    })
}

pub fn ensure_set<'a>(fcn: &str, arg: impl IntoOperand<'a>, v: Value) -> Result<Rc<Set>> {
    Ok(match v {
        Value::Set(s) => s,
        _ => {
            let legacy = format!("`{fcn}` expects set argument. Got `{v}` instead");
            return Err(type_error(fcn, &arg.into_operand(), "set", &v, legacy));
        }
    })
}

pub fn ensure_object<'a>(fcn: &str, arg: impl IntoOperand<'a>, v: Value) -> Result<Rc<Object>> {
    Ok(match v {
        Value::Object(o) => o,
        _ => {
            let legacy = format!("`{fcn}` expects object argument. Got `{v}` instead");
            return Err(type_error(fcn, &arg.into_operand(), "object", &v, legacy));
        }
    })
}

/// policy-engine patch: OPA's name for the type of `v` (`ast.TypeName`).
pub fn opa_type_name(v: &Value) -> &'static str {
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

/// policy-engine patch: OPA's operand type error (`builtins.NewOperandTypeErr`
/// raised through `handleBuiltinErr`), with its code in the message:
/// `eval_type_error: fcn: operand 2 must be one of {object, set} but got boolean`.
pub fn operand_type_error(
    span: &Span,
    fcn: &str,
    pos: usize,
    expected: &[&str],
    got: &Value,
) -> anyhow::Error {
    let expected = match expected {
        [one] => (*one).to_string(),
        many => format!("one of {{{}}}", many.join(", ")),
    };
    let got = opa_type_name(got);
    span.error(&format!(
        "eval_type_error: {fcn}: operand {pos} must be {expected} but got {got}"
    ))
}

/// policy-engine patch: OPA's other operand errors (`builtins.NewOperandErr`):
/// `eval_type_error: fcn: operand 1 <message>`.
pub fn operand_error(span: &Span, fcn: &str, pos: usize, message: &str) -> anyhow::Error {
    span.error(&format!("eval_type_error: {fcn}: operand {pos} {message}"))
}

/// policy-engine patch: OPA's `builtins.IntOperand`: operand `idx` (0-based)
/// as an integer that fits in 64 bits (an integral float such as `6.0`
/// counts), else OPA's operand type error.
pub fn int_operand(fcn: &str, params: &[Ref<Expr>], args: &[Value], idx: usize) -> Result<i64> {
    match &args[idx] {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            operand_error(
                params[idx].span(),
                fcn,
                idx + 1,
                "must be integer number but got floating-point number",
            )
        }),
        v => Err(operand_type_error(
            params[idx].span(),
            fcn,
            idx + 1,
            &["number"],
            v,
        )),
    }
}
