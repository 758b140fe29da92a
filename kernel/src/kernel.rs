//! Start-up and shutdown: load and validate the config, bind both
//! listeners, discover the agents, then serve ext_proc, health and metrics
//! and watch the config file until the shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessorServer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::server::TcpIncoming;

use crate::agents::AgentRegistry;
use crate::config::{ConfigError, KernelConfig};
use crate::extproc::ExtProcService;
use crate::metrics::Metrics;
use crate::observe::{self, Readiness};
use crate::reload::{self, ReloadError, ReloadStatus};
use crate::snapshot::{Snapshot, SnapshotError};

/// Largest ext_proc or agent message accepted (a buffered body plus headers).
pub(crate) const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Why the kernel could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("agent client: {0}")]
    AgentClient(tonic::transport::Error),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("cannot watch SIGHUP: {0}")]
    Signal(std::io::Error),
    #[error("ext_proc server: {0}")]
    Serve(tonic::transport::Error),
}

impl KernelError {
    /// The process exit code: 2 for a configuration error, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            _ => 1,
        }
    }
}

/// How the kernel runs beyond its config file.
#[derive(Clone)]
pub struct Options {
    /// The agent core to run in this process (`--embedded-agent`): the
    /// configured agent of the same name is served by it, with no socket.
    pub embedded_agent: Option<Arc<policy_agent::Agent>>,
    /// Reload on SIGHUP (default true).
    pub reload_on_sighup: bool,
    /// Reload when the config file's content changes, checked this often
    /// (default every second; `None` disables it).
    pub watch_interval: Option<Duration>,
    /// How long in-flight streams may finish after shutdown (default 10 s).
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field(
                "embedded_agent",
                &self
                    .embedded_agent
                    .as_ref()
                    .map(|a| a.config().name.clone()),
            )
            .field("reload_on_sighup", &self.reload_on_sighup)
            .field("watch_interval", &self.watch_interval)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            embedded_agent: None,
            reload_on_sighup: true,
            watch_interval: Some(Duration::from_secs(1)),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What the running kernel shares between streams, the reloader and the
/// health endpoints.
pub(crate) struct State {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub registry: AgentRegistry,
    pub config_path: PathBuf,
    pub last_reload: ArcSwapOption<ReloadStatus>,
    pub reload_lock: tokio::sync::Mutex<()>,
    /// The file content last loaded or tried (the watcher reloads on a change).
    pub seen: parking_lot::Mutex<Option<reload::Fingerprint>>,
}

/// A bound kernel, ready to [`serve`](Kernel::serve).
pub struct Kernel {
    state: Arc<State>,
    ext_proc: TcpListener,
    metrics: TcpListener,
    options: Options,
    discovered: mpsc::UnboundedReceiver<String>,
}

/// A handle to a running kernel (reload, readiness, config version).
#[derive(Clone)]
pub struct KernelHandle {
    state: Arc<State>,
}

impl KernelHandle {
    /// Re-reads, validates and swaps the configuration, as SIGHUP does.
    /// Returns the new config version; on error the old config stays.
    pub async fn reload(&self) -> Result<u64, ReloadError> {
        reload::reload(&self.state).await
    }

    /// The version of the configuration in force (1 at start).
    pub fn config_version(&self) -> u64 {
        self.state.snapshot.load().version
    }

    /// What `/health/ready` reports.
    pub fn readiness(&self) -> Readiness {
        observe::readiness(&self.state)
    }

    /// The Prometheus exposition of `/metrics`.
    pub fn metrics_text(&self) -> String {
        self.state.metrics.encode()
    }
}

async fn bind(
    what: &'static str,
    addr: (std::net::IpAddr, u16),
) -> Result<TcpListener, KernelError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| KernelError::Bind {
            what,
            addr: SocketAddr::from(addr).to_string(),
            source,
        })
}

impl Kernel {
    /// [`Kernel::bind_with`] default options.
    pub async fn bind(config_path: impl AsRef<Path>) -> Result<Self, KernelError> {
        Self::bind_with(config_path, Options::default()).await
    }

    /// Loads and validates the config (nothing is bound when it is
    /// invalid), binds the ext_proc and metrics listeners, and discovers
    /// the agents. An agent that cannot be reached does not stop the start:
    /// it is retried in the background and readiness reports it.
    pub async fn bind_with(
        config_path: impl AsRef<Path>,
        options: Options,
    ) -> Result<Self, KernelError> {
        let config_path = config_path.as_ref().to_path_buf();
        let seen = reload::fingerprint(&config_path);
        let config = KernelConfig::load(&config_path)?;
        let ip = config
            .server
            .address
            .parse()
            .map_err(|_| ConfigError::Field {
                file: config_path.clone(),
                field: "policy_kernel.server.address".into(),
                reason: "must be an IP address".into(),
            })?;
        let ext_proc = bind("ext_proc", (ip, config.server.port)).await?;
        let metrics_listener = bind(
            "metrics and health",
            (
                std::net::Ipv4Addr::UNSPECIFIED.into(),
                config.observability.metrics_port,
            ),
        )
        .await?;
        let metrics = Arc::new(Metrics::new());
        let (tx, discovered) = mpsc::unbounded_channel();
        let registry = match &options.embedded_agent {
            None => AgentRegistry::new(metrics.clone(), tx),
            Some(agent) => {
                let name = agent.config().name.clone();
                if !config.agents.iter().any(|a| a.name == name) {
                    return Err(ConfigError::Field {
                        file: config_path,
                        field: "policy_kernel.agents".into(),
                        reason: format!(
                            "the embedded agent `{name}` is not listed (add an entry with this name; its socket_path is then unused)"
                        ),
                    }
                    .into());
                }
                let service = Arc::new(policy_agent::AgentService::new(agent.clone()));
                AgentRegistry::with_embedded(metrics.clone(), tx, name, service)
            }
        };
        let handles = registry
            .prepare(&config.agents)
            .await
            .map_err(KernelError::AgentClient)?;
        let snapshot = Snapshot::try_new(config, handles.clone(), 1)?;
        registry.commit(&handles);
        snapshot.log_invalid_routes(None);
        snapshot.warm_up(None).await;
        let state = Arc::new(State {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            registry,
            config_path,
            last_reload: ArcSwapOption::empty(),
            reload_lock: tokio::sync::Mutex::new(()),
            seen: parking_lot::Mutex::new(seen),
        });
        Ok(Self {
            state,
            ext_proc,
            metrics: metrics_listener,
            options,
            discovered,
        })
    }

    /// Where Envoy connects.
    pub fn ext_proc_addr(&self) -> std::io::Result<SocketAddr> {
        self.ext_proc.local_addr()
    }

    /// Where `/metrics` and `/health/*` are served.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics.local_addr()
    }

    /// A handle that stays valid while the kernel serves.
    pub fn handle(&self) -> KernelHandle {
        KernelHandle {
            state: self.state.clone(),
        }
    }

    /// Serves until `shutdown` completes, then stops accepting and lets
    /// in-flight streams finish for up to `shutdown_grace`.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), KernelError> {
        let Self {
            state,
            ext_proc,
            metrics,
            options,
            mut discovered,
        } = self;
        let hangup = if options.reload_on_sighup {
            Some(
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                    .map_err(KernelError::Signal)?,
            )
        } else {
            None
        };
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(reload::watch(state.clone(), hangup, options.watch_interval));
        tasks.spawn(observe::serve(state.clone(), metrics));
        let log_state = state.clone();
        tasks.spawn(async move {
            while let Some(agent) = discovered.recv().await {
                let snapshot = log_state.snapshot.load_full();
                snapshot.log_invalid_routes(Some(&agent));
                // A (re)started agent has none of our chains compiled yet.
                snapshot.warm_up(Some(&agent)).await;
            }
        });

        let max_streams = state.snapshot.load().config.server.max_concurrent_streams;
        let service = ExternalProcessorServer::new(ExtProcService::new(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(max_streams)
            .add_service(service)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(ext_proc).with_nodelay(Some(true)),
                async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                },
            );
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config = %state.config_path.display(),
            "policy-kernel serving"
        );
        tokio::pin!(server);
        let result = tokio::select! {
            r = &mut server => r.map_err(KernelError::Serve),
            () = shutdown => {
                tracing::info!(grace_ms = u64::try_from(options.shutdown_grace.as_millis()).unwrap_or(u64::MAX), "shutting down");
                let _ = stop_tx.send(true);
                match tokio::time::timeout(options.shutdown_grace, &mut server).await {
                    Ok(r) => r.map_err(KernelError::Serve),
                    Err(_) => {
                        tracing::warn!("shutdown grace elapsed, closing the remaining streams");
                        Ok(())
                    }
                }
            }
        };
        tasks.abort_all();
        state.registry.shutdown();
        result
    }
}

/// Loads `config_path`, serves until `shutdown` completes (SIGHUP and file
/// changes reload the config), and returns when in-flight streams are done.
pub async fn run(
    config_path: impl AsRef<Path>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), KernelError> {
    Kernel::bind(config_path).await?.serve(shutdown).await
}
