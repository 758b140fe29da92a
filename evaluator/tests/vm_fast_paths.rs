#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! The bytecode VM answers the most frequent pure builtins inline (`is_*`,
//! `count`, `object.get`; a patch in `third_party/regorus`, see its
//! PATCHED.md) and calls the native builtins through a host handler while
//! it runs to completion. Both must give the interpreter's answers,
//! including the cases the inline code hands back to the builtin
//! (non-ASCII strings, path keys, non-object operands, undefined operands).

use std::sync::Arc;
use std::time::Duration;

use policy_agent::builtins::{NativeBuiltins, RateLimiter};
use policy_agent::{EnginePath, EngineStats, PolicySet, evaluate};
use serde_json::json;

const MODULE: &str = r#"package t
import rego.v1

types := [is_object(input.x), is_string(input.x), is_number(input.x), is_array(input.x),
	is_boolean(input.x), is_set(input.x), is_null(input.x)]

set_types := [is_set({1}), is_set(input.x), is_array({1})]

n := count(input.x)

missing_n := count(input.nope)

got := object.get(input.x, "a", "default")

got_path := object.get(input.x, ["a", "b"], "default")

got_undefined_key := object.get(input.x, input.nope, "default")

got_set_key := object.get({{1}: "one"}, {1}, "d")

type_after_missing := is_string(input.nope)

hashed := crypto.sha256(sprintf("%v", [input.x]))

taken := rate_limit.take("vm-fast-paths", 1000, 1000).allowed

objects := [
	{"b": 2, "a": input.x},
	{"k": 1, "z": input.x, lower("K"): 3},
	{lower("A"): 1, lower("a"): input.x},
	{"s": 1, input.x: "computed"},
	{},
]

odd_key_objects := [{[1]: "array key", "s": 1, 2: "number key", input.x: "computed"}, {input.x: 1, "s": 2}]

object_lookups := [o.k | some o in objects; o.k]
"#;

const RULES: &[&str] = &[
    "data.t.types",
    "data.t.set_types",
    "data.t.n",
    "data.t.missing_n",
    "data.t.got",
    "data.t.got_path",
    "data.t.got_undefined_key",
    "data.t.got_set_key",
    "data.t.type_after_missing",
    "data.t.hashed",
    "data.t.taken",
    "data.t.objects",
    "data.t.odd_key_objects",
    "data.t.object_lookups",
];

#[test]
fn inline_builtins_and_host_calls_answer_like_the_interpreter() {
    let set = PolicySet::try_from_modules(
        &[("t.rego".into(), MODULE.into())],
        json!({}),
        NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default()))),
        Arc::new(EngineStats::default()),
    )
    .unwrap();
    let values = [
        json!({}),
        json!({"a": 1}),
        json!({"a": {"b": "deep"}}),
        json!({"b": null}),
        json!("ascii"),
        json!("héllo wörld 😀"),
        json!(""),
        json!(42),
        json!(1.5),
        json!(true),
        json!(null),
        json!([1, 2, 3]),
        json!([]),
    ];
    // Known answers, so agreement is not agreement on nothing.
    let known = [
        // OPA counts code points: the emoji is one.
        ("data.t.n", json!({"x": "héllo wörld 😀"}), json!(13)),
        (
            "data.t.got_path",
            json!({"x": {"a": {"b": "deep"}}}),
            json!("deep"),
        ),
        ("data.t.got", json!({"x": {"b": 1}}), json!("default")),
        ("data.t.got_set_key", json!({}), json!("one")),
        // Object literals: keys sorted, a later field with an equal
        // computed key replaces an earlier one (as in OPA).
        (
            "data.t.objects",
            json!({"x": "v"}),
            json!([
                {"a": "v", "b": 2},
                {"k": 3, "z": "v"},
                {"a": "v"},
                {"s": 1, "v": "computed"},
                {},
            ]),
        ),
        (
            "data.t.types",
            json!({"x": 1}),
            json!([false, false, true, false, false, false, false]),
        ),
    ];
    for (rule, input, want) in known {
        let vm = set.compile_entrypoint(rule, true).unwrap();
        let got = evaluate(
            &set,
            &vm,
            regorus::Value::from(input),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(got.path, EnginePath::Vm);
        assert_eq!(got.decision, regorus::Value::from(want), "{rule}");
    }

    for rule in RULES {
        let vm = set.compile_entrypoint(rule, true).unwrap();
        assert!(vm.is_vm(), "{rule}: {:?}", vm.fallback_reason());
        let interp = set.compile_entrypoint(rule, false).unwrap();
        for x in &values {
            let input = regorus::Value::from(json!({ "x": x }));
            let ours = evaluate(&set, &vm, input.clone(), Duration::from_secs(5));
            let reference = evaluate(&set, &interp, input, Duration::from_secs(5));
            match (ours, reference) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.path, EnginePath::Vm, "{rule}");
                    assert_eq!(a.decision, b.decision, "{rule} on {x}");
                }
                // The interpreter raises builtin type errors (count(42)) that
                // the VM, like OPA without --strict-builtin-errors, makes
                // undefined: both give no decision.
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{rule} on {x}: VM {a:?}, interpreter {b:?}"),
            }
        }
    }
}

/// Objects built from entries (the agent's input and builtin results) are
/// the objects the same literal gives: sorted, later repeated keys winning.
#[test]
fn objects_from_entries_equal_their_literals() {
    use regorus::Value;
    let v = |j: serde_json::Value| Value::from(j);
    let entries = |pairs: &[(&str, i64)]| {
        Value::object_from_entries(
            pairs
                .iter()
                .map(|(k, n)| (Value::from(*k), Value::from(*n)))
                .collect(),
        )
    };
    assert_eq!(
        entries(&[("a", 1), ("b", 2), ("c", 3)]),
        v(json!({"a": 1, "b": 2, "c": 3}))
    );
    assert_eq!(
        entries(&[("c", 3), ("a", 1), ("b", 2)]),
        v(json!({"a": 1, "b": 2, "c": 3}))
    );
    assert_eq!(
        entries(&[("b", 1), ("a", 2), ("b", 3), ("b", 4)]),
        v(json!({"a": 2, "b": 4}))
    );
    assert_eq!(entries(&[]), Value::new_object());
    let o = entries(&[("z", 1), ("y", 2)]);
    assert_eq!(o["y"], Value::from(2));
    assert_eq!(o["z"], Value::from(1));
    // Mixed key types order as values do.
    let mixed = Value::object_from_entries(vec![
        (Value::from("s"), Value::from(1)),
        (Value::from(2), Value::from(2)),
        (Value::Null, Value::from(3)),
    ]);
    let keys: Vec<Value> = mixed.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, vec![Value::Null, Value::from(2), Value::from("s")]);
}

/// The bodies of a function (its `else` branches) share their registers on
/// the VM: each must start from undefined registers, whatever the branches
/// before it bound, looped over or collected before failing.
#[test]
fn else_branches_start_from_clean_registers() {
    const BRANCHES: &str = r#"package regs
import rego.v1

f(x) := ["first", a, b] if {
	a := x.a
	b := [v | some v in x.list; v > 1]
	count(b) > 5
} else := ["second", c, d] if {
	c := object.get(x, "c", "no c")
	not x.missing
	d := {k | some k, _ in x.obj}
	count(d) > 5
} else := ["third", e] if {
	e := x.missing_too
} else := ["fourth", m, n] if {
	some m in x.list
	m > 2
	n := count([1 | some y in x.list; y < m])
}

g(x) := r if {
	r := x.nope
} else := r if {
	r := [x.a, object.get(x, "c", null)]
}

cases := [f(input), f({"a": 1, "list": [5], "obj": {}}), g(input)]
"#;
    let set = PolicySet::try_from_modules(
        &[("regs.rego".into(), BRANCHES.into())],
        json!({}),
        NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default()))),
        Arc::new(EngineStats::default()),
    )
    .unwrap();
    let input = regorus::Value::from(json!({"a": 1, "list": [1, 2, 3], "obj": {"p": 1, "q": 2}}));
    let want = regorus::Value::from(json!([["fourth", 3, 2], ["fourth", 5, 0], [1, null]]));
    for use_vm in [true, false] {
        let compiled = set.compile_entrypoint("data.regs.cases", use_vm).unwrap();
        assert_eq!(compiled.is_vm(), use_vm, "{:?}", compiled.fallback_reason());
        let got = evaluate(&set, &compiled, input.clone(), Duration::from_secs(5)).unwrap();
        assert_eq!(got.decision, want, "vm: {use_vm}");
    }
}
