//! The agent registry of spec §3.3: one handle per configured agent with
//! its Unix-socket client (or, in embedded mode, the agent core running in
//! this process), what `GetAgentConfig` discovered (version,
//! supported policies) and a health flag kept fresh by a background loop.
//!
//! Calls are bounded by the agent's `timeout_ms` and retried (after
//! `backoff_ms`) only when no answer was received because the agent could
//! not be reached; a timeout or any answer is never retried.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use policy_agent::AgentService;
use policy_proto::agent::health_response::ServingStatus;
use policy_proto::agent::policy_agent_client::PolicyAgentClient;
use policy_proto::agent::policy_agent_server::PolicyAgent;
use policy_proto::agent::{
    ChainToPrepare, GetAgentConfigRequest, GetAgentConfigResponse, HealthRequest, HealthResponse,
    PolicyInfo, PolicyPhase, PolicyRequest, PolicyResponse, PrepareChainsRequest,
    PrepareChainsResponse,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Response, Status};

use crate::calls::CallStream;
use crate::config::AgentEntry;
use crate::metrics::Metrics;

/// Longest pause between discovery attempts of an agent not yet discovered.
const UNDISCOVERED_RETRY: Duration = Duration::from_millis(500);

/// Why an agent call produced no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("agent `{agent}` unavailable: {reason}")]
    Unavailable { agent: String, reason: String },
    #[error("agent `{agent}` is overloaded: {reason}")]
    Overloaded { agent: String, reason: String },
    /// The connection broke after the call was sent: unreachable, but the
    /// agent may have run the call, so it is not retried.
    #[error("agent `{agent}` connection lost during the call: {reason}")]
    Lost { agent: String, reason: String },
    #[error("agent `{agent}` did not answer within {ms} ms")]
    Timeout { agent: String, ms: u64 },
    #[error("agent `{agent}` failed: {code}: {message}")]
    Failed {
        agent: String,
        code: String,
        message: String,
    },
}

/// What `GetAgentConfig` returned.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub agent_name: String,
    pub version: String,
    pub policies: HashMap<String, PolicyInfo>,
    pub metadata: HashMap<String, String>,
}

impl Discovery {
    /// `None` when `policy` is supported in `phase`, otherwise why not.
    pub fn unsupported(&self, policy: &str, phase: PolicyPhase) -> Option<String> {
        match self.policies.get(policy) {
            None => Some(format!("agent does not support policy `{policy}`")),
            Some(info) if !info.supported_phases.contains(&(phase as i32)) => Some(format!(
                "policy `{policy}` does not support the {} phase",
                phase.as_str_name().to_ascii_lowercase()
            )),
            Some(_) => None,
        }
    }
}

/// How the kernel reaches an agent.
#[derive(Clone)]
enum Transport {
    /// gRPC over the agent's Unix socket (the split mode of the spec):
    /// chain executions over the call stream, the rest unary.
    Socket {
        client: PolicyAgentClient<Channel>,
        calls: Arc<CallStream>,
    },
    /// The agent core in this process (`policy-kernel --embedded-agent`):
    /// the very service the agent serves on its socket, called directly,
    /// so answers, errors and decision records are the same.
    Embedded(Arc<AgentService>),
}

impl Transport {
    async fn get_agent_config(&self) -> Result<GetAgentConfigResponse, Status> {
        match self {
            Self::Socket { client, .. } => {
                client
                    .clone()
                    .get_agent_config(GetAgentConfigRequest {})
                    .await
            }
            Self::Embedded(s) => {
                s.get_agent_config(Request::new(GetAgentConfigRequest {}))
                    .await
            }
        }
        .map(Response::into_inner)
    }

    async fn health(&self) -> Result<HealthResponse, Status> {
        match self {
            Self::Socket { client, .. } => client.clone().health(HealthRequest {}).await,
            Self::Embedded(s) => s.health(Request::new(HealthRequest {})).await,
        }
        .map(Response::into_inner)
    }

    async fn prepare_chains(
        &self,
        req: PrepareChainsRequest,
    ) -> Result<PrepareChainsResponse, Status> {
        match self {
            Self::Socket { client, .. } => client.clone().prepare_chains(req).await,
            Self::Embedded(s) => s.prepare_chains(Request::new(req)).await,
        }
        .map(Response::into_inner)
    }

    async fn execute_policies(&self, req: PolicyRequest) -> Result<PolicyResponse, Status> {
        match self {
            // Boxed: inline, the larger of the two would be copied through
            // every future that awaits a call, down to each ext_proc message's.
            Self::Socket { calls, .. } => Box::pin(calls.call(req)).await,
            Self::Embedded(s) => Box::pin(s.run(req)).await,
        }
    }
}

/// One configured agent.
pub struct AgentHandle {
    entry: AgentEntry,
    transport: Transport,
    discovery: ArcSwapOption<Discovery>,
    healthy: AtomicBool,
    last_error: ArcSwapOption<String>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("name", &self.entry.name)
            .field("socket_path", &self.entry.socket_path)
            .field("embedded", &self.is_embedded())
            .field("healthy", &self.is_healthy())
            .finish()
    }
}

fn channel(socket: PathBuf, connect_timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    // The URI is required by the API and unused: the connector dials the socket.
    let endpoint = Endpoint::try_from("http://agent.invalid")?.connect_timeout(connect_timeout);
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        })),
    )
}

impl AgentHandle {
    /// A handle for `entry`; connects on first use (and reconnects after
    /// the agent restarts).
    pub fn try_new(entry: AgentEntry) -> Result<Self, tonic::transport::Error> {
        let channel = channel(
            entry.socket_path.clone(),
            Duration::from_millis(entry.timeout_ms),
        )?;
        let client = PolicyAgentClient::new(channel)
            .max_decoding_message_size(crate::kernel::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::kernel::MAX_MESSAGE_BYTES);
        let calls = Arc::new(CallStream::new(client.clone()));
        Ok(Self::with_transport(
            entry,
            Transport::Socket { client, calls },
        ))
    }

    /// A handle for `entry` served by `service` in this process: no socket,
    /// the same answers.
    pub fn embedded(entry: AgentEntry, service: Arc<AgentService>) -> Self {
        Self::with_transport(entry, Transport::Embedded(service))
    }

    fn with_transport(entry: AgentEntry, transport: Transport) -> Self {
        Self {
            entry,
            transport,
            discovery: ArcSwapOption::empty(),
            healthy: AtomicBool::new(false),
            last_error: ArcSwapOption::empty(),
        }
    }

    /// Whether the agent core runs in this process.
    pub fn is_embedded(&self) -> bool {
        matches!(self.transport, Transport::Embedded(_))
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// The configuration entry.
    pub fn entry(&self) -> &AgentEntry {
        &self.entry
    }

    /// What discovery found, when the agent was reached.
    pub fn discovery(&self) -> Option<Arc<Discovery>> {
        self.discovery.load_full()
    }

    /// Whether the last health check succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The last discovery or health error, for the readiness detail.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.load_full().map(|e| e.as_ref().clone())
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.entry.timeout_ms)
    }

    fn classify(&self, status: tonic::Status) -> CallError {
        let agent = self.entry.name.clone();
        let reason = status.message().to_string();
        match status.code() {
            tonic::Code::Unavailable => CallError::Unavailable { agent, reason },
            tonic::Code::Unknown if status.metadata().contains_key(crate::calls::LOST_CALL) => {
                CallError::Lost { agent, reason }
            }
            tonic::Code::ResourceExhausted => CallError::Overloaded { agent, reason },
            tonic::Code::DeadlineExceeded => CallError::Timeout {
                agent,
                ms: self.entry.timeout_ms,
            },
            code => CallError::Failed {
                agent,
                code: format!("{code:?}"),
                message: reason,
            },
        }
    }

    /// `GetAgentConfig`, stored on success.
    pub async fn discover(&self) -> Result<Arc<Discovery>, CallError> {
        let answer = tokio::time::timeout(self.timeout(), self.transport.get_agent_config()).await;
        let config = match answer {
            Err(_) => {
                return Err(CallError::Timeout {
                    agent: self.entry.name.clone(),
                    ms: self.entry.timeout_ms,
                });
            }
            Ok(Err(status)) => return Err(self.classify(status)),
            Ok(Ok(r)) => r,
        };
        let discovery = Arc::new(Discovery {
            agent_name: config.agent_name,
            version: config.agent_version,
            policies: config
                .supported_policies
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect(),
            metadata: config.agent_metadata,
        });
        self.discovery.store(Some(discovery.clone()));
        tracing::info!(
            agent = %self.entry.name,
            version = %discovery.version,
            policies = discovery.policies.len(),
            "agent discovered"
        );
        Ok(discovery)
    }

    /// One `Health` call: the agent's answer when it is SERVING in time.
    async fn health(&self) -> Result<HealthResponse, String> {
        match tokio::time::timeout(self.timeout(), self.transport.health()).await {
            Err(_) => Err(format!(
                "health check timed out after {} ms",
                self.entry.timeout_ms
            )),
            Ok(Err(status)) => Err(self.classify(status).to_string()),
            Ok(Ok(r)) if r.status == ServingStatus::Serving as i32 => Ok(r),
            Ok(Ok(r)) => Err(format!("agent reports status {}", r.status)),
        }
    }

    /// Whether `revision` (from `Health`) differs from the discovered one.
    fn is_stale(&self, revision: &str) -> bool {
        self.discovery()
            .and_then(|d| d.metadata.get("policy_revision").cloned())
            .is_some_and(|known| !revision.is_empty() && known != revision)
    }

    /// `GetAgentConfig` then `Health`; the flag says whether discovery succeeded.
    async fn rediscover(&self) -> (bool, Result<HealthResponse, String>) {
        match self.discover().await {
            Ok(_) => (true, self.health().await),
            Err(e) => (false, Err(e.to_string())),
        }
    }

    /// Discovers the agent when it is new, was unhealthy or reports another
    /// policy revision (it may have restarted with other policies), then
    /// checks its health. Returns whether discovery ran and succeeded.
    pub async fn refresh(&self, metrics: &Metrics) -> bool {
        let was_healthy = self.is_healthy();
        let (rediscovered, result) = if self.discovery().is_none() || !was_healthy {
            self.rediscover().await
        } else {
            match self.health().await {
                Ok(r) if self.is_stale(&r.policy_revision) => {
                    tracing::info!(agent = %self.entry.name, revision = %r.policy_revision, "agent policy revision changed: rediscovering");
                    self.rediscover().await
                }
                other => (false, other),
            }
        };
        let healthy = result.is_ok();
        self.healthy.store(healthy, Ordering::Relaxed);
        metrics.set_agent_health(&self.entry.name, healthy);
        match result {
            Ok(health) => {
                if let Some(j) = &health.journal {
                    metrics.set_agent_journal(&self.entry.name, j);
                }
                if let Some(m) = health.metrics {
                    metrics.set_agent_metrics(&self.entry.name, m);
                }
                self.last_error.store(None);
                if !was_healthy {
                    tracing::info!(agent = %self.entry.name, "agent healthy");
                }
            }
            Err(e) => {
                // Log on the transition only; the detail stays in /health/ready.
                if was_healthy || self.last_error.load().is_none() {
                    tracing::error!(agent = %self.entry.name, socket = %self.entry.socket_path.display(), error = %e, "agent unhealthy");
                }
                self.last_error.store(Some(Arc::new(e)));
            }
        }
        rediscovered
    }

    /// Asks the agent to compile `chains` ahead of traffic. Failures are
    /// logged, never fatal: a chain that is not prepared compiles on first use.
    pub async fn prepare_chains(&self, chains: Vec<ChainToPrepare>) {
        if chains.is_empty() {
            return;
        }
        let count = chains.len();
        let call = self
            .transport
            .prepare_chains(PrepareChainsRequest { chains });
        match tokio::time::timeout(PREPARE_TIMEOUT, call).await {
            Ok(Ok(r)) => {
                for e in &r.errors {
                    tracing::warn!(agent = %self.entry.name, error = %e, "agent could not prepare a chain");
                }
                tracing::debug!(agent = %self.entry.name, prepared = r.prepared, of = count, "chains prepared");
            }
            Ok(Err(status)) => {
                tracing::warn!(agent = %self.entry.name, error = %status.message(), "preparing chains failed");
            }
            Err(_) => {
                tracing::warn!(agent = %self.entry.name, "preparing chains timed out");
            }
        }
    }

    /// Runs a chain: at most `retry.max_attempts` attempts, each bounded by
    /// `timeout_ms`, the next one only after a connection error.
    pub async fn execute(&self, mut req: PolicyRequest) -> Result<PolicyResponse, CallError> {
        // The agent core in this process is always reached: one attempt, and
        // no copy of the request kept for another.
        let attempts = if self.is_embedded() {
            1
        } else {
            self.entry.retry.max_attempts.max(1)
        };
        let mut attempt = 1;
        loop {
            let this = if attempt < attempts {
                req.clone()
            } else {
                std::mem::take(&mut req)
            };
            let err =
                match tokio::time::timeout(self.timeout(), self.transport.execute_policies(this))
                    .await
                {
                    Err(_) => {
                        return Err(CallError::Timeout {
                            agent: self.entry.name.clone(),
                            ms: self.entry.timeout_ms,
                        });
                    }
                    Ok(Ok(resp)) => return Ok(resp),
                    Ok(Err(status)) => self.classify(status),
                };
            if !matches!(err, CallError::Unavailable { .. }) || attempt >= attempts {
                return Err(err);
            }
            tracing::warn!(request_id = %req.request_id, agent = %self.entry.name, attempt, error = %err, "agent call failed, retrying");
            tokio::time::sleep(Duration::from_millis(self.entry.retry.backoff_ms)).await;
            attempt += 1;
        }
    }
}

/// Longest wait for an agent to compile a configuration's chains.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(30);

/// Keeps an agent's health fresh until the handle is dropped (the first
/// check was made by [`AgentRegistry::prepare`]). Names of agents that were
/// (re)discovered go to `discovered`.
async fn health_loop(
    handle: Weak<AgentHandle>,
    metrics: Arc<Metrics>,
    discovered: UnboundedSender<String>,
) {
    loop {
        let pause = match handle.upgrade() {
            None => return,
            Some(h) if h.discovery().is_none() => {
                Duration::from_millis(h.entry.health_check_interval_ms).min(UNDISCOVERED_RETRY)
            }
            Some(h) => Duration::from_millis(h.entry.health_check_interval_ms),
        };
        tokio::time::sleep(pause).await;
        let Some(h) = handle.upgrade() else { return };
        if h.refresh(&metrics).await {
            let _ = discovered.send(h.entry.name.clone());
        }
    }
}

struct Registered {
    handle: Arc<AgentHandle>,
    health: Option<AbortHandle>,
}

/// Handles by agent name, shared by successive config snapshots.
pub struct AgentRegistry {
    agents: Mutex<HashMap<String, Registered>>,
    metrics: Arc<Metrics>,
    discovered: UnboundedSender<String>,
    /// The agent core running in this process, by agent name: the entry of
    /// that name is served by it instead of its socket.
    embedded: Option<(String, Arc<AgentService>)>,
}

impl AgentRegistry {
    /// An empty registry reporting to `metrics`; names of (re)discovered
    /// agents go to `discovered`.
    pub fn new(metrics: Arc<Metrics>, discovered: UnboundedSender<String>) -> Self {
        Self {
            agents: Mutex::new(HashMap::new()),
            metrics,
            discovered,
            embedded: None,
        }
    }

    /// The same, with the agent `name` served by `service` in this process.
    pub fn with_embedded(
        metrics: Arc<Metrics>,
        discovered: UnboundedSender<String>,
        name: String,
        service: Arc<AgentService>,
    ) -> Self {
        Self {
            agents: Mutex::new(HashMap::new()),
            metrics,
            discovered,
            embedded: Some((name, service)),
        }
    }

    /// Handles for `entries`: an unchanged entry keeps its handle, a new or
    /// changed one gets a new handle, discovered (and health-checked) before
    /// this returns. Nothing is registered until [`AgentRegistry::commit`].
    pub async fn prepare(
        &self,
        entries: &[AgentEntry],
    ) -> Result<HashMap<String, Arc<AgentHandle>>, tonic::transport::Error> {
        let mut out = HashMap::new();
        let mut fresh = Vec::new();
        {
            let agents = self.agents.lock();
            for entry in entries {
                match agents.get(&entry.name) {
                    Some(r) if r.handle.entry == *entry => {
                        out.insert(entry.name.clone(), r.handle.clone());
                    }
                    _ => fresh.push(entry.clone()),
                }
            }
        }
        let mut handles = Vec::with_capacity(fresh.len());
        for entry in fresh {
            let handle = match &self.embedded {
                Some((name, service)) if *name == entry.name => {
                    AgentHandle::embedded(entry, service.clone())
                }
                _ => AgentHandle::try_new(entry)?,
            };
            handles.push(Arc::new(handle));
        }
        let mut refreshing = tokio::task::JoinSet::new();
        for h in &handles {
            let (h, metrics) = (h.clone(), self.metrics.clone());
            refreshing.spawn(async move { h.refresh(&metrics).await });
        }
        while refreshing.join_next().await.is_some() {}
        for h in handles {
            out.insert(h.entry.name.clone(), h);
        }
        Ok(out)
    }

    /// Makes `handles` the registered agents: health loops start for new
    /// handles and stop for replaced or removed ones.
    pub fn commit(&self, handles: &HashMap<String, Arc<AgentHandle>>) {
        let mut agents = self.agents.lock();
        agents.retain(|name, r| {
            let keep = handles.get(name).is_some_and(|h| Arc::ptr_eq(h, &r.handle));
            if !keep {
                if let Some(task) = r.health.take() {
                    task.abort();
                }
                if !handles.contains_key(name) {
                    self.metrics.remove_agent(name);
                }
            }
            keep
        });
        for (name, handle) in handles {
            if agents.contains_key(name) {
                continue;
            }
            let task = tokio::spawn(health_loop(
                Arc::downgrade(handle),
                self.metrics.clone(),
                self.discovered.clone(),
            ));
            agents.insert(
                name.clone(),
                Registered {
                    handle: handle.clone(),
                    health: Some(task.abort_handle()),
                },
            );
        }
    }

    /// Stops every health loop.
    pub fn shutdown(&self) {
        for r in self.agents.lock().values_mut() {
            if let Some(task) = r.health.take() {
                task.abort();
            }
        }
    }
}

impl Drop for AgentRegistry {
    fn drop(&mut self) {
        self.shutdown();
    }
}
