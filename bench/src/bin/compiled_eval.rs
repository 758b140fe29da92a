//! Our side of the comparison with OPA (`bench/opa/eval_vs_opa.py`): the
//! spec routes' request chains as `policyctl compile` writes them, evaluated
//! on the bytecode VM in a loop on one thread.
//!
//! ```text
//! compiled_eval fixture OUT
//!     writes OUT/kernel-config.yaml (deploy/kernel-config.yaml, rate limits
//!     raised to 1e9/s, burst 1e9), OUT/data.json (the benchmark's data)
//!     and OUT/input/{users,admin}.json (each case's input)
//! compiled_eval time DIR INPUT RULE N
//!     loads DIR's modules and DIR/data.json, compiles RULE for the VM,
//!     evaluates it once (the decision, printed) then N times per mode, and
//!     prints one JSON object on stdout
//! ```
//!
//! Two modes are timed, each after N/10 untimed runs:
//! - `value`: `policy_agent::evaluate` on a clone of the parsed input
//!   (`decision_report`'s `eval_vm`);
//! - `json`: the input parsed from its JSON text, evaluated, and the
//!   decision written back as JSON text, as the OPA bridge does per call.
//!
//! CPU time is the evaluating thread's (`/proc/thread-self/schedstat`), so a
//! busy machine inflates wall-clock time but not the CPU figure.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use policy_agent::builtins::{NativeBuiltins, RateLimiter};
use policy_agent::{CompiledChain, EnginePath, PolicySet, evaluate};
use policy_bench::{Fixture, never_limited_kernel_config};
use regorus::Value;
use serde_json::json;

/// The agent's allocator, so the figures are those of the shipped binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The per-evaluation limit (the agent's default request timeout is larger;
/// nothing here comes near it).
const TIMEOUT: Duration = Duration::from_secs(1);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fixture") => {
            let [_, out] = args.as_slice() else {
                bail!("usage: compiled_eval fixture OUT");
            };
            fixture(Path::new(out))
        }
        Some("time") => {
            let [_, dir, input, rule, n] = args.as_slice() else {
                bail!("usage: compiled_eval time DIR INPUT RULE N");
            };
            let n: u32 = n.parse().with_context(|| format!("N `{n}`"))?;
            ensure!(n >= 1, "N must be at least 1");
            time(Path::new(dir), Path::new(input), rule, n)
        }
        _ => bail!("usage: compiled_eval fixture OUT | compiled_eval time DIR INPUT RULE N"),
    }
}

/// Writes the files `policyctl compile` and both engines need.
fn fixture(out: &Path) -> anyhow::Result<()> {
    let fixture = Fixture::try_new()?;
    let inputs = out.join("input");
    std::fs::create_dir_all(&inputs).with_context(|| format!("creating {}", inputs.display()))?;
    write(
        &out.join("kernel-config.yaml"),
        &never_limited_kernel_config()?,
    )?;
    write(
        &out.join("data.json"),
        &serde_json::to_string(fixture.data())?,
    )?;
    let mut cases = Vec::new();
    for case in fixture.cases() {
        let path = out.join(format!("input/{}.json", case.name));
        write(&path, &case.input.to_json_str()?)?;
        cases.push(json!({"name": case.name, "route": case.route, "input": path}));
    }
    println!("{}", serde_json::Value::Array(cases));
    Ok(())
}

fn time(dir: &Path, input: &Path, rule: &str, n: u32) -> anyhow::Result<()> {
    let mut modules = Vec::new();
    collect(dir, dir, &mut modules)?;
    modules.sort();
    ensure!(
        !modules.is_empty(),
        "no .rego module under {}",
        dir.display()
    );
    let data_path = dir.join("data.json");
    let data: serde_json::Value = serde_json::from_str(&read(&data_path)?)
        .with_context(|| format!("parsing {}", data_path.display()))?;
    let input_text = read(input)?;
    let parsed = Value::from_json_str(&input_text)
        .with_context(|| format!("parsing {}", input.display()))?;

    let natives = NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default())));
    let set = PolicySet::try_from_modules(&modules, data, natives, Default::default())?;
    let chain = set.compile_entrypoint(rule, true)?;
    ensure!(
        chain.is_vm(),
        "`{rule}` runs on the interpreter: {:?}",
        chain.fallback_reason()
    );
    let first = evaluate(&set, &chain, parsed.clone(), TIMEOUT)?;
    ensure!(
        first.path == EnginePath::Vm,
        "`{rule}` evaluated on {:?}",
        first.path
    );
    let decision: serde_json::Value = serde_json::from_str(&first.decision.to_json_str()?)?;

    let by_value = measure(n, || {
        black_box(evaluate(&set, &chain, parsed.clone(), TIMEOUT)?);
        Ok(())
    })?;
    let by_json = measure(n, || eval_json(&set, &chain, &input_text))?;
    let report = json!({
        "rule": rule,
        "modules": modules.len(),
        "decision": decision,
        "n": n,
        "value": by_value,
        "json": by_json,
    });
    println!("{report}");
    Ok(())
}

/// One call as the OPA bridge makes it: JSON text in, JSON text out.
fn eval_json(set: &PolicySet, chain: &CompiledChain, input: &str) -> anyhow::Result<()> {
    let input = Value::from_json_str(black_box(input))?;
    let evaluation = evaluate(set, chain, input, TIMEOUT)?;
    black_box(evaluation.decision.to_json_str()?);
    Ok(())
}

/// Runs `f` N/10 times untimed, then N times timed: wall and CPU seconds.
fn measure(n: u32, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<serde_json::Value> {
    for _ in 0..n.div_ceil(10) {
        f()?;
    }
    let cpu_before = thread_cpu_ns();
    let wall = Instant::now();
    for _ in 0..n {
        f()?;
    }
    let wall_s = wall.elapsed().as_secs_f64();
    let cpu_s = match (cpu_before, thread_cpu_ns()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e9),
        _ => None,
    };
    Ok(json!({"wall_s": wall_s, "cpu_s": cpu_s}))
}

/// CPU time of the calling thread in nanoseconds, where Linux reports it.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Every `.rego` file under `dir`, named by its path relative to `root`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path: PathBuf = entry?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rego") {
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            out.push((name, read(&path)?));
        }
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
