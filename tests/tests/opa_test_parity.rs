//! `policyctl test` gives the same pass/fail/error/skip per test as OPA.
//!
//! A policy repository with passing, failing, `todo_`, erroring and
//! data-dependent tests (the `policyctl` CLI fixtures) and the built-in
//! policies' tests run through `policyctl test --format json`; every test
//! rule is also evaluated in real OPA (v1.20, `opa_bindings`) by
//! `tests/opa/test_outcomes.py`. Outcomes must be equal test by test, and
//! the JSON report must keep OPA's result shape.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use policy_engine_tests::opa::{policyctl_binary, python, require_opa, workspace_root};

/// Directories compared; each runs as its own `policyctl test` and OPA load
/// (as `opa test DIR` would).
const SUITES: &[&str] = &[
    "cli/tests/fixtures/passing",
    "cli/tests/fixtures/failing",
    "cli/tests/fixtures/todo",
    "cli/tests/fixtures/erroring",
    "cli/tests/fixtures/data_dep",
    "cli/tests/fixtures/coverage",
    "rego",
];

fn ours(dir: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let out = Command::new(policyctl_binary()?)
        .args(["test", "--format", "json", dir])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .context("running policyctl test")?;
    let code = out.status.code().unwrap_or(-1);
    if code != 0 && code != 2 {
        bail!(
            "policyctl test {dir} exited {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let results: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("policyctl test JSON")?;
    let mut outcomes = BTreeMap::new();
    for r in results.as_array().context("a list of results")? {
        for key in ["location", "package", "name", "duration"] {
            if r.get(key).is_none() {
                bail!("result without `{key}` (OPA's shape): {r}");
            }
        }
        let name = format!(
            "{}.{}",
            r["package"].as_str().unwrap_or_default(),
            r["name"].as_str().unwrap_or_default()
        );
        let outcome = if r.get("error").is_some() {
            "error"
        } else if r["skip"] == true {
            "skip"
        } else if r["fail"] == true {
            "fail"
        } else {
            "pass"
        };
        outcomes.insert(name, outcome.to_string());
    }
    Ok(outcomes)
}

fn opa(dir: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let script = workspace_root().join("tests/opa/test_outcomes.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(dir)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .context("running test_outcomes.py")?;
    if !out.status.success() {
        bail!(
            "OPA could not load {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("test_outcomes.py JSON")
}

#[test]
fn policyctl_test_outcomes_equal_opa_test_by_test() -> anyhow::Result<()> {
    require_opa()?;
    let mut differences = Vec::new();
    let mut compared = 0;
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for dir in SUITES {
        let ours = ours(dir)?;
        let theirs = opa(dir)?;
        if ours.len() != theirs.len() {
            differences.push(format!(
                "{dir}: {} tests here, {} in OPA: {:?} vs {:?}",
                ours.len(),
                theirs.len(),
                ours.keys().collect::<Vec<_>>(),
                theirs.keys().collect::<Vec<_>>()
            ));
        }
        for (name, outcome) in &theirs {
            compared += 1;
            *kinds.entry(outcome.clone()).or_default() += 1;
            match ours.get(name) {
                Some(o) if o == outcome => {}
                other => differences.push(format!("{name}: OPA {outcome}, policyctl {other:?}")),
            }
        }
    }
    println!("{compared} tests compared with OPA: {kinds:?}");
    // The repository fixture covers every outcome.
    for kind in ["pass", "fail", "error", "skip"] {
        assert!(
            kinds.get(kind).is_some_and(|n| *n > 0),
            "no `{kind}` test compared"
        );
    }
    assert!(
        differences.is_empty(),
        "differences:\n{}",
        differences.join("\n")
    );
    Ok(())
}
