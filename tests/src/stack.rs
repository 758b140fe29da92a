//! The whole product behind the real Envoy, for end-to-end tests:
//!
//! ```text
//! test ─HTTP/1.1─▶ Envoy ──ext_proc──▶ policy-kernel ──UDS──▶ policy-agent
//!                    └──────▶ demo upstream (in-test hyper server)
//! ```
//!
//! [`Stack::start`] writes the configurations (see [`configs`]) into a
//! temporary directory, starts the agent, the upstream, the kernel and
//! Envoy, everything on 127.0.0.1 with ports chosen at run time (the kernel
//! and Envoy bind port 0 and report what they got), and waits until the
//! kernel's `/health/ready` and Envoy's admin `/ready` answer 200 (the
//! kernel has the agent compile every chain before it serves). Every
//! process is killed when the stack is dropped. Envoy is required: without
//! it `start` fails with [`crate::envoy::INSTALL_HINT`].

pub mod configs;
pub mod http;
pub mod journal;
pub mod openmetrics;
pub mod process;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use policy_proto::agent::HealthRequest;
use policy_proto::agent::health_response::ServingStatus;
use policy_proto::agent::policy_agent_client::PolicyAgentClient;
use serde_json::{Value, json};

use crate::{AgentOptions, agent_binary, connect_uds, envoy, sha256_hex};
pub use configs::{
    ADMIN_ROUTE, APPROVE_ROUTE, EXEC_ROUTE, PLATFORM_ROUTE, UNKNOWN_POLICY, UNKNOWN_POLICY_PATH,
    UNKNOWN_POLICY_ROUTE, UPLOAD_PATH, UPLOAD_ROUTE, USERS_ROUTE,
};
pub use http::{HttpRequest, HttpResponse};
pub use journal::JournalProcess;
pub use openmetrics::MetricsText;
use process::{ChildGuard, kernel_binary, tail};
pub use upstream::{SeenRequest, Upstream};

/// The agent's name in both configurations (as in `deploy/`).
pub const AGENT_NAME: &str = "default-agent";

/// How long one process may take to become ready (generous: a loaded
/// 2-core machine).
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(90);

/// How often kernel and agent export their batches of spans, in
/// milliseconds (the SDK's default is 5000).
const EXPORT_DELAY_MS: &str = "200";

/// How often [`eventually`] retries.
const POLL: Duration = Duration::from_millis(50);

/// One stack at a time per test process (the tests themselves still run in
/// parallel up to `Stack::start`): each stack is three processes and an
/// upstream, and several at once on a 2-core machine slow the agent past
/// the kernel's 500 ms call timeout.
static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Runs `check` until it succeeds or `deadline` has passed; the error names
/// `what` and carries the last failure.
pub async fn eventually<T, F, Fut>(
    what: &str,
    deadline: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= end => {
                return Err(e.context(format!("{what}: still failing after {deadline:?}")));
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// What a stack is started with.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// `rateLimit` on `/api/v1/users` (the spec's: 100/s, burst 20).
    pub users_requests_per_second: f64,
    pub users_burst: u32,
    /// API keys (plaintext, user id); the agent's data holds their SHA-256.
    pub api_keys: Vec<(String, String)>,
    /// `data.policy_data.jwtValidation.public_key_pem`.
    pub jwt_public_key_pem: Option<String>,
    /// `data.policy_data.roleCheck.bindings` (user → roles).
    pub role_bindings: Value,
    /// The agent's `resource_limits.max_body_size_bytes`.
    pub agent_max_body_size_bytes: usize,
    /// The kernel's `--watch-interval-ms` (0: reload on SIGHUP only).
    pub watch_interval_ms: u64,
    /// The kernel's `fail_open` (default false: deny when the agent is down).
    pub fail_open: bool,
    /// Adds the route [`UNKNOWN_POLICY_ROUTE`] (kernel and Envoy), whose
    /// chain names a policy the agent lacks. The kernel is then never
    /// ready, so start-up waits only until its agent is discovered and
    /// healthy and the route is reported invalid.
    pub unknown_policy_route: bool,
    /// Starts a `policy-journal` and has the agent record every decision
    /// (local log in the stack's directory, streamed over mTLS).
    pub journal: bool,
    /// The local log's `max_bytes` and `on_full` (default: the agent's).
    pub local_log_limit: Option<(u64, &'static str)>,
    /// Lines of the agent's `journal.degraded` section (YAML, indented
    /// under `degraded:`), e.g. `enter_after_ms: 300`; `None`: the defaults.
    pub degraded: Option<String>,
    /// Adds the operations routes ([`configs::EXEC_ROUTE`],
    /// [`configs::PLATFORM_ROUTE`], [`configs::APPROVE_ROUTE`]).
    pub ops_routes: bool,
    /// Runs the agent core inside the kernel (`policy-kernel
    /// --embedded-agent`, its configuration in the kernel config's
    /// `embedded_agent` section) instead of a `policy-agent` process.
    pub embedded_agent: bool,
    /// Runs `policy-kernel` on one CPU (`taskset -c 0`, util-linux), as a
    /// sidecar limited to one core runs: one thread, scheduled to batch in
    /// front of an agent and to answer first with the agent core embedded
    /// (`policy_agent::OneCpu`).
    pub kernel_one_cpu: bool,
    /// Kernel and agent export every trace (`sampling_rate: 1.0`) to this
    /// OTLP/gRPC endpoint (see [`crate::otlp::OtlpReceiver`]); `None`:
    /// tracing off.
    pub otlp_endpoint: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            users_requests_per_second: 100.0,
            users_burst: 20,
            api_keys: Vec::new(),
            jwt_public_key_pem: None,
            role_bindings: json!({}),
            agent_max_body_size_bytes: 1_048_576,
            watch_interval_ms: 1000,
            fail_open: false,
            unknown_policy_route: false,
            journal: false,
            local_log_limit: None,
            degraded: None,
            ops_routes: false,
            embedded_agent: false,
            kernel_one_cpu: false,
            otlp_endpoint: None,
        }
    }
}

impl StackOptions {
    /// The agent's `data` document.
    fn agent_data(&self) -> Value {
        let keys: serde_json::Map<String, Value> = self
            .api_keys
            .iter()
            .map(|(key, user)| (sha256_hex(key), json!({"user_id": user})))
            .collect();
        let mut data = json!({"policy_data": {
            "apiKeyAuth": {"keys": keys},
            "roleCheck": {"bindings": self.role_bindings},
        }});
        if let Some(pem) = &self.jwt_public_key_pem {
            data["policy_data"]["jwtValidation"] = json!({"public_key_pem": pem});
        }
        data
    }
}

/// Agent, kernel, upstream and Envoy, running. Fields drop in order: Envoy
/// first, then the kernel and the agent, the temporary directory last, and
/// only then may the next stack start.
pub struct Stack {
    envoy: ChildGuard,
    kernel: ChildGuard,
    agent: Option<ChildGuard>,
    journal: Option<JournalProcess>,
    upstream: Upstream,
    listener: SocketAddr,
    envoy_admin: SocketAddr,
    kernel_metrics: SocketAddr,
    kernel_config: Value,
    kernel_config_path: PathBuf,
    agent_config_path: PathBuf,
    agent_socket: PathBuf,
    dir: tempfile::TempDir,
    _turn: tokio::sync::SemaphorePermit<'static>,
}

impl Stack {
    /// Starts everything and waits until it is ready.
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        // Fail first (and loudly) when Envoy is missing.
        let envoy_bin = envoy::envoy_binary()?;
        let turn = ONE_AT_A_TIME.acquire().await?;
        let agent_bin = agent_binary()?;
        let kernel_bin = kernel_binary()?;
        // Short: a Unix socket path must fit in 108 bytes.
        let dir = tempfile::Builder::new().prefix("pe-").tempdir()?;
        let path = |name: &str| dir.path().join(name);

        let agent_socket = path("agent.sock");
        let agent_options = AgentOptions {
            name: AGENT_NAME.into(),
            max_body_size_bytes: options.agent_max_body_size_bytes,
            data: options.agent_data(),
            ..AgentOptions::default()
        };
        let journal = if options.journal {
            Some(JournalProcess::start(dir.path(), &[AGENT_NAME]).await?)
        } else {
            None
        };
        let mut agent_yaml = agent_options.config_yaml(&agent_socket)?;
        if let Some(j) = &journal {
            agent_yaml.push_str(&j.agent_section(
                AGENT_NAME,
                &path("agent-log"),
                options.local_log_limit,
            ));
            agent_yaml.push_str("    data_sync_interval_ms: 200\n");
            if let Some(degraded) = &options.degraded {
                agent_yaml.push_str("    degraded:\n");
                for line in degraded.lines() {
                    agent_yaml.push_str(&format!("      {}\n", line.trim()));
                }
            }
        }
        if let Some(endpoint) = &options.otlp_endpoint {
            agent_yaml = configs::agent_with_tracing(&agent_yaml, endpoint)?;
        }
        std::fs::write(path("agent-config.yaml"), &agent_yaml)?;
        std::fs::create_dir(path("data"))?;
        std::fs::write(
            path("data/data.json"),
            serde_json::to_vec_pretty(&agent_options.data)?,
        )?;
        let agent = if options.embedded_agent {
            None
        } else {
            Some(
                start_agent(
                    &agent_bin,
                    &path("agent-config.yaml"),
                    &agent_socket,
                    &path("agent.log"),
                )
                .await?,
            )
        };

        let upstream = Upstream::start().await?;

        let kernel_config = configs::kernel_config(&configs::KernelSettings {
            agent_socket: &agent_socket,
            users_requests_per_second: options.users_requests_per_second,
            users_burst: options.users_burst,
            fail_open: options.fail_open,
            unknown_policy_route: options.unknown_policy_route,
            ops_routes: options.ops_routes,
        })?;
        let mut kernel_config = kernel_config;
        kernel_config["policy_kernel"]["observability"]["tracing"] =
            configs::tracing_section(options.otlp_endpoint.as_deref());
        if options.embedded_agent {
            // The agent's configuration, as the kernel config's section.
            let agent: Value = serde_yaml_ng::from_str(&agent_yaml)?;
            kernel_config["policy_kernel"]["embedded_agent"] = agent["agent_core"].clone();
        }
        let kernel_config_path = path("kernel-config.yaml");
        write_atomically(
            &kernel_config_path,
            &serde_yaml_ng::to_string(&kernel_config)?,
        )?;
        let mut command = process::command(&kernel_bin, options.kernel_one_cpu);
        command
            .arg("--config")
            .arg(&kernel_config_path)
            .args(["--log-format", "json", "--watch-interval-ms"])
            .arg(options.watch_interval_ms.to_string())
            .args(options.embedded_agent.then_some("--embedded-agent"))
            .env("OTEL_BSP_SCHEDULE_DELAY", EXPORT_DELAY_MS)
            .env_remove("RUST_LOG")
            .env_remove("POLICY_KERNEL_CONFIG");
        let mut kernel = ChildGuard::spawn("policy-kernel", command, &path("kernel.log"))?;
        let (ext_proc, kernel_metrics) = kernel_addresses(&mut kernel).await?;
        let expect_invalid_route = options.unknown_policy_route;
        eventually("policy-kernel /health/ready", STARTUP_DEADLINE, || {
            let exited = kernel.ensure_running();
            async move {
                if let Err(e) = exited {
                    return Ok(Err(e));
                }
                let r = http::send(kernel_metrics, &HttpRequest::get("/health/ready")).await?;
                if r.status == 200 || (expect_invalid_route && is_ready_but_invalid(&r.json()?)) {
                    return Ok(Ok(()));
                }
                bail!("{}", r.summary())
            }
        })
        .await
        .and_then(|ready| ready)
        .with_context(|| format!("kernel log:\n{}", tail(&kernel.log_text(), 40)))?;

        let envoy_config = configs::envoy_config(
            ext_proc,
            upstream.addr(),
            options.unknown_policy_route,
            options.ops_routes,
        )?;
        let envoy_config_path = path("envoy.yaml");
        std::fs::write(&envoy_config_path, serde_yaml_ng::to_string(&envoy_config)?)?;
        let admin_file = path("envoy-admin-address");
        let mut command = Command::new(&envoy_bin);
        command
            .arg("-c")
            .arg(&envoy_config_path)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "warn",
            ]);
        let mut envoy = ChildGuard::spawn("envoy", command, &path("envoy.log"))?;
        let (envoy_admin, listener) = envoy_addresses(&mut envoy, &admin_file)
            .await
            .with_context(|| format!("Envoy's log:\n{}", tail(&envoy.log_text(), 40)))?;

        Ok(Self {
            envoy,
            kernel,
            agent,
            journal,
            upstream,
            listener,
            envoy_admin,
            kernel_metrics,
            kernel_config,
            kernel_config_path,
            agent_config_path: path("agent-config.yaml"),
            agent_socket,
            dir,
            _turn: turn,
        })
    }

    /// Sends `request` to Envoy's listener.
    pub async fn send(&self, request: &HttpRequest) -> anyhow::Result<HttpResponse> {
        http::send(self.listener, request).await
    }

    /// `GET path` through Envoy.
    pub async fn get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        self.send(&HttpRequest::get(path)).await
    }

    /// Envoy's listener.
    pub fn listener(&self) -> SocketAddr {
        self.listener
    }

    /// Envoy's admin interface.
    pub fn envoy_admin(&self) -> SocketAddr {
        self.envoy_admin
    }

    /// The demo upstream.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// `GET path` on the kernel's metrics port (`/metrics`, `/health/*`).
    pub async fn kernel_get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        http::send(self.kernel_metrics, &HttpRequest::get(path)).await
    }

    /// The kernel's `/metrics`, parsed.
    pub async fn metrics(&self) -> anyhow::Result<MetricsText> {
        let r = self.kernel_get("/metrics").await?;
        if r.status != 200 {
            bail!("/metrics answered {}", r.summary());
        }
        Ok(MetricsText::parse(&r.text()))
    }

    /// The kernel's `/health/ready`: status and JSON detail.
    pub async fn readiness(&self) -> anyhow::Result<(u16, Value)> {
        let r = self.kernel_get("/health/ready").await?;
        Ok((r.status, r.json()?))
    }

    /// Kills the agent (SIGKILL, as a crash) and waits until it is gone.
    pub fn stop_agent(&mut self) {
        self.agent = None;
    }

    /// Starts the agent again on the same socket, config and data.
    pub async fn restart_agent(&mut self) -> anyhow::Result<()> {
        self.agent = None;
        let agent = start_agent(
            &agent_binary()?,
            &self.agent_config_path,
            &self.agent_socket,
            &self.dir.path().join("agent.log"),
        )
        .await?;
        self.agent = Some(agent);
        Ok(())
    }

    /// The journal (with [`StackOptions::journal`]).
    pub fn journal(&self) -> anyhow::Result<&JournalProcess> {
        self.journal
            .as_ref()
            .context("this stack was started without a journal")
    }

    /// The journal, mutably (to kill or restart it).
    pub fn journal_mut(&mut self) -> anyhow::Result<&mut JournalProcess> {
        self.journal
            .as_mut()
            .context("this stack was started without a journal")
    }

    /// The kernel configuration last written by [`Stack::start`] or
    /// [`Stack::write_kernel_config`] (a `policy_kernel` document).
    pub fn kernel_config(&self) -> &Value {
        &self.kernel_config
    }

    /// Replaces the kernel's config file (atomically, by rename) with `config`.
    pub fn write_kernel_config(&mut self, config: Value) -> anyhow::Result<()> {
        write_atomically(
            &self.kernel_config_path,
            &serde_yaml_ng::to_string(&config)?,
        )?;
        self.kernel_config = config;
        Ok(())
    }

    /// Replaces the kernel's config file with `text` as is (e.g. invalid).
    pub fn write_kernel_config_text(&self, text: &str) -> anyhow::Result<()> {
        write_atomically(&self.kernel_config_path, text)
    }

    /// Sends SIGHUP to the kernel.
    pub fn sighup_kernel(&mut self) -> anyhow::Result<()> {
        self.kernel.ensure_running()?;
        self.kernel.signal("HUP")
    }

    /// Fails when the kernel, the agent (if started) or Envoy has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.kernel.ensure_running()?;
        self.envoy.ensure_running()?;
        if let Some(agent) = &mut self.agent {
            agent.ensure_running()?;
        }
        Ok(())
    }

    /// The last `lines` lines of each process's log, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in ["kernel.log", "agent.log", "envoy.log", "journal.log"] {
            if name == "journal.log" && self.journal.is_none() {
                continue;
            }
            let text = process::read_log(&self.dir.path().join(name));
            out.push_str(&format!(
                "--- {name} (last {lines} lines) ---\n{}\n",
                tail(&text, lines)
            ));
        }
        out
    }

    /// The agent's Unix socket.
    pub fn agent_socket(&self) -> &Path {
        &self.agent_socket
    }

    /// The temporary directory with configs, logs and the agent socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Whether a `/health/ready` detail shows every agent discovered and
/// healthy, and [`UNKNOWN_POLICY_ROUTE`] as the only invalid route.
fn is_ready_but_invalid(detail: &Value) -> bool {
    let agents_ok = detail["agents"].as_array().is_some_and(|agents| {
        !agents.is_empty()
            && agents
                .iter()
                .all(|a| a["discovered"] == true && a["healthy"] == true)
    });
    let only_unknown = detail["invalid_routes"].as_array().is_some_and(|routes| {
        !routes.is_empty() && routes.iter().all(|r| r["route"] == UNKNOWN_POLICY_ROUTE)
    });
    agents_ok && only_unknown
}

/// Writes `text` to `path` through a temporary file and a rename, so a
/// reader (the kernel's file watch) never sees half a file.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Spawns the agent and waits until it answers `Health` with `SERVING`.
async fn start_agent(
    bin: &Path,
    config: &Path,
    socket: &Path,
    log: &Path,
) -> anyhow::Result<ChildGuard> {
    let mut command = Command::new(bin);
    command
        .arg("--config")
        .arg(config)
        .env("OTEL_BSP_SCHEDULE_DELAY", EXPORT_DELAY_MS)
        .env_remove("RUST_LOG")
        .env_remove("POLICY_AGENT_CONFIG");
    let mut agent = ChildGuard::spawn("policy-agent", command, log)?;
    eventually("policy-agent Health SERVING", STARTUP_DEADLINE, || {
        let socket = socket.to_path_buf();
        let exited = agent.ensure_running();
        async move {
            if let Err(e) = exited {
                // Not worth retrying.
                return Ok(Err(e));
            }
            let mut client = PolicyAgentClient::new(connect_uds(&socket).await?);
            let health = client.health(HealthRequest {}).await?.into_inner();
            if health.status() != ServingStatus::Serving {
                bail!("status {:?}", health.status());
            }
            Ok(Ok(()))
        }
    })
    .await??;
    Ok(agent)
}

/// Reads the `listening` line the kernel logs: its ext_proc and metrics
/// addresses (the metrics port listens on all interfaces; 127.0.0.1 is used).
async fn kernel_addresses(kernel: &mut ChildGuard) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let log = kernel.log_path().to_path_buf();
    eventually(
        "policy-kernel `listening` log line",
        STARTUP_DEADLINE,
        || {
            let exited = kernel.ensure_running();
            let text = process::read_log(&log);
            async move {
                if let Err(e) = exited {
                    return Ok(Err(e));
                }
                for line in text.lines() {
                    let Ok(v) = serde_json::from_str::<Value>(line) else {
                        continue;
                    };
                    if v["message"] != "listening" {
                        continue;
                    }
                    let addr = |field: &str| -> anyhow::Result<SocketAddr> {
                        let text = v["metadata"][field].as_str().unwrap_or_default();
                        text.parse()
                            .with_context(|| format!("kernel `{field}` address `{text}`"))
                    };
                    let ext_proc = addr("ext_proc")?;
                    let metrics = addr("metrics")?;
                    return Ok(Ok((
                        ext_proc,
                        SocketAddr::from(([127, 0, 0, 1], metrics.port())),
                    )));
                }
                bail!("not logged yet")
            }
        },
    )
    .await?
}

/// Waits for Envoy's admin address file, admin `/ready`, and the port of
/// its `ingress_http` listener.
async fn envoy_addresses(
    envoy: &mut ChildGuard,
    admin_file: &Path,
) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    eventually("Envoy admin /ready and listener", STARTUP_DEADLINE, || {
        let exited = envoy.ensure_running();
        let admin = std::fs::read_to_string(admin_file);
        async move {
            if let Err(e) = exited {
                return Ok(Err(e));
            }
            let admin: SocketAddr = admin?.trim().parse()?;
            let ready = http::send(admin, &HttpRequest::get("/ready")).await?;
            if ready.status != 200 {
                bail!("admin /ready: {}", ready.summary());
            }
            let listeners = http::send(admin, &HttpRequest::get("/listeners?format=json")).await?;
            let json = listeners.json()?;
            let port = json["listener_statuses"]
                .as_array()
                .and_then(|ls| ls.iter().find(|l| l["name"] == "ingress_http"))
                .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .context("ingress_http has no port yet")?;
            Ok(Ok((admin, SocketAddr::from(([127, 0, 0, 1], port)))))
        }
    })
    .await?
}
