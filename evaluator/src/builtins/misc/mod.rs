//! Other builtins missing from regorus, with OPA v1.20's semantics:
//! `array.flatten` (`v1/topdown/array.go`), `strings.render_template`
//! (`template.go`, see `template`), `regex.globs_match` (`regex.go`, see
//! `glob_intersect`) and `test.sleep` (`test.go`).
//!
//! `test.sleep` blocks the evaluating thread; unlike OPA it cannot be
//! cancelled by the query's deadline, so a sleep is capped at
//! [`MAX_SLEEP`].

mod glob_intersect;
mod template;

use std::time::Duration;

use regorus::Value;

use super::{BuiltinError, arg_str};

const ARRAY_FLATTEN: &str = "array.flatten";
const RENDER_TEMPLATE: &str = "strings.render_template";
const GLOBS_MATCH: &str = "regex.globs_match";
const SLEEP: &str = "test.sleep";

/// The longest `test.sleep` honoured.
pub(crate) const MAX_SLEEP: Duration = Duration::from_secs(10);

pub(crate) const BUILTINS: &[(&str, usize)] = &[
    (ARRAY_FLATTEN, 1),
    (RENDER_TEMPLATE, 2),
    (GLOBS_MATCH, 2),
    (SLEEP, 1),
];

pub(crate) fn call(name: &str, args: &[Value]) -> Result<Value, BuiltinError> {
    match name {
        ARRAY_FLATTEN => array_flatten(args),
        RENDER_TEMPLATE => render_template(args),
        GLOBS_MATCH => globs_match(args),
        SLEEP => sleep(args),
        _ => Err(BuiltinError::Unknown(name.to_string())),
    }
}

/// One level of nested arrays spliced into the outer array.
fn array_flatten(args: &[Value]) -> Result<Value, BuiltinError> {
    let Some(Value::Array(items)) = args.first() else {
        return Err(BuiltinError::Operand {
            name: ARRAY_FLATTEN,
            position: 1,
            expected: "an array",
        });
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items.iter() {
        match item {
            Value::Array(inner) => out.extend(inner.iter().cloned()),
            other => out.push(other.clone()),
        }
    }
    Ok(Value::from(out))
}

fn render_template(args: &[Value]) -> Result<Value, BuiltinError> {
    let template = arg_str(RENDER_TEMPLATE, args, 0)?;
    let vars = match args.get(1) {
        Some(v @ Value::Object(_)) => v,
        _ => {
            return Err(BuiltinError::Operand {
                name: RENDER_TEMPLATE,
                position: 2,
                expected: "an object",
            });
        }
    };
    template::render(template, vars)
        .map(Value::from)
        .map_err(|reason| BuiltinError::Invalid {
            name: RENDER_TEMPLATE,
            reason,
        })
}

fn globs_match(args: &[Value]) -> Result<Value, BuiltinError> {
    let a = arg_str(GLOBS_MATCH, args, 0)?;
    let b = arg_str(GLOBS_MATCH, args, 1)?;
    glob_intersect::non_empty(a, b)
        .map(Value::Bool)
        .map_err(|reason| BuiltinError::Invalid {
            name: GLOBS_MATCH,
            reason,
        })
}

fn sleep(args: &[Value]) -> Result<Value, BuiltinError> {
    let text = arg_str(SLEEP, args, 0)?;
    let d = parse_go_duration(text).map_err(|reason| BuiltinError::Invalid {
        name: SLEEP,
        reason,
    })?;
    if let Ok(d) = u64::try_from(d) {
        std::thread::sleep(Duration::from_nanos(d).min(MAX_SLEEP));
    }
    Ok(Value::Null)
}

/// Go's `time.ParseDuration`, in nanoseconds.
fn parse_go_duration(text: &str) -> Result<i64, String> {
    let err = || format!("time: invalid duration {:?}", text);
    let (neg, mut s) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let len = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            frac_part = &rest[..len];
            s = &rest[len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let unit: u128 = match &s[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            u => return Err(format!("time: unknown unit {u:?} in duration {text:?}")),
        };
        s = &s[unit_len..];
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err())?
        };
        let mut value = whole.checked_mul(unit).ok_or_else(err)?;
        // Fractional digits beyond what the unit can resolve are dropped, as in Go.
        let mut scale = unit;
        for d in frac_part.bytes() {
            if scale < 10 {
                break;
            }
            scale /= 10;
            value += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(value).ok_or_else(err)?;
        if total > i64::MAX as u128 + u128::from(neg) {
            return Err(err());
        }
    }
    let total = i128::try_from(total).map_err(|_| err())?;
    i64::try_from(if neg { -total } else { total }).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_one_level() {
        let v = Value::from_json_str(r#"[[1, 2], "s", [3, [4]], 5]"#).unwrap();
        assert_eq!(
            call(ARRAY_FLATTEN, &[v]).unwrap(),
            Value::from_json_str(r#"[1, 2, "s", 3, [4], 5]"#).unwrap()
        );
        assert!(matches!(
            call(ARRAY_FLATTEN, &[Value::from(42u64)]),
            Err(BuiltinError::Operand { .. })
        ));
    }

    #[test]
    fn globs_match_builtin() {
        let t = |a: &str, b: &str| call(GLOBS_MATCH, &[Value::from(a), Value::from(b)]);
        assert_eq!(t("b.*", "bar").unwrap(), Value::Bool(true));
        assert!(matches!(t("[", "a"), Err(BuiltinError::Invalid { .. })));
        assert!(matches!(
            call(GLOBS_MATCH, &[Value::from(1u64), Value::from("a")]),
            Err(BuiltinError::Operand { .. })
        ));
    }

    #[test]
    fn render_template_operands() {
        let vars = Value::from_json_str(r#"{"x": 1}"#).unwrap();
        assert_eq!(
            call(RENDER_TEMPLATE, &[Value::from("{{.x}}"), vars]).unwrap(),
            Value::from("1")
        );
        assert!(matches!(
            call(RENDER_TEMPLATE, &[Value::from("{{.x}}"), Value::from("x")]),
            Err(BuiltinError::Operand { position: 2, .. })
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("10ms"), Ok(10_000_000));
        assert_eq!(parse_go_duration("1h2m3.5s"), Ok(3_723_500_000_000));
        assert_eq!(parse_go_duration("-1.5us"), Ok(-1_500));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("1d").is_err());
        assert!(parse_go_duration(".s").is_err());
        assert!(parse_go_duration("9999999999h").is_err());
        assert_eq!(call(SLEEP, &[Value::from("1ms")]).unwrap(), Value::Null);
        assert!(matches!(
            call(SLEEP, &[Value::from("soon")]),
            Err(BuiltinError::Invalid { .. })
        ));
    }
}
