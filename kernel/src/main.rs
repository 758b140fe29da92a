//! `policy-kernel --config FILE [--log-format json|pretty]`
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM or Ctrl-C), 2 when the
//! configuration is invalid (nothing was bound), 1 for any other failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use policy_kernel::{Kernel, KernelConfig, KernelError, Options};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

/// The Envoy ext_proc server of policy-engine.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// kernel-config.yaml (reloaded on SIGHUP and when it changes).
    #[arg(long, env = "POLICY_KERNEL_CONFIG")]
    config: PathBuf,
    /// Log format on stderr; the level is `observability.log_level`
    /// unless RUST_LOG is set.
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
    /// How often to check the config file for changes, in milliseconds
    /// (0: only SIGHUP reloads).
    #[arg(long, default_value_t = 1000)]
    watch_interval_ms: u64,
}

fn init_logs(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Pretty => builder.init(),
    }
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

fn main() -> ExitCode {
    let args = Args::parse();
    // Validate before anything else: a bad config exits 2 with file, field and reason.
    let level = match KernelConfig::load(&args.config) {
        Ok(c) => c.observability.log_level,
        Err(e) => {
            eprintln!("policy-kernel: invalid configuration: {e}");
            return ExitCode::from(KernelError::from(e).exit_code());
        }
    };
    init_logs(args.log_format, &level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("policy-kernel: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let options = Options {
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
        kernel.serve(shutdown_signal()).await
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
