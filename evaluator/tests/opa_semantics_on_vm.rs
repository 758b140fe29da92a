#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! Language semantics where regorus differed from OPA v1.20 (cases in
//! `tests/conformance/regressions/`): the interpreter and the bytecode VM
//! must both give OPA's answer.

use std::sync::Arc;
use std::time::Duration;

use policy_agent::builtins::{NativeBuiltins, RateLimiter};
use policy_agent::{EngineStats, EvalError, PolicySet, evaluate};
use regorus::Value;
use serde_json::json;

const MODULE: &str = r#"package t

some_in_number contains x if {
	some x in input.n
}

in_undefined := x if {
	x := input.missing in {"a"}
}

not_call if {
	not startswith(input.missing, "a")
}

not_compare if {
	not 3 >= input.missing
}

not_equality if {
	not 3 == input.missing
}

not_object_arg if {
	not is_boolean({input.s: input.missing})
}

o[object.get(it.meta, "bob", it.kind)] := it.kind if {
	some it in input.items
}

q if count([1, 2, 3]) == 2

with_undefined if {
	q with count as [1 | true][9]
}

newline_paren if {
	v := input.s
	(1 + 2) == 3
}

body_set_comprehension if { {"a"} | {"b"} != input.missing }

one_float := 1.0

f(_) := 1

f(_) := 2

unreached_conflict := concat(input.missing, [json.marshal(f(0))])

pruned_body if {
	y := f(0)
	x := count(input.missing)
}

data_index_float if {
	data.a[one_float] == 2
}
"#;

/// Each rule with OPA's answer for the test's input.
fn expectations() -> Vec<(&'static str, Value)> {
    let answers = vec![
        ("data.t.in_undefined", None),
        ("data.t.not_call", None),
        ("data.t.not_compare", None),
        ("data.t.not_equality", Some(json!(true))),
        ("data.t.not_object_arg", None),
        ("data.t.o", Some(json!({"a": "a"}))),
        ("data.t.with_undefined", None),
        ("data.t.newline_paren", Some(json!(true))),
        ("data.t.body_set_comprehension", Some(json!(true))),
        ("data.t.data_index_float", None),
        ("data.t.unreached_conflict", None),
        ("data.t.pruned_body", None),
    ];
    let mut answers: Vec<(&'static str, Value)> = answers
        .into_iter()
        .map(|(rule, want)| (rule, want.map_or(Value::Undefined, Value::from)))
        .collect();
    answers.push(("data.t.some_in_number", Value::new_set()));
    answers
}

#[test]
fn interpreter_and_vm_answer_as_opa() {
    let set = PolicySet::try_from_modules(
        &[("t.rego".into(), MODULE.into())],
        json!({"a": {"1": 2}}),
        NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default()))),
        Arc::new(EngineStats::default()),
    )
    .unwrap();
    let input = Value::from(json!({
        "s": "x",
        "n": 1,
        "items": [{}, {"kind": "a", "meta": {}}],
    }));
    let mut failures = vec![];
    for (rule, want) in expectations() {
        for use_vm in [false, true] {
            let compiled = set.compile_entrypoint(rule, use_vm).unwrap();
            match evaluate(&set, &compiled, input.clone(), Duration::from_secs(5)) {
                Ok(got) if got.decision == want => {}
                Err(EvalError::Undefined) if want == Value::Undefined => {}
                Ok(got) => failures.push(format!(
                    "{rule} (vm: {use_vm}, path {:?}): want {want}, got {}",
                    got.path, got.decision
                )),
                Err(e) => failures.push(format!("{rule} (vm: {use_vm}): error {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
