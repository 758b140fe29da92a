//! The kernel's Prometheus metrics, exactly the names of spec §7.1:
//! `policy_kernel_requests_total{route, agent, status}`,
//! `policy_kernel_request_duration_seconds{route, agent}`,
//! `policy_kernel_agent_health{agent}`,
//! `policy_kernel_agent_timeouts_total{agent}`,
//! `policy_kernel_config_reload_total{status}`; the agents' own metrics of
//! §7.1 from their health answers (see `agent_metrics`), and their journal
//! and degraded-mode state. Written in the Prometheus text format 0.0.4
//! (see `exposition`).
//!
//! Label values are bounded: `route` is a configured route name (or
//! `default` / `none`), never a name taken from a request.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::agent_metrics::AgentReports;
use crate::decision::Outcome;

/// `route`, `agent` and `status` of one evaluated phase.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    agent: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteAgentLabels {
    route: String,
    agent: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    agent: String,
    mode: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabels {
    agent: String,
    tier: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

fn duration_histogram() -> Histogram {
    // 50 µs … ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The registry and its metric families.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteAgentLabels, Histogram, fn() -> Histogram>,
    agent_health: Family<AgentLabels, Gauge>,
    agent_timeouts: Family<AgentLabels, Counter>,
    reloads: Family<StatusLabels, Counter>,
    journal: JournalGauges,
    agents: Arc<AgentReports>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every kernel metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations =
            Family::<RouteAgentLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        let agent_health = Family::<AgentLabels, Gauge>::default();
        let agent_timeouts = Family::<AgentLabels, Counter>::default();
        let reloads = Family::<StatusLabels, Counter>::default();
        // prometheus-client appends `_total` to counters and `_seconds` to
        // histograms registered with a unit.
        registry.register(
            "policy_kernel_requests",
            "Evaluated phases by route, agent and outcome",
            requests.clone(),
        );
        registry.register(
            "policy_kernel_request_duration_seconds",
            "Time to decide one phase (agent call, retries included)",
            durations.clone(),
        );
        registry.register(
            "policy_kernel_agent_health",
            "Agent health (0 unhealthy, 1 healthy)",
            agent_health.clone(),
        );
        registry.register(
            "policy_kernel_agent_timeouts",
            "Agent calls that timed out",
            agent_timeouts.clone(),
        );
        registry.register(
            "policy_kernel_config_reload",
            "Configuration reloads by result",
            reloads.clone(),
        );
        let journal = JournalGauges::register(&mut registry);
        let agents = Arc::new(AgentReports::default());
        registry.register_collector(Box::new(agents.clone()));
        for status in ["success", "failure"] {
            let _ = reloads.get_or_create(&StatusLabels {
                status: status.into(),
            });
        }
        Self {
            registry,
            requests,
            durations,
            agent_health,
            agent_timeouts,
            reloads,
            journal,
            agents,
        }
    }

    /// The metrics an agent reported in its last health check.
    pub fn set_agent_metrics(&self, agent: &str, report: policy_proto::agent::AgentMetrics) {
        self.agents.set(agent, report);
    }

    /// The decision-journal state an agent reported in its last health check.
    pub fn set_agent_journal(&self, agent: &str, status: &policy_proto::agent::JournalStatus) {
        let labels = AgentLabels {
            agent: agent.into(),
        };
        let j = &self.journal;
        let set = |family: &Family<AgentLabels, Gauge>, v: u64| {
            family
                .get_or_create(&labels)
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&j.connected, u64::from(status.connected));
        set(&j.pending_records, status.pending_records);
        set(&j.pending_bytes, status.pending_bytes);
        set(&j.unacked, status.last_seq.saturating_sub(status.acked_seq));
        set(&j.dropped, status.dropped_total);
        set(&j.denied_full, status.denied_full_total);
        if let Some(d) = &status.degraded {
            for mode in ["normal", "degraded", "emergency"] {
                j.mode
                    .get_or_create(&ModeLabels {
                        agent: agent.into(),
                        mode: mode.into(),
                    })
                    .set(i64::from(d.mode == mode));
            }
            j.in_mode
                .get_or_create(&labels)
                .set(Duration::from_millis(d.in_mode_ms).as_secs_f64());
            set(&j.transitions, d.transitions);
            set(&j.snapshot_version, d.snapshot_version);
            j.snapshot_age
                .get_or_create(&labels)
                .set(if d.snapshot_age_ms < 0 {
                    -1.0
                } else {
                    Duration::from_millis(d.snapshot_age_ms.unsigned_abs()).as_secs_f64()
                });
            set(&j.sync_failures, d.sync_failures);
            set(&j.emergency_decisions, d.emergency_decisions);
            for t in &d.decisions {
                j.tier_decisions
                    .get_or_create(&TierLabels {
                        agent: agent.into(),
                        tier: t.tier.clone(),
                        outcome: t.outcome.clone(),
                    })
                    .set(i64::try_from(t.count).unwrap_or(i64::MAX));
            }
        }
    }

    /// Records one evaluated phase.
    pub fn record(&self, route: &str, agent: &str, outcome: Outcome, took: Option<Duration>) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.into(),
                agent: agent.into(),
                status: outcome.code().into(),
            })
            .inc();
        if let Some(took) = took {
            self.durations
                .get_or_create(&RouteAgentLabels {
                    route: route.into(),
                    agent: agent.into(),
                })
                .observe(took.as_secs_f64());
        }
        if outcome == Outcome::AgentTimeout {
            self.agent_timeouts
                .get_or_create(&AgentLabels {
                    agent: agent.into(),
                })
                .inc();
        }
    }

    /// Sets an agent's health gauge (and shows its timeout counter, at 0
    /// until the first timeout).
    pub fn set_agent_health(&self, agent: &str, healthy: bool) {
        let labels = AgentLabels {
            agent: agent.into(),
        };
        self.agent_health
            .get_or_create(&labels)
            .set(i64::from(healthy));
        let _ = self.agent_timeouts.get_or_create(&labels);
    }

    /// Forgets an agent that left the configuration.
    pub fn remove_agent(&self, agent: &str) {
        let labels = AgentLabels {
            agent: agent.into(),
        };
        self.agent_health.remove(&labels);
        self.agent_timeouts.remove(&labels);
        self.journal.remove(&labels);
        self.agents.remove(agent);
    }

    /// Counts a reload (`success` or `failure`).
    pub fn reload(&self, success: bool) {
        let status = if success { "success" } else { "failure" };
        self.reloads
            .get_or_create(&StatusLabels {
                status: status.into(),
            })
            .inc();
    }

    /// The exposition in the Prometheus text format 0.0.4
    /// ([`crate::exposition::CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        crate::exposition::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use policy_proto::agent::{AgentMetrics, ExecutionCount, FailureCount, Histogram};

    use super::*;

    #[test]
    fn exposes_the_spec_names() {
        let m = Metrics::new();
        m.record(
            "/api/v1/users",
            "default-agent",
            Outcome::Allowed,
            Some(Duration::from_micros(300)),
        );
        m.record(
            "/api/v1/users",
            "default-agent",
            Outcome::AgentTimeout,
            None,
        );
        m.set_agent_health("default-agent", true);
        m.reload(false);
        let text = m.encode();
        for needle in [
            "policy_kernel_requests_total{route=\"/api/v1/users\",agent=\"default-agent\",status=\"allowed\"} 1",
            "policy_kernel_requests_total{route=\"/api/v1/users\",agent=\"default-agent\",status=\"agent_timeout\"} 1",
            "policy_kernel_request_duration_seconds_bucket{",
            "policy_kernel_request_duration_seconds_count{route=\"/api/v1/users\",agent=\"default-agent\"} 1",
            "policy_kernel_agent_health{agent=\"default-agent\"} 1",
            "policy_kernel_agent_timeouts_total{agent=\"default-agent\"} 1",
            "policy_kernel_config_reload_total{status=\"failure\"} 1",
            "policy_kernel_config_reload_total{status=\"success\"} 0",
            "# HELP policy_kernel_requests_total Evaluated phases by route, agent and outcome.\n# TYPE policy_kernel_requests_total counter\n",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        m.set_agent_health("other", false);
        assert!(
            m.encode()
                .contains("policy_kernel_agent_timeouts_total{agent=\"other\"} 0")
        );
        m.remove_agent("default-agent");
        assert!(
            !m.encode()
                .contains("policy_kernel_agent_health{agent=\"default-agent\"}")
        );
    }

    fn agent_report() -> AgentMetrics {
        AgentMetrics {
            executions: vec![ExecutionCount {
                policy: "apiKeyAuth".into(),
                status: "denied".into(),
                count: 3,
            }],
            failures: vec![FailureCount {
                policy: "apiKeyAuth".into(),
                reason: "timeout".into(),
                count: 1,
            }],
            execution_durations: vec![Histogram {
                label: "apiKeyAuth,rateLimit".into(),
                upper_bounds: vec![0.00001, 0.001],
                counts: vec![1, 2, 1],
                sum: 0.5,
            }],
            context_sizes: vec![
                Histogram {
                    label: "request".into(),
                    upper_bounds: vec![256.0],
                    counts: vec![4, 0],
                    sum: 400.0,
                },
                Histogram {
                    label: "response".into(),
                    upper_bounds: vec![256.0, 128.0],
                    counts: vec![0, 0, 0],
                    sum: 0.0,
                },
            ],
        }
    }

    #[test]
    fn agent_reports_are_exposed_with_an_agent_label() {
        let m = Metrics::new();
        assert!(
            !m.encode().contains("policy_agent_executions"),
            "no family before the first report"
        );
        m.set_agent_metrics("a1", agent_report());
        let text = m.encode();
        for needle in [
            "# TYPE policy_agent_executions_total counter\n",
            "policy_agent_executions_total{agent=\"a1\",policy=\"apiKeyAuth\",status=\"denied\"} 3\n",
            "# TYPE policy_agent_policy_failures_total counter\n",
            "policy_agent_policy_failures_total{agent=\"a1\",policy=\"apiKeyAuth\",reason=\"timeout\"} 1\n",
            "# TYPE policy_agent_execution_duration_seconds histogram\n",
            "policy_agent_execution_duration_seconds_bucket{le=\"0.00001\",agent=\"a1\",policy=\"apiKeyAuth,rateLimit\"} 1\n",
            "policy_agent_execution_duration_seconds_bucket{le=\"0.001\",agent=\"a1\",policy=\"apiKeyAuth,rateLimit\"} 3\n",
            "policy_agent_execution_duration_seconds_bucket{le=\"+Inf\",agent=\"a1\",policy=\"apiKeyAuth,rateLimit\"} 4\n",
            "policy_agent_execution_duration_seconds_count{agent=\"a1\",policy=\"apiKeyAuth,rateLimit\"} 4\n",
            "policy_agent_execution_duration_seconds_sum{agent=\"a1\",policy=\"apiKeyAuth,rateLimit\"} 0.5\n",
            "# TYPE policy_agent_context_size_bytes histogram\n",
            "policy_agent_context_size_bytes_count{agent=\"a1\",type=\"request\"} 4\n",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(
            !text.contains("type=\"response\""),
            "a histogram with unordered bounds is left out"
        );
        assert!(!text.contains("# EOF"));
        m.remove_agent("a1");
        assert!(!m.encode().contains("policy_agent_executions"));
    }
}

/// Per-agent gauges of the decision journal, from the agents' health answers.
#[derive(Debug, Clone, Default)]
struct JournalGauges {
    connected: Family<AgentLabels, Gauge>,
    pending_records: Family<AgentLabels, Gauge>,
    pending_bytes: Family<AgentLabels, Gauge>,
    unacked: Family<AgentLabels, Gauge>,
    dropped: Family<AgentLabels, Gauge>,
    denied_full: Family<AgentLabels, Gauge>,
    mode: Family<ModeLabels, Gauge>,
    in_mode: Family<AgentLabels, Gauge<f64, AtomicU64>>,
    transitions: Family<AgentLabels, Gauge>,
    snapshot_version: Family<AgentLabels, Gauge>,
    snapshot_age: Family<AgentLabels, Gauge<f64, AtomicU64>>,
    sync_failures: Family<AgentLabels, Gauge>,
    tier_decisions: Family<TierLabels, Gauge>,
    emergency_decisions: Family<AgentLabels, Gauge>,
}

impl JournalGauges {
    fn register(registry: &mut Registry) -> Self {
        let g = Self::default();
        for (name, help, family) in [
            (
                "policy_agent_journal_connected",
                "Whether the agent streams to the journal (1) or is partitioned (0)",
                &g.connected,
            ),
            (
                "policy_agent_local_log_pending_records",
                "Decision records in the agent's local log not yet acknowledged by the journal",
                &g.pending_records,
            ),
            (
                "policy_agent_local_log_pending_bytes",
                "Bytes of decision records in the agent's local log not yet acknowledged",
                &g.pending_bytes,
            ),
            (
                "policy_agent_local_log_unacked_seq",
                "Records written by the agent since the journal's last acknowledgement",
                &g.unacked,
            ),
            (
                "policy_agent_local_log_dropped_records",
                "Records dropped since the agent started because its local log was full (on_full: drop_with_counter)",
                &g.dropped,
            ),
            (
                "policy_agent_local_log_full_denials",
                "Decisions denied since the agent started because its local log was full (on_full: deny)",
                &g.denied_full,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "policy_agent_mode",
            "The agent's mode: 1 for the current one (normal, degraded, emergency)",
            g.mode.clone(),
        );
        registry.register(
            "policy_agent_mode_seconds",
            "Time the agent has been in its current mode",
            g.in_mode.clone(),
        );
        registry.register(
            "policy_agent_mode_transitions",
            "Mode changes since the agent started",
            g.transitions.clone(),
        );
        registry.register(
            "policy_agent_degraded_snapshot_version",
            "Version of the degraded-mode data synced from the journal (0: none)",
            g.snapshot_version.clone(),
        );
        registry.register(
            "policy_agent_degraded_snapshot_age_seconds",
            "Age of the degraded-mode data synced from the journal (-1: never synced)",
            g.snapshot_age.clone(),
        );
        registry.register(
            "policy_agent_degraded_sync_failures",
            "Degraded-mode data syncs that failed since the agent started",
            g.sync_failures.clone(),
        );
        registry.register(
            "policy_agent_emergency_decisions",
            "Decisions made in emergency (break-glass) mode since the agent started",
            g.emergency_decisions.clone(),
        );
        registry.register(
            "policy_agent_degraded_decisions",
            "Decisions made in degraded mode since the agent started, by tier and outcome",
            g.tier_decisions.clone(),
        );
        g
    }

    fn remove(&self, labels: &AgentLabels) {
        for f in [
            &self.connected,
            &self.pending_records,
            &self.pending_bytes,
            &self.unacked,
            &self.dropped,
            &self.denied_full,
            &self.transitions,
            &self.snapshot_version,
            &self.sync_failures,
            &self.emergency_decisions,
        ] {
            f.remove(labels);
        }
        self.in_mode.remove(labels);
        self.snapshot_age.remove(labels);
        for mode in ["normal", "degraded", "emergency"] {
            self.mode.remove(&ModeLabels {
                agent: labels.agent.clone(),
                mode: mode.into(),
            });
        }
    }
}
