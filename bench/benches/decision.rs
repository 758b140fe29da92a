//! One request-phase decision per spec route, split into its costs: input
//! build, VM evaluation, interpreter evaluation (the baseline), the whole
//! `Agent::execute`, and response conversion. After criterion's own report,
//! prints a table of µs per decision with the interpreter/VM ratios from this
//! run's estimates.
//!
//! `cargo bench -p policy-bench --bench decision -- --measurement-time 3`

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use criterion::Criterion;
use policy_bench::{Fixture, Op, Row, Table};

/// The agent's allocator, so the figures are those of the shipped binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let fixture = Fixture::try_new()?;
    let output = criterion_home();
    let started = SystemTime::now();
    let mut c = Criterion::default()
        .output_directory(&output)
        .configure_from_args();
    for case in fixture.cases() {
        let mut group = c.benchmark_group(group_name(case.name));
        for op in Op::ALL {
            group.bench_function(op.name(), |b| b.iter(|| fixture.run(case, op)));
        }
        group.finish();
    }
    c.final_summary();

    let mut table = Table::default();
    for case in fixture.cases() {
        let mut row = Row {
            route: case.route.clone(),
            ..Row::default()
        };
        for op in Op::ALL {
            let estimates = output
                .join(group_name(case.name))
                .join(op.name())
                .join("new")
                .join("estimates.json");
            if let Some(ns) = estimate_ns(&estimates, started) {
                row.ns.insert(op, ns);
            }
        }
        table.rows.push(row);
    }
    if table.rows.iter().any(|r| !r.ns.is_empty()) {
        println!("\nµs per decision (criterion estimates of this run):\n");
        println!("{}", table.render());
    }
    Ok(())
}

fn group_name(case: &str) -> String {
    format!("decision_{case}")
}

/// Where criterion writes its results: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else the workspace's `target/criterion`.
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// Criterion's headline estimate (ns) in `path` — the slope of a linear
/// sampling, else the mean — when criterion wrote it during this run (a
/// filtered run leaves older files behind).
fn estimate_ns(path: &Path, since: SystemTime) -> Option<f64> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.pointer("/slope/point_estimate")
        .and_then(serde_json::Value::as_f64)
        .or_else(|| json.pointer("/mean/point_estimate")?.as_f64())
}
