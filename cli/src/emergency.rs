//! `policyctl emergency`: break-glass mode of an agent (DESIGN §7). While
//! the journal is unreachable an operator holding the emergency token may
//! let every chain run for a bounded time; each change and every decision
//! under it is a record in the decision journal (mode `emergency`).
//!
//! The token comes from `--token-file` or `POLICY_ENGINE_EMERGENCY_TOKEN`,
//! never from the command line (it would stay in shell history and `ps`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use policy_proto::agent::{EmergencyRequest, EmergencyStatus, HealthRequest};

use crate::up::demo::connect;

/// Where `policyctl up` runs the agent's socket.
const UP_SOCKET: &str = "deploy/local/run/default.sock";
const TOKEN_ENV: &str = "POLICY_ENGINE_EMERGENCY_TOKEN";

#[derive(Debug, Args)]
pub struct EmergencyArgs {
    #[command(subcommand)]
    command: EmergencyCommand,
}

#[derive(Debug, Subcommand)]
enum EmergencyCommand {
    /// Turn emergency mode on for a bounded time
    Enable(EnableArgs),
    /// Turn emergency mode off
    Disable(ChangeArgs),
    /// Show the agent's mode
    Status(SocketArgs),
}

#[derive(Debug, Args)]
struct SocketArgs {
    /// The agent's Unix socket.
    #[arg(long, default_value = UP_SOCKET)]
    socket: PathBuf,
}

#[derive(Debug, Args)]
struct ChangeArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// Who is acting (recorded).
    #[arg(long)]
    operator: String,
    /// File holding the emergency token (else $POLICY_ENGINE_EMERGENCY_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct EnableArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// Why (recorded).
    #[arg(long)]
    reason: String,
    /// How long: `90s`, `15m`, `2h` (at most the agent's max_ttl_s).
    #[arg(long, value_parser = parse_ttl)]
    ttl: Duration,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}`: expected a number followed by s, m or h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("`{s}`: the unit must be s, m or h")),
    };
    if secs == 0 {
        return Err("the ttl must be at least 1s".into());
    }
    Ok(Duration::from_secs(secs))
}

fn token(args: &ChangeArgs) -> anyhow::Result<String> {
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the emergency token from {}", path.display()))?,
        None => std::env::var(TOKEN_ENV)
            .with_context(|| format!("no --token-file and no ${TOKEN_ENV}"))?,
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("the emergency token is empty");
    }
    Ok(token)
}

pub fn run(args: &EmergencyArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match &args.command {
            EmergencyCommand::Enable(a) => {
                change(&a.change, true, &a.reason, a.ttl.as_secs()).await
            }
            EmergencyCommand::Disable(a) => change(a, false, "", 0).await,
            EmergencyCommand::Status(a) => status(a).await,
        }
    })
}

async fn change(
    args: &ChangeArgs,
    enable: bool,
    reason: &str,
    ttl: u64,
) -> anyhow::Result<ExitCode> {
    let token = token(args)?;
    let mut client = connect(&args.socket.socket).await.with_context(|| {
        format!(
            "connecting to the agent at {}",
            args.socket.socket.display()
        )
    })?;
    let answer = client
        .set_emergency(EmergencyRequest {
            enable,
            reason: reason.to_string(),
            ttl_seconds: ttl,
            operator: args.operator.clone(),
            token,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!("{}", describe(&answer));
    Ok(ExitCode::SUCCESS)
}

async fn status(args: &SocketArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.socket)
        .await
        .with_context(|| format!("connecting to the agent at {}", args.socket.display()))?;
    let health = client
        .health(HealthRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    match health.journal.and_then(|j| j.degraded) {
        None => println!("mode: normal (no journal server: degraded mode does not apply)"),
        Some(d) => {
            println!("mode: {} (for {} s)", d.mode, d.in_mode_ms / 1000);
            if let Some(e) = &d.emergency {
                println!("{}", describe(e));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(e: &EmergencyStatus) -> String {
    if e.active {
        format!(
            "emergency mode on until {} (by {}: {})",
            e.until, e.operator, e.reason
        )
    } else {
        "emergency mode off".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "0s", "m", "5d", "-1s", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
