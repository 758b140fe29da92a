#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! Execution semantics of compiled chains (spec §4.1.3–4.1.4), checked on
//! the bytecode VM and on the interpreter with small purpose-built policies.

use std::sync::Arc;
use std::time::Duration;

use policy_agent::builtins::{NativeBuiltins, RateLimiter};
use policy_agent::chain::{self, ChainSpec, OnFailure, Step, StepKind};
use policy_agent::{EnginePath, EngineStats, PolicyRegistry, PolicySet, evaluate};
use policy_rego::{Phase, PolicyInfo, Tier};
use regorus::Value;
use serde_json::{Value as Json, json};

const POLICIES: &[(&str, &str)] = &[
    (
        // Declares custom.prepare (see `set`): chains call run(ctx, k) with
        // k a rule holding prepare(md).
        "prepared",
        r#"package policies.prepared
result(ctx, md) := run(ctx, prepare(md))
prepare(md) := {"tag": concat("-", ["prepared", md.value])}
run(ctx, p) := {"status": "OK", "message": p.tag, "metadata": {}, "instructions": [
	{"type": "SET_STATE", "key": p.tag, "value": ctx.request.method},
]}"#,
    ),
    (
        "setA",
        r#"package policies.setA
result(ctx, md) := {"status": "OK", "message": "", "metadata": {"a": "1"}, "instructions": [
	{"type": "SET_HEADER", "key": "X-A", "value": md.value},
	{"type": "SET_STATE", "key": "seen", "value": object.get(ctx.request.headers, "x-a", "none")},
]}"#,
    ),
    (
        "readA",
        r#"package policies.readA
result(ctx, _) := {"status": "OK", "message": "", "metadata": {}, "instructions": [
	{"type": "SET_HEADER", "key": "X-Saw-A", "value": object.get(ctx.request.headers, "x-a", "missing")},
	{"type": "REMOVE_HEADER", "key": "X-Drop"},
]}"#,
    ),
    (
        "deny",
        r#"package policies.deny
result(_, _) := {"status": "POLICY_DENIED", "message": "no", "metadata": {}, "instructions": [
	{"type": "IMMEDIATE_RESPONSE", "status_code": 403, "headers": {}, "body": "{\"error\":\"no\"}"},
]}"#,
    ),
    (
        "fail",
        r#"package policies.fail
result(_, _) := {"status": "POLICY_ERROR", "message": "boom", "metadata": {}, "instructions": []}"#,
    ),
    (
        "counter",
        r#"package policies.counter
result(ctx, _) := {"status": "OK", "message": "", "metadata": {}, "instructions": [
	{"type": "SET_HEADER", "key": "X-Remaining", "value": format_int(t.remaining, 10)},
]} if {
	t := rate_limit.take(ctx.route, 1, 100)
}"#,
    ),
    (
        "undef",
        r#"package policies.undef
result(ctx, _) := {"status": "OK"} if ctx.never"#,
    ),
    (
        "assign",
        r#"package policies.assign
_helper(ctx) := 1 if ctx.never
_pick(ctx) := v if {
	v := _helper(ctx)
} else := "fallback"
result(ctx, _) := {"status": "OK", "message": _pick(ctx), "metadata": {}, "instructions": []}"#,
    ),
    (
        "loopelse",
        r#"package policies.loopelse
_found(xs) := "hit" if {
	some x in xs
	x == 2
} else := "miss"
result(_, md) := {"status": "OK", "message": _found(md.xs), "metadata": {}, "instructions": []}"#,
    ),
    (
        "rewrite",
        r#"package policies.rewrite
result(_, _) := {"status": "OK", "message": "", "metadata": {}, "instructions": [
	{"type": "SET_BODY", "body": {"kept": 1}},
	{"type": "SET_STATE", "key": "claims", "value": {"sub": "x"}},
]}"#,
    ),
    (
        "observe",
        r#"package policies.observe
result(ctx, _) := {"status": "OK", "metadata": {}, "instructions": [], "message": json.marshal({
	"drop": object.get(ctx.request.headers, "x-drop", "absent"),
	"body": ctx.request.body,
	"claims": object.get(ctx.state, "claims", null),
})}"#,
    ),
    (
        "malformed",
        r#"package policies.malformed
result(_, _) := {"status": "MAYBE", "instructions": "x"}"#,
    ),
    (
        "twoHeaders",
        r#"package policies.twoHeaders
result(ctx, _) := {"status": "OK", "message": "two", "metadata": {"h": count(ctx.request.headers)}, "instructions": [
	{"type": "SET_HEADER", "key": "X-A", "value": "2"},
	{"type": "SET_HEADER", "key": "X-B", "value": object.get(ctx.state, "user", "nobody")},
]}"#,
    ),
    (
        "user",
        r#"package policies.user
result(ctx, _) := {"status": "OK", "message": "user", "metadata": {"auth": "yes"}, "instructions": [
	{"type": "SET_HEADER", "key": "X-User-ID", "value": object.get(ctx.request.headers, "x-a", "u0")},
	{"type": "SET_STATE", "key": "user", "value": "u1"},
]}"#,
    ),
    (
        "login",
        r#"package policies.login
result(_, _) := {"status": "OK", "message": "token valid", "metadata": {}, "instructions": [
	{"type": "SET_STATE", "key": "claims", "value": {"sub": "u2", "scope": {"read": true}}},
	{"type": "SET_STATE", "key": "user", "value": "u2"},
]}"#,
    ),
    (
        "session",
        r#"package policies.session
result(ctx, _) := {"status": "OK", "message": "session", "metadata": {"s": "1"}, "instructions": [
	{"type": "SET_STATE", "key": "session", "value": {"id": count(ctx.state), "tags": ["a"]}},
	{"type": "SET_STATE", "key": "user", "value": {"name": "u3"}},
]}"#,
    ),
    (
        "stateOnly",
        r#"package policies.stateOnly
result(ctx, _) := {"status": "OK", "metadata": {}, "instructions": [
	{"type": "SET_STATE", "key": "seen", "value": count(ctx.state)},
]}"#,
    ),
    (
        "skipped",
        r#"package policies.skipped
result(_, _) := {"status": "SKIPPED", "message": "not mine", "metadata": {}, "instructions": []}"#,
    ),
    (
        "redirect",
        r#"package policies.redirect
result(_, _) := {"status": "OK", "message": "", "metadata": {}, "instructions": [
	{"type": "SET_HEADER", "key": "X-A", "value": "r"},
	{"type": "IMMEDIATE_RESPONSE", "status_code": 302, "headers": {"location": "/x"}, "body": ""},
]}"#,
    ),
];

fn set() -> PolicySet {
    let mut registry = PolicyRegistry::default();
    for (name, src) in POLICIES {
        let info = PolicyInfo {
            name: (*name).into(),
            version: "1".into(),
            description: String::new(),
            phases: vec![Phase::Request, Phase::Response],
            tier: Tier::Complex,
            schema: json!({"type": "object"}),
            prepare: *name == "prepared",
        };
        registry
            .register(info, format!("policies/{name}.rego"), (*src).into())
            .unwrap();
    }
    let builtins = NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default())));
    PolicySet::try_new(
        Arc::new(registry),
        json!({}),
        builtins,
        "test",
        Arc::new(EngineStats::default()),
    )
    .unwrap()
}

fn step(policy: &str, on_failure: OnFailure) -> Step {
    Step {
        policy: policy.into(),
        on_failure,
        kind: StepKind::Policy {
            metadata: json!({"value": "1"}),
            prepare: policy == "prepared",
        },
    }
}

fn input(route: &str) -> Value {
    Value::from(json!({
        "route": route, "phase": "request",
        "request": {"method": "GET", "path": "/", "headers": {"x-drop": "1"}, "body": {"kept": 1, "gone": {"deep": 2}}},
        "response": {}, "state": {"claims": {"roles": ["admin"]}}
    }))
}

/// Runs `steps` on the VM and the interpreter; both must agree.
fn run(steps: Vec<Step>, route: &str) -> (Json, usize) {
    let set = set();
    let spec = ChainSpec {
        phase: Phase::Request,
        steps,
    };
    let vm_chain = set.compile(1, &spec).unwrap();
    assert!(
        vm_chain.is_vm(),
        "fell back: {:?}",
        vm_chain.fallback_reason()
    );
    let vm = evaluate(
        &set,
        &vm_chain,
        input(&format!("{route}-vm")),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(vm.path, EnginePath::Vm);
    let interp_chain = set.compile_interpreted(&spec).unwrap();
    let interp = evaluate(
        &set,
        &interp_chain,
        input(&format!("{route}-interp")),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(interp.path, EnginePath::Interpreter);
    let a = serde_json::to_value(&vm.decision).unwrap();
    let b = serde_json::to_value(&interp.decision).unwrap();
    assert_eq!(a, b, "VM and interpreter disagree");
    assert_eq!(vm.recorded.len(), interp.recorded.len());
    (a, vm.recorded.len())
}

/// A policy declaring custom.prepare runs as run(ctx, prepare(md)), each
/// step with its own metadata's prepared value.
#[test]
fn prepared_policies_run_with_their_own_metadata() {
    let with_value = |v: &str| Step {
        policy: "prepared".into(),
        on_failure: OnFailure::Deny,
        kind: StepKind::Policy {
            metadata: json!({"value": v}),
            prepare: true,
        },
    };
    let (d, _) = run(vec![with_value("1"), with_value("2")], "prepared");
    assert_eq!(d["status"], "OK");
    assert_eq!(d["outcomes"][0]["message"], "prepared-1");
    assert_eq!(d["outcomes"][1]["message"], "prepared-2");
    assert_eq!(d["state"]["prepared-1"], "GET");
    assert_eq!(d["state"]["prepared-2"], "GET");
    let module = chain::generate(
        "chains.prepared",
        &ChainSpec {
            phase: Phase::Request,
            steps: vec![with_value("1")],
        },
    );
    assert!(
        module.contains("k0 := data.policies.prepared.prepare({\"value\":\"1\"})"),
        "{module}"
    );
    assert!(!module.contains(".result("), "{module}");
}

#[test]
fn instructions_thread_through_the_context() {
    let (d, _) = run(
        vec![
            step("setA", OnFailure::Deny),
            step("readA", OnFailure::Deny),
        ],
        "thread",
    );
    assert_eq!(d["status"], "OK");
    let headers: Vec<(&str, &str)> = d["instructions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "SET_HEADER")
        .map(|i| (i["key"].as_str().unwrap(), i["value"].as_str().unwrap()))
        .collect();
    assert_eq!(headers, vec![("X-A", "1"), ("X-Saw-A", "1")]);
    assert_eq!(
        d["state"],
        json!({"seen": "none", "claims": {"roles": ["admin"]}})
    );
    assert_eq!(d["metadata"], json!({"a": "1"}));
    assert_eq!(d["outcomes"].as_array().unwrap().len(), 2);
}

#[test]
fn deny_stops_before_later_side_effects() {
    let (d, calls) = run(
        vec![
            step("deny", OnFailure::Deny),
            step("counter", OnFailure::Deny),
        ],
        "deny",
    );
    assert_eq!(d["status"], "POLICY_DENIED");
    assert_eq!(d["policy_name"], "deny");
    assert_eq!(d["instructions"][0]["status_code"], 403);
    assert_eq!(calls, 0, "the rate limiter must not run after a denial");
    assert_eq!(d["outcomes"].as_array().unwrap().len(), 1);
}

#[test]
fn counter_runs_once_per_decision() {
    let (d, calls) = run(vec![step("counter", OnFailure::Deny)], "count");
    assert_eq!(d["status"], "OK");
    assert_eq!(d["instructions"][0]["value"], "99");
    assert_eq!(calls, 1);
}

#[test]
fn on_failure_deny_continue_skip_remaining() {
    let (d, calls) = run(
        vec![
            step("fail", OnFailure::Deny),
            step("counter", OnFailure::Deny),
        ],
        "f-deny",
    );
    assert_eq!(d["status"], "POLICY_ERROR");
    assert_eq!(d["message"], "boom");
    assert_eq!(d["instructions"][0]["type"], "IMMEDIATE_RESPONSE");
    assert_eq!(d["instructions"][0]["status_code"], 500);
    assert_eq!(calls, 0);

    let (d, _) = run(
        vec![
            step("fail", OnFailure::Continue),
            step("readA", OnFailure::Deny),
        ],
        "f-cont",
    );
    assert_eq!(d["status"], "OK");
    assert_eq!(
        d["outcomes"][0],
        json!({"policy": "fail", "status": "POLICY_ERROR", "message": "boom"})
    );
    assert_eq!(d["outcomes"][1]["status"], "OK");

    let (d, calls) = run(
        vec![
            step("setA", OnFailure::Deny),
            step("fail", OnFailure::SkipRemaining),
            step("counter", OnFailure::Deny),
        ],
        "f-skip",
    );
    assert_eq!(d["status"], "OK");
    assert_eq!(d["policy_name"], "fail");
    assert_eq!(
        d["instructions"].as_array().unwrap().len(),
        2,
        "setA's instructions are kept"
    );
    assert_eq!(calls, 0);
}

#[test]
fn undefined_and_malformed_results_are_policy_errors() {
    let (d, _) = run(vec![step("undef", OnFailure::Deny)], "undef");
    assert_eq!(d["status"], "POLICY_ERROR");
    assert_eq!(d["message"], "policy `undef` returned no result");
    let (d, _) = run(vec![step("malformed", OnFailure::Deny)], "malformed");
    assert_eq!(d["status"], "POLICY_ERROR");
    assert_eq!(
        d["message"],
        "policy `malformed` returned a malformed result"
    );
}

/// Regression: `x := f(y)` with `f` undefined must fail the body (and take
/// `else`) on the VM as in OPA; regorus 0.14.1 unpatched made `_pick` undefined.
#[test]
fn colon_assignment_of_undefined_call_takes_else() {
    let (d, _) = run(vec![step("assign", OnFailure::Deny)], "assign");
    assert_eq!(d["status"], "OK");
    assert_eq!(d["outcomes"][0]["message"], "fallback");
}

/// Regression: instructions replace what they name; removed headers, body
/// fields and state sub-objects must not come back through a deep merge.
#[test]
fn later_policies_see_replaced_values_not_merged_ones() {
    let (d, _) = run(
        vec![
            step("readA", OnFailure::Deny),
            step("rewrite", OnFailure::Deny),
            step("observe", OnFailure::Deny),
        ],
        "replace",
    );
    let seen: Json = serde_json::from_str(d["outcomes"][2]["message"].as_str().unwrap()).unwrap();
    assert_eq!(
        seen,
        json!({"drop": "absent", "body": {"kept": 1}, "claims": {"sub": "x"}})
    );
}

/// Two SET_STATE instructions (a validated token's claims and user) replace
/// an object already in the state and add new keys, whichever path the
/// generated step takes.
#[test]
fn token_state_replaces_claims() {
    let (d, _) = run(
        vec![
            step("login", OnFailure::Deny),
            step("observe", OnFailure::Deny),
        ],
        "login",
    );
    let seen: Json = serde_json::from_str(d["outcomes"][1]["message"].as_str().unwrap()).unwrap();
    assert_eq!(
        seen["claims"],
        json!({"sub": "u2", "scope": {"read": true}})
    );
    assert_eq!(d["state"]["user"], "u2");
    let (d, _) = run(
        vec![
            step("session", OnFailure::Deny),
            step("login", OnFailure::Deny),
        ],
        "session",
    );
    assert_eq!(
        d["state"],
        json!({"claims": {"sub": "u2", "scope": {"read": true}}, "session": {"id": 1, "tags": ["a"]}, "user": "u2"})
    );
}

/// Regression: a body whose `some … in` loop finds nothing fails and `else`
/// is taken; regorus 0.14.1 unpatched returned undefined on the VM.
#[test]
fn loop_without_match_takes_else() {
    let set_step = |xs: Json| Step {
        policy: "loopelse".into(),
        on_failure: OnFailure::Deny,
        kind: StepKind::Policy {
            metadata: json!({"xs": xs}),
            prepare: false,
        },
    };
    let (d, _) = run(vec![set_step(json!([1, 3]))], "loop-miss");
    assert_eq!(d["outcomes"][0]["message"], "miss");
    let (d, _) = run(vec![set_step(json!([2]))], "loop-hit");
    assert_eq!(d["outcomes"][0]["message"], "hit");
}

#[test]
fn fixed_steps_carry_compile_time_errors() {
    let fixed = Step {
        policy: "ghost".into(),
        on_failure: OnFailure::Deny,
        kind: StepKind::Fixed {
            result: json!({"status": "POLICY_ERROR", "message": "unknown policy `ghost`", "instructions": [], "metadata": {}}),
        },
    };
    let (d, _) = run(vec![step("setA", OnFailure::Deny), fixed], "fixed");
    assert_eq!(d["status"], "POLICY_ERROR");
    assert_eq!(d["message"], "unknown policy `ghost`");
    let skipped = Step {
        policy: "ghost".into(),
        on_failure: OnFailure::Deny,
        kind: StepKind::Fixed {
            result: json!({"status": "SKIPPED", "message": "unknown policy `ghost` skipped", "instructions": [], "metadata": {}}),
        },
    };
    let (d, _) = run(vec![skipped, step("readA", OnFailure::Deny)], "skipped");
    assert_eq!(d["status"], "OK");
    assert_eq!(d["outcomes"][0]["status"], "SKIPPED");
}

#[test]
fn empty_chain_allows() {
    let (d, _) = run(vec![], "empty");
    assert_eq!(d["status"], "OK");
    assert_eq!(d["instructions"], json!([]));
}

/// Chains of one and two steps over the test policies, and a spread of
/// longer ones: the generated module (the usual path first) gives the
/// decision of its reference module, on the VM and on the interpreter.
#[test]
fn generated_chains_decide_as_their_reference_path() {
    // Every policy but `counter`, whose bucket would differ between the two.
    let names: Vec<&str> = POLICIES
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != "counter")
        .collect();
    let failures = [
        OnFailure::Deny,
        OnFailure::Continue,
        OnFailure::SkipRemaining,
    ];
    let mut chains: Vec<Vec<Step>> = Vec::new();
    for (i, a) in names.iter().enumerate() {
        chains.push(vec![step(a, failures[i % 3])]);
        // A third of the pairs (each chain costs two VM compilations).
        for (j, b) in names.iter().enumerate().skip(i % 3).step_by(3) {
            chains.push(vec![
                step(a, failures[(i + j) % 3]),
                step(b, failures[j % 3]),
            ]);
        }
    }
    // Longer chains from a fixed linear congruential sequence.
    let mut x: u64 = 7;
    let mut next = |m: usize| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(x >> 33).unwrap() % m
    };
    for len in [3, 4, 6] {
        for _ in 0..12 {
            chains.push(
                (0..len)
                    .map(|_| step(names[next(names.len())], failures[next(3)]))
                    .collect(),
            );
        }
    }
    let mut base: Vec<(String, String)> = policy_rego::library()
        .iter()
        .filter(|f| !f.path.ends_with("_test.rego"))
        .map(|f| (f.path.to_string(), f.source.to_string()))
        .collect();
    for (name, src) in POLICIES {
        base.push((format!("policies/{name}.rego"), (*src).to_string()));
    }
    let specs: Vec<ChainSpec> = chains
        .into_iter()
        .map(|steps| ChainSpec {
            phase: Phase::Request,
            steps,
        })
        .collect();
    // (A VM program holds at most 256 source files: one snapshot per batch.)
    let mut statuses = std::collections::BTreeSet::new();
    for (b, batch) in specs.chunks(60).enumerate() {
        let mut modules = base.clone();
        for (k, spec) in batch.iter().enumerate() {
            modules.push((
                format!("fast{k}.rego"),
                chain::generate(&format!("fast.c{k}"), spec),
            ));
            modules.push((
                format!("reference{k}.rego"),
                chain::generate_reference(&format!("reference.c{k}"), spec),
            ));
        }
        let builtins = NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default())));
        let set =
            PolicySet::try_from_modules(&modules, json!({}), builtins, Arc::default()).unwrap();
        let decide = |rule: &str, vm: bool| {
            let compiled = set.compile_entrypoint(rule, vm).unwrap();
            if vm {
                assert!(
                    compiled.is_vm(),
                    "{rule} fell back: {:?}",
                    compiled.fallback_reason()
                );
            }
            let d = evaluate(&set, &compiled, input("same"), Duration::from_secs(5)).unwrap();
            serde_json::to_value(&d.decision).unwrap()
        };
        for (k, spec) in batch.iter().enumerate() {
            let fast = decide(&format!("data.fast.c{k}.decision"), true);
            let reference = decide(&format!("data.reference.c{k}.decision"), true);
            let steps: Vec<(&str, &str)> = spec
                .steps
                .iter()
                .map(|s| (s.policy.as_str(), s.on_failure.as_str()))
                .collect();
            assert_eq!(fast, reference, "chain {steps:?}");
            if (b + k) % 7 == 0 {
                let interpreted = decide(&format!("data.fast.c{k}.decision"), false);
                assert_eq!(interpreted, reference, "chain {steps:?} on the interpreter");
            }
            statuses.insert(fast["status"].as_str().unwrap_or("undefined").to_string());
        }
    }
    // The chains reach every kind of decision.
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        ["OK", "POLICY_DENIED", "POLICY_ERROR"]
    );
}
