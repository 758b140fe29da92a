//! The agent's decision metrics of spec §7.1, counted on the decision path
//! with relaxed atomics only: no lock, no allocation per decision.
//!
//! - `policy_agent_executions_total{policy, status}`: each policy of a chain
//!   that ran, with its own outcome (`ok`, `denied`, `error`, `skipped`).
//!   Policies after the one that stopped the chain did not run and are not
//!   counted. When the chain's evaluation fails as a whole (`timeout`, or
//!   `error` for an engine error, an undefined or malformed decision, a
//!   panic), no policy has a result of its own and each policy of the chain
//!   is counted with that status.
//! - `policy_agent_policy_failures_total{policy, reason}`: each policy that
//!   gave no usable result: `POLICY_ERROR` outcomes (`policy_error`, or
//!   `unknown_policy`, `wrong_phase`, `invalid_metadata` when the chain step
//!   was refused at compile time), and chains that failed as a whole or
//!   could not run, with the error code as reason (`timeout`,
//!   `engine_error`, `degraded_denied`, `body_too_large`, …) against every
//!   policy of the chain. A denial is a decision, not a failure.
//! - `policy_agent_execution_duration_seconds{policy}`: time to run one
//!   chain (input, Rego evaluation, answer; the decision record is not
//!   included), labelled with the chain: its policies in order joined by
//!   `,`. A chain is compiled into one Rego evaluation, so the time of one
//!   policy inside a longer chain is not measured; a one-policy chain's
//!   label is that policy's name and its time is the policy's own.
//! - `policy_agent_context_size_bytes{type}`: size of the context a chain
//!   was asked to evaluate, by phase (`request`: the request context;
//!   `response`: the response context, the request context and the chain
//!   state), as the protobuf-encoded size of those messages.
//!
//! Label values are bounded: `policy` is a registered policy name or
//! [`UNKNOWN_POLICY`]; chain labels stop at [`MAX_CHAIN_LABELS`], later
//! chains share [`OTHER_CHAINS`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::RwLock;
use policy_proto::agent::{
    AgentMetrics, ExecutionCount, FailureCount, Histogram, PolicyOutcome, PolicyPhase,
    PolicyRequest, StatusCode,
};
use prost::Message;

use crate::chain::{ChainSpec, StepKind};
use crate::error::EvalError;
use crate::histogram::{AtomicHistogram, DURATION_BOUNDS_NS, SIZE_BOUNDS};
use crate::registry::PolicyRegistry;

/// The `policy` label of policies the agent does not know.
pub const UNKNOWN_POLICY: &str = "_unknown";
/// The chain label shared by chains beyond [`MAX_CHAIN_LABELS`].
pub const OTHER_CHAINS: &str = "_other";
/// Distinct chain labels of `policy_agent_execution_duration_seconds`.
pub const MAX_CHAIN_LABELS: usize = 256;

/// `status` of `policy_agent_executions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStatus {
    Ok,
    Denied,
    Error,
    Skipped,
    Timeout,
}

impl ExecStatus {
    pub const ALL: [Self; 5] = [
        Self::Ok,
        Self::Denied,
        Self::Error,
        Self::Skipped,
        Self::Timeout,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Error => "error",
            Self::Skipped => "skipped",
            Self::Timeout => "timeout",
        }
    }
}

/// `reason` of `policy_agent_policy_failures_total`: a policy's own error,
/// a step refused when the chain was compiled, or the code of an error of
/// the whole chain ([`EvalError::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The policy returned `POLICY_ERROR` (or no result, or a malformed one).
    PolicyError,
    /// The chain names a policy the agent does not have (`fail_on_unknown`).
    UnknownPolicy,
    /// The policy does not run in the chain's phase.
    WrongPhase,
    /// The chain's metadata for the policy fails its schema.
    InvalidMetadata,
    /// The chain failed as a whole, or could not run: the error's code.
    Chain(usize),
}

/// The chain error codes ([`EvalError::code`]), in the order of their
/// counters.
const CHAIN_CODES: [&str; 11] = [
    "timeout",
    "body_too_large",
    "state_too_large",
    "invalid_request",
    "compile_error",
    "engine_error",
    "undefined_decision",
    "malformed_decision",
    "engine_panic",
    "record_not_written",
    "degraded_denied",
];
const REASONS: usize = 4 + CHAIN_CODES.len();

impl FailureReason {
    fn index(self) -> usize {
        match self {
            Self::PolicyError => 0,
            Self::UnknownPolicy => 1,
            Self::WrongPhase => 2,
            Self::InvalidMetadata => 3,
            Self::Chain(i) => 4 + i,
        }
    }

    /// The reason for a chain that failed with `e`.
    fn chain(e: &EvalError) -> Self {
        Self::Chain(match e {
            EvalError::Timeout { .. } => 0,
            EvalError::BodyTooLarge { .. } => 1,
            EvalError::StateTooLarge { .. } => 2,
            EvalError::InvalidRequest(_) => 3,
            EvalError::Compile(_) => 4,
            EvalError::Engine(_) => 5,
            EvalError::Undefined => 6,
            EvalError::MalformedDecision(_) => 7,
            EvalError::Panic(_) => 8,
            EvalError::RecordNotWritten { .. } => 9,
            EvalError::DegradedDenied { .. } => 10,
        })
    }

    fn label(index: usize) -> &'static str {
        match index {
            0 => "policy_error",
            1 => "unknown_policy",
            2 => "wrong_phase",
            3 => "invalid_metadata",
            i => CHAIN_CODES.get(i - 4).copied().unwrap_or("unknown"),
        }
    }
}

/// The counters of one policy.
#[derive(Debug)]
pub(crate) struct PolicyCounters {
    name: Box<str>,
    executions: [AtomicU64; ExecStatus::ALL.len()],
    failures: [AtomicU64; REASONS],
}

impl PolicyCounters {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            executions: Default::default(),
            failures: Default::default(),
        }
    }

    fn executed(&self, status: ExecStatus) {
        if let Some(c) = self.executions.get(status as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    fn failed(&self, reason: FailureReason) {
        if let Some(c) = self.failures.get(reason.index()) {
            c.fetch_add(1, Relaxed);
        }
    }
}

/// One step's counters, resolved when its chain is compiled.
#[derive(Debug)]
struct StepMetrics {
    policy: Arc<PolicyCounters>,
    /// Why the step fails, when it was refused at compile time.
    refused: Option<FailureReason>,
}

/// The counters of one compiled chain, resolved once so that counting a
/// decision takes no lookup.
#[derive(Debug)]
pub(crate) struct ChainMetrics {
    steps: Box<[StepMetrics]>,
    duration: Arc<AtomicHistogram>,
}

impl Default for ChainMetrics {
    /// Counters of no chain (entry points compiled for tools).
    fn default() -> Self {
        Self {
            steps: Box::new([]),
            duration: Arc::new(AtomicHistogram::new(DURATION_BOUNDS_NS)),
        }
    }
}

/// How far one execution got, for [`DecisionMetrics::count`].
#[derive(Default)]
pub(crate) struct Progress {
    /// The chain, once compiled or found.
    pub chain: Option<Arc<crate::policyset::CompiledChain>>,
    /// The chain's evaluation was started.
    pub evaluated: bool,
    /// Bit `i` set: outcome `i` was `SKIPPED` (reported as `OK`).
    pub skipped: u64,
}

/// The agent's decision metrics (spec §7.1).
#[derive(Debug)]
pub struct DecisionMetrics {
    policies: RwLock<HashMap<Box<str>, Arc<PolicyCounters>>>,
    chains: RwLock<HashMap<Box<str>, Arc<AtomicHistogram>>>,
    request_context: AtomicHistogram,
    response_context: AtomicHistogram,
}

impl Default for DecisionMetrics {
    fn default() -> Self {
        Self {
            policies: RwLock::default(),
            chains: RwLock::default(),
            request_context: AtomicHistogram::new(SIZE_BOUNDS),
            response_context: AtomicHistogram::new(SIZE_BOUNDS),
        }
    }
}

impl DecisionMetrics {
    /// The counters of policy `name` (of [`UNKNOWN_POLICY`] when the
    /// registry does not have it), created on first use.
    pub(crate) fn policy(&self, registry: &PolicyRegistry, name: &str) -> Arc<PolicyCounters> {
        let name = if registry.get(name).is_some() {
            name
        } else {
            UNKNOWN_POLICY
        };
        if let Some(p) = self.policies.read().get(name) {
            return p.clone();
        }
        self.policies
            .write()
            .entry(name.into())
            .or_insert_with(|| Arc::new(PolicyCounters::new(name)))
            .clone()
    }

    /// Resolves the counters of a chain being compiled.
    pub(crate) fn chain(&self, registry: &PolicyRegistry, spec: &ChainSpec) -> ChainMetrics {
        let steps = spec
            .steps
            .iter()
            .map(|s| {
                let registered = registry.get(&s.policy);
                let refused = match (&s.kind, registered) {
                    (StepKind::Policy { .. }, _) => None,
                    (StepKind::Fixed { .. }, None) => Some(FailureReason::UnknownPolicy),
                    (StepKind::Fixed { .. }, Some(p)) if !p.info.phases.contains(&spec.phase) => {
                        Some(FailureReason::WrongPhase)
                    }
                    (StepKind::Fixed { .. }, Some(_)) => Some(FailureReason::InvalidMetadata),
                };
                StepMetrics {
                    policy: self.policy(registry, &s.policy),
                    refused,
                }
            })
            .collect();
        let label = spec
            .steps
            .iter()
            .map(|s| s.policy.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let duration = {
            let mut chains = self.chains.write();
            let label = if chains.len() >= MAX_CHAIN_LABELS && !chains.contains_key(label.as_str())
            {
                OTHER_CHAINS
            } else {
                label.as_str()
            };
            chains
                .entry(label.into())
                .or_insert_with(|| Arc::new(AtomicHistogram::new(DURATION_BOUNDS_NS)))
                .clone()
        };
        ChainMetrics { steps, duration }
    }

    /// Counts one execution of `req`: its context size, the outcome of each
    /// policy that ran (or the chain's failure) and, when the chain was
    /// evaluated, its duration.
    pub(crate) fn count(
        &self,
        registry: &PolicyRegistry,
        req: &PolicyRequest,
        progress: &Progress,
        result: Result<&[PolicyOutcome], &EvalError>,
        duration: Duration,
    ) {
        self.observe_context(req);
        let chain = progress.chain.as_ref().map(|c| &c.metrics);
        match (result, chain) {
            (Ok(outcomes), Some(chain)) => {
                for (i, o) in outcomes.iter().enumerate() {
                    let step = chain
                        .steps
                        .get(i)
                        .filter(|s| s.policy.name.as_ref() == o.policy_name);
                    let status = match StatusCode::try_from(o.code) {
                        Ok(StatusCode::Ok) if i < 64 && progress.skipped & (1 << i) != 0 => {
                            ExecStatus::Skipped
                        }
                        Ok(StatusCode::Ok) => ExecStatus::Ok,
                        Ok(StatusCode::PolicyDenied) => ExecStatus::Denied,
                        Ok(StatusCode::Timeout) => ExecStatus::Timeout,
                        Ok(StatusCode::PolicyError) | Err(_) => ExecStatus::Error,
                    };
                    let reason = step
                        .and_then(|s| s.refused)
                        .unwrap_or(FailureReason::PolicyError);
                    match step {
                        Some(s) => count_policy(&s.policy, status, reason),
                        // Outcomes follow the steps; anything else is looked up.
                        None => {
                            count_policy(&self.policy(registry, &o.policy_name), status, reason)
                        }
                    }
                }
            }
            (Ok(_), None) => {}
            (Err(e), Some(chain)) => {
                let status = executed_status(e, progress.evaluated);
                for s in chain.steps.iter() {
                    if let Some(status) = status {
                        s.policy.executed(status);
                    }
                    s.policy.failed(FailureReason::chain(e));
                }
            }
            (Err(e), None) => {
                for p in &req.policies {
                    self.policy(registry, &p.name)
                        .failed(FailureReason::chain(e));
                }
            }
        }
        if let (true, Some(chain)) = (progress.evaluated, chain) {
            chain
                .duration
                .observe(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
        }
    }

    fn observe_context(&self, req: &PolicyRequest) {
        let request = req.context.as_ref().map_or(0, Message::encoded_len);
        match PolicyPhase::try_from(req.phase) {
            Ok(PolicyPhase::Request) => self.request_context.observe(request as u64),
            Ok(PolicyPhase::Response) => {
                let response = req.response.as_ref().map_or(0, Message::encoded_len);
                self.response_context
                    .observe((request + response + req.state_json.len()) as u64);
            }
            Err(_) => {}
        }
    }

    /// The metrics as the health answer carries them: every status of each
    /// policy that has counters (zeros included), the failures that
    /// happened, every chain's durations and both context sizes.
    pub fn snapshot(&self) -> AgentMetrics {
        let mut executions = Vec::new();
        let mut failures = Vec::new();
        let mut policies: Vec<Arc<PolicyCounters>> =
            self.policies.read().values().cloned().collect();
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        for p in &policies {
            for (status, c) in ExecStatus::ALL.iter().zip(&p.executions) {
                executions.push(ExecutionCount {
                    policy: p.name.to_string(),
                    status: status.as_str().to_string(),
                    count: c.load(Relaxed),
                });
            }
            for (i, c) in p.failures.iter().enumerate() {
                let count = c.load(Relaxed);
                if count > 0 {
                    failures.push(FailureCount {
                        policy: p.name.to_string(),
                        reason: FailureReason::label(i).to_string(),
                        count,
                    });
                }
            }
        }
        let mut execution_durations: Vec<Histogram> = self
            .chains
            .read()
            .iter()
            .map(|(label, h)| h.snapshot(label, 1e9))
            .collect();
        execution_durations.sort_by(|a, b| a.label.cmp(&b.label));
        AgentMetrics {
            executions,
            failures,
            execution_durations,
            context_sizes: vec![
                self.request_context.snapshot("request", 1.0),
                self.response_context.snapshot("response", 1.0),
            ],
        }
    }
}

fn count_policy(p: &PolicyCounters, status: ExecStatus, reason: FailureReason) {
    p.executed(status);
    if status == ExecStatus::Error {
        p.failed(reason);
    }
}

/// The status each policy of a chain that failed as a whole is counted
/// with; `None` when its evaluation never started.
fn executed_status(e: &EvalError, evaluated: bool) -> Option<ExecStatus> {
    match e {
        _ if !evaluated => None,
        EvalError::Timeout { .. } => Some(ExecStatus::Timeout),
        _ => Some(ExecStatus::Error),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use policy_rego::Phase;

    use super::*;
    use crate::chain::{OnFailure, Step};

    fn spec(names: &[&str]) -> ChainSpec {
        ChainSpec {
            phase: Phase::Request,
            steps: names
                .iter()
                .map(|n| Step {
                    policy: (*n).to_string(),
                    on_failure: OnFailure::Deny,
                    kind: StepKind::Fixed {
                        result: serde_json::json!({}),
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn chain_failure_reasons_are_the_error_codes() {
        for e in [
            EvalError::Timeout { deadline_ms: 1 },
            EvalError::BodyTooLarge {
                what: "request",
                size: 2,
                limit: 1,
            },
            EvalError::StateTooLarge { size: 2, limit: 1 },
            EvalError::InvalidRequest(String::new()),
            EvalError::Compile(String::new()),
            EvalError::Engine(String::new()),
            EvalError::Undefined,
            EvalError::MalformedDecision(String::new()),
            EvalError::Panic(String::new()),
            EvalError::RecordNotWritten {
                code: "log_full",
                reason: String::new(),
            },
            EvalError::DegradedDenied {
                tier: "complex",
                reason: String::new(),
            },
        ] {
            assert_eq!(
                FailureReason::label(FailureReason::chain(&e).index()),
                e.code()
            );
        }
        assert_eq!(FailureReason::label(0), "policy_error");
        assert_eq!(FailureReason::label(3), "invalid_metadata");
    }

    #[test]
    fn a_failed_evaluation_counts_its_policies_as_timeout_or_error() {
        let timeout = EvalError::Timeout { deadline_ms: 1 };
        let engine = EvalError::Engine("boom".into());
        assert_eq!(executed_status(&timeout, true), Some(ExecStatus::Timeout));
        assert_eq!(executed_status(&engine, true), Some(ExecStatus::Error));
        assert_eq!(executed_status(&timeout, false), None, "never started");
    }

    #[test]
    fn unknown_policies_and_chains_beyond_the_cap_share_a_label() {
        let m = DecisionMetrics::default();
        let registry = PolicyRegistry::default();
        for i in 0..MAX_CHAIN_LABELS + 5 {
            let name = format!("p{i}");
            let c = m.chain(&registry, &spec(&[name.as_str(), "q"]));
            assert_eq!(c.steps[0].policy.name.as_ref(), UNKNOWN_POLICY);
            assert_eq!(c.steps[0].refused, Some(FailureReason::UnknownPolicy));
        }
        // A chain seen before the cap keeps its label.
        let _ = m.chain(&registry, &spec(&["p0", "q"]));
        let snapshot = m.snapshot();
        let labels: Vec<&str> = snapshot
            .execution_durations
            .iter()
            .map(|h| h.label.as_str())
            .collect();
        assert_eq!(labels.len(), MAX_CHAIN_LABELS + 1);
        assert!(labels.contains(&"p0,q"));
        assert!(labels.contains(&OTHER_CHAINS));
        let policies: Vec<&str> = snapshot
            .executions
            .iter()
            .map(|e| e.policy.as_str())
            .collect();
        assert!(
            policies.iter().all(|p| *p == UNKNOWN_POLICY),
            "{policies:?}"
        );
    }
}
