//! Rego values as Go's `json.Marshal(ast.JSON(v))` writes them (what OPA
//! signs in `io.jwt.encode_sign`): object members sorted by key, sets as
//! sorted arrays, numbers as their decimal text, and Go's string escaping
//! (`<`, `>`, `&`, U+2028 and U+2029 escaped as `\uXXXX`).

use std::fmt::Write;

use regorus::Value;

/// The JSON text of `v`, or why it has none (an undefined value).
pub(super) fn marshal(v: &Value) -> Result<String, String> {
    let mut out = String::new();
    write_value(&mut out, v)?;
    Ok(out)
}

fn write_value(out: &mut String, v: &Value) -> Result<(), String> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(n.format_decimal())),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => write_list(out, items.iter())?,
        Value::Set(items) => write_list(out, items.iter())?,
        Value::Object(o) => {
            // Keys as Go sees them: strings as they are, anything else as
            // its JSON text; sorted bytewise.
            let mut members = Vec::new();
            for (k, v) in o.iter() {
                let key = match k {
                    Value::String(s) => s.to_string(),
                    other => marshal(other)?,
                };
                members.push((key, v));
            }
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, &k);
                out.push(':');
                write_value(out, v)?;
            }
            out.push('}');
        }
        _ => return Err("cannot marshal an undefined value".into()),
    }
    Ok(())
}

fn write_list<'a>(out: &mut String, items: impl Iterator<Item = &'a Value>) -> Result<(), String> {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(out, item)?;
    }
    out.push(']');
    Ok(())
}

/// A number's decimal text: integers in full, integral floats without a
/// fraction, other floats in their shortest form (exponent form outside
/// Go's `1e-6 <= |x| < 1e21`).
fn number_text(text: String) -> String {
    let Ok(f) = text.parse::<f64>() else {
        return text;
    };
    if !text.contains(['.', 'e', 'E']) || !f.is_finite() {
        return text;
    }
    let abs = f.abs();
    if f.fract() == 0.0 && abs < 1e21 {
        return format!("{f:.0}");
    }
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return format!("{f}");
    }
    // Go: mantissa, `e`, sign, at least two exponent digits.
    let e = format!("{f:e}");
    match e.split_once('e') {
        Some((m, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => e,
    }
}

/// Go's `encoding/json` string encoding (HTML-safe).
pub(super) fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Value {
        Value::from_json_str(text).expect("json")
    }

    #[test]
    fn marshals_like_go() {
        let v = json(r#"{"b": [1, 2.5, "x<y&z>"], "a": {"z": null, "y": true}}"#);
        assert_eq!(
            marshal(&v).expect("marshal"),
            r#"{"a":{"y":true,"z":null},"b":[1,2.5,"x\u003cy\u0026z\u003e"]}"#
        );
        assert_eq!(
            marshal(&Value::from("tab\tnl\n\u{1}")).expect("marshal"),
            r#""tab\tnl\n\u0001""#
        );
        assert_eq!(
            marshal(&Value::from(1.678e9)).expect("marshal"),
            "1678000000"
        );
        assert!(marshal(&Value::Undefined).is_err());
    }
}
