//! `policy-journal --config FILE`: the central decision journal server.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM, ctrl-c), 1 on any error
//! (a bad configuration is reported before anything binds), 2 on bad flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use policy_journal::JournalConfig;

#[derive(Debug, Parser)]
#[command(
    name = "policy-journal",
    version,
    about = "The central decision journal"
)]
struct Args {
    /// The configuration file (YAML).
    #[arg(long, env = "POLICY_JOURNAL_CONFIG")]
    config: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.log_json);
    let config = match JournalConfig::from_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("policy-journal: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("policy-journal: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("policy-journal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: JournalConfig) -> anyhow::Result<()> {
    // Handlers are installed before binding, so a SIGTERM right after the
    // `listening on` line is a clean shutdown, not the default kill.
    let shutdown = shutdown_signal();
    policy_journal::serve(config, shutdown, |addr| {
        println!("listening on {addr}");
    })
    .await?;
    Ok(())
}

/// Completes on SIGTERM or SIGINT (ctrl-c). Installs the handlers when
/// called, not when first polled.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (term, int) => {
                if let Err(e) = term.and(int) {
                    tracing::warn!(error = %e, "cannot install signal handlers; ctrl-c only");
                }
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
