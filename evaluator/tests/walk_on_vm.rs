#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! `walk(x, [path, value])` compiles for the bytecode VM (a patch in
//! `third_party/regorus`, see its PATCHED.md) and gives the interpreter's
//! answers: in set and array comprehensions, with the value bound or
//! ignored, nested in a function, under `every`, and with conditions after it.

use std::sync::Arc;
use std::time::Duration;

use policy_agent::builtins::{NativeBuiltins, RateLimiter};
use policy_agent::{EnginePath, EngineStats, PolicySet, evaluate};
use serde_json::json;

const MODULE: &str = r#"package t
import rego.v1

paths := {p | walk(input.doc, [p, _])}

leaves := [[p, v] | walk(input.doc, [p, v]); not is_object(v); not is_array(v)]

named(doc, name) := {p |
	walk(doc, [p, _])
	count(p) > 0
	p[count(p) - 1] == name
}

secret_paths := named(input.doc, "secret")

all_leaves_short if {
	every pair in [[p, v] | walk(input.doc, [p, v]); is_string(v)] {
		count(pair[1]) < 10
	}
}

count_numbers := count([v | walk(input.doc, [_, v]); is_number(v)])
"#;

const RULES: &[&str] = &[
    "data.t.paths",
    "data.t.leaves",
    "data.t.secret_paths",
    "data.t.all_leaves_short",
    "data.t.count_numbers",
];

#[test]
fn walk_rules_run_on_the_vm_and_answer_like_the_interpreter() {
    let set = PolicySet::try_from_modules(
        &[("t.rego".into(), MODULE.into())],
        json!({}),
        NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default()))),
        Arc::new(EngineStats::default()),
    )
    .unwrap();
    let docs = [
        json!({}),
        json!("scalar"),
        json!([1, [2, {"secret": 3}], "x"]),
        json!({"a": {"secret": "s", "b": [{"secret": 1, "c": null}, 7.5]}, "secret": {"secret": true}}),
        json!({"long": "a string longer than ten", "n": -1}),
    ];
    // A known answer, so agreement is not agreement on nothing.
    let secrets = set.compile_entrypoint("data.t.secret_paths", true).unwrap();
    let input = regorus::Value::from(json!({"doc": docs[3]}));
    let got = evaluate(&set, &secrets, input, Duration::from_secs(5)).unwrap();
    let want = regorus::Value::from(json!([
        ["a", "b", 0, "secret"],
        ["a", "secret"],
        ["secret"],
        ["secret", "secret"]
    ]));
    let got_sorted = serde_json::to_value(&got.decision).unwrap();
    let mut got_sorted: Vec<serde_json::Value> = got_sorted.as_array().unwrap().clone();
    got_sorted.sort_by_key(|v| v.to_string());
    let mut want_sorted: Vec<serde_json::Value> = serde_json::to_value(&want)
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    want_sorted.sort_by_key(|v| v.to_string());
    assert_eq!(got_sorted, want_sorted);

    for rule in RULES {
        let vm = set.compile_entrypoint(rule, true).unwrap();
        assert!(vm.is_vm(), "{rule}: {:?}", vm.fallback_reason());
        let interp = set.compile_entrypoint(rule, false).unwrap();
        for doc in &docs {
            let input = regorus::Value::from(json!({ "doc": doc }));
            let ours = evaluate(&set, &vm, input.clone(), Duration::from_secs(5));
            let reference = evaluate(&set, &interp, input, Duration::from_secs(5));
            match (ours, reference) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.path, EnginePath::Vm, "{rule}");
                    assert_eq!(a.decision, b.decision, "{rule} on {doc}");
                }
                (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{rule} on {doc}"),
                (a, b) => panic!("{rule} on {doc}: VM {a:?}, interpreter {b:?}"),
            }
        }
    }
}
