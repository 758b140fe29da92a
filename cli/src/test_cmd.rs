//! `policyctl test`: runs the Rego tests under the given paths, like
//! `opa test`.
//!
//! Every test is evaluated on the same engine, compiled once. A test passes
//! when its rule is defined and `true`; it fails when it is `false`, any
//! other value, or undefined; it errors when evaluation fails. A test whose
//! rule path continues with variables (`test_cases[name] if …`) is a set of
//! cases: it passes when every case is `true`.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use regorus::Value;
use regorus::utils::limits::ExecutionTimerConfig;

use crate::discover::{self, TestCase};
use crate::test_report::{Outcome, Reporter, SubResult, TestResult};
use crate::{diagnostic, load};

/// Exit status when a test failed, errored or was skipped (OPA's).
const TESTS_FAILED: u8 = 2;

/// Arguments of `policyctl test`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Tests are rules named `test_*` in any package; `todo_test_*` rules \
    are reported as skipped.\n\n\
    Exit status:\n  \
    0  every test that ran passed (skipped tests too, with -z)\n  \
    1  policies or data could not be loaded or compiled, or a bad --run regex\n  \
    2  a test failed, errored or was skipped"
)]
pub struct TestArgs {
    /// Policy and data files or directories [default: .]
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Print every test with its outcome, and print() output of all tests
    #[arg(short, long)]
    pub verbose: bool,

    /// Run only tests whose full name (e.g. `data.pkg.test_x`) matches REGEX
    #[arg(short = 'r', long = "run", value_name = "REGEX")]
    pub run: Option<String>,

    /// Time limit per test, e.g. `500ms`, `5s`, `1m`
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Exit 0 when no test failed or errored, even if some were skipped
    #[arg(short = 'z', long)]
    pub exit_zero_on_skipped: bool,
}

/// Runs `test`; errors are reported by the caller with exit status 1.
pub fn run(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let filter = args
        .run
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("invalid --run regex")?;
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };

    let mut engine = load::engine_from_paths(&paths)?;
    engine.set_gather_prints(true);
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: args.timeout,
        check_interval: NonZeroU32::MIN.saturating_add(63),
    });
    // Analyse every module now so that a compile error stops the run
    // instead of erroring each test.
    engine
        .eval_query("true".to_string(), false)
        .context("compile error")?;
    let tests = discover::discover(&mut engine)?;

    let mut reporter = Reporter::new(std::io::stdout().lock(), args.verbose);
    for test in tests
        .iter()
        .filter(|t| filter.as_ref().is_none_or(|re| re.is_match(&t.name)))
    {
        let result = run_one(&mut engine, test);
        reporter.report(&result)?;
    }
    let counts = reporter.finish()?;

    let failed = counts.failed > 0 || counts.errored > 0;
    let skipped = counts.skipped > 0 && !args.exit_zero_on_skipped;
    Ok(if failed || skipped {
        ExitCode::from(TESTS_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Evaluates one test definition on the shared engine.
fn run_one<'t>(engine: &mut regorus::Engine, test: &'t TestCase) -> TestResult<'t> {
    if test.is_skipped {
        return TestResult {
            test,
            outcome: Outcome::Skipped,
            duration: Duration::ZERO,
            prints: Vec::new(),
            cases: Vec::new(),
        };
    }
    let started = Instant::now();
    let evaluated = engine.eval_rule_in_module(&test.module, &test.rule, false);
    let duration = started.elapsed();
    let prints = engine.take_prints().unwrap_or_default();
    let (outcome, cases) = match evaluated {
        Err(e) => (
            Outcome::Error(diagnostic::one_line(&e.to_string())),
            Vec::new(),
        ),
        Ok(data) => {
            let value = test
                .path
                .iter()
                .fold(&data, |v, key| &v[&Value::from(key.as_str())]);
            judge(value, test.has_cases)
        }
    };
    TestResult {
        test,
        outcome,
        duration,
        prints,
        cases,
    }
}

/// Pass or fail from the value a test produced.
fn judge(value: &Value, has_cases: bool) -> (Outcome, Vec<SubResult>) {
    if has_cases && let Value::Object(_) = value {
        let mut cases = Vec::new();
        let passed = collect_cases(value, 0, &mut cases);
        let outcome = if passed { Outcome::Pass } else { Outcome::Fail };
        return (outcome, cases);
    }
    let outcome = if *value == Value::Bool(true) {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    (outcome, Vec::new())
}

/// Appends the cases of `value` depth-first; whether all of them passed.
fn collect_cases(value: &Value, depth: usize, out: &mut Vec<SubResult>) -> bool {
    let Value::Object(entries) = value else {
        return *value == Value::Bool(true);
    };
    let mut all = true;
    for (key, child) in entries.iter_sorted() {
        let name = match key {
            Value::String(s) => s.to_string(),
            other => other.to_string(),
        };
        let at = out.len();
        out.push(SubResult {
            name,
            depth,
            passed: true,
        });
        let passed = collect_cases(child, depth + 1, out);
        if let Some(entry) = out.get_mut(at) {
            entry.passed = passed;
        }
        all &= passed;
    }
    all
}

/// Parses `500ms`, `5s`, `1.5s`, `2m` or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration `{text}`"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        _ => {
            return Err(format!(
                "invalid duration unit in `{text}` (use ms, s or m)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration `{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn a_case_object_passes_only_when_every_leaf_is_true() {
        let v = Value::from_json_str(r#"{"a": true, "b": {"c": false}}"#).unwrap();
        let (outcome, cases) = judge(&v, true);
        assert_eq!(outcome, Outcome::Fail);
        let flat: Vec<_> = cases
            .iter()
            .map(|c| (c.name.as_str(), c.depth, c.passed))
            .collect();
        assert_eq!(flat, vec![("a", 0, true), ("b", 0, false), ("c", 1, false)]);
    }

    #[test]
    fn only_true_passes() {
        assert_eq!(judge(&Value::Bool(true), false).0, Outcome::Pass);
        assert_eq!(judge(&Value::Bool(false), false).0, Outcome::Fail);
        assert_eq!(judge(&Value::Undefined, false).0, Outcome::Fail);
        assert_eq!(judge(&Value::from(1u64), false).0, Outcome::Fail);
    }
}
