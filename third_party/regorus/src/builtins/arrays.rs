// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.
#![allow(clippy::as_conversions)]

use crate::ast::{Expr, Ref};
use crate::builtins;
use crate::builtins::utils::{ensure_args_count, ensure_array};
use crate::builtins::utils::{int_operand, operand};
use crate::lexer::Span;
use crate::Rc;
use crate::Value;

use anyhow::Result;

pub fn register(m: &mut builtins::BuiltinsMap<&'static str, builtins::BuiltinFcn>) {
    m.insert("array.concat", (concat, 2));
    m.insert("array.reverse", (reverse, 1));
    m.insert("array.slice", (slice, 3));
}

fn concat(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "array.concat";
    ensure_args_count(span, name, params, args, 2)?;
    let v1 = ensure_array(name, operand(params, 0), args[0].clone())?;
    let v2 = ensure_array(name, operand(params, 1), args[1].clone())?;

    // policy-engine patch: an empty operand gives the other one itself, and
    // otherwise one exact-size allocation (no copy of either operand first).
    if v2.is_empty() {
        return Ok(Value::Array(v1));
    }
    if v1.is_empty() {
        return Ok(Value::Array(v2));
    }
    let mut out = alloc::vec::Vec::with_capacity(v1.len() + v2.len());
    out.extend(v1.iter().cloned());
    out.extend(v2.iter().cloned());
    Ok(Value::from(out))
}

fn reverse(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "array.reverse";
    ensure_args_count(span, name, params, args, 1)?;

    let mut v1 = ensure_array(name, operand(params, 0), args[0].clone())?;
    Rc::make_mut(&mut v1).reverse();
    Ok(Value::Array(v1))
}

fn slice(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "array.slice";
    ensure_args_count(span, name, params, args, 3)?;

    let array = ensure_array(name, operand(params, 0), args[0].clone())?;
    // policy-engine patch: start and stop are OPA's integer operands (a
    // non-integer is a type error, no longer undefined in strict mode).
    let start = int_operand(name, params, args, 1)?;
    let stop = int_operand(name, params, args, 2)?;
    let start = usize::try_from(start).unwrap_or(0);
    let stop = usize::try_from(stop).unwrap_or(0).min(array.len());

    if start >= stop {
        return Ok(Value::new_array());
    }

    let slice = array.as_slice().get(start..stop).unwrap_or_default();
    Ok(Value::from(slice.to_vec()))
}
