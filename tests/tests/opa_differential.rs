//! Differential test against real OPA (v1.20 embedded through the
//! `opa_bindings` Python module): the same Rego, data and inputs through our
//! engine — the bytecode VM and the interpreter — and through OPA; any
//! difference in a decision document is a failure.
//!
//! 1. `policyctl compile` (the real binary) compiles the deployed kernel
//!    config plus route variants, and a policy data directory; a second
//!    config is compiled with `--fail-on-unknown`.
//! 2. Request contexts for every route and phase are generated from a fixed
//!    seed and turned into input documents by the agent's `build_input`.
//! 3. Our engine evaluates every case on the compiled modules and data, on
//!    the VM and on the interpreter, recording `rate_limit.take` calls.
//! 4. `tests/opa/differential.py` loads the same directory into OPA and
//!    evaluates every case, answering `rate_limit.take` with the results our
//!    engine recorded for that evaluation.
//! 5. Decisions and `rate_limit.take` calls must be identical, every chain
//!    must run on the VM, and every generated module must load.
//!
//! A second test runs every `test_*` rule of `rego/policies/*_test.rego` in
//! OPA and in our interpreter and requires the same pass/fail per test.
//!
//! Without `opa_bindings` both tests fail with the install hint. Set
//! `OPA_DIFFERENTIAL_DUMP=FILE` to write every case with all outcomes.

#[path = "opa_differential/cases.rs"]
mod cases;
#[path = "opa_differential/compare.rs"]
mod compare;
#[path = "opa_differential/fixtures.rs"]
mod fixtures;
#[path = "opa_differential/keys.rs"]
mod keys;
#[path = "opa_differential/pools.rs"]
mod pools;
#[path = "opa_differential/tokens.rs"]
mod tokens;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, ensure};
use policy_agent::builtins::{self, NativeBuiltins, RateLimiter, RateLimiterConfig};
use policy_engine_tests::opa::{self, OpaJob, Outcome};
use serde_json::{Value, json};

use compare::{Bundle, Report};

/// Seed of the generated cases: change it only together with a reason.
const SEED: u64 = 0x5eed_0fa0_2025_0001;
/// How many divergences are printed in full.
const SHOWN: usize = 25;
/// Set to a file path to write every case with both engines' outcomes
/// (JSON lines), for inspecting what the cases exercise.
const DUMP_ENV: &str = "OPA_DIFFERENTIAL_DUMP";

fn print_report(name: &str, r: &Report) {
    println!(
        "opa differential [{name}]: {} cases over {} rules ({} routes incl. default), each on the VM and \
         the interpreter against OPA ({} comparisons); {} divergences; {} cases needed OPA's non-strict \
         builtin errors; decisions {:?}; ours {:.1?}, OPA {:.1?}",
        r.cases,
        r.rules,
        r.routes,
        r.cases * 2,
        r.divergences.len(),
        r.nonstrict.len(),
        r.by_status,
        r.ours_elapsed,
        r.opa_elapsed,
    );
    for d in r.divergences.iter().take(SHOWN) {
        println!("\n--- divergence [{name}]\n{d}");
    }
    if !r.divergences.is_empty() {
        let ids: BTreeSet<&str> = r
            .divergences
            .iter()
            .filter_map(|d| d.strip_prefix("case ")?.split(" [").next())
            .collect();
        println!(
            "\ndivergent cases [{name}] ({}):\n  {}",
            ids.len(),
            ids.into_iter().collect::<Vec<_>>().join("\n  ")
        );
    }
    println!("accepted [{name}]: {}", r.known.len());
    for k in &r.known {
        println!("  accepted [{name}]: {k}");
    }
    for f in &r.fallbacks {
        println!("VM fallback [{name}]: {f}");
    }
    for (rule, reason) in &r.rejected {
        println!("module rejected [{name}]: `{rule}`: {reason}");
    }
}

#[test]
fn compiled_routes_decide_like_opa() -> anyhow::Result<()> {
    let started = Instant::now();
    opa::require_opa()?;
    let tmp = tempfile::tempdir()?;
    let keys = tokens::Keys::load()?;
    let data = fixtures::write_data_dir(tmp.path(), &keys)?;
    let tokens = tokens::tokens(&keys)?;

    let config = fixtures::write_kernel_config(tmp.path(), &keys)?;
    let main = Bundle::compile(
        &config,
        std::slice::from_ref(&data),
        &[],
        tmp.path().join("compiled"),
    )?;
    let cases = cases::generate(SEED, &tokens);
    ensure!(cases.len() >= 300, "only {} cases generated", cases.len());
    let main_report = compare::compare(&main, &cases, tmp.path())?;

    let config = fixtures::write_fail_on_unknown_config(tmp.path())?;
    let strict = Bundle::compile(
        &config,
        &[data],
        &["--fail-on-unknown"],
        tmp.path().join("compiled-fail-on-unknown"),
    )?;
    let strict_report =
        compare::compare(&strict, &cases::generate_fail_on_unknown(SEED), tmp.path())?;

    let reports = [
        ("routes", &main_report),
        ("fail-on-unknown", &strict_report),
    ];
    if let Some(path) = std::env::var_os(DUMP_ENV) {
        let lines: Vec<String> = reports
            .iter()
            .flat_map(|(_, r)| r.dump.iter().map(Value::to_string))
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n")?;
    }
    for (name, r) in &reports {
        print_report(name, r);
    }
    let total = |f: fn(&Report) -> usize| reports.iter().map(|(_, r)| f(r)).sum::<usize>();
    println!(
        "opa differential: {} comparisons in {:.1?}",
        total(|r| r.cases * 2),
        started.elapsed()
    );
    ensure!(
        reports.iter().all(|(_, r)| r.divergences.is_empty()
            && r.fallbacks.is_empty()
            && r.rejected.is_empty()),
        "{} of {} comparisons differ from OPA; {} rules do not run on the bytecode VM; \
         {} generated modules do not load (details above)",
        total(|r| r.divergences.len()),
        total(|r| r.cases * 2),
        total(|r| r.fallbacks.len()),
        total(|r| r.rejected.len()),
    );
    Ok(())
}

/// `(package, rule)` of every `test_*` rule in `modules`, in file order.
fn test_rules(modules: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (_, src) in modules {
        let Some(pkg) = src
            .lines()
            .find_map(|l| l.strip_prefix("package "))
            .map(|p| p.trim().to_string())
        else {
            continue;
        };
        for line in src.lines() {
            if !line.starts_with("test_") {
                continue;
            }
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if seen.insert((pkg.clone(), name.clone())) {
                out.push((pkg.clone(), name));
            }
        }
    }
    out
}

#[test]
fn builtin_policy_tests_pass_and_fail_alike_in_opa() -> anyhow::Result<()> {
    let started = Instant::now();
    opa::require_opa()?;
    let dir = opa::workspace_root().join("rego/policies");
    let modules = opa::rego_modules(&dir)?;
    let tests = test_rules(&modules);
    for (path, source) in modules.iter().filter(|(p, _)| p.ends_with("_test.rego")) {
        ensure!(
            !source.contains("input"),
            "{path} mentions `input`: OPA evaluates test rules with an input naming the rule"
        );
    }
    ensure!(
        tests.len() >= 50,
        "found only {} test rules under {}",
        tests.len(),
        dir.display()
    );

    let mut engine = policy_agent::new_engine();
    for (path, source) in &modules {
        engine
            .add_policy(path.clone(), source.clone())
            .with_context(|| format!("loading {path}"))?;
    }
    NativeBuiltins::new(Arc::new(RateLimiter::new(RateLimiterConfig::default())))
        .register_extensions(&mut engine)?;

    let mut ours = Vec::with_capacity(tests.len());
    let mut jobs = Vec::with_capacity(tests.len());
    for (pkg, rule) in &tests {
        let query = format!("data.{pkg}.{rule}");
        builtins::take_recorded();
        let outcome = match engine.eval_rule(query.clone()) {
            Ok(regorus::Value::Undefined) => Outcome::Undefined,
            Ok(v) => Outcome::Decision(serde_json::to_value(&v)?),
            Err(err) => Outcome::Error(err.to_string()),
        };
        let recorded = compare::replay_calls(&builtins::take_recorded())?;
        // One query text for all tests (`data[input.path[0]]…`): OPA prepares
        // each distinct query, which costs far more than evaluating it. The
        // test modules do not read `input` (checked above).
        let mut path: Vec<&str> = pkg.split('.').collect();
        path.push(rule);
        let refs: String = (0..path.len())
            .map(|i| format!("[input.path[{i}]]"))
            .collect();
        jobs.push(OpaJob {
            id: query,
            query: format!("data{refs}"),
            input: Some(json!({"path": path})),
            replays: vec![recorded],
        });
        ours.push(outcome);
    }
    let ours_elapsed = started.elapsed();
    let tmp = tempfile::tempdir()?;
    let theirs = opa::run_opa(&[dir.as_path()], &jobs, tmp.path())?;

    let passed = |o: &Outcome| matches!(o, Outcome::Decision(Value::Bool(true)));
    let mut divergences = Vec::new();
    let mut failing_in_both = Vec::new();
    for (job, our) in jobs.iter().zip(&ours) {
        let their = &theirs
            .get(&job.id)
            .and_then(|o| o.first())
            .context("no OPA outcome")?
            .outcome;
        match (passed(our), passed(their)) {
            (true, true) => {}
            (false, false) => {
                failing_in_both.push(format!("{}: ours {:?}, OPA {:?}", job.id, our, their))
            }
            (p, q) => divergences.push(format!(
                "{}: ours {} ({}), OPA {} ({})",
                job.id,
                if p { "pass" } else { "FAIL" },
                our.to_json(),
                if q { "pass" } else { "FAIL" },
                their.to_json()
            )),
        }
    }
    println!(
        "opa differential (policy tests): {} test rules, {} pass in both, {} fail in both, {} differ; \
         ours {:.1?}, total {:.1?}",
        tests.len(),
        tests.len() - failing_in_both.len() - divergences.len(),
        failing_in_both.len(),
        divergences.len(),
        ours_elapsed,
        started.elapsed()
    );
    for f in &failing_in_both {
        println!("fails in both engines: {f}");
    }
    for d in &divergences {
        println!("differs: {d}");
    }
    ensure!(
        divergences.is_empty(),
        "{} of {} policy tests pass in one engine and fail in the other:\n{}",
        divergences.len(),
        tests.len(),
        divergences.join("\n")
    );
    Ok(())
}
