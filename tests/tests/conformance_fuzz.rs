//! Differential fuzzing against real OPA (v1.20, embedded through the
//! `opa_bindings` Python module) on generated conformance cases.
//!
//! 1. `policyctl conformance` runs OPA's compliance cases
//!    (`<workspace>/../shared/conformance/opa-v1`); the failing ones are
//!    tracked by the conformance suite and are not mutated here.
//! 2. `tests/opa/fuzz_conformance.py` generates cases from a seed: mutated
//!    compliance cases (their input, data and module literals) and small
//!    random policies, each with real OPA's answer (OPA's default non-strict
//!    builtin errors) as the expectation.
//! 3. `policyctl conformance` runs the generated cases on our engine, in
//!    chunks, each bounded in time and memory (a case that hangs or crashes
//!    the engine is isolated and reported as such).
//! 4. Every case where our engine disagrees with OPA fails the test, listed
//!    with its note, query, modules, data, input and both answers, except
//!    the ones in `tests/conformance/known-divergences.txt`. With the
//!    default seed and counts an entry there that now agrees with OPA fails
//!    the test too, so that the list only shrinks.
//!
//! `POLICY_FUZZ_SEED` (a number, or several separated by commas) and
//! `POLICY_FUZZ_COUNT` (cases per seed, two thirds mutated, one third
//! random) run longer campaigns; `POLICY_FUZZ_KEEP=DIR` keeps the generated
//! case files and reports. Every divergence found becomes a regression case
//! in `tests/conformance/regressions/`. Without `opa_bindings` the test
//! fails with the install hint.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use policy_engine_tests::opa::{self, OPA_INSTALL_HINT};
use policy_engine_tests::stack::process::workspace_binary;
use serde_json::Value;

/// Seed of the cases CI runs: change it only together with
/// `known-divergences.txt`.
const SEED: u64 = 20_261_123;
/// Mutated compliance cases and random policies per seed in CI.
const MUTATED: usize = 300;
const RANDOM: usize = 150;
const SEED_ENV: &str = "POLICY_FUZZ_SEED";
const COUNT_ENV: &str = "POLICY_FUZZ_COUNT";
const KEEP_ENV: &str = "POLICY_FUZZ_KEEP";
/// Cases per `policyctl conformance` run, and the time such a run may take.
const CHUNK: usize = 64;
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);
const CASE_TIMEOUT: Duration = Duration::from_secs(15);
/// Address space of one `policyctl conformance` run, in KiB (`ulimit -v`).
const MEMORY_LIMIT_KIB: u64 = 4 << 20;
/// Values longer than this are shortened in the report.
const SHOWN_CHARS: usize = 1500;

#[test]
fn generated_cases_agree_with_opa() -> anyhow::Result<()> {
    let started = Instant::now();
    opa::require_opa()?;
    let root = opa::workspace_root();
    let compliance = root.join("../shared/conformance/opa-v1");
    ensure!(
        compliance.is_dir(),
        "OPA's compliance cases are missing: expected them in {}",
        compliance.display()
    );
    let policyctl = workspace_binary("policyctl", "policyctl")?;
    let keep = std::env::var_os(KEEP_ENV).map(PathBuf::from);
    let tmp = tempfile::tempdir()?;
    let work = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;

    let (seeds, mutated, random) = campaign()?;
    let is_ci_campaign = seeds == [SEED] && mutated == MUTATED && random == RANDOM;

    // The compliance cases our engine fails are not mutated.
    let baseline = work.join("compliance-report.json");
    let report = run_policyctl(&policyctl, &compliance, CHUNK_TIMEOUT * 4)?;
    let Finished::Report(report) = report else {
        bail!(
            "`policyctl conformance {}` did not finish: {report:?}",
            compliance.display()
        );
    };
    std::fs::write(&baseline, serde_json::to_string(&report)?)?;

    let known = KnownDivergences::load(&root.join("tests/conformance/known-divergences.txt"))?;
    let mut divergences = Vec::new();
    let mut total = 0;
    for seed in &seeds {
        let out = work.join(format!("fuzz-{seed}.json"));
        generate(&compliance, &baseline, *seed, mutated, random, &out)?;
        let cases = read_cases(&out)?;
        ensure!(
            cases.len() >= (mutated + random) * 9 / 10,
            "seed {seed}: only {} cases generated of {} asked for",
            cases.len(),
            mutated + random
        );
        total += cases.len();
        let outcomes = run_cases(&policyctl, &cases, &work.join(format!("chunks-{seed}")))?;
        for (case, outcome) in cases.iter().zip(outcomes) {
            if let Err(reason) = outcome {
                divergences.push(Divergence::new(case, reason));
            }
        }
    }

    let (accepted, divergences): (Vec<_>, Vec<_>) = divergences
        .into_iter()
        .partition(|d| known.reason(&d.note).is_some());
    for d in &divergences {
        println!("\n--- divergence: {}\n{}", d.note, d.details);
    }
    print_groups(&divergences);
    for d in &accepted {
        println!(
            "known divergence: {} ({})",
            d.note,
            known.reason(&d.note).unwrap_or_default()
        );
    }
    let stale: Vec<&str> = if is_ci_campaign {
        known
            .entries
            .iter()
            .map(|(note, _)| note.as_str())
            .filter(|note| !accepted.iter().any(|d| d.note == *note))
            .collect()
    } else {
        Vec::new()
    };
    for note in &stale {
        println!("known divergence no longer diverges (delete its line): {note}");
    }
    println!(
        "conformance fuzz: seeds {seeds:?}: {total} cases, {} divergences ({} known), in {:.1?}",
        divergences.len() + accepted.len(),
        accepted.len(),
        started.elapsed()
    );
    ensure!(
        divergences.is_empty() && stale.is_empty(),
        "{} generated cases diverge from OPA and {} entries of known-divergences.txt are stale \
         (details above); add each new divergence as a case in tests/conformance/regressions/",
        divergences.len(),
        stale.len()
    );
    Ok(())
}

/// Seeds and per-seed counts, from the environment or the CI defaults.
fn campaign() -> anyhow::Result<(Vec<u64>, usize, usize)> {
    let seeds = match std::env::var(SEED_ENV) {
        Ok(s) => s
            .split(',')
            .map(|x| {
                x.trim()
                    .parse::<u64>()
                    .with_context(|| format!("{SEED_ENV}={s}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        Err(_) => vec![SEED],
    };
    let (mutated, random) = match std::env::var(COUNT_ENV) {
        Ok(s) => {
            let n: usize = s
                .trim()
                .parse()
                .with_context(|| format!("{COUNT_ENV}={s}"))?;
            (n * 2 / 3, n - n * 2 / 3)
        }
        Err(_) => (MUTATED, RANDOM),
    };
    Ok((seeds, mutated, random))
}

/// Runs the generator for one seed.
fn generate(
    compliance: &Path,
    baseline: &Path,
    seed: u64,
    mutated: usize,
    random: usize,
    out: &Path,
) -> anyhow::Result<()> {
    let script = opa::workspace_root().join("tests/opa/fuzz_conformance.py");
    let output = Command::new(opa::python())
        .arg(&script)
        .arg("--cases")
        .arg(compliance)
        .arg("--skip-report")
        .arg(baseline)
        .args(["--seed", &seed.to_string()])
        .args(["--count", &mutated.to_string()])
        .args(["--random", &random.to_string()])
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let hint = if output.status.code() == Some(3) {
            format!("\ninstall real OPA with `{OPA_INSTALL_HINT}`")
        } else {
            String::new()
        };
        bail!(
            "{} failed ({}):\n{stderr}{hint}",
            script.display(),
            output.status
        );
    }
    print!("{stderr}");
    Ok(())
}

fn read_cases(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    match doc.get_mut("cases").map(Value::take) {
        Some(Value::Array(cases)) => Ok(cases),
        _ => bail!("{}: no `cases` array", path.display()),
    }
}

/// How a `policyctl conformance` run ended.
#[derive(Debug)]
enum Finished {
    /// The `-f json` report.
    Report(Value),
    /// Killed after the time limit.
    TimedOut(Duration),
    /// Ended by a signal or an unexpected exit status, with its stderr.
    Crashed(String),
}

/// Runs `policyctl conformance PATH -f json` within `timeout` and
/// [`MEMORY_LIMIT_KIB`].
fn run_policyctl(policyctl: &Path, path: &Path, timeout: Duration) -> anyhow::Result<Finished> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {MEMORY_LIMIT_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(policyctl)
        .arg("conformance")
        .arg(path)
        .args(["-f", "json"])
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", policyctl.display()))?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let mut stderr = child.stderr.take().context("no stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stderr.read_to_end(&mut buf).map(|_| buf)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            child.kill()?;
            child.wait()?;
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out_reader
        .join()
        .map_err(|_| anyhow::anyhow!("stdout reader panicked"))??;
    let err = err_reader
        .join()
        .map_err(|_| anyhow::anyhow!("stderr reader panicked"))??;
    let Some(status) = status else {
        return Ok(Finished::TimedOut(timeout));
    };
    // 0: every case passed, 2: some failed; anything else is a crash.
    if matches!(status.code(), Some(0 | 2)) {
        let report = serde_json::from_slice(&out).with_context(|| {
            format!(
                "policyctl conformance {} printed no JSON report",
                path.display()
            )
        })?;
        return Ok(Finished::Report(report));
    }
    let err = String::from_utf8_lossy(&err);
    let tail: Vec<&str> = err.lines().rev().take(8).collect();
    Ok(Finished::Crashed(format!(
        "{status}: {}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )))
}

/// Each case's outcome on our engine: `Ok` when it agrees with OPA, else why
/// not. Cases run in chunks; a chunk that hangs or crashes is split until
/// the case responsible is found.
fn run_cases(
    policyctl: &Path,
    cases: &[Value],
    dir: &Path,
) -> anyhow::Result<Vec<Result<(), String>>> {
    std::fs::create_dir_all(dir)?;
    let mut outcomes = Vec::with_capacity(cases.len());
    let mut counter = 0;
    for chunk in cases.chunks(CHUNK) {
        outcomes.extend(run_chunk(policyctl, chunk, dir, &mut counter)?);
    }
    Ok(outcomes)
}

fn run_chunk(
    policyctl: &Path,
    cases: &[Value],
    dir: &Path,
    counter: &mut usize,
) -> anyhow::Result<Vec<Result<(), String>>> {
    *counter += 1;
    let path = dir.join(format!("chunk-{counter:04}.json"));
    std::fs::write(
        &path,
        serde_json::to_string(&serde_json::json!({ "cases": cases }))?,
    )?;
    let timeout = if cases.len() == 1 {
        CASE_TIMEOUT
    } else {
        CHUNK_TIMEOUT
    };
    let report = match run_policyctl(policyctl, &path, timeout)? {
        Finished::Report(report) => report,
        failed if cases.len() == 1 => {
            let why = match failed {
                Finished::TimedOut(t) => {
                    format!("our engine did not finish within {t:?} (OPA answered at once)")
                }
                Finished::Crashed(e) => format!("our engine crashed: {e}"),
                Finished::Report(_) => String::new(),
            };
            return Ok(vec![Err(why)]);
        }
        _ => {
            let mut out = Vec::with_capacity(cases.len());
            for part in cases.chunks(cases.len().div_ceil(8)) {
                out.extend(run_chunk(policyctl, part, dir, counter)?);
            }
            return Ok(out);
        }
    };
    let mut by_index: HashMap<usize, Result<(), String>> = HashMap::new();
    for outcome in report["cases"].as_array().context("report without cases")? {
        let id = outcome["id"].as_str().context("outcome without id")?;
        let index: usize = id
            .rsplit_once('#')
            .and_then(|(_, i)| i.parse().ok())
            .with_context(|| format!("outcome id `{id}`"))?;
        let verdict = if outcome["passed"].as_bool() == Some(true) {
            Ok(())
        } else {
            Err(outcome["reason"].as_str().unwrap_or("failed").to_string())
        };
        by_index.insert(index, verdict);
    }
    Ok((0..cases.len())
        .map(|i| {
            by_index
                .remove(&i)
                .unwrap_or_else(|| Err("policyctl reported no outcome for this case".into()))
        })
        .collect())
}

/// One generated case our engine answers differently from OPA.
struct Divergence {
    note: String,
    /// The reason's first line with literals blanked: groups one cause.
    signature: String,
    details: String,
}

impl Divergence {
    fn new(case: &Value, reason: String) -> Self {
        let note = case["note"].as_str().unwrap_or("?").to_string();
        let mut details = String::new();
        for key in [
            "origin",
            "mutations",
            "opa_nonstrict_builtins",
            "strict_error",
            "query",
        ] {
            if let Some(v) = case.get(key) {
                details += &format!("{key}: {}\n", shown(v));
            }
        }
        for (i, module) in case["modules"].as_array().into_iter().flatten().enumerate() {
            details += &format!(
                "module {i}:\n{}\n",
                module.as_str().unwrap_or_default().trim_end()
            );
        }
        for key in ["data", "input"] {
            if let Some(v) = case.get(key) {
                details += &format!("{key}: {}\n", shown(v));
            }
        }
        if let Some(code) = case.get("want_error_code") {
            details += &format!(
                "OPA: error {} ({})\n",
                shown(code),
                case["want_error"].as_str().unwrap_or_default()
            );
        } else {
            details += &format!("OPA: {}\n", shown(&case["want_result"]));
        }
        details += &format!("ours (policyctl conformance): {reason}");
        Self {
            note,
            signature: signature(&reason),
            details,
        }
    }
}

fn shown(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() <= SHOWN_CHARS {
        return s;
    }
    let head: String = s.chars().take(SHOWN_CHARS).collect();
    format!("{head}... ({} chars)", s.chars().count())
}

/// The kind of a failure: its first line with quoted strings, numbers and
/// JSON values replaced by placeholders.
fn signature(reason: &str) -> String {
    let first = reason.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let first = match first.split_once(": ") {
        Some((location, rest)) if location.contains(".rego:") => rest,
        _ => first,
    };
    let mut out = String::new();
    let mut chars = first.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' | '"' => {
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
                out.push_str("<s>");
            }
            '[' | '{' => {
                let close = if c == '[' { ']' } else { '}' };
                let mut depth = 1;
                for d in chars.by_ref() {
                    if d == c {
                        depth += 1;
                    } else if d == close {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                }
                out.push_str("<v>");
            }
            c if c.is_ascii_digit() => {
                while chars
                    .peek()
                    .is_some_and(|d| d.is_ascii_digit() || *d == '.' || *d == ':')
                {
                    chars.next();
                }
                out.push('N');
            }
            c => out.push(c),
        }
    }
    out
}

fn print_groups(divergences: &[Divergence]) {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for d in divergences {
        groups.entry(&d.signature).or_default().push(&d.note);
    }
    if groups.is_empty() {
        return;
    }
    println!("\ndivergences by kind:");
    for (signature, notes) in &groups {
        println!("  {} x {signature}", notes.len());
        for note in notes {
            println!("      {note}");
        }
    }
}

/// `tests/conformance/known-divergences.txt`: one `NOTE | REASON` per line
/// (`#` starts a comment).
struct KnownDivergences {
    entries: Vec<(String, String)>,
}

impl KnownDivergences {
    fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((note, reason)) = line.split_once(" | ") else {
                bail!("{}:{}: expected `NOTE | REASON`", path.display(), i + 1);
            };
            ensure!(
                !reason.trim().is_empty(),
                "{}:{}: a known divergence needs a reason",
                path.display(),
                i + 1
            );
            entries.push((note.trim().to_string(), reason.trim().to_string()));
        }
        Ok(Self { entries })
    }

    fn reason(&self, note: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == note)
            .map(|(_, r)| r.as_str())
    }
}

#[test]
fn failure_signatures_group_by_kind() {
    assert_eq!(
        signature("want [{\"x\":\"a\"}]\ngot  []"),
        signature("want [{\"x\":3}]\ngot  [{\"x\":4}]")
    );
    assert_eq!(
        signature("error: test-0.rego:4:20: modulo on floating-point number"),
        "modulo on floating-point number"
    );
    assert_eq!(
        signature(
            "error: test-0.rego:24:23: `some .. in collection` expects array/set/object. Got `1`"
        ),
        "<s> expects array/set/object. Got <s>"
    );
}
