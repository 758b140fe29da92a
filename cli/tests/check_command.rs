//! `policyctl check` on the fixtures in `tests/fixtures/check/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use common::policyctl;

#[test]
fn clean_policies_pass() {
    let run = policyctl(&["check", "tests/fixtures/check/clean"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (0, "", "")
    );
    let strict = policyctl(&["check", "--strict", "tests/fixtures/check/clean"]);
    assert_eq!(strict.code, 0, "{}", strict.stderr);
}

#[test]
fn every_parse_error_is_reported_with_its_location() {
    let run = policyctl(&["check", "tests/fixtures/check/broken"]);
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines[0], "2 errors occurred:", "{}", run.stderr);
    assert!(
        lines[1].starts_with("tests/fixtures/check/broken/a.rego:5:1: rego_parse_error: "),
        "{}",
        run.stderr
    );
    assert!(
        lines[2].starts_with("tests/fixtures/check/broken/b.rego:")
            && lines[2].contains(": rego_parse_error: "),
        "{}",
        run.stderr
    );
}

#[test]
fn json_errors_have_opa_shape() {
    let run = policyctl(&["check", "-f", "json", "tests/fixtures/check/broken/a.rego"]);
    assert_eq!(run.code, 1);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let error = &report["errors"][0];
    assert_eq!(error["code"], "rego_parse_error");
    assert_eq!(
        error["location"],
        serde_json::json!({"file": "tests/fixtures/check/broken/a.rego", "row": 5, "col": 1})
    );
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[test]
fn an_undefined_function_is_a_type_error_but_imported_functions_resolve() {
    let run = policyctl(&["check", "tests/fixtures/check/undefined"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "1 error occurred:\n\
         tests/fixtures/check/undefined/policy.rego:7:2: rego_type_error: undefined function no_such_function\n"
    );
}

#[test]
fn deprecated_builtins_always_and_unused_imports_in_strict_mode() {
    let lax = policyctl(&["check", "tests/fixtures/check/strict"]);
    assert_eq!(lax.code, 1);
    assert_eq!(
        lax.stderr,
        "1 error occurred:\n\
         tests/fixtures/check/strict/policy.rego:8:2: rego_type_error: deprecated built-in function calls in expression: any\n"
    );
    let run = policyctl(&["check", "--strict", "tests/fixtures/check/strict"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "2 errors occurred:\n\
         tests/fixtures/check/strict/policy.rego:8:2: rego_type_error: deprecated built-in function calls in expression: any\n\
         tests/fixtures/check/strict/policy.rego:3:1: rego_compile_error: import data.fixtures.unused unused\n"
    );
}

#[test]
fn an_unsafe_variable_is_a_compile_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("unsafe.rego");
    std::fs::write(&file, "package u\n\nallow if {\n\tx == y\n}\n").expect("write");
    let run = policyctl(&["check", file.to_str().expect("UTF-8")]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("rego_unsafe_var_error"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_project_policies_check_clean() {
    let run = policyctl(&["check", "--strict", "../rego"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}
