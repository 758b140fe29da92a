//! What recording a decision costs: the `/api/v1/users` decision
//! (`Agent::execute`) without a journal, with the local log (record written,
//! fsync by group commit, not awaited) and on an `audit: strict` route
//! (answer after the record's group is synced), on one thread and with
//! several threads deciding at once (group commit shares each fsync).
//!
//! `cargo run --release -p policy-bench --bin journal_cost -- -n 5000`
//!
//! Figures are µs per decision and the ratio to the decision without a
//! journal measured in the same run. The local log lives in a temporary
//! directory on the machine's disk; no journal server is involved (the
//! streaming client never blocks a decision).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use journal_client::LocalLogConfig;
use policy_agent::{JournalSettings, RecordSettings};
use policy_bench::Fixture;

/// The allocator: fewer instructions per allocation than the system one on
/// the decision path, which allocates and frees many small values.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "µs per decision with and without the decision journal's local log")]
struct Args {
    /// Decisions per measurement (per thread).
    #[arg(short = 'n', long, default_value_t = 5_000)]
    iterations: u32,
    /// Threads deciding at once in the concurrent rows.
    #[arg(long, default_value_t = 8)]
    threads: u32,
    /// Group-commit interval of the local log, milliseconds.
    #[arg(long, default_value_t = 2)]
    group_commit_ms: u64,
}

fn journal(dir: &Path, group_commit: Duration) -> JournalSettings {
    let mut local_log = LocalLogConfig::new(dir, "bench-agent");
    local_log.group_commit_interval = group_commit;
    local_log.max_bytes = 4 << 30;
    JournalSettings {
        records: RecordSettings {
            agent_id: "bench-agent".into(),
            environment: "bench".into(),
            masked_headers: Vec::new(),
        },
        local_log,
        server: None,
        strict_sync_timeout: Duration::from_secs(10),
        degraded: None,
        data_sync_interval: Duration::from_secs(2),
    }
}

/// µs per decision over `n` decisions on each of `threads` threads.
fn time(fixture: &Fixture, strict: bool, n: u32, threads: u32) -> anyhow::Result<f64> {
    let case = fixture
        .cases()
        .iter()
        .find(|c| c.name == "users")
        .context("no users case")?;
    let mut request = case.request.clone();
    request.audit_strict = strict;
    let agent = fixture.agent();
    let run = |count: u32| -> anyhow::Result<()> {
        for _ in 0..count {
            let exec = agent.execute(&request);
            ensure!(exec.error.is_none(), "decision failed: {:?}", exec.error);
            if let (true, Some(seq)) = (exec.sync_required, exec.record_seq) {
                agent.wait_synced(seq)?;
            }
        }
        Ok(())
    };
    run(n / 10)?;
    let started = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..threads).map(|_| s.spawn(|| run(n))).collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        }
        Ok(())
    })?;
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(n * threads))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let group = Duration::from_millis(args.group_commit_ms);
    let plain = Fixture::try_new()?;
    let recorded = Fixture::try_with_config(|c| c.journal = Some(journal(dir.path(), group)))?;
    println!(
        "N = {} decisions of /api/v1/users per row (per thread in the {}-thread rows); group commit {} ms; local log in {}\n",
        args.iterations,
        args.threads,
        args.group_commit_ms,
        dir.path().display()
    );
    println!("| threads | journal | µs per decision | vs no journal |");
    println!("|---:|---|---:|---:|");
    for threads in [1, args.threads] {
        let base = time(&plain, false, args.iterations, threads)?;
        let rows = [
            ("off", base),
            (
                "local log",
                time(&recorded, false, args.iterations, threads)?,
            ),
            (
                "local log, audit: strict",
                time(&recorded, true, args.iterations, threads)?,
            ),
        ];
        for (what, us) in rows {
            println!("| {threads} | {what} | {us:.2} | {:.2}× |", us / base);
        }
    }
    if let Some(j) = recorded.agent().journal() {
        let s = j.stats();
        println!(
            "\nlocal log: last seq {}, synced seq {}, {} records / {} bytes pending",
            s.last_seq, s.synced_seq, s.pending_records, s.pending_bytes
        );
    }
    Ok(())
}
