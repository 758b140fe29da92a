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

/// How a process that may use one CPU runs its tasks (see [`runtime`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneCpu {
    /// Tasks woken together run in turn, first woken first, and what they
    /// write leaves together: the fewest wake-ups and writes. For the agent
    /// and the kernel in front of one: calls and answers cross the socket
    /// in batches, and the two processes take turns on the CPU less often.
    Batch,
    /// A task woken by the one that just ran runs next (the LIFO slot of
    /// tokio's multi-thread scheduler, with one worker): an answer is
    /// handed to Envoy's connection and written before the next evaluation
    /// starts, instead of after every evaluation of the batch. Lower
    /// latency for some more CPU; for the kernel with the agent core
    /// embedded (ADR 0008).
    AnswerFirst,
}

/// The async runtime of the agent and the kernel binaries: a worker per
/// CPU; when the process may use one CPU (a sidecar pinned or limited to one
/// core), where work stealing has nothing to steal, one thread scheduled as
/// `one_cpu` says.
pub fn runtime(one_cpu: OneCpu) -> std::io::Result<tokio::runtime::Runtime> {
    // (`available_parallelism` counts the CPUs of the affinity mask and
    // the cgroup's quota.)
    let single = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    match (single, one_cpu) {
        (true, OneCpu::Batch) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        (true, OneCpu::AnswerFirst) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build(),
        (false, _) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
}
