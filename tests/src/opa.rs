//! Real OPA next to our engine, for differential tests.
//!
//! OPA runs embedded in Python (the `opa_bindings` module), driven by
//! `tests/opa/differential.py`: [`run_opa`] hands it a batch of
//! [`OpaJob`]s and reads back one [`OpaOutcome`] per job and replay. The
//! non-deterministic builtin (`rate_limit.take`) is answered in OPA with the
//! results our engine recorded for the same evaluation, so both engines see
//! the same builtin results. The embedded OPA always runs with strict
//! builtin errors; the driver re-evaluates a query that fails on a builtin
//! error with OPA's default (non-strict) semantics and says so in
//! [`OpaOutcome::nonstrict`]. [`policyctl_compile`] runs the real `policyctl
//! compile`; [`canonical`] and [`json_diff`] compare decision documents;
//! [`SplitMix64`] generates cases deterministically.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// How to install the `opa_bindings` module (real OPA) the tests need.
pub const OPA_INSTALL_HINT: &str = "pip install --ignore-requires-python opa-golib-python-bindings";

/// Environment variable naming the Python interpreter (default `python3`).
pub const PYTHON_ENV: &str = "POLICY_TESTS_PYTHON";

/// The Python interpreter the OPA driver runs on.
pub fn python() -> OsString {
    std::env::var_os(PYTHON_ENV).unwrap_or_else(|| "python3".into())
}

/// Fails, with the install hint, unless Python can import `opa_bindings`.
pub fn require_opa() -> anyhow::Result<()> {
    let py = python();
    let out = Command::new(&py)
        .args(["-c", "import opa_bindings"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "running `{}` (set {PYTHON_ENV} to a Python 3 interpreter); real OPA is needed: {OPA_INSTALL_HINT}",
                py.to_string_lossy()
            )
        })?;
    if !out.status.success() {
        bail!(
            "the Python module `opa_bindings` (real OPA) is missing for `{}`: install it with `{OPA_INSTALL_HINT}`\n{}",
            py.to_string_lossy(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The workspace's `policyctl` (debug build), built once per test process.
pub fn policyctl_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| build_policyctl().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_policyctl() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = workspace_root().join("Cargo.toml");
    let output = Command::new(&cargo)
        .args(["build", "--quiet", "-p", "policyctl", "--bin", "policyctl"])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{} build -p policyctl`", cargo.to_string_lossy()))?;
    if !output.status.success() {
        bail!(
            "`cargo build -p policyctl` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let bin = target_dir().join("debug").join("policyctl");
    if !bin.is_file() {
        bail!("built policyctl but found no {}", bin.display());
    }
    Ok(bin)
}

/// Runs `policyctl compile --config CONFIG [-d DATA]... [EXTRA]... -o OUT`.
pub fn policyctl_compile(
    config: &Path,
    data: &[PathBuf],
    extra: &[&str],
    out: &Path,
) -> anyhow::Result<String> {
    let bin = policyctl_binary()?;
    let mut cmd = Command::new(&bin);
    cmd.arg("compile").arg("--config").arg(config);
    for d in data {
        cmd.arg("-d").arg(d);
    }
    cmd.args(extra);
    let output = cmd
        .arg("-o")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !output.status.success() {
        bail!(
            "`policyctl compile --config {}` failed ({}):\n{}{}",
            config.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Every `.rego` file under `dir` as `(path relative to dir, source)`, in
/// path order: the module set OPA loads from the same directory.
pub fn rego_modules(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> anyhow::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "rego") {
                let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
                let source = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                out.push((rel, source));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// One recorded non-deterministic builtin call (see
/// `policy_agent::builtins::RecordedCall`), as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayCall {
    pub name: String,
    pub args: Vec<Value>,
    pub result: Value,
}

/// A query for OPA to evaluate once per replay.
#[derive(Debug, Clone)]
pub struct OpaJob {
    pub id: String,
    /// A reference, e.g. `data.routes.api_v1_users.request.decision`.
    pub query: String,
    pub input: Option<Value>,
    /// The builtin results to answer with, one evaluation each.
    pub replays: Vec<Vec<ReplayCall>>,
}

/// What an engine produced for one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Decision(Value),
    Undefined,
    Error(String),
}

impl Outcome {
    /// The outcome as JSON, for messages.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Decision(v) => v.clone(),
            Self::Undefined => json!("<undefined>"),
            Self::Error(e) => json!(format!("<error: {e}>")),
        }
    }
}

/// OPA's answer to one replay of a job.
#[derive(Debug, Clone)]
pub struct OpaOutcome {
    pub outcome: Outcome,
    /// Arguments of every `rate_limit.take` call OPA made.
    pub calls: Vec<Value>,
    /// Calls the replay had no (more) recorded result for.
    pub unmatched: Vec<Value>,
    /// Builtins whose errors were made undefined (OPA's default non-strict
    /// semantics) because the embedded OPA runs with strict builtin errors.
    pub nonstrict: Vec<String>,
}

/// Runs `tests/opa/differential.py` on `bundles` (directories loaded as
/// OPA loads them) with `jobs`; the outcomes by job id, one per replay.
pub fn run_opa(
    bundles: &[&Path],
    jobs: &[OpaJob],
    scratch: &Path,
) -> anyhow::Result<HashMap<String, Vec<OpaOutcome>>> {
    require_opa()?;
    let jobs_path = scratch.join("opa-jobs.jsonl");
    {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&jobs_path)
                .with_context(|| format!("creating {}", jobs_path.display()))?,
        );
        for job in jobs {
            let replays: Vec<Value> = job
                .replays
                .iter()
                .map(|calls| {
                    Value::Array(
                        calls
                            .iter()
                            .map(|c| json!({"name": c.name, "args": c.args, "result": c.result}))
                            .collect(),
                    )
                })
                .collect();
            let mut line = json!({"id": job.id, "query": job.query, "replays": replays});
            if let (Some(input), Some(obj)) = (&job.input, line.as_object_mut()) {
                obj.insert("input".into(), input.clone());
            }
            serde_json::to_writer(&mut f, &line)?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
    }
    let driver = workspace_root().join("tests/opa/differential.py");
    let mut cmd = Command::new(python());
    cmd.arg(&driver);
    for b in bundles {
        cmd.arg("--bundle").arg(b);
    }
    let output = cmd
        .arg("--jobs")
        .arg(&jobs_path)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", driver.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let hint = if output.status.code() == Some(3) {
            format!("\ninstall real OPA with `{OPA_INSTALL_HINT}`")
        } else {
            String::new()
        };
        bail!(
            "{} failed ({}):\n{stderr}{hint}",
            driver.display(),
            output.status
        );
    }
    let mut results = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("driver output line `{line}`"))?;
        let id = v["id"]
            .as_str()
            .context("driver output without id")?
            .to_string();
        let outcomes = v["outcomes"]
            .as_array()
            .context("driver output without outcomes")?
            .iter()
            .map(parse_outcome)
            .collect::<anyhow::Result<Vec<_>>>()?;
        results.insert(id, outcomes);
    }
    let missing: Vec<&str> = jobs
        .iter()
        .filter(|j| !results.contains_key(&j.id))
        .map(|j| j.id.as_str())
        .collect();
    if !missing.is_empty() {
        bail!("the OPA driver answered no result for {missing:?}\n{stderr}");
    }
    Ok(results)
}

fn parse_outcome(v: &Value) -> anyhow::Result<OpaOutcome> {
    let outcome = match v["kind"].as_str() {
        Some("decision") => Outcome::Decision(v["value"].clone()),
        Some("undefined") => Outcome::Undefined,
        Some("error") => Outcome::Error(v["error"].as_str().unwrap_or_default().to_string()),
        other => bail!("driver outcome of unknown kind {other:?}"),
    };
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    Ok(OpaOutcome {
        outcome,
        calls: list("calls"),
        unmatched: list("unmatched"),
        nonstrict: list("nonstrict")
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
    })
}

/// Values nested deeper than this are compared as a marker; the OPA driver
/// writes OPA's decisions the same way (`MAX_DEPTH` in `differential.py`),
/// since serde_json cannot read JSON nested deeper than 128 levels.
pub const MAX_DEPTH: usize = 100;

/// `v` in the form both engines' decisions are compared in: integral numbers
/// as integers (`2.0` → `2`; Rego has one number type), and arrays or
/// objects at depth [`MAX_DEPTH`] replaced by a marker.
pub fn canonical(v: &Value) -> Value {
    canonical_at(v, 0)
}

fn canonical_at(v: &Value, depth: usize) -> Value {
    match v {
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH => {
            json!(format!("<nested deeper than {MAX_DEPTH} levels>"))
        }
        Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_none() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                // Integral and below 2^53: the conversion is exact.
                json!(f as i64)
            }
            _ => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| canonical_at(x, depth + 1)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), canonical_at(x, depth + 1)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The differences between `ours` and `theirs`, one line per differing path.
pub fn json_diff(ours: &Value, theirs: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("$", ours, theirs, &mut out);
    out
}

fn diff_at(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff_at(&p, u, v, out),
                    (Some(u), None) => out.push(format!("{p}: ours {u}, OPA <absent>")),
                    (None, Some(v)) => out.push(format!("{p}: ours <absent>, OPA {v}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_at(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if a != b => out.push(format!("{path}: ours {a}, OPA {b}")),
        _ => {}
    }
}

/// A small deterministic PRNG (SplitMix64), so generated cases are the same
/// on every run.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let n = n as u64;
        usize::try_from(self.next_u64() % n).unwrap_or(0)
    }

    /// One element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_numbers_and_diff() -> anyhow::Result<()> {
        let a = canonical(&serde_json::from_str(r#"{"a": 2.0, "b": [1.5, 3]}"#)?);
        assert_eq!(a, json!({"a": 2, "b": [1.5, 3]}));
        let d = json_diff(
            &json!({"a": 1, "b": [1, 2]}),
            &json!({"a": 2, "b": [1, 2], "c": null}),
        );
        assert_eq!(
            d,
            vec!["$.a: ours 1, OPA 2", "$.c: ours <absent>, OPA null"]
        );
        Ok(())
    }

    #[test]
    fn prng_is_deterministic() {
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }
}
