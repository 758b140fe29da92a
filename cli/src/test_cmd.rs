//! `policyctl test`: runs the Rego tests under the given paths, like
//! `opa test`.
//!
//! Every test is evaluated on the same engine, compiled once. A test passes
//! when its rule is defined and `true`; it fails when it is `false`, any
//! other value, or undefined; it errors when evaluation fails. A test whose
//! rule path continues with variables (`test_cases[name] if …`) is a set of
//! cases: it passes when every case is `true`.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use regorus::Value;
use regorus::utils::limits::ExecutionTimerConfig;

use crate::discover::{self, TestCase};
use crate::test_formats::{self, Coverage, EvidenceReport, JsonResult, Tool};
use crate::test_report::{Outcome, Reporter, SubResult, TestResult};
use crate::{diagnostic, go_json, load};

/// Exit status when a test failed, errored or was skipped (OPA's).
const TESTS_FAILED: u8 = 2;

/// Arguments of `policyctl test`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Tests are rules named `test_*` in any package; `todo_test_*` rules \
    are reported as skipped.\n\n\
    Exit status:\n  \
    0  every test that ran passed (skipped tests too, with -z)\n  \
    1  policies or data could not be loaded or compiled, a bad --run regex, \
    or no tests with --fail-on-empty\n  \
    2  a test failed, errored or was skipped, or coverage is under --threshold"
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

    /// Time limit per test, e.g. `500ms`, `5s`, `1m` [default: 5s, 30s with --bench]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Exit 0 when no test failed or errored, even if some were skipped
    #[arg(short = 'z', long)]
    pub exit_zero_on_skipped: bool,

    /// Output format: `pretty`, `json` (OPA's result list) or `junit` (XML)
    #[arg(short, long, value_enum, default_value_t = Format::Pretty)]
    pub format: Format,

    /// Print OPA's coverage report (JSON) instead of the results
    #[arg(short, long)]
    pub coverage: bool,

    /// Fail (exit 2) when coverage is under PCT percent; implies --coverage
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    pub threshold: f64,

    /// Exit 1 when no test ran
    #[arg(long)]
    pub fail_on_empty: bool,

    /// Benchmark each test instead of running it once
    #[arg(long)]
    pub bench: bool,

    /// Treat paths as bundle directories (same placement of data; accepted for `opa test -b`)
    #[arg(short = 'b', long = "bundle")]
    pub bundle: bool,

    /// Write an evidence report (results, coverage, SHA-256 of every policy and data file) to DIR
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

/// Output formats of `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Pretty,
    Json,
    Junit,
}

/// Runs `test`; errors are reported by the caller with exit status 1.
pub fn run(args: &TestArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=100.0).contains(&args.threshold) {
        bail!("code coverage threshold must be between 0 and 100");
    }
    let coverage = args.coverage || args.threshold > 0.0;
    if coverage && args.bench {
        bail!("coverage reporting is not supported when benchmarking tests");
    }
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
    let timeout = args.timeout.unwrap_or(if args.bench {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(5)
    });

    let loaded = load::Loaded::read(&paths)?;
    let mut files: Vec<(PathBuf, &'static str)> = loaded
        .policies
        .iter()
        .map(|p| (p.path.clone(), "policy"))
        .chain(loaded.data.iter().map(|d| (d.path.clone(), "data")))
        .collect();
    files.sort();
    let mut engine = loaded.into_engine()?;
    engine.set_gather_prints(true);
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: timeout,
        check_interval: NonZeroU32::MIN.saturating_add(63),
    });
    // Analyse every module now so that a compile error stops the run
    // instead of erroring each test.
    engine
        .eval_query("true".to_string(), false)
        .context("compile error")?;
    let tests = discover::discover(&mut engine)?;
    let selected: Vec<&TestCase> = tests
        .iter()
        .filter(|t| filter.as_ref().is_none_or(|re| re.is_match(&t.name)))
        .collect();
    if args.fail_on_empty && selected.iter().all(|t| t.is_skipped) {
        eprintln!("no tests were run");
        return Ok(ExitCode::from(crate::ERROR));
    }
    if coverage {
        engine.set_enable_coverage(true);
    }
    if args.bench {
        return bench(&mut engine, &selected);
    }

    let stream = args.format == Format::Pretty && !coverage;
    let mut reporter = Reporter::new(
        if stream {
            Box::new(std::io::stdout().lock()) as Box<dyn std::io::Write>
        } else {
            Box::new(std::io::sink())
        },
        args.verbose,
    );
    let mut results = Vec::with_capacity(selected.len());
    for test in selected {
        let result = run_one(&mut engine, test);
        reporter.report(&result)?;
        results.push(result);
    }
    let counts = reporter.finish()?;

    let json: Vec<JsonResult> = results.iter().map(JsonResult::from_result).collect();
    let coverage_report = coverage.then(|| coverage_report(&mut engine)).transpose()?;
    match (&coverage_report, args.format) {
        (Some(report), _) => println!("{}", go_json::to_indented(report)?),
        (None, Format::Json) => println!("{}", go_json::to_indented(&json)?),
        (None, Format::Junit) => print!("{}", test_formats::junit(&results, &counts)),
        (None, Format::Pretty) => {}
    }

    let failed = counts.failed > 0 || counts.errored > 0;
    let skipped = counts.skipped > 0 && !args.exit_zero_on_skipped;
    let under_threshold = coverage_report
        .as_ref()
        .is_some_and(|r| r.coverage < args.threshold);
    if let Some(dir) = &args.report {
        let report = EvidenceReport {
            tool: Tool {
                name: "policyctl",
                version: env!("CARGO_PKG_VERSION"),
            },
            generated_at: test_formats::now_rfc3339(),
            paths: paths.iter().map(|p| p.display().to_string()).collect(),
            summary: counts.into(),
            passed: !failed && !skipped && !under_threshold,
            results: &json,
            coverage: coverage_report.as_ref(),
            coverage_threshold: (args.threshold > 0.0).then_some(args.threshold),
            files: test_formats::digests(&files)?,
        };
        let written = test_formats::write_report(dir, &report)?;
        eprintln!("report written to {}", written.display());
    }
    if let Some(report) = coverage_report.as_ref().filter(|_| under_threshold) {
        eprintln!("{}", report.threshold_message(args.threshold));
    }
    Ok(if failed || skipped || under_threshold {
        ExitCode::from(TESTS_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// OPA's coverage report from the engine's gathered coverage. A module no
/// test reached is reported with every rule line not covered.
fn coverage_report(engine: &mut regorus::Engine) -> anyhow::Result<Coverage> {
    let report = engine.get_coverage_report()?;
    let mut rows: BTreeMap<String, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
    for file in &report.files {
        rows.insert(
            file.path.clone(),
            (
                file.covered.iter().copied().collect(),
                file.not_covered.iter().copied().collect(),
            ),
        );
    }
    for module in engine.get_modules().iter() {
        let file = module.package.refr.span().source.file().clone();
        if rows.contains_key(&file) {
            continue;
        }
        let mut not_covered = Vec::new();
        for rule in &module.policy {
            let span = rule.span();
            let text = span.text();
            for (i, line) in text.lines().enumerate() {
                let code = line.trim();
                if code.is_empty() || code.starts_with('#') || code == "}" {
                    continue;
                }
                not_covered.push(span.line + i as u32);
            }
        }
        rows.insert(file, (Vec::new(), not_covered));
    }
    Ok(Coverage::from_rows(rows))
}

/// `--bench`: runs each test repeatedly for about a second and prints
/// Go-benchmark-style lines (`name  iterations  ns/op`).
fn bench(engine: &mut regorus::Engine, tests: &[&TestCase]) -> anyhow::Result<ExitCode> {
    const TARGET: Duration = Duration::from_secs(1);
    let mut any_failed = false;
    for test in tests.iter().filter(|t| !t.is_skipped) {
        let first = run_one(engine, test);
        if first.outcome != Outcome::Pass {
            any_failed = true;
            println!(
                "{}: {}",
                test.name,
                crate::test_report::label(&first.outcome)
            );
            continue;
        }
        let mut iterations: u64 = 1;
        let mut elapsed = first.duration;
        while elapsed < TARGET {
            let per = elapsed.as_nanos().max(1) / u128::from(iterations);
            let want = (TARGET.as_nanos() / per).clamp(1, 1_000_000) as u64;
            let started = Instant::now();
            for _ in 0..want {
                engine.eval_rule_in_module(&test.module, &test.rule, false)?;
            }
            elapsed += started.elapsed();
            iterations += want;
        }
        let ns_per_op = elapsed.as_nanos() / u128::from(iterations);
        println!("{}\t{iterations:>10}\t{ns_per_op:>10} ns/op", test.name);
    }
    Ok(if any_failed {
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
pub fn parse_duration(text: &str) -> Result<Duration, String> {
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
