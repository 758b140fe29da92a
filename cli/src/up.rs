//! `policyctl up`: starts the local stack from `deploy/local/` and shows it
//! deciding, then keeps it running until Ctrl-C.
//!
//! Today the stack is `policy-agent` (the policy engine, on a Unix socket);
//! the demo sends the `/api/v1/users` request chain of the local kernel
//! config with and without the demo API key, as the kernel would.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use policy_kernel::KernelConfig;
use policy_proto::agent::policy_agent_client::PolicyAgentClient;
use policy_proto::agent::{
    HealthRequest, Policy, PolicyPhase, PolicyRequest, RequestContext, StatusCode,
};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory with agent-config.yaml, kernel-config.yaml and data/.
    #[arg(long, default_value = "deploy/local")]
    config_dir: PathBuf,
    /// Where sockets go (default: a new temporary directory).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Start, show the demo decisions, then stop (for scripts and tests).
    #[arg(long)]
    demo_only: bool,
}

/// The policy-agent binary: next to this executable, else on PATH.
fn agent_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating policyctl")?;
    if let Some(sibling) = exe.parent().map(|d| d.join("policy-agent"))
        && sibling.is_file()
    {
        return Ok(sibling);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("policy-agent"))
                .find(|p| p.is_file())
        })
        .context(
            "policy-agent not found next to policyctl or on PATH (build it: cargo build --bins)",
        )
}

/// Connects to the agent's Unix socket.
pub async fn connect(socket: &Path) -> anyhow::Result<PolicyAgentClient<Channel>> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await?;
    Ok(PolicyAgentClient::new(channel))
}

pub fn run(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(up(args))
}

async fn up(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let agent_config = args.config_dir.join("agent-config.yaml");
    let kernel_config = args.config_dir.join("kernel-config.yaml");
    if !agent_config.is_file() {
        bail!(
            "{} not found: run policyctl up from the repository root or pass --config-dir",
            agent_config.display()
        );
    }
    let kernel = KernelConfig::load(&kernel_config)?;
    let temp;
    let run_dir = match &args.run_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("policy-engine-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let socket = run_dir.join("default.sock");
    let mut agent = tokio::process::Command::new(agent_binary()?)
        .arg("--config")
        .arg(&agent_config)
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting policy-agent")?;

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut client = loop {
        if let Some(status) = agent.try_wait()? {
            bail!("policy-agent exited during start ({status})");
        }
        if let Ok(mut c) = connect(&socket).await
            && c.health(HealthRequest {}).await.is_ok()
        {
            break c;
        }
        if Instant::now() > deadline {
            bail!(
                "policy-agent did not answer on {} within 15 s",
                socket.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("policy-agent ready on unix:{}", socket.display());
    demo(&mut client, &kernel).await?;

    if args.demo_only {
        stop(&mut agent).await;
        return Ok(ExitCode::SUCCESS);
    }
    println!("Press Ctrl-C to stop.");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        status = agent.wait() => bail!("policy-agent exited ({})", status?),
    }
    stop(&mut agent).await;
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn stop(agent: &mut tokio::process::Child) {
    if let Some(pid) = agent.id() {
        // SIGTERM lets the agent remove its socket; kill if it does not stop.
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
        if tokio::time::timeout(Duration::from_secs(5), agent.wait())
            .await
            .is_err()
        {
            let _ = agent.kill().await;
        }
    }
}

/// Sends the `/api/v1/users` request chain without and with the demo key.
async fn demo(
    client: &mut PolicyAgentClient<Channel>,
    kernel: &KernelConfig,
) -> anyhow::Result<()> {
    let route = "/api/v1/users";
    let Some(entry) = kernel.route_policies.iter().find(|r| r.route_name == route) else {
        return Ok(());
    };
    let policies: Vec<Policy> = entry
        .chains
        .request_policy_chain
        .iter()
        .map(|e| Policy {
            name: e.policy.clone(),
            metadata: e.metadata_strings().into_iter().collect(),
            on_failure: e.on_failure.clone(),
        })
        .collect();
    for (label, key) in [
        ("without a key", None),
        ("with X-API-Key: demo-key-alice", Some("demo-key-alice")),
    ] {
        let mut headers = std::collections::HashMap::new();
        if let Some(k) = key {
            headers.insert("x-api-key".to_string(), k.to_string());
        }
        let response = client
            .execute_policies(PolicyRequest {
                request_id: format!("demo-{}", label.len()),
                policies: policies.clone(),
                context: Some(RequestContext {
                    headers,
                    method: "GET".into(),
                    path: route.into(),
                    scheme: "http".into(),
                    authority: "localhost".into(),
                    client_ip: "127.0.0.1".into(),
                    ..Default::default()
                }),
                phase: PolicyPhase::Request as i32,
                route: route.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let code = response
            .status
            .as_ref()
            .and_then(|s| StatusCode::try_from(s.code).ok())
            .map(|c| c.as_str_name())
            .unwrap_or("UNKNOWN");
        let detail = response
            .instructions
            .iter()
            .filter_map(|i| match &i.payload {
                Some(policy_proto::agent::instruction::Payload::ImmediateResponse(r)) => {
                    Some(format!("HTTP {}", r.status_code))
                }
                Some(policy_proto::agent::instruction::Payload::Header(h)) => {
                    Some(format!("{}: {}", h.key, h.value))
                }
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "GET {route} {label}: {code} ({detail}) {}",
            response.message
        );
    }
    Ok(())
}
