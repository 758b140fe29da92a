//! policy-agent: the agent core of policy-engine.
//!
//! Compiles each route's policy chain into one Rego module (see [`chain`]),
//! compiles that once into a regorus bytecode program and evaluates it on a
//! VM reused per worker thread, with native builtins (JWT, hashing, rate
//! limits) answered as host calls. Serves the kernel ↔ agent protocol over
//! a Unix socket. It does not talk to Envoy (that is `policy-kernel`).

mod agent;
pub mod builtins;
pub mod chain;
mod config;
mod context;
mod data;
pub mod degraded;
mod error;
mod histogram;
mod journal;
mod lifecycle;
pub mod logging;
mod metrics;
mod policyset;
mod records;
mod registry;
mod server;
pub mod traces;
mod worker;

pub use agent::{Agent, Execution};
pub use config::AgentConfig;
pub use context::{InputLimits, build_input, decision_to_response};
pub use data::{load_data, merge};
pub use error::{EvalError, SetupError};
pub use journal::{Journal, JournalSettings, RecordError};
pub use lifecycle::{start_background, stop_background};
pub use metrics::{DecisionMetrics, MAX_CHAIN_LABELS, OTHER_CHAINS, UNKNOWN_POLICY};
pub use policyset::{CompiledChain, EngineStats, PolicySet, new_engine};
pub use records::{RecordSettings, build_record};
pub use registry::{PolicyRegistry, RegisteredPolicy};
pub use server::{AgentService, CallResults, bind_socket, serve, serve_calls};
pub use worker::{EnginePath, Evaluation, evaluate};

/// The async runtime of the agent and the kernel binaries: one thread when
/// the process may use one CPU (a sidecar pinned or limited to one core),
/// where work stealing has nothing to steal and only adds its bookkeeping
/// to every wake-up; a worker per CPU otherwise.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // (`available_parallelism` counts the CPUs of the affinity mask and
    // the cgroup's quota.)
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    if one_cpu {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
}
