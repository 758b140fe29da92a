//! `policy-kernel --config FILE [--log-format json|pretty]`
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM or Ctrl-C), 2 when the
//! configuration is invalid (nothing was bound), 1 for any other failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use policy_agent::logging::LogFormat;
use policy_kernel::{Kernel, KernelConfig, KernelError, Options};

/// The allocator: fewer instructions per allocation than the system one on
/// the decision path, which allocates and frees many small values.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Envoy ext_proc server of policy-engine.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// kernel-config.yaml (reloaded on SIGHUP and when it changes).
    #[arg(long, env = "POLICY_KERNEL_CONFIG")]
    config: PathBuf,
    /// Log format on stderr; the level is `observability.log_level`
    /// unless RUST_LOG is set.
    #[arg(long, default_value = "json")]
    log_format: LogFormat,
    /// How often to check the config file for changes, in milliseconds
    /// (0: only SIGHUP reloads).
    #[arg(long, default_value_t = 1000)]
    watch_interval_ms: u64,
    /// Run the agent core in this process, with no Unix socket hop: the
    /// configured agent of the same name is served by it. Its configuration
    /// is the kernel config's `embedded_agent` section, or AGENT_CONFIG (an
    /// agent-config.yaml) when given.
    #[arg(long, value_name = "AGENT_CONFIG", num_args = 0..=1)]
    #[allow(clippy::option_option)]
    embedded_agent: Option<Option<PathBuf>>,
    /// Keep this process's CPU awake for this many microseconds after its
    /// runtime runs out of work, with a thread of the idle scheduling class
    /// (0: off). Default: 500 when the process is pinned to one CPU (its
    /// affinity mask), off otherwise and for the embedded kernel.
    #[arg(long, env = "POLICY_IDLE_POLL_US", value_name = "MICROSECONDS")]
    idle_poll_us: Option<u64>,
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The embedded agent's configuration, when `--embedded-agent` is given.
fn embedded_agent_config(
    args: &Args,
    config: &KernelConfig,
) -> Result<Option<policy_agent::AgentConfig>, String> {
    match &args.embedded_agent {
        None => Ok(None),
        Some(None) => match config.embedded_agent_config(&args.config) {
            Ok(Some(c)) => Ok(Some(c)),
            Ok(None) => Err(format!(
                "{}: --embedded-agent needs a `policy_kernel.embedded_agent` section (or --embedded-agent AGENT_CONFIG)",
                args.config.display()
            )),
            Err(e) => Err(e.to_string()),
        },
        Some(Some(path)) => policy_agent::AgentConfig::load(path)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Validate before anything else: a bad config exits 2 with file, field and reason.
    let config = match KernelConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("policy-kernel: invalid configuration: {e}");
            return ExitCode::from(KernelError::from(e).exit_code());
        }
    };
    let level = config.observability.log_level.clone();
    let embedded = match embedded_agent_config(&args, &config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("policy-kernel: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    policy_agent::logging::init("kernel", args.log_format, &level);
    // On one CPU the kernel in front of an agent batches (its calls and
    // answers cross the socket together); with the agent core embedded it
    // writes each answer before it starts the next evaluation.
    let one_cpu = if embedded.is_some() {
        policy_agent::OneCpu::AnswerFirst
    } else {
        policy_agent::OneCpu::Batch
    };
    let idle_poll = policy_agent::idle_poll_budget(args.idle_poll_us, one_cpu);
    let runtime = match policy_agent::runtime(one_cpu, idle_poll) {
        Ok((r, polling)) => {
            polling.log();
            r
        }
        Err(e) => {
            eprintln!("policy-kernel: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Validated with the config; the exporter needs the runtime.
    let trace_settings = config.observability.tracing.settings().unwrap_or_default();
    let traces = match runtime
        .block_on(async { policy_agent::traces::init("policy-kernel", &trace_settings) })
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("policy-kernel: traces: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(c) = &embedded
        && c.tracing.enabled
        && !trace_settings.enabled
    {
        tracing::warn!(
            "the embedded agent's observability.tracing is not used: the kernel's observability.tracing decides (it is off)"
        );
    }
    let agent = match embedded {
        None => None,
        Some(c) => match runtime.block_on(async { policy_agent::Agent::try_new(c) }) {
            Ok(a) => Some(Arc::new(a)),
            Err(e) => {
                eprintln!("policy-kernel: embedded agent: {e}");
                return ExitCode::from(match e {
                    policy_agent::SetupError::Config { .. }
                    | policy_agent::SetupError::ConfigField { .. } => 2,
                    _ => 1,
                });
            }
        },
    };
    let result = runtime.block_on(async {
        if let Some(agent) = &agent {
            policy_agent::start_background(agent);
            tracing::info!(
                agent = %agent.config().name,
                policies = agent.policies().registry().iter().count(),
                revision = %agent.policies().revision(),
                "agent core embedded"
            );
        }
        let options = Options {
            embedded_agent: agent.clone(),
            watch_interval: (args.watch_interval_ms > 0)
                .then(|| Duration::from_millis(args.watch_interval_ms)),
            ..Options::default()
        };
        let kernel = Kernel::bind_with(&args.config, options).await?;
        tracing::info!(
            ext_proc = %kernel.ext_proc_addr().map(|a| a.to_string()).unwrap_or_default(),
            metrics = %kernel.metrics_addr().map(|a| a.to_string()).unwrap_or_default(),
            "listening"
        );
        let served = kernel.serve(shutdown_signal()).await;
        if let Some(agent) = &agent {
            policy_agent::stop_background(agent).await;
        }
        if let Some(traces) = traces {
            traces.shutdown().await;
        }
        served
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "policy-kernel stopped");
            eprintln!("policy-kernel: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
