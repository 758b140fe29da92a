//! The agents' own metrics of spec §7.1, as each agent reported them in its
//! last health answer, exposed with an `agent` label:
//! `policy_agent_executions_total{agent, policy, status}`,
//! `policy_agent_policy_failures_total{agent, policy, reason}`,
//! `policy_agent_execution_duration_seconds{agent, policy}`,
//! `policy_agent_context_size_bytes{agent, type}`.
//!
//! The agent counts them (it is the one that runs policies); the kernel only
//! keeps the last report of each agent and writes it out on each scrape. An
//! agent that stops keeps its last values until it leaves the
//! configuration; one that restarts starts again from zero, which
//! Prometheus reads as a counter reset.

use std::collections::BTreeMap;

use parking_lot::RwLock;
use policy_proto::agent::{AgentMetrics, Histogram};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

/// Series of one kind kept per agent; an agent bounds its labels well
/// below this, the cap only guards the kernel against a faulty one.
const MAX_SERIES: usize = 4096;

const EXECUTIONS_HELP: &str = "Policies run by the agent, by outcome (ok, denied, error, skipped); \
     when a chain's evaluation fails as a whole, each of its policies counts as timeout or error.";
const FAILURES_HELP: &str = "Policies that gave no usable result, by reason: the policy's own error \
     (policy_error), a chain step refused when compiled (unknown_policy, wrong_phase, invalid_metadata), \
     or the error code of a chain that failed or could not run, once per policy of the chain.";
const DURATION_HELP: &str = "Time for the agent to run one policy chain (input, Rego evaluation, answer). \
     A chain is one Rego evaluation, so the label policy is the chain: its policies in order, comma-separated.";
const CONTEXT_HELP: &str = "Protobuf-encoded size of the context a chain evaluated, by phase \
     (request: the request context; response: the response and request contexts and the chain state).";

/// The last metrics report of each agent.
#[derive(Debug, Default)]
pub(crate) struct AgentReports {
    by_agent: RwLock<BTreeMap<String, AgentMetrics>>,
}

impl AgentReports {
    /// Keeps `report` as `agent`'s metrics, without histograms whose
    /// buckets are not well-formed.
    pub(crate) fn set(&self, agent: &str, mut report: AgentMetrics) {
        let before = report.execution_durations.len() + report.context_sizes.len();
        report.execution_durations.retain(is_well_formed);
        report.context_sizes.retain(is_well_formed);
        if report.execution_durations.len() + report.context_sizes.len() < before {
            tracing::warn!(%agent, "agent reported malformed histograms: left out of /metrics");
        }
        let too_many = report.executions.len() > MAX_SERIES
            || report.failures.len() > MAX_SERIES
            || report.execution_durations.len() > MAX_SERIES;
        if too_many {
            tracing::warn!(%agent, max = MAX_SERIES, "agent reported too many series: truncated");
            report.executions.truncate(MAX_SERIES);
            report.failures.truncate(MAX_SERIES);
            report.execution_durations.truncate(MAX_SERIES);
        }
        self.by_agent.write().insert(agent.to_string(), report);
    }

    /// Forgets an agent that left the configuration.
    pub(crate) fn remove(&self, agent: &str) {
        self.by_agent.write().remove(agent);
    }
}

/// Ascending finite bounds and one count per bucket plus +Inf.
fn is_well_formed(h: &Histogram) -> bool {
    h.counts.len() == h.upper_bounds.len() + 1
        && h.upper_bounds.iter().all(|b| b.is_finite())
        && h.upper_bounds.windows(2).all(|w| w[0] < w[1])
        && h.sum.is_finite()
}

impl Collector for AgentReports {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let reports = self.by_agent.read();
        let agents = || reports.iter().map(|(a, m)| (a.as_str(), m));

        if agents().any(|(_, m)| !m.executions.is_empty()) {
            let mut family = encoder.encode_descriptor(
                "policy_agent_executions",
                EXECUTIONS_HELP,
                None,
                MetricType::Counter,
            )?;
            for (agent, m) in agents() {
                for e in &m.executions {
                    let labels = [
                        ("agent", agent),
                        ("policy", e.policy.as_str()),
                        ("status", e.status.as_str()),
                    ];
                    ConstCounter::new(e.count).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        if agents().any(|(_, m)| !m.failures.is_empty()) {
            let mut family = encoder.encode_descriptor(
                "policy_agent_policy_failures",
                FAILURES_HELP,
                None,
                MetricType::Counter,
            )?;
            for (agent, m) in agents() {
                for f in &m.failures {
                    let labels = [
                        ("agent", agent),
                        ("policy", f.policy.as_str()),
                        ("reason", f.reason.as_str()),
                    ];
                    ConstCounter::new(f.count).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        if agents().any(|(_, m)| !m.execution_durations.is_empty()) {
            let mut family = encoder.encode_descriptor(
                "policy_agent_execution_duration_seconds",
                DURATION_HELP,
                None,
                MetricType::Histogram,
            )?;
            for (agent, m) in agents() {
                for h in &m.execution_durations {
                    let labels = [("agent", agent), ("policy", h.label.as_str())];
                    encode_histogram(h, &mut family.encode_family(&labels)?)?;
                }
            }
        }
        if agents().any(|(_, m)| !m.context_sizes.is_empty()) {
            let mut family = encoder.encode_descriptor(
                "policy_agent_context_size_bytes",
                CONTEXT_HELP,
                None,
                MetricType::Histogram,
            )?;
            for (agent, m) in agents() {
                for h in &m.context_sizes {
                    let labels = [("agent", agent), ("type", h.label.as_str())];
                    encode_histogram(h, &mut family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_histogram(
    h: &Histogram,
    encoder: &mut prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let buckets: Vec<(f64, u64)> = h
        .upper_bounds
        .iter()
        .copied()
        .chain(std::iter::once(f64::INFINITY))
        .zip(h.counts.iter().copied())
        .collect();
    let count = h.counts.iter().fold(0u64, |a, c| a.saturating_add(*c));
    encoder.encode_histogram::<NoLabelSet>(h.sum, count, &buckets, None)
}
