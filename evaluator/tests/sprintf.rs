#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! `sprintf` as OPA's (patch in `third_party/regorus`, see its PATCHED.md):
//! Go's `fmt.Sprintf` on the values OPA passes it. Expected texts are OPA
//! v1.20's answers; cases found by differential fuzzing are in
//! `tests/conformance/regressions/sprintf-go-verbs.json`.

use std::sync::Arc;
use std::time::Duration;

use policy_agent::builtins::{NativeBuiltins, RateLimiter};
use policy_agent::{EnginePath, EngineStats, PolicySet, evaluate, new_engine};
use regorus::Value;
use serde_json::json;

/// `sprintf(format, args)` (Rego source of both) on the interpreter.
fn try_sprintf(format: &str, args: &str, input: serde_json::Value) -> anyhow::Result<Value> {
    let mut engine = new_engine();
    engine.add_policy(
        "t.rego".to_string(),
        format!("package t\n\np := sprintf({format}, {args})\n"),
    )?;
    engine.set_input(Value::from(input));
    engine.eval_rule("data.t.p".to_string())
}

fn sprintf_in(format: &str, args: &str, input: serde_json::Value) -> String {
    match try_sprintf(format, args, input) {
        Ok(Value::String(s)) => s.to_string(),
        other => panic!("sprintf({format}, {args}): {other:?}"),
    }
}

fn sprintf(format: &str, args: &str) -> String {
    sprintf_in(format, args, json!({}))
}

#[test]
fn integers_in_every_verb_with_flags_width_and_precision() {
    assert_eq!(
        sprintf(
            r#""%d|%5d|%-5d|%05d|%+d|% d|%.3d|%8.3d""#,
            "[42, 42, 42, -42, 42, 42, 7, -7]"
        ),
        "42|   42|42   |-0042|+42| 42|007|    -007"
    );
    assert_eq!(
        sprintf(
            r#""%b|%o|%O|%#o|%x|%X|%#x|%#X|%c|%q|%U|%#U""#,
            "[5, 8, 8, 8, 255, 255, 255, 255, 65, 65, 233, 233]"
        ),
        "101|10|0o10|010|ff|FF|0xff|0XFF|A|'A'|U+00E9|U+00E9 'é'"
    );
    assert_eq!(
        sprintf(r#""%v %T %.0d|""#, "[-9223372036854775808, 1, 0]"),
        "-9223372036854775808 int64 |"
    );
    // Go's `%c` of a value that is not a character.
    assert_eq!(sprintf(r#""%c%c""#, "[1114112, 55296]"), "\u{fffd}\u{fffd}");
}

#[test]
fn integers_beyond_int64_are_big_ints() {
    let big = "100000000000000000000";
    assert_eq!(
        sprintf(
            r#""%v|%x|%#o|%+d|%-25d|%T""#,
            &format!("[{big}, {big}, {big}, {big}, -{big}, {big}]")
        ),
        "100000000000000000000|56bc75e2d63100000|012657072742654304000000|+100000000000000000000|-100000000000000000000   |*big.Int"
    );
    assert_eq!(
        sprintf(r#""%e""#, &format!("[{big}]")),
        "%!e(big.Int=100000000000000000000)"
    );
    assert_eq!(
        sprintf(r#""%w""#, &format!("[{big}]")),
        "%!w(*big.Int=&{false [7766279631452241920 5]})"
    );
}

#[test]
fn floats_in_every_verb() {
    assert_eq!(
        sprintf(
            r#""%v|%f|%.2f|%8.3f|%-8.1f|%08.2f|%+.1e|%E|%g|%G""#,
            "[1.5, 1.5, 3.14159, -1.5, 2.25, -1.5, 12345.678, 0.000123, 0.1, 1.5e-7]"
        ),
        "1.5|1.500000|3.14|  -1.500|2.2     |-0001.50|+1.2e+04|1.230000E-04|0.1|1.5E-07"
    );
    assert_eq!(
        sprintf(
            r#""%x|%#x|%.3x|%X|%b|%#g|%#.3e|%F""#,
            "[1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5]"
        ),
        "0x1.8p+00|0x1.8000p+00|0x1.800p+00|0X1.8P+00|6755399441055744p-52|1.50000|1.500e+00|1.500000"
    );
    // `%g` picks `%e` from the exponent, with Go's thresholds.
    assert_eq!(
        sprintf(
            r#""%g|%g|%.3g|%.3g|%v""#,
            "[123456.5, 1234567.5, 1234.5678, 0.5, 1/3]"
        ),
        "123456.5|1.2345675e+06|1.23e+03|0.5|0.3333333333333333"
    );
    // Not a float verb.
    assert_eq!(
        sprintf(r#""%d|%s|%q""#, "[2.5, 2.5, 2.5]"),
        "%!d(float64=2.5)|%!s(float64=2.5)|%!q(float64=2.5)"
    );
}

#[test]
fn numbers_are_go_values_as_opa_reads_their_text() {
    // An integral float is an int64; a fraction a float64; an exponent
    // without a point (as JSON writes 1e-09) the number's text.
    let input = json!({"whole": 150.0, "half": 0.5, "tiny": 1e-9, "huge": 1e22, "big": 1.5e300});
    assert_eq!(
        sprintf_in(
            r#""%T %v|%T %v|%T %v|%T %v|%T %v""#,
            "[input.whole, input.whole, input.half, input.half, input.tiny, input.tiny, input.huge, input.huge, input.big, input.big]",
            input.clone(),
        ),
        "int64 150|float64 0.5|string 1e-09|string 1e+22|float64 1.5e+300"
    );
    assert_eq!(
        sprintf_in(r#""%s|%d""#, "[input.tiny, input.whole]", input.clone()),
        "1e-09|150"
    );
    // Inside a collection a number is written as its text.
    assert_eq!(
        sprintf_in(
            r#""%v""#,
            "[[input.whole, input.half, input.tiny, 7]]",
            input
        ),
        "[150.0, 0.5, 1e-09, 7]"
    );
}

#[test]
fn strings_in_every_verb() {
    assert_eq!(
        sprintf(
            r#""%s|%.2s|%6s|%-6s|%06s|%x|% X|%#x|%.1x""#,
            r#"["héllo", "héllo", "ab", "ab", "ab", "hi", "hi", "hi", "hi"]"#
        ),
        "héllo|hé|    ab|ab    |0000ab|6869|68 69|0x6869|68"
    );
    assert_eq!(
        sprintf(
            r#""%q|%+q|%#q|%#q|%q|%#v""#,
            r#"["a\"b", "é", "ab", "a`b", "\t\u00a0", "x"]"#
        ),
        r#""a\"b"|"\u00e9"|`ab`|"a`b"|"\t\u00a0"|"x""#
    );
    assert_eq!(
        sprintf(r#""%d|%c""#, r#"[" true", "x"]"#),
        "%!d(string= true)|%!c(string=x)"
    );
}

#[test]
fn other_values_are_their_rego_text() {
    assert_eq!(
        sprintf(
            r#""%v|%v|%v|%v|%s""#,
            r#"[true, null, set(), {"b": 1, "a": [true, "x"]}, {3, "x", [1]}]"#
        ),
        r#"true|null|set()|{"a": [true, "x"], "b": 1}|{3, "x", [1]}"#
    );
    // Objects sort before sets, as in OPA.
    assert_eq!(
        sprintf(r#""%v""#, r#"[{{1}, {"a": 1}, [1], null}]"#),
        r#"{null, [1], {"a": 1}, {1}}"#
    );
    assert_eq!(
        sprintf(r#""%.3s|%o|%t""#, r#"[{"dave", "x"}, {"%"}, false]"#),
        r#"{"d|%!o(string={"%"})|%!t(string=false)"#
    );
}

#[test]
fn missing_extra_and_misplaced_arguments() {
    assert_eq!(sprintf(r#""%v %s""#, "[true]"), "true %!s(MISSING)");
    assert_eq!(sprintf(r#""-3-3""#, "[true]"), "-3-3%!(EXTRA string=true)");
    assert_eq!(
        sprintf(r#""%d""#, r#"[1, 2.5, "x", 100000000000000000000]"#),
        "1%!(EXTRA float64=2.5, string=x, *big.Int=100000000000000000000)"
    );
    assert_eq!(sprintf(r#""%[2]d %[1]d %d""#, "[1, 2]"), "2 1 2");
    // Arguments taken out of order: no EXTRA check.
    assert_eq!(sprintf(r#""%[1]d""#, "[1, 2]"), "1");
    assert_eq!(
        sprintf(r#""%[3]d|%[0]d|%[x]d|%d""#, "[1]"),
        "%!d(BADINDEX)|%!d(BADINDEX)|%!d(BADINDEX)|1"
    );
    assert_eq!(
        sprintf(r#""%*d|%-*d|%.*f""#, "[5, 3, 4, 2, 2, 3.14159]"),
        "    3|2   |3.14"
    );
    assert_eq!(
        sprintf(r#""%*d|%.*f""#, r#"["x", 3, 1.5, 2]"#),
        "%!(BADWIDTH)3|%!(BADPREC)%!f(int64=2)"
    );
    assert_eq!(
        sprintf(r#""%5.2z|%!|%""#, "[4]"),
        "%!z(int64=   04)|%!!(MISSING)|%!(NOVERB)"
    );
    assert_eq!(sprintf(r#""100%%|%5%""#, "[]"), "100%|%");
    assert_eq!(sprintf(r#""%d""#, "[]"), "%!d(MISSING)");
}

#[test]
fn huge_widths_are_ignored_as_in_go() {
    assert_eq!(
        sprintf(r#""%99999999d|""#, "[1]"),
        "%!(NOVERB)%!(EXTRA int64=1)"
    );
    assert_eq!(sprintf(r#""%*d""#, "[10000000, 1]"), "%!(BADWIDTH)1");
}

#[test]
fn operand_types_are_checked() {
    let err = try_sprintf("1", "[]", json!({})).unwrap_err().to_string();
    assert!(
        err.contains("eval_type_error: sprintf: operand 1 must be string but got number"),
        "{err}"
    );
    let err = try_sprintf(r#""%v""#, "{1}", json!({}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("eval_type_error: sprintf: operand 2 must be array but got set"),
        "{err}"
    );
}

#[test]
fn sprintf_runs_on_the_vm_and_answers_like_the_interpreter() {
    let module = r#"package t

p := sprintf("%v|%d|%5.1f|%s|%x|%v", [input.a, input.b, input.c, input.d, input.e, input.f])
"#;
    let set = PolicySet::try_from_modules(
        &[("t.rego".into(), module.into())],
        json!({}),
        NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default()))),
        Arc::new(EngineStats::default()),
    )
    .unwrap();
    let vm = set.compile_entrypoint("data.t.p", true).unwrap();
    assert!(vm.is_vm(), "{:?}", vm.fallback_reason());
    let interp = set.compile_entrypoint("data.t.p", false).unwrap();
    let input =
        Value::from(json!({"a": [1, "x"], "b": "s", "c": 2.25, "d": 1e-9, "e": 255, "f": {}}));
    let on_vm = evaluate(&set, &vm, input.clone(), Duration::from_secs(5)).unwrap();
    let reference = evaluate(&set, &interp, input, Duration::from_secs(5)).unwrap();
    assert_eq!(on_vm.path, EnginePath::Vm);
    assert_eq!(on_vm.decision, reference.decision);
    assert_eq!(
        on_vm.decision,
        Value::from(r#"[1, "x"]|%!d(string=s)|  2.2|1e-09|ff|{}"#)
    );
}
