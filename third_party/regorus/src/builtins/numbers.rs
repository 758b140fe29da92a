// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

#![allow(
    clippy::unseparated_literal_suffix,
    clippy::as_conversions,
    clippy::unused_trait_names,
    clippy::pattern_type_mismatch
)]

use crate::ast::{ArithOp, Expr, Ref};
use crate::builtins;
use crate::builtins::utils::{enforce_limit, ensure_args_count, ensure_numeric};
use crate::builtins::utils::{operand, operand_error, operand_type_error};
use crate::lexer::Span;
use crate::number::Number;
use crate::value::Value;
use crate::*;

use anyhow::{bail, Result};

#[cfg(feature = "std")]
use rand::RngExt;

pub fn register(m: &mut builtins::BuiltinsMap<&'static str, builtins::BuiltinFcn>) {
    m.insert("abs", (abs, 1));
    m.insert("ceil", (ceil, 1));
    m.insert("floor", (floor, 1));
    m.insert("numbers.range", (range, 2));
    m.insert("numbers.range_step", (range_step, 3));
    #[cfg(feature = "std")]
    m.insert("rand.intn", (intn, 2));
    m.insert("round", (round, 1));
}

pub fn arithmetic_operation(
    span: &Span,
    op: &ArithOp,
    expr1: &Expr,
    expr2: &Expr,
    v1: Value,
    v2: Value,
    strict: bool,
) -> Result<Value> {
    let op_name = format!("{op:?}").to_lowercase();
    let v1 = ensure_numeric(op_name.as_str(), expr1, &v1)?;
    let v2 = ensure_numeric(op_name.as_str(), expr2, &v2)?;

    Ok(Value::from(match op {
        ArithOp::Add => v1.add(&v2)?,
        ArithOp::Sub => v1.sub(&v2)?,
        ArithOp::Mul => v1.mul(&v2)?,
        ArithOp::Div if strict && v2 == Number::from(0u64) => bail!(span.error("divide by zero")),
        ArithOp::Div if v2 == Number::from(0u64) => return Ok(Value::Undefined),
        ArithOp::Div => v1.divide(&v2)?,
        ArithOp::Mod if strict && v2 == Number::from(0u64) => bail!(span.error("modulo by zero")),
        ArithOp::Mod if v2 == Number::from(0u64) => return Ok(Value::Undefined),
        ArithOp::Mod if !v1.is_integer() || !v2.is_integer() => {
            bail!(span.error("modulo on floating-point number"))
        }
        ArithOp::Mod => v1.modulo(&v2)?,
    }))
}

fn abs(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    ensure_args_count(span, "abs", params, args, 1)?;
    Ok(Value::from(
        ensure_numeric("abs", operand(params, 0), &args[0])?.abs(),
    ))
}

fn ceil(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    ensure_args_count(span, "ceil", params, args, 1)?;
    Ok(Value::from(
        ensure_numeric("ceil", operand(params, 0), &args[0])?.ceil(),
    ))
}

fn floor(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    ensure_args_count(span, "floor", params, args, 1)?;
    Ok(Value::from(
        ensure_numeric("floor", operand(params, 0), &args[0])?.floor(),
    ))
}

/// policy-engine patch: OPA's `builtins.BigIntOperand`: a number that is an
/// integer, else OPA's operand type error.
fn integer_operand(name: &str, params: &[Ref<Expr>], args: &[Value], idx: usize) -> Result<Number> {
    match &args[idx] {
        Value::Number(n) if n.is_integer() => Ok(n.clone()),
        Value::Number(_) => Err(operand_error(
            params[idx].span(),
            name,
            idx + 1,
            "must be integer number but got floating-point number",
        )),
        v => Err(operand_type_error(
            params[idx].span(),
            name,
            idx + 1,
            &["integer"],
            v,
        )),
    }
}

/// Elements preallocated for a range; a longer one grows as it is filled
/// (under the memory limit), so a huge range cannot abort on allocation.
const RANGE_PREALLOCATION: u128 = 1 << 16;

/// The most numbers a range may hold. OPA has no limit but stops a range
/// when the query is cancelled; a builtin here cannot see the evaluation's
/// deadline, so a range beyond this is a builtin error instead of a worker
/// that runs out of memory.
pub(crate) const MAX_GENERATED_ELEMENTS: u128 = 1 << 20;

fn too_many(name: &str, count: u128) -> anyhow::Error {
    anyhow::anyhow!(
        "eval_builtin_error: {name}: a range of {count} numbers is more than {MAX_GENERATED_ELEMENTS}"
    )
}

/// policy-engine patch: OPA's `generateRange`: from `x` up to `y` by `step`
/// when `x <= y`, else down to `y` by `step` (`step` is positive).
fn generate_range(name: &str, x: &Number, y: &Number, step: &Number) -> Result<Value> {
    if let (Some(x), Some(y), Some(step)) = (x.as_i64(), y.as_i64(), step.as_i64()) {
        let (x, y, step) = (i128::from(x), i128::from(y), i128::from(step));
        let count = (x - y).unsigned_abs() / step.unsigned_abs() + 1;
        if count > MAX_GENERATED_ELEMENTS {
            return Err(too_many(name, count));
        }
        let mut values = Vec::with_capacity(count.min(RANGE_PREALLOCATION) as usize);
        let mut i = x;
        if x <= y {
            while i <= y {
                values.push(Value::from(i));
                i += step;
                enforce_limit()?;
            }
        } else {
            while i >= y {
                values.push(Value::from(i));
                i -= step;
                enforce_limit()?;
            }
        }
        return Ok(Value::from_array(values));
    }

    let ascending = x <= y;
    let mut values = Vec::new();
    let mut i = x.clone();
    while (ascending && &i <= y) || (!ascending && &i >= y) {
        if values.len() as u128 >= MAX_GENERATED_ELEMENTS {
            return Err(too_many(name, values.len() as u128 + 1));
        }
        values.push(Value::from(i.clone()));
        if ascending {
            i.add_assign(step)?;
        } else {
            i.sub_assign(step)?;
        }
        enforce_limit()?;
    }
    Ok(Value::from_array(values))
}

fn range(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "numbers.range";
    ensure_args_count(span, name, params, args, 2)?;
    let x = integer_operand(name, params, args, 0)?;
    let y = integer_operand(name, params, args, 1)?;
    generate_range(name, &x, &y, &Number::from(1u64))
}

fn range_step(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "numbers.range_step";
    ensure_args_count(span, name, params, args, 3)?;
    let x = integer_operand(name, params, args, 0)?;
    let y = integer_operand(name, params, args, 1)?;
    let step = integer_operand(name, params, args, 2)?;
    // policy-engine patch: a step of zero or less is OPA's builtin error
    // (it divided by zero or overflowed the capacity here).
    if !step.is_positive() || step == Number::from(0u64) {
        bail!(span.error("eval_builtin_error: numbers.range_step: step must be a positive integer"));
    }
    generate_range(name, &x, &y, &step)
}

fn round(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "round";
    ensure_args_count(span, name, params, args, 1)?;
    Ok(Value::from(
        ensure_numeric(name, operand(params, 0), &args[0])?.round(),
    ))
}

#[cfg(feature = "std")]
fn intn(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let fcn = "rand.intn";
    ensure_args_count(span, fcn, params, args, 2)?;
    let _ = crate::builtins::utils::ensure_string(fcn, operand(params, 0), &args[0])?;
    // policy-engine patch: `n` is OPA's integer operand (a type error
    // otherwise) and a negative `n` counts as its absolute value.
    let n = crate::builtins::utils::int_operand(fcn, params, args, 1)?.unsigned_abs();
    if n == 0 {
        return Ok(Value::from(0u64));
    }
    Ok(Value::from(rand::rng().random_range(0..n)))
}
