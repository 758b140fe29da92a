//! Evaluates one rule of a module folder (such as `policyctl compile`'s
//! output) on the bytecode VM in a loop, for profiling a rule on its own:
//!
//! ```text
//! cargo run --release -p policy-bench --example vmprobe -- --dump-input users /tmp/in.json
//! # (also writes /tmp/in.json.data.json: the data that input needs)
//! valgrind --tool=callgrind --toggle-collect='vmprobe::timed*' \
//!   target/release/examples/vmprobe DIR /tmp/in.json data.routes.api_v1_users.request.decision 200
//! ```

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use policy_agent::builtins::{NativeBuiltins, RateLimiter};
use policy_agent::{PolicySet, evaluate};
use policy_bench::Fixture;
use regorus::Value;

/// The allocator: fewer instructions per allocation than the system one on
/// the decision path, which allocates and frees many small values.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--dump-input") {
        let [_, case, out] = args.as_slice() else {
            bail!("usage: vmprobe --dump-input CASE OUT");
        };
        let fixture = Fixture::try_new()?;
        let c = fixture
            .cases()
            .iter()
            .find(|c| c.name == case)
            .with_context(|| format!("no case `{case}`"))?;
        std::fs::write(out, c.input.to_json_str()?)?;
        // The data the input goes with (the fixture's API keys and the key
        // its token is signed with), for a module folder's `data.json`.
        std::fs::write(
            format!("{out}.data.json"),
            serde_json::to_string(fixture.data())?,
        )?;
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("--listing") {
        let [_, dir, rule] = args.as_slice() else {
            bail!("usage: vmprobe --listing DIR RULE");
        };
        return listing(Path::new(dir), rule);
    }
    let [dir, input, rule, n] = args.as_slice() else {
        bail!("usage: vmprobe DIR INPUT RULE N");
    };
    let n: u32 = n.parse()?;
    let mut modules = Vec::new();
    collect(Path::new(dir), &mut modules)?;
    let data: serde_json::Value = match std::fs::read(Path::new(dir).join("data.json")) {
        Ok(b) => serde_json::from_slice(&b)?,
        Err(_) => serde_json::json!({}),
    };
    let input = Value::from_json_str(&std::fs::read_to_string(input)?)?;
    let natives = NativeBuiltins::new(Arc::new(RateLimiter::new(Default::default())));
    let set = PolicySet::try_from_modules(&modules, data, natives, Default::default())?;
    let chain = set.compile_entrypoint(rule, true)?;
    if !chain.is_vm() {
        eprintln!(
            "not on the VM (interpreter fallback): {}",
            chain.fallback_reason().unwrap_or("?")
        );
    }
    let timeout = Duration::from_secs(1);
    let first = evaluate(&set, &chain, input.clone(), timeout)?;
    eprintln!("{}", first.decision.to_json_str()?);
    for _ in 0..n / 10 {
        black_box(evaluate(&set, &chain, input.clone(), timeout)?);
    }
    let t = Instant::now();
    timed(&set, &chain, &input, n, timeout)?;
    eprintln!(
        "{:.2} µs per evaluation",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
    Ok(())
}

#[inline(never)]
fn timed(
    set: &PolicySet,
    chain: &policy_agent::CompiledChain,
    input: &Value,
    n: u32,
    timeout: Duration,
) -> anyhow::Result<()> {
    for _ in 0..n {
        black_box(evaluate(set, chain, input.clone(), timeout)?);
    }
    Ok(())
}

/// Prints the bytecode program compiled for `rule`.
fn listing(dir: &Path, rule: &str) -> anyhow::Result<()> {
    let mut modules = Vec::new();
    collect(dir, &mut modules)?;
    let mut engine = policy_agent::new_engine();
    for (path, source) in modules {
        engine.add_policy(path, source)?;
    }
    let host: Vec<(&str, usize)> = NativeBuiltins::signatures().collect();
    let policy = engine.compile_with_entrypoint(&rule.into())?;
    let program =
        regorus::languages::rego::compiler::Compiler::compile_from_policy_with_host_await(
            &policy,
            &[rule],
            &host,
        )?;
    let config = regorus::rvm::program::AssemblyListingConfig::default();
    println!(
        "{}",
        regorus::rvm::program::generate_assembly_listing(&program, &config)
    );
    Ok(())
}

fn collect(dir: &Path, out: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rego") {
            out.push((path.display().to_string(), std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}
