#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! Template strings (`$"…{expr}…"`, `` $`…{expr}…` ``) and keywords as the
//! first component of refs (`as.foo`, `not.x`, `else.y := 1`): patches in
//! `third_party/regorus`, see its PATCHED.md. A template is desugared by the
//! parser into a call of `internal.template_string`, so the interpreter and
//! the bytecode VM must agree on it.

use std::sync::Arc;
use std::time::Duration;

use policy_agent::builtins::{NativeBuiltins, RateLimiter};
use policy_agent::{EnginePath, EngineStats, PolicySet, evaluate};
use regorus::{Engine, Value};
use serde_json::json;

fn engine(policy: &str) -> anyhow::Result<Engine> {
    let mut engine = Engine::new();
    engine.add_policy("test.rego".to_string(), policy.to_string())?;
    Ok(engine)
}

fn eval(policy: &str, input: serde_json::Value) -> Value {
    let mut engine = engine(policy).unwrap_or_else(|e| panic!("{policy}: {e}"));
    engine.set_input(Value::from(input));
    engine
        .eval_rule("data.test.p".to_string())
        .unwrap_or_else(|e| panic!("{policy}: {e}"))
}

fn parse_error(policy: &str) -> String {
    match engine(policy) {
        Ok(_) => panic!("{policy}: parsed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn template_values_undefined_parts_and_escapes() {
    let v = eval(
        "package test\na := 42\np := $\"{1 + a} {input.x}, {[1, \"b\"]} {set()} \\{x} {13.370}\\n\"",
        json!({}),
    );
    assert_eq!(
        v,
        Value::from("43 <undefined>, [1, \"b\"] set() {x} 13.370\n")
    );
}

#[test]
fn raw_template_spans_lines_and_keeps_backslashes() {
    let v = eval(
        "package test\np := $`<{input.x}>\n  \\{{input.y}\\n`",
        json!({"x": "a", "y": true}),
    );
    assert_eq!(v, Value::from("<a>\n  {true\\n"));
}

#[test]
fn nested_templates_and_with_modifiers() {
    let v = eval(
        "package test\na := input.a\np := x if {\n  x := $\"{$\"{a with input as {\"a\": 1}}\"}-{a}\" with input.a as 2\n}",
        json!({}),
    );
    assert_eq!(v, Value::from("1-2"));
}

#[test]
fn builtin_writes_parts_as_opa_writes_terms() {
    let v = eval(
        r#"package test
p := internal.template_string([
  "foo", 42, false, null, set(), " ",
  {[]}, " ", {["a", "b"]}, " ", {set()}, " ", {{"c"}}, " ", {{}}, " ",
  {{"d": "e\n\u0001\u00a0é"}}, " ", {1.5}, " ", {"raw\"s"}
])"#,
        json!({}),
    );
    assert_eq!(
        v,
        Value::from(
            r#"foo42falsenull<undefined> [] ["a", "b"] set() {"c"} {} {"d": "e\n\x01\u00a0é"} 1.5 raw"s"#
        )
    );
    // Any other part is an error, raised even outside strict mode.
    let mut engine = engine("package test\np := internal.template_string([[1]])").unwrap();
    let err = engine
        .eval_rule("data.test.p".to_string())
        .expect_err("array part");
    assert!(
        err.to_string().contains("illegal argument type: array"),
        "{err}"
    );
}

#[test]
fn template_part_with_several_values_is_a_conflict() {
    let mut engine = engine("package test\np := $\"{input.xs[_]}\"").unwrap();
    engine.set_input(Value::from(json!({"xs": [1, 2]})));
    let err = engine
        .eval_rule("data.test.p".to_string())
        .expect_err("two values for one part");
    assert!(
        err.to_string()
            .contains("eval_conflict_error: template-strings must not produce multiple outputs"),
        "{err}"
    );
    engine.set_input(Value::from(json!({"xs": [1]})));
    assert_eq!(
        engine.eval_rule("data.test.p".to_string()).unwrap(),
        Value::from("1")
    );
}

#[test]
fn template_as_function_argument() {
    let policy =
        "package test\np := f(input.s)\nf($\"{x} {input.y}\") := 42 if {\n  x = \"foo\"\n}";
    assert_eq!(
        eval(policy, json!({"s": "foo bar", "y": "bar"})),
        Value::from(42_u64)
    );
    assert_eq!(
        eval(policy, json!({"s": "foo baz", "y": "bar"})),
        Value::Undefined
    );
}

#[test]
fn template_in_rule_head_ref() {
    let v = eval(
        "package test\np[$\"k{x}\"] := x if some x in [1, 2]",
        json!({}),
    );
    assert_eq!(v, Value::from(json!({"k1": 1, "k2": 2})));
    let mut engine = engine("package test\np.a[$\"k{input.a}\"] := 1").unwrap();
    engine.set_input(Value::from(json!({"a": "z"})));
    assert_eq!(
        engine.eval_rule("data.test.p.a".to_string()).unwrap(),
        Value::from(json!({"kz": 1}))
    );
}

#[test]
fn template_expressions_that_are_not_values_are_rejected() {
    for (policy, message) in [
        ("package test\np := $\"{x := 1}\"", "unexpected assignment"),
        ("package test\np := $\"{x = 1}\"", "unexpected unification"),
        (
            "package test\np := $\"{not input.x}\"",
            "unexpected negation",
        ),
        ("package test\np := $\"{input.x 1}\"", "expected `}`"),
        (
            "package test\np := $\"{input.x}",
            "non-terminated template string",
        ),
        (
            "package test\np := $\"a\nb\"",
            "non-terminated template string",
        ),
        ("package test\np := $\"\\q\"", "invalid escape sequence"),
    ] {
        let err = parse_error(policy);
        assert!(err.contains(message), "{policy}: {err}");
    }
}

#[test]
fn keywords_begin_refs_in_rule_heads_and_literals() {
    let policy = r#"package test
import data.test.import as imp

p if {
  as.foo == 1
  not.bar(2) == 2
  with.x == 3
  with.y == 4
  true.z == 5
  imp.w == 6
  else.v == "e"
  some.u == {"s"}
}

as.foo := 1
default not.bar(_) := 0
not.bar(x) := x if x > 1
with.x := 3
with.y := 4
true.z := 5
import.w := 6
else.v := "e" if {
  true
} else := "f"
some.u contains "s"
"#;
    assert_eq!(eval(policy, json!({})), Value::from(true));
}

#[test]
fn package_path_may_begin_with_a_keyword() {
    let mut engine = engine("package every.x\np := 1").unwrap();
    assert_eq!(
        engine.eval_rule("data.every.x.p".to_string()).unwrap(),
        Value::from(1_u64)
    );
}

#[test]
fn keywords_stay_keywords_elsewhere() {
    // As in OPA, only the first term of a literal or a rule may be a keyword.
    parse_error("package test\np if {\n  x := as.foo\n}\nas.foo := 1");
    let err = parse_error("package test\nas := 1");
    assert!(err.contains("unexpected keyword `as`"), "{err}");
    // `not x`, `some x in xs` and `x with input as y` are unchanged.
    let v = eval(
        "package test\nq := input.q\np if {\n  not input.x\n  some y in [1]\n  q == 1 with input.q as 1\n}",
        json!({}),
    );
    assert_eq!(v, Value::from(true));
}

const MODULE: &str = r#"package t
import rego.v1

a := 42

simple := $"{input.z}"

undefined_part := $"{input.missing}|{input.z}"

# An empty comprehension inside a loop (VM regression: the loop's iteration
# failed, and the enclosing comprehension's yields went astray).
nested_empty := [x | some y in [1, 2]; x := {t | t := input.z; y > 1}]

nested_in_body if {
	some y in [1]
	x := {t | t := input.z}
	count(x) == 0
}

lines := [x | some y in ["a", "b"]; x := $"<{y}:{a + 1}:{input.z}>"]

raw := $`{input.z}
{[a]}`

via_fn := f("foo 1")

f($"{x} {input.n}") := true if x := "foo"

keyed[$"k{y}"] := y if some y in [1, input.n]

as.key := $"{{input.z: a}}"
"#;

const RULES: &[&str] = &[
    "data.t.simple",
    "data.t.undefined_part",
    "data.t.nested_empty",
    "data.t.nested_in_body",
    "data.t.lines",
    "data.t.raw",
    "data.t.via_fn",
    "data.t.keyed",
    "data.t.as.key",
];

#[test]
fn templates_and_keyword_refs_run_on_the_vm_and_answer_like_the_interpreter() {
    let set = PolicySet::try_from_modules(
        &[("t.rego".into(), MODULE.into())],
        json!({}),
        NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default()))),
        Arc::new(EngineStats::default()),
    )
    .unwrap();
    let inputs = [
        json!({}),
        json!({"z": "zz", "n": 1}),
        json!({"z": [1], "n": 2}),
    ];

    // A known answer, so agreement is not agreement on nothing.
    let lines = set.compile_entrypoint("data.t.lines", true).unwrap();
    let got = evaluate(
        &set,
        &lines,
        Value::from(json!({"z": "zz"})),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(got.decision, Value::from(json!(["<a:43:zz>", "<b:43:zz>"])));

    for rule in RULES {
        let vm = set.compile_entrypoint(rule, true).unwrap();
        assert!(vm.is_vm(), "{rule}: {:?}", vm.fallback_reason());
        let interp = set.compile_entrypoint(rule, false).unwrap();
        for input in &inputs {
            let input = Value::from(input.clone());
            let ours = evaluate(&set, &vm, input.clone(), Duration::from_secs(5));
            let reference = evaluate(&set, &interp, input.clone(), Duration::from_secs(5));
            match (ours, reference) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.path, EnginePath::Vm, "{rule}");
                    assert_eq!(a.decision, b.decision, "{rule} on {input}");
                }
                (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{rule} on {input}"),
                (a, b) => panic!("{rule} on {input}: VM {a:?}, interpreter {b:?}"),
            }
        }
    }
}
