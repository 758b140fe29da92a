// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.
#![allow(clippy::unused_trait_names)]
use core::cmp::Ordering;
use core::str::FromStr;

use crate::ast::{Expr, Ref};
use crate::builtins;
use crate::builtins::strings::go_to_lower;
use crate::builtins::utils::operand;
use crate::builtins::utils::{ensure_args_count, ensure_string};
use crate::lexer::Span;
use crate::number::BigInt;
use crate::number::Number;
use crate::value::Value;
use crate::*;

use anyhow::Result;
use num_traits::{One, Signed, Zero};

pub fn register(m: &mut builtins::BuiltinsMap<&'static str, builtins::BuiltinFcn>) {
    m.insert("units.parse", (parse, 1));
    m.insert("units.parse_bytes", (parse_bytes, 1));
}

// policy-engine patch: `units.parse` and `units.parse_bytes` follow OPA's
// `builtinUnits` / `builtinNumBytes`: quotes are removed anywhere in the
// string, only a space is refused, the number and the unit are split as
// `extractNumAndUnit` does, OPA's unit tables only, and every failure is a
// builtin error (undefined outside strict mode). `units.parse` computes with
// exact rationals and writes a fraction with 10 decimals (`Rat.FloatString`);
// `units.parse_bytes` rounds to a 64-bit mantissa and truncates (`big.Float`).

/// OPA's `maxExponentDigits`.
const MAX_EXPONENT_DIGITS: usize = 6;

fn parse(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "units.parse";
    ensure_args_count(span, name, params, args, 1)?;
    let raw = ensure_string(name, operand(params, 0), &args[0])?;
    let s = raw.replace('"', "");
    let fail = |msg: &str| span.error(&format!("eval_builtin_error: {name}: {msg}"));
    if s.contains(' ') {
        return Err(fail("spaces not allowed in resource strings"));
    }
    let (num, unit) = extract_num_and_unit(&s).ok_or_else(|| fail("exponent too large"))?;
    if num.is_empty() {
        return Err(fail("no amount provided"));
    }
    // Only the letters after the first are lowered, so `m` and `M` differ.
    let mut chars = unit.chars();
    let unit = match chars.next() {
        Some(first) => format!("{first}{}", go_to_lower(chars.as_str())),
        None => String::new(),
    };
    let (factor, milli) = match unit.as_str() {
        "m" => (1u64, true),
        "" => (1, false),
        "k" | "K" => (1_000, false),
        "ki" | "Ki" => (1 << 10, false),
        "M" => (1_000_000, false),
        "mi" | "Mi" => (1 << 20, false),
        "g" | "G" => (1_000_000_000, false),
        "gi" | "Gi" => (1 << 30, false),
        "t" | "T" => (1_000_000_000_000, false),
        "ti" | "Ti" => (1 << 40, false),
        "p" | "P" => (1_000_000_000_000_000, false),
        "pi" | "Pi" => (1 << 50, false),
        "e" | "E" => (1_000_000_000_000_000_000, false),
        "ei" | "Ei" => (1 << 60, false),
        _ => return Err(fail(&format!("unit {unit} not recognized"))),
    };
    let (mantissa, exp10) =
        parse_decimal(num).ok_or_else(|| fail("could not parse amount to a number"))?;
    let exp10 = if milli { exp10 - 3 } else { exp10 };
    let value = mantissa * BigInt::from(factor);
    let number = if exp10 >= 0 {
        Number::from(value * pow10(exp10))
    } else {
        let denominator = pow10(-exp10);
        if (&value % &denominator).is_zero() {
            Number::from(value / denominator)
        } else {
            Number::from_str(&rat_float_string(&value, &denominator, 10))
                .map_err(|_| fail("could not parse amount to a number"))?
        }
    };
    Ok(Value::from(number))
}

fn parse_bytes(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "units.parse_bytes";
    ensure_args_count(span, name, params, args, 1)?;
    let raw = ensure_string(name, operand(params, 0), &args[0])?;
    let s = go_to_lower(&raw).replace('"', "");
    let fail = |msg: &str| span.error(&format!("eval_builtin_error: {name}: {msg}"));
    if s.contains(' ') {
        return Err(fail("spaces not allowed in resource strings"));
    }
    let (num, unit) = extract_num_and_unit(&s).ok_or_else(|| fail("exponent too large"))?;
    if num.is_empty() {
        return Err(fail("no byte amount provided"));
    }
    let factor: u64 = match unit {
        "" => 1,
        "kb" | "k" => 1_000,
        "kib" | "ki" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" | "mi" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" | "gi" => 1 << 30,
        "tb" | "t" => 1_000_000_000_000,
        "tib" | "ti" => 1 << 40,
        "pb" | "p" => 1_000_000_000_000_000,
        "pib" | "pi" => 1 << 50,
        "eb" | "e" => 1_000_000_000_000_000_000,
        "eib" | "ei" => 1 << 60,
        _ => return Err(fail(&format!("byte unit {unit} not recognized"))),
    };
    let (mantissa, exp10) =
        parse_decimal(num).ok_or_else(|| fail("could not parse byte amount to a number"))?;
    // `big.Float` (64-bit mantissa): the amount is rounded once when read
    // and once after the multiplication, then truncated toward zero.
    let (m, e) = if exp10 >= 0 {
        round_to_bits(&(mantissa * pow10(exp10)), &BigInt::one())
    } else {
        round_to_bits(&mantissa, &pow10(-exp10))
    };
    let (m, e) = round_to_bits(
        &(m * BigInt::from(factor) * pow2(e.max(0))),
        &pow2(-e.min(0)),
    );
    let total = if e >= 0 {
        m << e.unsigned_abs()
    } else {
        // Truncation toward zero of a negative amount.
        let magnitude = m.abs() >> e.unsigned_abs();
        if m.is_negative() {
            -magnitude
        } else {
            magnitude
        }
    };
    Ok(Value::from(Number::from(total)))
}

/// OPA's `extractNumAndUnit`: the number is the longest prefix of digits,
/// `.`, `+`, `-` and `e`/`E` followed by a digit or a sign; `None` when an
/// exponent has more than [`MAX_EXPONENT_DIGITS`] digits.
fn extract_num_and_unit(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut first_non_num = None;
    let mut idx = 0;
    while idx < b.len() {
        let r = b[idx];
        let is_num = r.is_ascii_digit() || r == b'.';
        if !is_num && r != b'e' && r != b'E' && r != b'+' && r != b'-' {
            first_non_num = Some(idx);
            break;
        }
        if r == b'e' || r == b'E' {
            let next = b.get(idx + 1).copied();
            if !matches!(next, Some(c) if c.is_ascii_digit() || c == b'+' || c == b'-') {
                first_non_num = Some(idx);
                break;
            }
            if matches!(next, Some(b'+' | b'-')) {
                idx += 1;
            }
            let digits = b[idx + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if digits > MAX_EXPONENT_DIGITS {
                return None;
            }
        }
        idx += 1;
    }
    Some(match first_non_num {
        None => (s, ""),
        Some(0) => ("", s),
        Some(i) => (&s[..i], &s[i..]),
    })
}

/// A decimal as Go's `big.Rat` / `big.Float` `SetString` read it
/// (`[+-]digits[.digits][(e|E)[+-]digits]`, at least one digit):
/// `mantissa * 10^exp10`.
fn parse_decimal(num: &str) -> Option<(BigInt, i64)> {
    let (negative, rest) = match num.as_bytes().first() {
        Some(b'-') => (true, &num[1..]),
        Some(b'+') => (false, &num[1..]),
        _ => (false, num),
    };
    let (body, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int_part, frac_part) = match body.find('.') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, ""),
    };
    let all_digits = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
    if int_part.len() + frac_part.len() == 0 || !all_digits(int_part) || !all_digits(frac_part) {
        return None;
    }
    let mut exp10 = -i64::try_from(frac_part.len()).ok()?;
    if let Some(exponent) = exponent {
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if digits.is_empty() || !all_digits(digits) {
            return None;
        }
        exp10 = exp10.checked_add(exponent.parse::<i64>().ok()?)?;
    }
    let mut digits = String::with_capacity(int_part.len() + frac_part.len());
    digits.push_str(int_part);
    digits.push_str(frac_part);
    let mantissa = BigInt::parse_bytes(digits.as_bytes(), 10)?;
    Some((if negative { -mantissa } else { mantissa }, exp10))
}

fn pow10(e: i64) -> BigInt {
    num_traits::pow(BigInt::from(10u8), usize::try_from(e).unwrap_or(0))
}

fn pow2(e: i64) -> BigInt {
    BigInt::one() << e.unsigned_abs()
}

/// `n / d` (`d > 0`) rounded to a 64-bit mantissa, ties to even, as
/// `(m, e)` with the value `m * 2^e`.
fn round_to_bits(n: &BigInt, d: &BigInt) -> (BigInt, i64) {
    const BITS: i64 = 64;
    if n.is_zero() {
        return (BigInt::zero(), 0);
    }
    let magnitude = n.abs();
    let bits = |v: &BigInt| i64::try_from(v.bits()).unwrap_or(i64::MAX);
    let mut e = bits(&magnitude) - bits(d) - BITS;
    loop {
        let (q, r, den) = if e >= 0 && d.is_one() {
            // A whole amount: shifts, not a division of huge numbers.
            let q = &magnitude >> e.unsigned_abs();
            let r = &magnitude - (&q << e.unsigned_abs());
            (q, r, pow2(e))
        } else {
            let (num, den) = if e >= 0 {
                (magnitude.clone(), d << e.unsigned_abs())
            } else {
                (&magnitude << e.unsigned_abs(), d.clone())
            };
            (&num / &den, &num % &den, den)
        };
        if bits(&q) > BITS {
            e += 1;
            continue;
        }
        if bits(&q) < BITS {
            e -= 1;
            continue;
        }
        let twice = r << 1u8;
        let q = match twice.cmp(&den) {
            Ordering::Greater => q + 1u8,
            Ordering::Equal if q.bit(0) => q + 1u8,
            _ => q,
        };
        return (if n.is_negative() { -q } else { q }, e);
    }
}

/// Go's `Rat.FloatString(prec)` of `n / d` (`d > 0`): `prec` decimals, the
/// last rounded to nearest with halves away from zero.
fn rat_float_string(n: &BigInt, d: &BigInt, prec: u32) -> String {
    let scale = num_traits::pow(BigInt::from(10u8), prec as usize);
    let scaled = n.abs() * &scale;
    let (q, r) = (&scaled / d, &scaled % d);
    let q = if (r << 1u8) >= *d { q + 1u8 } else { q };
    let digits = q.to_string();
    let width = prec as usize + 1;
    let digits = format!("{digits:0>width$}");
    let (int_part, frac_part) = digits.split_at(digits.len() - prec as usize);
    let sign = if n.is_negative() { "-" } else { "" };
    format!("{sign}{int_part}.{frac_part}")
}
