//! `policyctl conformance`: runs test cases in OPA's compliance-case format
//! on the engine `policyctl test` and the agent use.
//!
//! A file (JSON or YAML) holds `{"cases": [...]}`; each case has `note`,
//! `query`, `modules`, optional `data`, `input` or `input_term`, and either
//! `want_result` (a list of binding objects, `[]` meaning undefined;
//! `sort_bindings` sorts array bindings before comparing) or an expected
//! error (`want_error_code`, `want_error`). `strict_error` turns builtin
//! errors into evaluation errors, as `--strict-builtin-errors` does in OPA.
//!
//! Each case runs on a fresh engine. A case with `want_result` passes when
//! the query's results equal it, compared as a multiset (the order of a
//! query's results is not part of Rego's semantics). A case expecting an
//! error passes when evaluation fails with the same OPA error code
//! (`eval_type_error`, `eval_conflict_error`, `eval_builtin_error`, taken
//! from `want_error_code` or the code inside `want_error`); the message
//! wording is not compared.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use policy_agent::builtins::{NativeBuiltins, RateLimiter};
use regorus::Value;
use regorus::utils::limits::ExecutionTimerConfig;
use serde::{Deserialize, Serialize};

use crate::{diagnostic, go_json};

/// Exit status when a case failed.
const CASES_FAILED: u8 = 2;

/// Arguments of `policyctl conformance`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status:\n  \
    0  every case passed\n  \
    1  a case file could not be read or parsed\n  \
    2  a case failed")]
pub struct ConformanceArgs {
    /// Case files (.json, .yaml, .yml) or directories searched recursively
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    /// Output format: `pretty` lists failing cases, `json` every case
    #[arg(short, long, value_enum, default_value_t = Format::Pretty)]
    pub format: Format,

    /// Run only cases whose note matches REGEX
    #[arg(short = 'r', long = "run", value_name = "REGEX")]
    pub run: Option<String>,

    /// Time limit per case, e.g. `500ms`, `5s`
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::test_cmd::parse_duration)]
    pub timeout: Duration,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Pretty,
    Json,
}

/// One case in OPA's format. Fields this runner does not use are ignored.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub note: String,
    pub query: String,
    #[serde(default)]
    pub modules: Vec<String>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    #[serde(default)]
    pub input: Option<serde_json::Value>,
    #[serde(default)]
    pub input_term: Option<String>,
    #[serde(default)]
    pub want_result: Option<Vec<BTreeMap<String, serde_json::Value>>>,
    #[serde(default)]
    pub want_error_code: Option<String>,
    #[serde(default)]
    pub want_error: Option<String>,
    #[serde(default)]
    pub strict_error: bool,
    #[serde(default)]
    pub sort_bindings: bool,
}

#[derive(Debug, Deserialize)]
struct CaseFile {
    cases: Vec<Case>,
}

/// A case's identity: its file (relative to the path given) and index.
#[derive(Debug, Clone, Serialize)]
pub struct CaseId {
    pub file: String,
    pub index: usize,
}

impl std::fmt::Display for CaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.file, self.index)
    }
}

/// How one case ended.
#[derive(Debug, Serialize)]
pub struct CaseOutcome {
    pub id: String,
    pub note: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    passed: usize,
    failed: usize,
    cases: &'a [CaseOutcome],
}

/// Runs `conformance`.
pub fn run(args: &ConformanceArgs) -> anyhow::Result<ExitCode> {
    let filter = args
        .run
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("invalid --run regex")?;
    let mut files = Vec::new();
    for path in &args.paths {
        collect_files(path, path, &mut files)?;
    }
    files.sort();

    let runner = Runner::new(args.timeout);
    // A case that panics the engine is reported as failing with the panic
    // message; the default hook would also print a backtrace per panic.
    std::panic::set_hook(Box::new(|_| {}));
    let mut outcomes = Vec::new();
    for (root, file) in &files {
        let cases = read_cases(file)?;
        let rel = file
            .strip_prefix(root)
            .ok()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(file)
            .display()
            .to_string();
        for (index, case) in cases.iter().enumerate() {
            if filter.as_ref().is_some_and(|re| !re.is_match(&case.note)) {
                continue;
            }
            let id = CaseId {
                file: rel.clone(),
                index,
            };
            let verdict = runner.run_case(case);
            outcomes.push(CaseOutcome {
                id: id.to_string(),
                note: case.note.clone(),
                passed: verdict.is_ok(),
                reason: verdict.err(),
            });
        }
    }

    let passed = outcomes.iter().filter(|o| o.passed).count();
    let failed = outcomes.len() - passed;
    match args.format {
        Format::Json => {
            let report = Report {
                passed,
                failed,
                cases: &outcomes,
            };
            println!("{}", go_json::to_indented(&report)?);
        }
        Format::Pretty => {
            for o in outcomes.iter().filter(|o| !o.passed) {
                println!("FAIL: {} ({})", o.note, o.id);
                if let Some(reason) = &o.reason {
                    for line in reason.lines() {
                        println!("  {line}");
                    }
                }
            }
            println!("{passed} passed, {failed} failed");
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(CASES_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Case files under `path`, each with the root it was found under.
fn collect_files(
    root: &Path,
    path: &Path,
    out: &mut Vec<(PathBuf, PathBuf)>,
) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    if meta.is_file() {
        out.push((root.to_path_buf(), path.to_path_buf()));
        return Ok(());
    }
    let entries =
        std::fs::read_dir(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read `{}`", path.display()))?;
        let child = entry.path();
        let hidden = child
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if child.is_dir() {
            collect_files(root, &child, out)?;
        } else if is_case_file(&child) {
            out.push((root.to_path_buf(), child));
        }
    }
    Ok(())
}

fn is_case_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("json" | "yaml" | "yml")
    )
}

/// Reads the cases of one file.
pub fn read_cases(path: &Path) -> anyhow::Result<Vec<Case>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let parsed: CaseFile = match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => serde_yaml_ng::from_str(&text)
            .map_err(|e| anyhow!("`{}`: invalid case file: {e}", path.display()))?,
        _ => serde_json::from_str(&text)
            .map_err(|e| anyhow!("`{}`: invalid case file: {e}", path.display()))?,
    };
    Ok(parsed.cases)
}

/// Runs cases, each on a fresh engine.
pub struct Runner {
    builtins: NativeBuiltins,
    timeout: Duration,
}

impl Runner {
    /// A runner giving each case `timeout` of evaluation time.
    pub fn new(timeout: Duration) -> Self {
        Self {
            builtins: NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default()))),
            timeout,
        }
    }

    /// `Ok` when the case passes, else why it failed.
    pub fn run_case(&self, case: &Case) -> Result<(), String> {
        let evaluated =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.evaluate(case)))
                .unwrap_or_else(|panic| Err(anyhow!("engine panicked: {}", panic_message(&panic))));
        let want_code = case.want_error_code.clone().or_else(|| {
            case.want_error
                .as_deref()
                .and_then(error_code_in)
                .map(str::to_string)
        });
        let expects_error = want_code.is_some() || case.want_error.is_some();
        match (evaluated, expects_error) {
            (Err(e), true) => {
                let message = diagnostic::chain_one_line(&e);
                let got = classify_error(&message);
                match want_code {
                    Some(want) if want != got => Err(format!(
                        "want error {want}{}\ngot {got}: {message}",
                        case.want_error
                            .as_deref()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    )),
                    _ => Ok(()),
                }
            }
            (Err(e), false) => Err(format!("error: {}", diagnostic::chain_one_line(&e))),
            (Ok(got), true) => Err(format!(
                "want error {}, got result {}",
                want_code.or(case.want_error.clone()).unwrap_or_default(),
                go_json::to_compact(&got).unwrap_or_default()
            )),
            (Ok(got), false) => {
                let want: Vec<serde_json::Value> = case
                    .want_result
                    .iter()
                    .flatten()
                    .map(|b| serde_json::Value::Object(b.clone().into_iter().collect()))
                    .collect();
                let want = want
                    .iter()
                    .map(|w| {
                        Value::from_json_str(&w.to_string())
                            .map(|v| normalize(v, case.sort_bindings))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("want_result: {e}"))?;
                if same_multiset(&want, &got) {
                    Ok(())
                } else {
                    Err(format!(
                        "want {}\ngot  {}",
                        go_json::to_compact(&want).unwrap_or_default(),
                        go_json::to_compact(&got).unwrap_or_default()
                    ))
                }
            }
        }
    }

    /// The query's results as binding objects (JSON-compatible values).
    fn evaluate(&self, case: &Case) -> anyhow::Result<Vec<Value>> {
        let mut engine = policy_agent::new_engine();
        engine.set_rego_v0(false);
        engine.set_strict_builtin_errors(case.strict_error);
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit: self.timeout,
            check_interval: NonZeroU32::MIN.saturating_add(63),
        });
        self.builtins
            .register_extensions_with(&mut engine, case.strict_error)?;
        for (i, module) in case.modules.iter().enumerate() {
            engine
                .add_policy(format!("test-{i}.rego"), module.clone())
                .map_err(|e| anyhow!("rego_parse_error: {e}"))?;
        }
        if let Some(data) = &case.data {
            engine.add_data(Value::from_json_str(&data.to_string())?)?;
        }
        if let Some(input) = &case.input {
            engine.set_input(Value::from_json_str(&input.to_string())?);
        }
        if let Some(term) = &case.input_term {
            let results = engine.eval_query(term.clone(), false)?;
            let Some(value) = results
                .result
                .first()
                .and_then(|r| r.expressions.last())
                .map(|e| e.value.clone())
            else {
                bail!("input_term `{term}` is undefined");
            };
            engine.set_input(value);
        }
        let results = engine.eval_query(case.query.clone(), false)?;
        results
            .result
            .iter()
            .map(|r| {
                let bindings = match &r.bindings {
                    Value::Object(map) => {
                        let kept: BTreeMap<Value, Value> = map
                            .iter()
                            .filter(|(k, _)| !k.as_string().is_ok_and(|s| s.starts_with("__")))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        Value::from(kept)
                    }
                    _ => Value::new_object(),
                };
                // Through JSON: sets become sorted arrays, as OPA returns them.
                let json = bindings.to_json_str()?;
                Ok(normalize(Value::from_json_str(&json)?, case.sort_bindings))
            })
            .collect()
    }
}

/// With `sort_bindings`, every array binding sorted.
fn normalize(mut bindings: Value, sort: bool) -> Value {
    if sort && let Ok(map) = bindings.as_object_mut() {
        for (_, v) in map.iter_mut() {
            if let Ok(items) = v.as_array_mut() {
                items.sort();
            }
        }
    }
    bindings
}

fn same_multiset(want: &[Value], got: &[Value]) -> bool {
    let mut want = want.to_vec();
    let mut got = got.to_vec();
    want.sort();
    got.sort();
    want == got
}

/// The OPA error code inside an OPA error message, if any.
fn error_code_in(message: &str) -> Option<&str> {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|w| (w.starts_with("eval_") || w.starts_with("rego_")) && w.ends_with("_error"))
}

/// OPA's error code for one of this engine's evaluation errors.
pub fn classify_error(message: &str) -> &'static str {
    const CODES: [&str; 6] = [
        "eval_conflict_error",
        "eval_type_error",
        "eval_builtin_error",
        "rego_parse_error",
        "rego_type_error",
        "rego_compile_error",
    ];
    if let Some(code) = error_code_in(message).and_then(|c| CODES.iter().find(|k| **k == c)) {
        return code;
    }
    const CONFLICT: [&str; 6] = [
        "generated multiple times",
        "multiple outputs",
        "multiple values",
        "conflict",
        "multiple default",
        "produce different values",
    ];
    if CONFLICT.iter().any(|p| message.contains(p)) {
        return "eval_conflict_error";
    }
    const TYPE: [&str; 7] = [
        "expects",
        "must be",
        "operand",
        "type mismatch",
        "requires",
        "is not an",
        "invalid argument",
    ];
    if TYPE.iter().any(|p| message.contains(p)) {
        return "eval_type_error";
    }
    "eval_builtin_error"
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}
