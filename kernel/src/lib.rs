//! policy-kernel: the Envoy-facing side of policy-engine.
//!
//! An ext_proc v3 server (engine specification §3): it maps each HTTP
//! exchange to its route's policy chains (`kernel-config.yaml`, §3.2),
//! sends them to the agent that runs them over a Unix socket, and turns
//! the agent's instructions into ext_proc answers. It keeps an agent
//! registry (discovery and health checks, §3.3), applies the error table
//! of §3.5 (timeouts, retries, `fail_open`), reloads its config on SIGHUP
//! or file change without dropping streams, and serves `/health/live`,
//! `/health/ready` and Prometheus `/metrics` (§7.1, §9.2).
//!
//! It does not evaluate policies (agents do) and does not record decisions
//! (the agent's journal does).
//!
//! Embed it with [`run`], or [`Kernel::bind_with`] then [`Kernel::serve`]
//! to learn the bound addresses first.

mod agent_metrics;
mod agents;
mod calls;
mod config;
mod context;
mod convert;
mod decision;
mod exposition;
mod extproc;
mod kernel;
mod metrics;
mod observe;
mod reload;
mod snapshot;
mod traces;

pub use config::{
    AgentEntry, ChainEntry, ConfigError, KernelConfig, ObservabilityConfig, PolicyChains,
    RetryConfig, RouteEntry, ServerConfig, TracingConfig,
};
pub use context::{ATTRIBUTE_NAMESPACE, ROUTE_ATTRIBUTE, SOURCE_ATTRIBUTE};
pub use decision::Outcome;
pub use kernel::{Kernel, KernelError, KernelHandle, Options, run};
pub use observe::{AgentStatus, Readiness};
pub use reload::{ReloadError, ReloadStatus};
pub use snapshot::{DEFAULT_ROUTE, InvalidRoute, NO_ROUTE, SnapshotError};
