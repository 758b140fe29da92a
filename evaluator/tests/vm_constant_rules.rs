#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! The bytecode VM keeps the values of rules that depend only on the data
//! from one query to the next (a patch in `third_party/regorus`, see its
//! PATCHED.md). Every query must still answer as if it had computed them
//! afresh: rules that read the input (directly or through a function), the
//! time or a host builtin are computed again, and another snapshot's data
//! gives its own values.

use std::sync::Arc;
use std::time::Duration;

use policy_agent::builtins::{NativeBuiltins, RateLimiter};
use policy_agent::{EnginePath, EngineStats, PolicySet, evaluate};
use serde_json::{Value as Json, json};

const MODULE: &str = r#"package c
import rego.v1

threshold := data.config.limit * 2

roles := {r | some r in data.config.roles}

admins contains r if {
	some r in data.config.roles
	startswith(r, "admin")
}

uses_constants := threshold + count(roles) + count(admins)

via_input := input.n + 1

plus(x) := input.n + x

via_function := plus(1)

mixed := threshold + input.n

now := time.now_ns()

remaining := rate_limit.take("vm-constant-rules", 1, 1000).remaining

answer := {
	"threshold": threshold,
	"roles": roles,
	"admins": admins,
	"uses_constants": uses_constants,
	"via_input": via_input,
	"via_function": via_function,
	"mixed": mixed,
}
"#;

fn set(data: Json) -> PolicySet {
    PolicySet::try_from_modules(
        &[("c.rego".into(), MODULE.into())],
        data,
        NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default()))),
        Arc::new(EngineStats::default()),
    )
    .unwrap()
}

fn eval(set: &PolicySet, rule: &str, input: Json) -> Json {
    let chain = set.compile_entrypoint(rule, true).unwrap();
    assert!(chain.is_vm(), "{rule}: {:?}", chain.fallback_reason());
    let e = evaluate(
        set,
        &chain,
        regorus::Value::from(input),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(e.path, EnginePath::Vm);
    serde_json::to_value(&e.decision).unwrap()
}

#[test]
fn rules_of_the_data_alone_keep_their_values_and_the_rest_follow_each_query() {
    let first = set(json!({"config": {"limit": 10, "roles": ["admin", "admin-ro", "dev"]}}));
    for n in [1, 5, 1, 40] {
        assert_eq!(
            eval(&first, "data.c.answer", json!({"n": n})),
            json!({
                "threshold": 20,
                "roles": ["admin", "admin-ro", "dev"],
                "admins": ["admin", "admin-ro"],
                "uses_constants": 25,
                "via_input": n + 1,
                "via_function": n + 1,
                "mixed": 20 + n,
            }),
            "n = {n}"
        );
    }
    // Another snapshot's data: its own values, while the first snapshot's
    // VM (on this thread) still answers with the first data.
    let second = set(json!({"config": {"limit": 3, "roles": ["dev"]}}));
    let got = eval(&second, "data.c.answer", json!({"n": 2}));
    assert_eq!(got["threshold"], 6);
    assert_eq!(got["admins"], json!([]));
    assert_eq!(got["uses_constants"], 7);
    assert_eq!(eval(&first, "data.c.threshold", json!({})), 20);
}

#[test]
fn time_and_host_builtins_are_asked_at_each_query() {
    let s = set(json!({"config": {"limit": 1, "roles": []}}));
    let remaining: Vec<i64> = (0..3)
        .map(|_| eval(&s, "data.c.remaining", json!({})).as_i64().unwrap())
        .collect();
    assert!(
        remaining[0] > remaining[1] && remaining[1] > remaining[2],
        "{remaining:?}"
    );
    let first = eval(&s, "data.c.now", json!({})).as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(2));
    let second = eval(&s, "data.c.now", json!({})).as_i64().unwrap();
    assert!(second > first, "{first} then {second}");
}
