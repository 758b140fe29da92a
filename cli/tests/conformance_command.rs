//! `policyctl conformance`: OPA's compliance-case format, and the ratchet
//! on OPA's own cases and the fuzzing regressions
//! (`tests/conformance-passing.txt` at the repository root lists every case
//! that passes; one of them failing fails the build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use std::collections::BTreeSet;

use common::policyctl;

const CASES: &str = "../../shared/conformance/opa-v1";
const REGRESSIONS: &str = "../tests/conformance/regressions";
const RATCHET: &str = "../tests/conformance-passing.txt";

#[test]
fn yaml_cases_pass_and_fail_as_expected() {
    let run = policyctl(&["conformance", "tests/fixtures/conformance"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "FAIL: yaml/wrong expectation (cases.yaml#1)\n  want [{\"x\":2}]\n  got  [{\"x\":1}]\n4 passed, 1 failed\n"
    );
}

#[test]
fn json_lists_every_case() {
    let run = policyctl(&[
        "conformance",
        "-f",
        "json",
        "tests/fixtures/conformance/cases.yaml",
    ]);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(report["passed"], 4);
    assert_eq!(report["failed"], 1);
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 5);
    assert_eq!(cases[2]["note"], "yaml/conflict");
    assert_eq!(cases[2]["passed"], true);
    assert_eq!(cases[1]["passed"], false);
}

#[test]
fn a_malformed_case_file_exits_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.json");
    std::fs::write(&file, "{\"cases\": [{\"note\": 1}]}").expect("write");
    let run = policyctl(&["conformance", file.to_str().expect("UTF-8")]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("bad.json") && run.stderr.contains("invalid case file"),
        "{}",
        run.stderr
    );
}

/// Passing case ids (`<file>#<index>`) of a conformance run over `dir`.
fn passing_cases(dir: &str) -> (BTreeSet<String>, usize) {
    let run = policyctl(&["conformance", "-f", "json", dir]);
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("JSON report ({e}); stderr: {}", run.stderr));
    let cases = report["cases"].as_array().expect("cases");
    let passing = cases
        .iter()
        .filter(|c| c["passed"] == true)
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    (passing, cases.len())
}

/// Every case in the ratchet still passes: OPA's compliance cases
/// (`opa-v1/…`) and the regression cases the differential fuzzing found
/// (`regressions/…`, `tests/conformance/regressions/`). The pass rates are
/// printed.
#[test]
fn conformance_cases_do_not_regress() {
    assert!(
        std::path::Path::new(CASES).is_dir(),
        "OPA's compliance cases are expected at {CASES} (the shared directory beside the repository)"
    );
    let mut passing = BTreeSet::new();
    for (prefix, dir) in [("opa-v1", CASES), ("regressions", REGRESSIONS)] {
        let (ids, total) = passing_cases(dir);
        println!(
            "{prefix}: {} of {total} cases pass ({:.1}%)",
            ids.len(),
            100.0 * ids.len() as f64 / total.max(1) as f64
        );
        passing.extend(ids.into_iter().map(|id| format!("{prefix}/{id}")));
    }
    let ratchet = std::fs::read_to_string(RATCHET).expect("ratchet file");
    let expected: BTreeSet<String> = ratchet
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split('\t').next().unwrap_or(l).to_string())
        .collect();
    let regressed: Vec<&String> = expected.difference(&passing).collect();
    assert!(
        regressed.is_empty(),
        "{} case(s) that passed now fail: {regressed:?}",
        regressed.len()
    );
}
