//! A real `policy-agent` process on a temporary Unix socket.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use policy_proto::agent::HealthRequest;
use policy_proto::agent::health_response::ServingStatus;
use policy_proto::agent::policy_agent_client::PolicyAgentClient;
use tonic::transport::{Channel, Endpoint};

/// Environment variable naming a prebuilt `policy-agent` to test instead of
/// building the workspace's.
pub const AGENT_BIN_ENV: &str = "POLICY_AGENT_BIN";

/// How long an agent may take to answer `Health` after it was spawned.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// The `policy-agent` binary of this workspace, built (once per test
/// process) with the profile the tests were built with, or the binary named
/// by `POLICY_AGENT_BIN`.
pub fn agent_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| build_agent().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_agent() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(AGENT_BIN_ENV) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("{AGENT_BIN_ENV}={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    crate::stack::process::workspace_binary("policy-agent", "policy-agent")
}

/// What an [`AgentProcess`] is configured with (written to its
/// `agent-config.yaml` and data directory).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub name: String,
    pub fail_on_unknown: bool,
    pub max_body_size_bytes: usize,
    pub max_state_size_bytes: usize,
    pub request_timeout_ms: u64,
    /// `observability.log_level`.
    pub log_level: String,
    /// The whole `data` document (for example `{"policy_data": {...}}`).
    pub data: serde_json::Value,
    /// Run the agent on one CPU (`taskset -c 0`), as a sidecar limited to
    /// one CPU runs: a single-threaded runtime that answers calls in place.
    pub one_cpu: bool,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            name: "test-agent".into(),
            fail_on_unknown: false,
            max_body_size_bytes: 1_048_576,
            max_state_size_bytes: 65_536,
            request_timeout_ms: 5000,
            log_level: "info".into(),
            data: serde_json::json!({}),
            one_cpu: false,
        }
    }
}

impl AgentOptions {
    /// The `agent-config.yaml` for an agent listening on `socket`.
    pub fn config_yaml(&self, socket: &Path) -> anyhow::Result<String> {
        // JSON strings are YAML strings.
        let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let socket = socket.to_str().context("socket path is not UTF-8")?;
        Ok(format!(
            "agent_core:
  name: {name}
  socket_path: {socket}
  server:
    max_concurrent_requests: 64
    request_timeout_ms: {timeout}
  policies:
    fail_on_unknown: {fail}
  observability:
    log_level: {level}
    metrics_enabled: true
  resource_limits:
    max_body_size_bytes: {body}
    max_state_size_bytes: {state}
  data: [data]
",
            name = quote(&self.name),
            socket = quote(socket),
            timeout = self.request_timeout_ms,
            fail = self.fail_on_unknown,
            level = quote(&self.log_level),
            body = self.max_body_size_bytes,
            state = self.max_state_size_bytes,
        ))
    }
}

/// A running `policy-agent` with its config, data and socket in a temporary
/// directory and its stderr captured to a file; killed on drop.
pub struct AgentProcess {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    // Dropped last: the process is gone before its directory is removed.
    dir: tempfile::TempDir,
}

impl AgentProcess {
    /// Writes the configuration, spawns the agent and waits until it answers
    /// `Health` with `SERVING`.
    pub async fn start(options: &AgentOptions) -> anyhow::Result<Self> {
        let bin = agent_binary()?;
        // Short: a Unix socket path must fit in 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("pa-")
            .tempdir()
            .context("creating the agent's directory")?;
        let socket = dir.path().join("agent.sock");
        let config = dir.path().join("agent-config.yaml");
        std::fs::write(&config, options.config_yaml(&socket)?)?;
        std::fs::create_dir(dir.path().join("data"))?;
        std::fs::write(
            dir.path().join("data/data.json"),
            serde_json::to_vec_pretty(&options.data)?,
        )?;
        let log = dir.path().join("agent.stderr");
        let stderr = File::create(&log)?;
        let mut command = crate::stack::process::command(&bin, options.one_cpu);
        let child = command
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .env_remove("POLICY_AGENT_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| {
                if options.one_cpu {
                    format!(
                        "spawning {} under taskset (install util-linux)",
                        bin.display()
                    )
                } else {
                    format!("spawning {}", bin.display())
                }
            })?;
        let mut agent = Self {
            child,
            socket,
            log,
            dir,
        };
        agent.wait_until_serving().await?;
        Ok(agent)
    }

    async fn wait_until_serving(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "policy-agent exited during startup ({status}); stderr:\n{}",
                    self.stderr_log()
                );
            }
            let last_error = match self.health_once().await {
                Ok(ServingStatus::Serving) => return Ok(()),
                Ok(other) => format!("health status {other:?}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "policy-agent did not answer Health within {STARTUP_DEADLINE:?} (last: {last_error}); stderr:\n{}",
                    self.stderr_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn health_once(&self) -> anyhow::Result<ServingStatus> {
        let mut client = self.client().await?;
        let health = client.health(HealthRequest {}).await?.into_inner();
        Ok(health.status())
    }

    /// The agent's Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temporary directory holding config, data, socket and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new channel to the agent's socket.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        connect_uds(&self.socket).await
    }

    /// A new client of the agent.
    pub async fn client(&self) -> anyhow::Result<PolicyAgentClient<Channel>> {
        Ok(PolicyAgentClient::new(self.channel().await?))
    }

    /// Everything the agent wrote to stderr so far.
    pub fn stderr_log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log.display()))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tonic channel over the Unix socket at `path` (the URI is a placeholder).
pub async fn connect_uds(path: &Path) -> anyhow::Result<Channel> {
    let path = path.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await?;
    Ok(channel)
}
