//! `policyctl test` on the fixture policies in `tests/fixtures/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use common::{policyctl, policyctl_in, without_durations};

#[test]
fn passing_tests_exit_zero_with_only_a_summary() {
    let run = policyctl(&["test", "tests/fixtures/passing"]);
    // Three plain tests and one test with two cases, counted per case.
    assert_eq!(run.stdout, "5 passed, 0 failed\n");
    assert_eq!(run.stderr, "");
    assert_eq!(run.code, 0);
}

#[test]
fn verbose_lists_every_test_with_its_cases() {
    let run = policyctl(&["test", "-v", "tests/fixtures/passing"]);
    assert_eq!(
        without_durations(&run.stdout),
        "tests/fixtures/passing/authz_test.rego:\n\
         data.fixtures.passing.authz_test.test_public_get_allowed: PASS (T)\n\
         data.fixtures.passing.authz_test.test_private_get_denied: PASS (T)\n\
         data.fixtures.passing.authz_test.test_admin_allowed: PASS (T)\n\
         data.fixtures.passing.authz_test.test_cases: PASS (T)\n  \
         admin: PASS\n  \
         get: PASS\n\
         \n\
         5 passed, 0 failed\n"
    );
    assert_eq!(run.code, 0);
}

#[test]
fn failing_tests_are_listed_with_their_print_output_and_exit_two() {
    let run = policyctl(&["test", "tests/fixtures/failing"]);
    assert_eq!(
        without_durations(&run.stdout),
        "FAIL: data.fixtures.failing.test_sum_wrong (T)\n  \
         tests/fixtures/failing/failing_test.rego:7: sum is 3\n\
         FAIL: data.fixtures.failing.test_undefined (T)\n\
         FAIL: data.fixtures.failing.test_false (T)\n\
         1 passed, 3 failed\n"
    );
    assert_eq!(run.code, 2);
}

#[test]
fn an_evaluation_error_is_reported_as_an_error_and_exits_two() {
    let run = policyctl(&["test", "tests/fixtures/erroring"]);
    assert_eq!(
        without_durations(&run.stdout),
        "ERROR: data.fixtures.erroring.test_conflict (T)\n  \
         tests/fixtures/erroring/erroring_test.rego:7:19: \
         functions must not produce multiple outputs for same inputs\n\
         1 passed, 0 failed, 1 errored\n"
    );
    assert_eq!(run.code, 2);
}

#[test]
fn todo_tests_are_skipped_and_fail_the_run_unless_z() {
    let run = policyctl(&["test", "tests/fixtures/todo"]);
    assert_eq!(run.stdout, "1 passed, 0 failed, 1 skipped\n");
    assert_eq!(
        run.code, 2,
        "as `opa test`: skipped tests exit 2 without -z"
    );

    let run = policyctl(&["test", "-z", "tests/fixtures/todo"]);
    assert_eq!(run.stdout, "1 passed, 0 failed, 1 skipped\n");
    assert_eq!(run.code, 0);
}

#[test]
fn verbose_shows_skipped_tests_without_a_duration() {
    let run = policyctl(&["test", "-v", "-z", "tests/fixtures/todo"]);
    assert_eq!(
        without_durations(&run.stdout),
        "tests/fixtures/todo/todo_test.rego:\n\
         data.fixtures.todo.test_done: PASS (T)\n\
         data.fixtures.todo.todo_test_later: SKIPPED\n\
         \n\
         1 passed, 0 failed, 1 skipped\n"
    );
    assert_eq!(run.code, 0);
}

#[test]
fn each_definition_of_a_duplicated_test_runs_on_its_own() {
    let run = policyctl(&["test", "-v", "tests/fixtures/duplicate"]);
    assert_eq!(
        without_durations(&run.stdout),
        "tests/fixtures/duplicate/duplicate_test.rego:\n\
         data.fixtures.duplicate.test_twice: PASS (T)\n\
         data.fixtures.duplicate.test_twice#01: FAIL (T)\n\
         \n\
         1 passed, 1 failed\n"
    );
    assert_eq!(run.code, 2);
}

#[test]
fn data_files_are_placed_by_directory_and_hidden_directories_skipped() {
    // `.hidden/broken.rego` would be a parse error if it were loaded.
    let run = policyctl(&["test", "-v", "tests/fixtures/data_dep"]);
    assert_eq!(
        without_durations(&run.stdout),
        "tests/fixtures/data_dep/policy_test.rego:\n\
         data.fixtures.data_dep_test.test_admin_from_users_dir: PASS (T)\n\
         data.fixtures.data_dep_test.test_viewer_is_not_admin: PASS (T)\n\
         data.fixtures.data_dep_test.test_limit_from_nested_yaml: PASS (T)\n\
         data.fixtures.data_dep_test.test_root_data: PASS (T)\n\
         data.fixtures.data_dep_test.test_other_json_ignored: PASS (T)\n\
         \n\
         5 passed, 0 failed\n"
    );
    assert_eq!(run.code, 0);
}

#[test]
fn native_builtins_are_available_to_tests() {
    let run = policyctl(&["test", "-v", "tests/fixtures/native"]);
    assert_eq!(
        without_durations(&run.stdout),
        "tests/fixtures/native/native_test.rego:\n\
         data.fixtures.native_test.test_sha256: PASS (T)\n\
         data.fixtures.native_test.test_rate_limit_take: PASS (T)\n\
         \n\
         2 passed, 0 failed\n"
    );
    assert_eq!(run.code, 0);
}

#[test]
fn run_filters_on_the_full_test_name() {
    let run = policyctl(&[
        "test",
        "tests/fixtures/failing",
        "--run",
        "failing\\.test_sum",
    ]);
    assert_eq!(
        without_durations(&run.stdout),
        "FAIL: data.fixtures.failing.test_sum_wrong (T)\n  \
         tests/fixtures/failing/failing_test.rego:7: sum is 3\n\
         1 passed, 1 failed\n"
    );
    assert_eq!(run.code, 2);

    let run = policyctl(&["test", "tests/fixtures/failing", "-r", "test_sum_ok$"]);
    assert_eq!(run.stdout, "1 passed, 0 failed\n");
    assert_eq!(run.code, 0);
}

#[test]
fn a_filter_matching_nothing_runs_nothing_and_passes() {
    let run = policyctl(&["test", "tests/fixtures/failing", "--run", "no_such_test"]);
    assert_eq!(run.stdout, "0 passed, 0 failed\n");
    assert_eq!(run.code, 0);
}

#[test]
fn several_paths_are_tested_together() {
    let run = policyctl(&["test", "tests/fixtures/passing", "tests/fixtures/native"]);
    assert_eq!(run.stdout, "7 passed, 0 failed\n");
    assert_eq!(run.code, 0);
}

#[test]
fn the_current_directory_is_tested_when_no_path_is_given() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/native");
    let run = policyctl_in(dir, &["test"]);
    assert_eq!(run.stdout, "2 passed, 0 failed\n");
    assert_eq!(run.code, 0);
}

#[test]
fn a_parse_error_exits_one_naming_the_file() {
    let run = policyctl(&["test", "tests/fixtures/parse_error"]);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: tests/fixtures/parse_error/broken.rego:5:1: parse error: expecting expression\n"
    );
    assert_eq!(run.code, 1);
}

#[test]
fn a_missing_path_exits_one() {
    let run = policyctl(&["test", "tests/fixtures/no_such_dir"]);
    assert!(
        run.stderr
            .starts_with("error: cannot read `tests/fixtures/no_such_dir`: "),
        "{}",
        run.stderr
    );
    assert_eq!(run.code, 1);
}

#[test]
fn an_invalid_run_regex_exits_one() {
    let run = policyctl(&["test", "tests/fixtures/passing", "--run", "("]);
    assert!(
        run.stderr.starts_with("error: invalid --run regex: "),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
    assert_eq!(run.code, 1);
}

#[test]
fn a_test_over_its_time_limit_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slow_test.rego"),
        "package slow\n\n\
         test_slow if every x in numbers.range(1, 5000) {\n\
         \tevery y in numbers.range(1, 5000) { x + y > 0 }\n\
         }\n\n\
         test_fast if true\n",
    )
    .unwrap();
    let run = policyctl(&["test", "--timeout", "50ms", dir.path().to_str().unwrap()]);
    let out = without_durations(&run.stdout);
    assert!(
        out.starts_with("ERROR: data.slow.test_slow (T)\n  execution exceeded time limit"),
        "{out}"
    );
    assert!(out.ends_with("1 passed, 0 failed, 1 errored\n"), "{out}");
    assert_eq!(run.code, 2);
}

#[test]
fn help_documents_the_exit_codes() {
    let run = policyctl(&["test", "--help"]);
    assert!(run.stdout.contains("Exit status:"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("2  a test failed, errored or was skipped")
    );
    assert_eq!(run.code, 0);
}

#[test]
fn a_usage_error_exits_one() {
    let run = policyctl(&["test", "--no-such-flag"]);
    assert!(run.stderr.contains("--no-such-flag"), "{}", run.stderr);
    assert_eq!(run.code, 1);
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn json_format_has_opa_shape() {
    let run = policyctl(&["test", "-f", "json", "tests/fixtures/failing"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let results = json(&run.stdout);
    let results = results.as_array().expect("a list of results");
    assert_eq!(results.len(), 4);
    let wrong = &results[1];
    assert_eq!(wrong["package"], "data.fixtures.failing");
    assert_eq!(wrong["name"], "test_sum_wrong");
    assert_eq!(wrong["fail"], true);
    assert_eq!(
        wrong["location"],
        serde_json::json!({"file": "tests/fixtures/failing/failing_test.rego", "row": 5, "col": 1})
    );
    assert!(wrong["duration"].as_u64().is_some(), "duration in ns");
    // print() output, base64 as Go marshals []byte, without location.
    assert_eq!(wrong["output"], "c3VtIGlzIDMK"); // "sum is 3\n"
    let passing = &results[0];
    assert!(passing.get("fail").is_none() && passing.get("error").is_none());
}

#[test]
fn json_format_reports_errors_skips_and_cases() {
    let erroring = json(&policyctl(&["test", "-f", "json", "tests/fixtures/erroring"]).stdout);
    let conflict = erroring
        .as_array()
        .and_then(|r| r.iter().find(|t| t["name"] == "test_conflict"))
        .expect("test_conflict reported");
    assert_eq!(conflict["error"]["code"], "eval_conflict_error");
    let todo = json(&policyctl(&["test", "-f", "json", "tests/fixtures/todo"]).stdout);
    assert!(
        todo.as_array()
            .is_some_and(|r| r.iter().any(|t| t["skip"] == true)),
        "{todo}"
    );
    let passing = json(&policyctl(&["test", "-f", "json", "tests/fixtures/passing"]).stdout);
    let cases = passing
        .as_array()
        .and_then(|r| r.iter().find(|t| t["name"] == "test_cases"))
        .expect("test_cases reported");
    assert_eq!(
        cases["sub_results"],
        serde_json::json!({"admin": {"name": "admin"}, "get": {"name": "get"}})
    );
}

#[test]
fn junit_format_lists_suites_and_failures() {
    let run = policyctl(&["test", "-f", "junit", "tests/fixtures/failing"]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"policyctl test\" tests=\"4\" failures=\"3\" errors=\"0\" skipped=\"0\""), "{}", run.stdout);
    assert!(run.stdout.contains(
        "<testsuite name=\"tests/fixtures/failing/failing_test.rego\" tests=\"4\" failures=\"3\""
    ));
    assert!(
        run.stdout
            .contains("<testcase name=\"test_sum_wrong\" classname=\"data.fixtures.failing\"")
    );
    assert!(run.stdout.contains("<failure message=\"test failed\"/>"));
    assert!(
        run.stdout.contains(
            "<system-out>tests/fixtures/failing/failing_test.rego:7: sum is 3</system-out>"
        )
    );
    assert!(run.stdout.trim_end().ends_with("</testsuites>"));
}

#[test]
fn coverage_prints_opa_report() {
    let run = policyctl(&["test", "--coverage", "tests/fixtures/coverage"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = json(&run.stdout);
    // Expression lines evaluated by the test are covered; the body of
    // `is_blocked`, which no test calls, is not.
    let policy = &report["files"]["tests/fixtures/coverage/policy.rego"];
    let rows = |key: &str| -> Vec<(u64, u64)> {
        policy[key]
            .as_array()
            .map(|ranges| {
                ranges
                    .iter()
                    .filter_map(|r| Some((r["start"]["row"].as_u64()?, r["end"]["row"].as_u64()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(rows("covered").contains(&(4, 4)), "{policy}");
    assert_eq!(rows("not_covered"), vec![(8, 8)], "{policy}");
    assert_eq!(
        policy["covered_lines"].as_u64().unwrap_or(0)
            + policy["not_covered_lines"].as_u64().unwrap_or(0),
        rows("covered")
            .iter()
            .chain(&rows("not_covered"))
            .map(|(a, b)| b - a + 1)
            .sum::<u64>()
    );
    let total = report["coverage"].as_f64().expect("coverage number");
    assert!(total > 0.0 && total < 100.0, "{total}");
    let test_file = &report["files"]["tests/fixtures/coverage/policy_test.rego"];
    assert_eq!(test_file["coverage"], 100, "{test_file}");
}

#[test]
fn a_coverage_threshold_not_met_exits_two_listing_uncovered_lines() {
    let run = policyctl(&["test", "--threshold", "99", "tests/fixtures/coverage"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("Code coverage threshold not met: got ")
            && run.stderr.contains(
                " instead of 99.00\nLines not covered:\n\ttests/fixtures/coverage/policy.rego:8"
            ),
        "{}",
        run.stderr
    );
    let met = policyctl(&["test", "--threshold", "10", "tests/fixtures/coverage"]);
    assert_eq!(met.code, 0, "{}", met.stderr);
    let invalid = policyctl(&["test", "--threshold", "101", "tests/fixtures/coverage"]);
    assert_eq!(invalid.code, 1);
    assert!(
        invalid.stderr.contains("between 0 and 100"),
        "{}",
        invalid.stderr
    );
}

#[test]
fn a_module_no_test_reaches_counts_as_not_covered() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("a_test.rego"),
        "package a_test\n\ntest_t if true\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("b.rego"),
        "package b\n\nallow if {\n\tinput.x == 1\n}\n",
    )
    .expect("write");
    let root = dir.path().to_str().expect("UTF-8");
    let run = policyctl(&["test", "--coverage", root]);
    let report = json(&run.stdout);
    let b = &report["files"][format!("{root}/b.rego")];
    assert_eq!(
        b["not_covered"],
        serde_json::json!([{"start": {"row": 3}, "end": {"row": 4}}]),
        "{report}"
    );
    assert!(
        b.get("coverage").is_none(),
        "0% is omitted as OPA does: {b}"
    );
}

#[test]
fn fail_on_empty_exits_one_when_no_test_ran() {
    let run = policyctl(&[
        "test",
        "--fail-on-empty",
        "-r",
        "nothing_matches",
        "tests/fixtures/passing",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr, "no tests were run\n");
    let ran = policyctl(&["test", "--fail-on-empty", "tests/fixtures/passing"]);
    assert_eq!(ran.code, 0);
}

#[test]
fn bench_reports_iterations_and_ns_per_op() {
    let run = policyctl(&[
        "test",
        "--bench",
        "-r",
        "test_admin_allowed",
        "tests/fixtures/passing",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let re = regex::Regex::new(
        r"^data\.fixtures\.passing\.authz_test\.test_admin_allowed\t +\d+\t +\d+ ns/op\n$",
    )
    .expect("valid regex");
    assert!(re.is_match(&run.stdout), "{}", run.stdout);
}

#[test]
fn report_writes_evidence_with_file_digests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("evidence");
    let run = policyctl(&[
        "test",
        "--coverage",
        "--report",
        out.to_str().expect("UTF-8 path"),
        "tests/fixtures/data_dep",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text =
        std::fs::read_to_string(out.join("policy-test-report.json")).expect("report written");
    let report = json(&text);
    assert_eq!(report["tool"]["name"], "policyctl");
    assert_eq!(report["passed"], true);
    assert!(
        report["generated_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(report["summary"]["passed"].as_u64().is_some_and(|n| n > 0));
    assert!(report["results"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(report["coverage"]["coverage"].is_number());
    let files = report["files"].as_array().expect("files");
    let data = files
        .iter()
        .find(|f| f["path"] == "tests/fixtures/data_dep/data.json")
        .expect("data file listed");
    assert_eq!(data["kind"], "data");
    use sha2::Digest;
    let bytes = std::fs::read("tests/fixtures/data_dep/data.json").expect("fixture");
    assert_eq!(data["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    assert!(files.iter().any(|f| f["kind"] == "policy"));
}

#[test]
fn bundle_flag_is_accepted_like_opa() {
    let run = policyctl(&["test", "-b", "tests/fixtures/passing"]);
    assert_eq!(run.stdout, "5 passed, 0 failed\n");
}
