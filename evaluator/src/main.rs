//! `policy-agent --config agent-config.yaml`
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when the
//! configuration, data or policies are invalid or the socket cannot be bound.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use policy_agent::logging::LogFormat;
use policy_agent::{Agent, AgentConfig};

/// The allocator: fewer instructions per allocation than the system one on
/// the decision path, which allocates and frees many small values.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Evaluates policy chains for policy-kernel over a Unix socket.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Path of agent-config.yaml.
    #[arg(long, short, env = "POLICY_AGENT_CONFIG")]
    config: PathBuf,
    /// Listen on this socket instead of the config's `socket_path`.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Log output format: `json` (one object per line: timestamp, level,
    /// component, request_id, message, metadata) or `pretty`.
    #[arg(long, default_value = "pretty")]
    log_format: LogFormat,
    /// Keep this process's CPU awake for this many microseconds after its
    /// runtime runs out of work, with a thread of the idle scheduling class
    /// (0: off). Default: 500 when the process is pinned to one CPU (its
    /// affinity mask), off otherwise and for the embedded kernel.
    #[arg(long, env = "POLICY_IDLE_POLL_US", value_name = "MICROSECONDS")]
    idle_poll_us: Option<u64>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let idle_poll = policy_agent::idle_poll_budget(args.idle_poll_us, policy_agent::OneCpu::Batch);
    match policy_agent::runtime(policy_agent::OneCpu::Batch, idle_poll) {
        Ok((runtime, polling)) => runtime.block_on(agent_main(args, polling)),
        Err(e) => {
            eprintln!("policy-agent: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn agent_main(args: Args, polling: policy_agent::IdlePolling) -> std::process::ExitCode {
    let config = match AgentConfig::load(&args.config) {
        Ok(mut c) => {
            if let Some(socket) = args.socket {
                c.socket_path = socket;
            }
            c
        }
        Err(e) => {
            eprintln!("policy-agent: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    policy_agent::logging::init("agent", args.log_format, &config.log_level);
    polling.log();
    let traces = match policy_agent::traces::init("policy-agent", &config.tracing) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("policy-agent: traces: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = run(config).await;
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "policy-agent stopped");
            eprintln!("policy-agent: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let socket = config.socket_path.clone();
    let agent = Arc::new(Agent::try_new(config)?);
    policy_agent::start_background(&agent);
    let listener = policy_agent::bind_socket(&socket)?;
    let stats = agent.policies().registry().iter().count();
    tracing::info!(socket = %socket.display(), policies = stats, revision = %agent.policies().revision(), "policy-agent listening");
    policy_agent::serve(agent.clone(), listener, shutdown_signal()).await?;
    let _ = std::fs::remove_file(&socket);
    policy_agent::stop_background(&agent).await;
    tracing::info!("policy-agent stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
