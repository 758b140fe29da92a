//! A request body as OPA serialises it before signing: `ast.JSON` followed
//! by Go's `json.Marshal` (sorted object keys, sets as sorted arrays,
//! non-string keys as their JSON text, HTML characters escaped).

use regorus::Value;

/// The JSON bytes OPA signs for `body`.
pub(super) fn marshal(v: &Value) -> Result<String, String> {
    let mut out = String::new();
    write_value(v, &mut out)?;
    Ok(out)
}

fn write_value(v: &Value, out: &mut String) -> Result<(), String> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(_) => out.push_str(&v.to_json_str().map_err(|e| e.to_string())?),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => write_seq(items.iter(), out)?,
        Value::Set(items) => write_seq(items.iter_sorted(), out)?,
        Value::Object(fields) => {
            let mut entries = fields
                .iter()
                .map(|(k, v)| Ok((key_text(k)?, v)))
                .collect::<Result<Vec<_>, String>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries.dedup_by(|a, b| a.0 == b.0);
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(v, out)?;
            }
            out.push('}');
        }
        Value::Undefined => return Err("cannot serialise an undefined value".to_string()),
    }
    Ok(())
}

fn write_seq<'a>(items: impl Iterator<Item = &'a Value>, out: &mut String) -> Result<(), String> {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(item, out)?;
    }
    out.push(']');
    Ok(())
}

/// An object key as `ast.JSON` turns it into a Go map key.
fn key_text(k: &Value) -> Result<String, String> {
    match k {
        Value::String(s) => Ok(s.to_string()),
        other => marshal(other),
    }
}

/// Go's `encoding/json` string encoding with HTML escaping.
fn write_string(s: &str, out: &mut String) {
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
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[test]
    fn marshals_like_go() {
        let set: BTreeSet<Value> = [4u64, 1, 3, 2].into_iter().map(Value::from).collect();
        let body = Value::from(BTreeMap::from([(Value::from("example"), Value::from(set))]));
        assert_eq!(marshal(&body).unwrap(), r#"{"example":[1,2,3,4]}"#);
        let v = Value::from_json_str(r#"{"b": "<a&b>\n", "a": [null, true, 1.5]}"#).unwrap();
        assert_eq!(
            marshal(&v).unwrap(),
            r#"{"a":[null,true,1.5],"b":"\u003ca\u0026b\u003e\n"}"#
        );
        let v = Value::from(BTreeMap::from([(Value::from(1u64), Value::from("x"))]));
        assert_eq!(marshal(&v).unwrap(), r#"{"1":"x"}"#);
    }
}
