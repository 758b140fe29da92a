#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! Builtins that follow OPA's Go code (patches in `third_party/regorus`, see
//! its PATCHED.md), found by differential fuzzing: bad arguments that
//! panicked the engine, errors raised in strict mode, Go's decoders.

use regorus::{Engine, Value};
use serde_json::json;

/// `p := <expr>` evaluated with OPA's default (non-strict) builtin errors:
/// `Value::Undefined` when the call fails.
fn eval(expr: &str) -> Value {
    let mut engine = Engine::new();
    engine.set_strict_builtin_errors(false);
    engine
        .add_policy("test.rego".into(), format!("package test\np := {expr}"))
        .unwrap();
    engine
        .eval_rule("data.test.p".into())
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
}

/// The error `p := <expr>` raises in strict mode.
fn strict_error(expr: &str) -> String {
    let mut engine = Engine::new();
    engine.set_strict_builtin_errors(true);
    engine
        .add_policy("test.rego".into(), format!("package test\np := {expr}"))
        .unwrap();
    match engine.eval_rule("data.test.p".into()) {
        Ok(v) => panic!("{expr}: no error, got {v}"),
        Err(e) => e.to_string(),
    }
}

fn json(v: serde_json::Value) -> Value {
    Value::from(v)
}

#[test]
fn range_step_of_zero_or_negative_step_is_a_builtin_error() {
    for expr in [
        "numbers.range_step(1, 8, 0)",
        "numbers.range_step(-2, 6, -1)",
    ] {
        assert_eq!(eval(expr), Value::Undefined, "{expr}");
        assert!(strict_error(expr).contains("eval_builtin_error"), "{expr}");
    }
    assert!(strict_error("numbers.range(1.5, 3)").contains("eval_type_error"));
    assert_eq!(eval("numbers.range(3, 1)"), json(json!([3, 2, 1])));
    assert_eq!(
        eval("numbers.range_step(10, 1, 4)"),
        json(json!([10, 6, 2]))
    );
    assert_eq!(
        eval("numbers.range_step(9223372036854775800, 9223372036854775807, 3)"),
        json(json!([
            9223372036854775800u64,
            9223372036854775803u64,
            9223372036854775806u64
        ]))
    );
}

#[test]
fn huge_generated_collections_are_errors_not_out_of_memory() {
    assert!(strict_error("numbers.range(0, 1e300)").contains("eval_builtin_error"));
    assert!(strict_error("net.cidr_expand(\"::/64\")").contains("eval_builtin_error"));
    assert_eq!(eval("count(numbers.range(1, 1000))"), json(json!(1000)));
}

#[test]
fn inputs_that_panicked_are_undefined() {
    for expr in [
        "time.parse_duration_ns(\"1µ\")",
        "time.parse_duration_ns(\"1.\")",
        "time.parse_ns(\"🙂\", \"x\")",
        "regex.template_match(\"urn:foo:{.*}\", \"urn\", \"{\", \"}\")",
    ] {
        let v = eval(expr);
        assert!(
            matches!(v, Value::Undefined | Value::Bool(false)),
            "{expr}: {v}"
        );
    }
    assert_eq!(eval("object.subset([1], [])"), Value::Bool(true));
}

#[test]
fn units_follow_opa() {
    assert_eq!(eval("units.parse(\"1\\\"G\")"), json(json!(1_000_000_000)));
    assert_eq!(
        eval("units.parse(\"1.23456789012345m\")"),
        json(json!(0.0012345679))
    );
    assert_eq!(eval("units.parse(\"2Ki\")"), json(json!(2048)));
    assert_eq!(eval("units.parse_bytes(\"1.5KiB\")"), json(json!(1536)));
    assert_eq!(eval("units.parse_bytes(\"1.5\")"), json(json!(1)));
    for expr in [
        "units.parse_bytes(\"2e2GiBß\")",
        "units.parse(\"100KiΩ\")",
        "units.parse(\"m2E5.3-\")",
        "units.parse(\"1 K\")",
    ] {
        assert_eq!(eval(expr), Value::Undefined, "{expr}");
        assert!(strict_error(expr).contains("eval_builtin_error"), "{expr}");
    }
}

#[test]
fn integer_operands_are_type_errors() {
    for expr in [
        "substring(\"abc\", 0.5, -1)",
        "array.slice([1, 2, 3], 0.5, 2)",
        "regex.find_all_string_submatch_n(\"a(b)?\", \"abab\", 1e20)",
        "time.add_date(0, 1e20, 1, 1)",
        "object.subset({4, 3}, [1, 2])",
        "glob.match(\"*\", [\"\"], \"foo\")",
    ] {
        assert!(strict_error(expr).contains("eval_type_error"), "{expr}");
    }
    assert_eq!(eval("bits.lsh(2, 6.0)"), json(json!(128)));
    assert_eq!(eval("substring(\"héllo\", 1, 2)"), Value::from("él"));
}

#[test]
fn builtin_errors_are_raised_in_strict_mode() {
    for expr in [
        "indexof(\"abc\", \"\")",
        "indexof_n(\"abc\", \"\")",
        "regex.replace(\" oo \", \"[\", \"$1\")",
        "glob.match(\"[a-]\\u200bat\", [], \"bt\")",
        "glob.match(\"[a-c0-9]\", [], \"b\")",
        "json.patch({\"foo\": {\"a\", \"b\"}}, [{\"op\": \"add\", \"path\": \"foo/d\", \"value\": \"x\"}])",
        "urlquery.decode_object(\"a=1;b=2\")",
    ] {
        assert_eq!(eval(expr), Value::Undefined, "{expr}");
        assert!(strict_error(expr).contains("eval_builtin_error"), "{expr}");
    }
    assert_eq!(
        eval("glob.match(\"[a-c]at\", [], \"bat\")"),
        Value::Bool(true)
    );
    assert_eq!(eval("indexof(\"héllo\", \"l\")"), json(json!(2)));
}

#[test]
fn go_decoders() {
    assert_eq!(
        eval("base64.is_valid(\"AGVSBG8=AGVSBG8=\")"),
        Value::Bool(false)
    );
    assert_eq!(eval("base64.decode(\"QR==\")"), Value::from("A"));
    assert_eq!(eval("base64url.decode(\"aGVsbG8\")"), Value::from("hello"));
    assert_eq!(
        eval("base64url.decode(\"8GbsVGa\")"),
        Value::from("\u{fffd}f\u{fffd}Tf")
    );
    assert_eq!(
        eval("urlquery.decode_object(\" a=1&b=2 &c\")"),
        json(json!({" a": ["1"], "b": ["2 "], "c": [""]}))
    );
    assert_eq!(eval("urlquery.decode(\"a%20b+c\")"), Value::from("a b c"));
    assert_eq!(
        eval("regex.split(\"\", \" ab \")"),
        json(json!([" ", "a", "b", " "]))
    );
}

/// Decoding takes whole quanta through a table and the rest the general
/// way; line breaks, padding and bad characters anywhere give Go's answer.
#[test]
fn base64_quanta_around_breaks_and_padding() {
    let text = "The quick brown fox jumps over the lazy dog.";
    for (expr, want) in [
        // 44 bytes: 14 whole quanta and a padded one.
        (
            "base64.decode(\"VGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZy4=\")",
            Some(text),
        ),
        (
            "base64.decode(\"VGhlIHF1aWNrIGJyb3du\\r\\nIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZy4=\")",
            Some(text),
        ),
        ("base64.decode(\"aGVs\\nbG8=\")", Some("hello")),
        ("base64.decode(\"aGVsbG\\n8=\")", Some("hello")),
        ("base64.decode(\"aGVsbG8=\\n\")", Some("hello")),
        ("base64.decode(\"aGVsbG8=aGVs\")", None),
        ("base64.decode(\"aGVs*G8=\")", None),
        ("base64.decode(\"aGVsbG8\")", None),
        ("base64.decode(\"aG=sbG8=\")", None),
        ("base64.decode(\"aGVs-G8=\")", None),
        ("base64url.decode(\"aGVs-G8=\")", Some("hel\u{fffd}o")),
        ("base64url.decode(\"aGVsbG8_\")", Some("hello?")),
    ] {
        let got = eval(expr);
        match want {
            Some(s) => assert_eq!(got, Value::from(s), "{expr}"),
            None => assert_eq!(got, Value::Undefined, "{expr}"),
        }
    }
}

#[test]
fn count_and_schemas_follow_opa() {
    assert_eq!(eval("count(\"🙂\")"), json(json!(1)));
    assert_eq!(eval("count(\"héllo\")"), json(json!(5)));
    assert_eq!(
        eval("json.verify_schema(\"-3\")"),
        json(json!([false, "jsonschema: schema is invalid"]))
    );
    assert_eq!(
        eval("json.match_schema({\"id\": 5}, {\"required\": [\"name\"]})"),
        json(json!([false, [{
            "desc": "name is required",
            "error": "(Root): name is required",
            "field": "(Root)",
            "type": "required"
        }]]))
    );
    assert_eq!(
        eval("object.subset([1, 2, 4, 4, 5, 6], {4, 3, 2})"),
        Value::Bool(true)
    );
}

#[test]
fn split_names_itself_in_its_errors_and_splits_on_any_delimiter() {
    assert!(
        strict_error(r#"split(1, ".")"#)
            .contains("eval_type_error: split: operand 1 must be string but got number"),
        "{}",
        strict_error(r#"split(1, ".")"#)
    );
    assert!(
        strict_error(r#"split("a", 1)"#)
            .contains("eval_type_error: split: operand 2 must be string but got number")
    );
    // One-byte delimiters (found by a byte search) and longer ones give Go's
    // strings.Split parts, empty ones included.
    for (expr, want) in [
        (r#"split("a.b..c.", ".")"#, json!(["a", "b", "", "c", ""])),
        (r#"split("", ".")"#, json!([""])),
        (r#"split("ab", ".")"#, json!(["ab"])),
        (r#"split("é.ü", ".")"#, json!(["é", "ü"])),
        (r#"split("a::b:c", "::")"#, json!(["a", "b:c"])),
        (r#"split("héllo", "")"#, json!(["h", "é", "l", "l", "o"])),
    ] {
        assert_eq!(eval(expr), json(want), "{expr}");
    }
}

/// `object.union` merges recursively, the right operand winning for any
/// other value (OPA's semantics), whatever storage the operands have.
#[test]
fn object_union_merges_nested_objects_right_operand_winning() {
    let cases = [
        (
            r#"object.union({"a": 1, "c": {"x": 1, "y": 2}, "e": 5}, {"b": 2, "c": {"y": 3, "z": 4}, "e": {"o": 1}})"#,
            json!({"a": 1, "b": 2, "c": {"x": 1, "y": 3, "z": 4}, "e": {"o": 1}}),
        ),
        (
            r#"object.union({"c": {"x": 1}}, {"c": 7})"#,
            json!({"c": 7}),
        ),
        (r#"object.union({}, {"a": 1})"#, json!({"a": 1})),
        (r#"object.union({"a": 1}, {})"#, json!({"a": 1})),
        (
            // Operands built by a comprehension (map storage) and literals.
            r#"object.union({k: v | some k, v in {"b": 1, "a": {"n": 1}}}, {"a": {"m": 2}, "c": 3})"#,
            json!({"a": {"m": 2, "n": 1}, "b": 1, "c": 3}),
        ),
        (
            r#"object.union({"z": 1, "a": 2}, {k: v | some k, v in {"m": 3, "z": 4}})"#,
            json!({"a": 2, "m": 3, "z": 4}),
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(eval(expr), json(want), "{expr}");
    }
}

/// `base64url.decode`, `json.is_valid`, `json.unmarshal` and `regex.match`
/// keep their answers per thread (`third_party/regorus/src/builtins/memo.rs`):
/// a repeated call answers as the first, operands that differ (in either
/// operand of `regex.match`) get their own answers, and a failure is a
/// failure each time.
#[test]
fn memoized_builtins_answer_like_fresh_calls() {
    let doc = r#"{"sub":"alice","roles":["admin","reader"],"n":1}"#;
    let other = r#"{"sub":"bob","roles":["reader"],"n":2,"pad":"xx"}"#;
    let quoted = |s: &str| serde_json::to_string(s).unwrap();
    for _ in 0..3 {
        assert_eq!(
            eval(&format!("json.unmarshal({})", quoted(doc))),
            json(serde_json::from_str(doc).unwrap())
        );
        assert_eq!(
            eval(&format!("json.unmarshal({})", quoted(other))),
            json(serde_json::from_str(other).unwrap())
        );
        assert_eq!(
            eval(&format!("json.is_valid({})", quoted(doc))),
            Value::from(true)
        );
        assert_eq!(
            eval(&format!("json.is_valid({})", quoted(&doc[1..]))),
            Value::from(false)
        );
        assert_eq!(
            eval(&format!("json.unmarshal({})", quoted(&doc[1..]))),
            Value::Undefined
        );
        let b64 = "eyJzdWIiOiJhbGljZSIsInJvbGVzIjpbImFkbWluIl19";
        assert_eq!(
            eval(&format!("base64url.decode({b64:?})")),
            Value::from(r#"{"sub":"alice","roles":["admin"]}"#)
        );
        assert_eq!(
            eval(&format!("base64url.decode(\"{}!\")", &b64[1..])),
            Value::Undefined
        );
        let value = "abcdefghijklmnopqrstuvwxyz-0123456789";
        assert_eq!(
            eval(&format!("regex.match(`^[a-z-]+[0-9]+$`, {value:?})")),
            Value::from(true)
        );
        assert_eq!(
            eval(&format!("regex.match(`^[a-z]+$`, {value:?})")),
            Value::from(false)
        );
        assert!(strict_error(&format!("regex.match(`(`, {value:?})")).contains("regex"));
    }
}
