//! The predefined functions of Go `text/template` that templates may call:
//! `not`, `len`, `index`, `print`, `printf`, `println` and the comparisons
//! (`and` and `or` short-circuit and live in `exec`).

use super::value::{GoVal, format_float};

fn want_args(name: &str, vals: &[GoVal], n: usize) -> Result<(), String> {
    if vals.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            vals.len()
        ))
    }
}

pub(super) fn call_function(name: &str, vals: &[GoVal]) -> Result<GoVal, String> {
    match name {
        "not" => {
            want_args(name, vals, 1)?;
            Ok(GoVal::Bool(!vals.first().is_some_and(GoVal::is_true)))
        }
        "len" => {
            want_args(name, vals, 1)?;
            let n = match vals.first() {
                Some(GoVal::Str(s) | GoVal::Number(s)) => s.len(),
                Some(GoVal::Slice(v)) => v.len(),
                Some(GoVal::Map(m)) => m.len(),
                Some(GoVal::Nil) => return Err("len of nil pointer".to_string()),
                Some(other) => return Err(format!("len of type {}", other.type_name())),
                None => 0,
            };
            Ok(GoVal::Int(i64::try_from(n).unwrap_or(i64::MAX)))
        }
        "index" => index(vals),
        "print" => Ok(GoVal::Str(sprint(vals))),
        "println" => Ok(GoVal::Str(format!(
            "{}\n",
            vals.iter().map(GoVal::fmt_v).collect::<Vec<_>>().join(" ")
        ))),
        "printf" => match vals.split_first() {
            Some((GoVal::Str(f), rest)) => Ok(GoVal::Str(sprintf(f, rest))),
            Some((other, _)) => Err(format!(
                "wrong type for value; expected string; got {}",
                other.type_name()
            )),
            None => Err("wrong number of args for printf: want at least 1 got 0".to_string()),
        },
        "eq" => {
            let Some((a, rest)) = vals.split_first() else {
                return Err("missing argument for comparison".to_string());
            };
            if rest.is_empty() {
                return Err("missing argument for comparison".to_string());
            }
            for b in rest {
                if equal(a, b)? {
                    return Ok(GoVal::Bool(true));
                }
            }
            Ok(GoVal::Bool(false))
        }
        "ne" => {
            want_args(name, vals, 2)?;
            Ok(GoVal::Bool(!equal(&vals[0], &vals[1])?))
        }
        "lt" | "le" | "gt" | "ge" => {
            want_args(name, vals, 2)?;
            let less = less(&vals[0], &vals[1])?;
            let eq = equal(&vals[0], &vals[1])?;
            Ok(GoVal::Bool(match name {
                "lt" => less,
                "le" => less || eq,
                "gt" => !less && !eq,
                _ => !less,
            }))
        }
        _ => Err(format!("function {name:?} not defined")),
    }
}

fn index(vals: &[GoVal]) -> Result<GoVal, String> {
    let Some((item, idx)) = vals.split_first() else {
        return Err("wrong number of args for index: want at least 1 got 0".to_string());
    };
    let mut item = item.clone();
    for i in idx {
        item = match (&item, i) {
            (GoVal::Slice(v), GoVal::Int(n)) => usize::try_from(*n)
                .ok()
                .and_then(|n| v.get(n))
                .cloned()
                .ok_or_else(|| format!("index out of range: {n}"))?,
            (GoVal::Slice(_), other) => {
                return Err(format!(
                    "cannot index slice/array with type {}",
                    other.type_name()
                ));
            }
            (GoVal::Str(s), GoVal::Int(n)) => usize::try_from(*n)
                .ok()
                .and_then(|n| s.as_bytes().get(n))
                .map(|b| GoVal::Int(i64::from(*b)))
                .ok_or_else(|| format!("index out of range: {n}"))?,
            (GoVal::Map(m), GoVal::Str(k)) => m.get(k).cloned().unwrap_or(GoVal::Nil),
            (GoVal::Map(_), other) => {
                return Err(format!(
                    "value has type {}; should be string",
                    other.type_name()
                ));
            }
            (GoVal::Nil, _) => return Err("index of nil pointer".to_string()),
            (other, _) => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

/// Go's basic kinds for comparison.
#[derive(PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
    Other,
}

fn kind(v: &GoVal) -> Kind {
    match v {
        GoVal::Bool(_) => Kind::Bool,
        GoVal::Int(_) => Kind::Int,
        GoVal::Float(_) => Kind::Float,
        GoVal::Str(_) | GoVal::Number(_) => Kind::Str,
        _ => Kind::Other,
    }
}

fn is_nil(v: &GoVal) -> bool {
    matches!(v, GoVal::Nil | GoVal::Invalid)
}

/// text/template's `eq` on two values.
fn equal(a: &GoVal, b: &GoVal) -> Result<bool, String> {
    if is_nil(a) || is_nil(b) {
        return Ok(is_nil(a) && is_nil(b));
    }
    if kind(a) != kind(b) {
        return Err("incompatible types for comparison".to_string());
    }
    match (a, b) {
        (GoVal::Bool(x), GoVal::Bool(y)) => Ok(x == y),
        (GoVal::Int(x), GoVal::Int(y)) => Ok(x == y),
        (GoVal::Float(x), GoVal::Float(y)) => Ok(x == y),
        (GoVal::Str(x) | GoVal::Number(x), GoVal::Str(y) | GoVal::Number(y)) => Ok(x == y),
        _ => Err(format!("non-comparable type {}", a.type_name())),
    }
}

/// text/template's `lt`.
fn less(a: &GoVal, b: &GoVal) -> Result<bool, String> {
    if kind(a) != kind(b) {
        return Err("incompatible types for comparison".to_string());
    }
    match (a, b) {
        (GoVal::Int(x), GoVal::Int(y)) => Ok(x < y),
        (GoVal::Float(x), GoVal::Float(y)) => Ok(x < y),
        (GoVal::Str(x) | GoVal::Number(x), GoVal::Str(y) | GoVal::Number(y)) => Ok(x < y),
        _ => Err("invalid type for comparison".to_string()),
    }
}

/// `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(vals: &[GoVal]) -> String {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, v) in vals.iter().enumerate() {
        let is_string = v.is_string_kind();
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        out.push_str(&v.fmt_v());
        prev_string = is_string;
    }
    out
}

/// `fmt.Sprintf` for the common verbs (`%v %s %d %q %t %f %e %g %x %X %%`)
/// with flags, width and precision.
fn sprintf(format: &str, args: &[GoVal]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut minus = false;
        let mut zero = false;
        let mut plus = false;
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            precision = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let text = format_verb(verb, arg, precision, plus);
        let width: usize = width.parse().unwrap_or(0);
        let len = text.chars().count();
        if len >= width {
            out.push_str(&text);
        } else if minus {
            out.push_str(&text);
            out.push_str(&" ".repeat(width - len));
        } else if zero && matches!(arg, GoVal::Int(_) | GoVal::Float(_)) {
            let (sign, digits) = match text.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", text.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(width - len));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(width - len));
            out.push_str(&text);
        }
    }
    let extra: Vec<String> = args
        .map(|a| format!("{}={}", a.type_name(), a.fmt_v()))
        .collect();
    if !extra.is_empty() {
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

fn format_verb(verb: char, arg: &GoVal, precision: Option<usize>, plus: bool) -> String {
    let bad = || format!("%!{verb}({}={})", arg.type_name(), arg.fmt_v());
    match (verb, arg) {
        ('v', _) => arg.fmt_v(),
        ('s', GoVal::Str(s) | GoVal::Number(s)) => match precision {
            Some(p) => s.chars().take(p).collect(),
            None => s.clone(),
        },
        ('s', GoVal::Slice(_) | GoVal::Map(_) | GoVal::Nil) => arg.fmt_v(),
        ('q', GoVal::Str(s) | GoVal::Number(s)) => go_quote(s),
        ('t', GoVal::Bool(b)) => b.to_string(),
        ('d', GoVal::Int(i)) => {
            if plus && *i >= 0 {
                format!("+{i}")
            } else {
                i.to_string()
            }
        }
        ('x', GoVal::Int(i)) => format!("{i:x}"),
        ('X', GoVal::Int(i)) => format!("{i:X}"),
        ('x', GoVal::Str(s) | GoVal::Number(s)) => hex::encode(s),
        ('X', GoVal::Str(s) | GoVal::Number(s)) => hex::encode_upper(s),
        ('f' | 'F', GoVal::Float(f)) => format!("{f:.*}", precision.unwrap_or(6)),
        ('e', GoVal::Float(f)) => {
            let s = format!("{f:.*e}", precision.unwrap_or(6));
            match s.split_once('e') {
                Some((m, e)) => {
                    let exp: i32 = e.parse().unwrap_or(0);
                    let sign = if exp < 0 { '-' } else { '+' };
                    format!("{m}e{sign}{:02}", exp.abs())
                }
                None => s,
            }
        }
        ('g', GoVal::Float(f)) => format_float(*f),
        _ => bad(),
    }
}

/// Go's `strconv.Quote` for printable text.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_control() => {
                let n = u32::from(c);
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else {
                    out.push_str(&format!("\\u{n:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
