// policy-engine patch: the Go values OPA's `sprintf` passes to
// `fmt.Sprintf` for Rego values, and OPA's text of a term.
//
// OPA decides by a number's text: an integer (also with only zeros after the
// point, up to 19 characters) is an `int64`, or a `*big.Int` beyond int64; a
// number with a fraction is a `float64`; any other (an exponent without a
// point, `1e-09`) is its text as a `string`. A number here has no text, so a
// float is given the text it most likely had (`float_text`). Every other
// value is its Rego text as a `string` (`["a", 1]`, `{"k": true}`, `set()`,
// `null`).

use super::printer::GoArg;
use super::strconv;
use crate::builtins::utils::enforce_limit;
use crate::number::{BigInt, Number};
use crate::*;

use anyhow::Result;
use core::cmp::Ordering;
use num_traits::ToPrimitive as _;

/// The Go value OPA's `sprintf` formats for `v`.
pub(super) fn go_arg(v: &Value) -> Result<GoArg> {
    Ok(match v {
        Value::String(s) => GoArg::Str(s.as_ref().to_owned()),
        Value::Number(n) => number_arg(n),
        other => {
            let mut text = String::new();
            write_term(&mut text, other)?;
            GoArg::Str(text)
        }
    })
}

fn number_arg(n: &Number) -> GoArg {
    let big = match n {
        Number::Int(i) => return GoArg::Int(*i),
        Number::UInt(u) => BigInt::from(*u),
        Number::BigInt(b) => b.as_ref().clone(),
        Number::Float(f) => return text_arg(float_text(*f), *f),
    };
    big.to_i64().map_or(GoArg::Big(big), GoArg::Int)
}

/// OPA's choice for a number written `text` (with the value `f`).
fn text_arg(text: String, f: f64) -> GoArg {
    if let Ok(big) = text.parse::<BigInt>() {
        return big.to_i64().map_or(GoArg::Big(big), GoArg::Int);
    }
    if let Some(i) = point_zero_int(&text) {
        return GoArg::Int(i);
    }
    if text.contains('.') {
        GoArg::Float(f)
    } else {
        GoArg::Str(text)
    }
}

/// An integer written with only zeros after the point (`150.0`, `-3.`), up
/// to 19 characters after the sign, as OPA reads one.
fn point_zero_int(text: &str) -> Option<i64> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..)?),
        Some(b'+') => (false, text.get(1..)?),
        _ => (false, text),
    };
    let (int, frac) = body.split_once('.')?;
    if body.len() > 19
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c == b'0')
    {
        return None;
    }
    let n: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    Some(if neg { -n } else { n })
}

/// The text a float most likely had: as Python's `json` writes it, the
/// shortest digits that read back as `f`, with an exponent below 1e-4 and
/// from 1e16 (`1e-09`, `1.5e+300`), otherwise with a point (`0.5`, `150.0`);
/// but an integral value from 1e16 to 1e21 (what a JSON integer beyond u64
/// becomes) as an integer.
fn float_text(f: f64) -> String {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let integral = f.is_finite() && f.fract() == 0.0;
    if (-4..16).contains(&exp) || (integral && (16..21).contains(&exp)) {
        let fixed = format!("{f}");
        if fixed.contains('.') || exp >= 16 {
            fixed
        } else {
            fixed + ".0"
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

/// The text of a number in a Rego term.
fn number_text(n: &Number) -> String {
    match n {
        Number::Float(f) => float_text(*f),
        _ => n.format_decimal(),
    }
}

/// Writes `v` as OPA's `Value.String()` does: strings quoted as Go does,
/// sets as `{…}` (`set()` when empty), elements and keys in OPA's order.
pub(super) fn write_term(out: &mut String, v: &Value) -> Result<()> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(n)),
        Value::String(s) => out.push_str(&strconv::quote(s, false)),
        Value::Array(items) => {
            out.push('[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                write_term(out, item)?;
            }
            out.push(']');
        }
        Value::Set(items) if items.is_empty() => out.push_str("set()"),
        Value::Set(items) => {
            let mut items: Vec<&Value> = items.iter().collect();
            items.sort_by(|a, b| opa_compare(a, b));
            out.push('{');
            for (k, item) in items.into_iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                write_term(out, item)?;
            }
            out.push('}');
        }
        Value::Object(fields) => {
            let mut fields: Vec<(&Value, &Value)> = fields.iter().collect();
            fields.sort_by(|a, b| opa_compare(a.0, b.0));
            out.push('{');
            for (k, (key, item)) in fields.into_iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                write_term(out, key)?;
                out.push_str(": ");
                write_term(out, item)?;
            }
            out.push('}');
        }
        Value::Undefined => out.push_str("<undefined>"),
    }
    enforce_limit()
}

/// OPA's rank of a value's type in `ast.Compare`.
const fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
        Value::Set(_) => 6,
        Value::Undefined => 7,
    }
}

/// OPA's `ast.Compare`: by type (objects before sets), then by value;
/// collections element by element in their sorted order.
fn opa_compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => compare_seq(x.iter(), y.iter()),
        (Value::Set(x), Value::Set(y)) => {
            let mut x: Vec<&Value> = x.iter().collect();
            let mut y: Vec<&Value> = y.iter().collect();
            x.sort_by(|p, q| opa_compare(p, q));
            y.sort_by(|p, q| opa_compare(p, q));
            compare_seq(x.into_iter(), y.into_iter())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut x: Vec<(&Value, &Value)> = x.iter().collect();
            let mut y: Vec<(&Value, &Value)> = y.iter().collect();
            x.sort_by(|p, q| opa_compare(p.0, q.0));
            y.sort_by(|p, q| opa_compare(p.0, q.0));
            for ((xk, xv), (yk, yv)) in x.iter().zip(y.iter()) {
                let ord = opa_compare(xk, yk).then_with(|| opa_compare(xv, yv));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            x.len().cmp(&y.len())
        }
        _ if type_rank(a) == type_rank(b) => a.cmp(b),
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

fn compare_seq<'v>(
    mut x: impl Iterator<Item = &'v Value>,
    mut y: impl Iterator<Item = &'v Value>,
) -> Ordering {
    loop {
        match (x.next(), y.next()) {
            (Some(p), Some(q)) => match opa_compare(p, q) {
                Ordering::Equal => {}
                ord => return ord,
            },
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
        }
    }
}
