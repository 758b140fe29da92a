//! `policyctl test` on the fixture policies in `tests/fixtures/`.

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
