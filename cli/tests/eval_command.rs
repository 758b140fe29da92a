//! `policyctl eval` on the fixture policies in `tests/fixtures/`.
//!
//! Expected JSON is what `opa eval` (v1.20) prints for the same query,
//! policies, data and input.

mod common;

use common::policyctl;

#[test]
fn a_defined_query_prints_opas_result_set() {
    let run = policyctl(&[
        "eval",
        "-d",
        "tests/fixtures/data_dep",
        "data.fixtures.data_dep.limit",
    ]);
    assert_eq!(
        run.stdout,
        r#"{
  "result": [
    {
      "expressions": [
        {
          "value": 60,
          "text": "data.fixtures.data_dep.limit",
          "location": {
            "row": 1,
            "col": 1
          }
        }
      ]
    }
  ]
}
"#
    );
    assert_eq!(run.stderr, "");
    assert_eq!(run.code, 0);
}

#[test]
fn an_undefined_query_prints_an_empty_object_and_exits_zero() {
    let run = policyctl(&[
        "eval",
        "-d",
        "tests/fixtures/data_dep",
        "data.fixtures.data_dep.nope",
    ]);
    assert_eq!(run.stdout, "{}\n");
    assert_eq!(run.code, 0);
}

#[test]
fn bindings_follow_expressions_one_result_per_solution() {
    let run = policyctl(&[
        "eval",
        "-d",
        "tests/fixtures/data_dep",
        "some name; data.users[name].role == \"admin\"",
    ]);
    assert_eq!(
        run.stdout,
        r#"{
  "result": [
    {
      "expressions": [
        {
          "value": true,
          "text": "data.users[name].role == \"admin\"",
          "location": {
            "row": 1,
            "col": 12
          }
        }
      ],
      "bindings": {
        "name": "alice"
      }
    }
  ]
}
"#
    );
    assert_eq!(run.code, 0);
}

#[test]
fn json_input_is_read_and_strings_are_escaped_like_go() {
    let run = policyctl(&[
        "eval",
        "-d",
        "tests/fixtures/eval",
        "-i",
        "tests/fixtures/eval/input.json",
        "data.fixtures.eval.greeting",
    ]);
    assert_eq!(
        run.stdout,
        r#"{
  "result": [
    {
      "expressions": [
        {
          "value": "hello \u003calice\u003e",
          "text": "data.fixtures.eval.greeting",
          "location": {
            "row": 1,
            "col": 1
          }
        }
      ]
    }
  ]
}
"#
    );
    assert_eq!(run.code, 0);
}

#[test]
fn yaml_input_is_read() {
    let run = policyctl(&[
        "eval",
        "-d",
        "tests/fixtures/eval",
        "--input",
        "tests/fixtures/eval/input.yaml",
        "--format",
        "pretty",
        "data.fixtures.eval",
    ]);
    // `allow` is undefined for bob, so only `greeting` is in the package.
    assert_eq!(
        run.stdout,
        "{\n  \"greeting\": \"hello \\u003cbob\\u003e\"\n}\n"
    );
    assert_eq!(run.code, 0);
}

#[test]
fn pretty_prints_a_table_for_bindings_and_undefined_for_no_result() {
    let run = policyctl(&[
        "eval",
        "-f",
        "pretty",
        "-d",
        "tests/fixtures/data_dep",
        "role := data.users[name].role",
    ]);
    assert_eq!(
        run.stdout,
        "+---------+----------+\n\
         |  name   |   role   |\n\
         +---------+----------+\n\
         | \"alice\" | \"admin\"  |\n\
         | \"bob\"   | \"viewer\" |\n\
         +---------+----------+\n"
    );

    let run = policyctl(&["eval", "-f", "pretty", "input.missing"]);
    assert_eq!(run.stdout, "undefined\n");
    assert_eq!(run.code, 0);
}

#[test]
fn native_builtins_are_available_to_queries() {
    let run = policyctl(&[
        "eval",
        "-f",
        "pretty",
        "-d",
        "tests/fixtures/native",
        "data.fixtures.native.digest(\"abc\")",
    ]);
    assert_eq!(
        run.stdout,
        "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n"
    );
    assert_eq!(run.code, 0);

    // A fresh process starts with a full bucket.
    let run = policyctl(&[
        "eval",
        "-f",
        "pretty",
        "rate_limit.take(\"cli-test\", 1, 5)",
    ]);
    assert_eq!(
        run.stdout,
        "{\n  \"allowed\": true,\n  \"limit\": 5,\n  \"remaining\": 4,\n  \"retry_after_seconds\": 0\n}\n"
    );
    assert_eq!(run.code, 0);
}

#[test]
fn a_trailing_string_keeps_its_quotes_in_the_expression_text() {
    let run = policyctl(&["eval", "x := \"é\"; y := \"<b>\""]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let exprs = &v["result"][0]["expressions"];
    assert_eq!(exprs[0]["text"], "x := \"é\"");
    assert_eq!(exprs[1]["text"], "y := \"<b>\"");
    // OPA counts columns in characters.
    assert_eq!(
        exprs[1]["location"],
        serde_json::json!({"row": 1, "col": 11})
    );
    assert_eq!(run.code, 0);
}

#[test]
fn a_parse_error_in_a_policy_exits_one_naming_the_file() {
    let run = policyctl(&["eval", "-d", "tests/fixtures/parse_error", "data"]);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: tests/fixtures/parse_error/broken.rego:5:1: parse error: expecting expression\n"
    );
    assert_eq!(run.code, 1);
}

#[test]
fn an_undefined_function_exits_one() {
    let run = policyctl(&["eval", "no_such_function(1)"]);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: evaluation failed: <query.rego>:1:17: could not find function no_such_function\n"
    );
    assert_eq!(run.code, 1);
}

#[test]
fn a_malformed_input_file_exits_one_naming_the_file() {
    let run = policyctl(&["eval", "-i", "tests/fixtures/eval/bad_input.json", "input"]);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .starts_with("error: input `tests/fixtures/eval/bad_input.json`: invalid JSON: "),
        "{}",
        run.stderr
    );
    assert_eq!(run.code, 1);
}

#[test]
fn a_missing_input_file_exits_one() {
    let run = policyctl(&["eval", "-i", "tests/fixtures/eval/none.json", "input"]);
    assert!(
        run.stderr
            .starts_with("error: cannot read input `tests/fixtures/eval/none.json`: "),
        "{}",
        run.stderr
    );
    assert_eq!(run.code, 1);
}

#[test]
fn help_documents_the_exit_codes() {
    let run = policyctl(&["eval", "--help"]);
    assert!(run.stdout.contains("Exit status:"), "{}", run.stdout);
    assert_eq!(run.code, 0);
    let run = policyctl(&["--help"]);
    assert!(run.stdout.contains("Exit status:"), "{}", run.stdout);
    assert_eq!(run.code, 0);
}
