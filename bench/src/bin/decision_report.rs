//! Times N decisions per spec route and operation and prints µs per
//! decision with the interpreter/VM ratio, without criterion's long run.
//!
//! `cargo run --release -p policy-bench --bin decision_report -- -n 20000`
//!
//! Each (route, operation) is warmed up, then run N times in `--batches`
//! equal batches; the table shows the median of the batch means, which is
//! robust to a busy machine. Exits non-zero when an operation fails.

use std::time::Instant;

use anyhow::{bail, ensure};
use clap::Parser;
use policy_bench::{API_KEYS, Case, Fixture, Op, Row, TARGET_US, Table};

/// The allocator: fewer instructions per allocation than the system one on
/// the decision path, which allocates and frees many small values.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "µs per spec-route decision: VM vs interpreter, with the cost split")]
struct Args {
    /// Decisions per route and operation.
    #[arg(short = 'n', long, default_value_t = 20_000)]
    iterations: u32,
    /// Untimed runs before timing each route and operation.
    #[arg(long, default_value_t = 2_000)]
    warmup: u32,
    /// Batches the timed runs are split into (the table shows the median batch).
    #[arg(long, default_value_t = 10)]
    batches: u32,
    /// Only these cases (`users`, `admin`); repeatable.
    #[arg(long = "case")]
    cases: Vec<String>,
    /// Only these operations (`input_build`, `eval_vm`, `eval_interpreter`,
    /// `decision_vm_total`, `response_build`); repeatable.
    #[arg(long = "op")]
    ops: Vec<String>,
}

/// Timing of one (case, operation).
struct Timing {
    median_ns: f64,
    min_ns: f64,
    max_ns: f64,
    mean_ns: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.batches >= 1, "--batches must be at least 1");
    ensure!(
        args.iterations >= args.batches,
        "--iterations must be at least --batches"
    );
    let mut ops = Vec::new();
    for name in &args.ops {
        match Op::try_from_name(name) {
            Some(op) => ops.push(op),
            None => bail!("unknown operation `{name}`"),
        }
    }
    if ops.is_empty() {
        ops = Op::ALL.to_vec();
    }

    let setup = Instant::now();
    let fixture = Fixture::try_new()?;
    eprintln!(
        "setup: agent with {API_KEYS} API keys and an RSA key, 2 chains checked, in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    println!(
        "N = {} decisions per route and operation ({} batches, {} warm-up), one thread\n",
        args.iterations, args.batches, args.warmup
    );
    let mut table = Table::default();
    let mut details = String::new();
    for case in fixture.cases() {
        if !args.cases.is_empty() && !args.cases.iter().any(|c| c == case.name) {
            continue;
        }
        let mut row = Row {
            route: case.route.clone(),
            ..Row::default()
        };
        for &op in &ops {
            let t = time(&fixture, case, op, &args)?;
            details.push_str(&format!(
                "  {:<14} {:<18} median {:>8.2} µs   mean {:>8.2}   min {:>8.2}   max {:>8.2}\n",
                case.route,
                op.name(),
                t.median_ns / 1000.0,
                t.mean_ns / 1000.0,
                t.min_ns / 1000.0,
                t.max_ns / 1000.0
            ));
            row.ns.insert(op, t.median_ns);
        }
        table.rows.push(row);
    }
    println!("{}", table.render());
    println!("batch means (µs per decision):\n{details}");
    println!(
        "DESIGN §10 target: ≤ {TARGET_US} µs per spec-route decision on the VM path, input build included \
         (decision_vm_total)."
    );
    Ok(())
}

fn time(fixture: &Fixture, case: &Case, op: Op, args: &Args) -> anyhow::Result<Timing> {
    for _ in 0..args.warmup {
        if !fixture.run(case, op) {
            bail!("{} {} failed during warm-up", case.route, op.name());
        }
    }
    let per_batch = args.iterations / args.batches;
    let mut means = Vec::with_capacity(args.batches as usize);
    let mut failures = 0u32;
    let mut total_ns = 0.0;
    for _ in 0..args.batches {
        let started = Instant::now();
        for _ in 0..per_batch {
            failures += u32::from(!fixture.run(case, op));
        }
        let ns = started.elapsed().as_nanos() as f64;
        total_ns += ns;
        means.push(ns / f64::from(per_batch));
    }
    ensure!(
        failures == 0,
        "{} {}: {failures} runs failed",
        case.route,
        op.name()
    );
    means.sort_by(f64::total_cmp);
    let median_ns = if means.len() % 2 == 1 {
        means[means.len() / 2]
    } else {
        (means[means.len() / 2 - 1] + means[means.len() / 2]) / 2.0
    };
    Ok(Timing {
        median_ns,
        min_ns: means.first().copied().unwrap_or(0.0),
        max_ns: means.last().copied().unwrap_or(0.0),
        mean_ns: total_ns / f64::from(per_batch * args.batches),
    })
}
