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
pub mod spin;
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

/// How long a runtime on a CPU of its own keeps polling after a burst of
/// work before its CPU may go idle (see [`spin`]) when `--idle-poll-us`
/// is not given.
pub const DEFAULT_IDLE_POLL: std::time::Duration = std::time::Duration::from_micros(500);

/// Whether a runtime keeps its CPU awake between bursts of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdlePolling {
    /// For up to this long after the runtime last ran out of work.
    On(std::time::Duration),
    /// Off: 0 asked for, or the default (see [`idle_poll_budget`]) off.
    Off,
    /// Asked for, but its thread could not be started or put in the idle
    /// scheduling class.
    Refused(String),
}

impl IdlePolling {
    /// Logs the choice at startup (a warning when it was refused).
    pub fn log(&self) {
        match self {
            IdlePolling::Refused(_) => tracing::warn!("{self}"),
            _ => tracing::info!("{self}"),
        }
    }
}

impl std::fmt::Display for IdlePolling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdlePolling::On(d) => write!(
                f,
                "idle polling for {} µs after each burst of work",
                d.as_micros()
            ),
            IdlePolling::Off => f.write_str("idle polling off"),
            IdlePolling::Refused(e) => write!(f, "idle polling off: {e}"),
        }
    }
}

/// The idle polling a process gets for `--idle-poll-us` (`requested`, in
/// microseconds; 0 turns it off). By default [`DEFAULT_IDLE_POLL`] for a
/// process that batches on one CPU ([`OneCpu::Batch`]: the agent and the
/// kernel in front of one) when it is pinned to that CPU (its affinity
/// mask, as a sidecar with a dedicated core runs); off otherwise. A process
/// limited to one CPU by a cgroup quota alone is not pinned: what its
/// polling thread spends on another core would count against the quota of
/// the thread that serves. The embedded kernel ([`OneCpu::AnswerFirst`])
/// answers each message as soon as it is evaluated and gains nothing: in
/// paired load runs its polling CPU only made Envoy's side busier
/// (`docs/adr/0009-idle-polling.md`).
pub fn idle_poll_budget(requested: Option<u64>, one_cpu: OneCpu) -> Option<std::time::Duration> {
    let budget = match requested {
        Some(us) => std::time::Duration::from_micros(us),
        None if one_cpu == OneCpu::Batch && pinned_to_one_cpu() => DEFAULT_IDLE_POLL,
        None => return None,
    };
    (!budget.is_zero()).then_some(budget)
}

fn pinned_to_one_cpu() -> bool {
    rustix::thread::sched_getaffinity(None).is_ok_and(|set| set.count() == 1)
}

/// The async runtime of the agent and the kernel binaries: a worker per
/// CPU; when the process may use one CPU (a sidecar pinned or limited to one
/// core), where work stealing has nothing to steal, one thread scheduled as
/// `one_cpu` says. With `idle_poll` (see [`idle_poll_budget`]), the CPU is
/// kept awake for that long after the runtime runs out of work.
pub fn runtime(
    one_cpu: OneCpu,
    idle_poll: Option<std::time::Duration>,
) -> std::io::Result<(tokio::runtime::Runtime, IdlePolling)> {
    // (`available_parallelism` counts the CPUs of the affinity mask and
    // the cgroup's quota.)
    let single = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = match (single, one_cpu) {
        (true, OneCpu::Batch) => tokio::runtime::Builder::new_current_thread(),
        (true, OneCpu::AnswerFirst) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(1);
            b
        }
        (false, _) => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all();
    let polling = match idle_poll.map(spin::IdlePoll::start) {
        None => IdlePolling::Off,
        Some(Ok(poll)) => {
            let budget = poll.budget();
            builder.on_thread_park(move || poll.parked());
            IdlePolling::On(budget)
        }
        Some(Err(e)) => IdlePolling::Refused(e),
    };
    Ok((builder.build()?, polling))
}
