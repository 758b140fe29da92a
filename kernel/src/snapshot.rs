//! One immutable view of the configuration: route plans (the chains as
//! protocol messages, ready to send), the agent handles they use, and the
//! settings a stream needs. Swapped whole on reload; a stream keeps the
//! snapshot it started with.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use policy_proto::agent::{ChainToPrepare, Policy, PolicyPhase};
use serde::Serialize;

use crate::agents::AgentHandle;
use crate::config::{AuditLevel, ChainEntry, KernelConfig, PolicyChains};

/// The `route` label and chain route of the default policy.
pub const DEFAULT_ROUTE: &str = "default";
/// The `route` label of requests that matched nothing and had no default.
pub const NO_ROUTE: &str = "none";

/// A snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("route `{route}` uses agent `{agent}`, which has no handle")]
    MissingAgent { route: String, agent: String },
}

/// Whether a route can be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteState {
    Valid,
    /// The agent was not reached yet; its policies are unknown.
    Undiscovered,
    /// The agent does not support one of the route's policies.
    Invalid(String),
}

/// A route's chains, ready to send.
#[derive(Debug)]
pub struct RoutePlan {
    /// The configured route name, or [`DEFAULT_ROUTE`].
    pub route: String,
    pub agent: Arc<AgentHandle>,
    pub request: Vec<Policy>,
    pub response: Vec<Policy>,
    /// The request chain runs on the buffered request body.
    pub request_body: bool,
    /// The response chain runs on the buffered response body.
    pub response_body: bool,
    /// Decisions wait for their record to be synced (`audit: strict`).
    pub audit_strict: bool,
}

fn policies(chain: &[ChainEntry]) -> Vec<Policy> {
    chain
        .iter()
        .map(|e| Policy {
            name: e.policy.clone(),
            metadata: e.metadata_strings().into_iter().collect(),
            on_failure: e.on_failure.clone(),
        })
        .collect()
}

impl RoutePlan {
    fn new(route: &str, chains: &PolicyChains, agent: Arc<AgentHandle>) -> Self {
        Self {
            route: route.to_string(),
            agent,
            request: policies(&chains.request_policy_chain),
            response: policies(&chains.response_policy_chain),
            request_body: chains.request_body,
            response_body: chains.needs_response_body(),
            audit_strict: chains.audit == AuditLevel::Strict,
        }
    }

    /// Checks the chains against what the agent advertised.
    pub fn state(&self) -> RouteState {
        let Some(discovery) = self.agent.discovery() else {
            return RouteState::Undiscovered;
        };
        let request = self.request.iter().map(|p| (p, PolicyPhase::Request));
        let response = self.response.iter().map(|p| (p, PolicyPhase::Response));
        for (p, phase) in request.chain(response) {
            if let Some(reason) = discovery.unsupported(&p.name, phase) {
                return RouteState::Invalid(reason);
            }
        }
        RouteState::Valid
    }
}

/// A route the kernel refuses to serve, for logs and `/health/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidRoute {
    pub route: String,
    pub agent: String,
    pub reason: String,
}

/// The configuration in force.
#[derive(Debug)]
pub struct Snapshot {
    pub config: KernelConfig,
    /// 1 for the configuration loaded at start, +1 per successful reload.
    pub version: u64,
    routes: HashMap<String, Arc<RoutePlan>>,
    default: Option<Arc<RoutePlan>>,
    agents: BTreeMap<String, Arc<AgentHandle>>,
}

impl Snapshot {
    /// Plans for every route of `config`, using `agents` (one per configured agent).
    pub fn try_new(
        config: KernelConfig,
        agents: HashMap<String, Arc<AgentHandle>>,
        version: u64,
    ) -> Result<Self, SnapshotError> {
        let first = config
            .agents
            .first()
            .map(|a| a.name.clone())
            .unwrap_or_default();
        let agent_for = |route: &str, chains: &PolicyChains| {
            let name = chains.agent.clone().unwrap_or_else(|| first.clone());
            agents
                .get(&name)
                .cloned()
                .ok_or(SnapshotError::MissingAgent {
                    route: route.to_string(),
                    agent: name,
                })
        };
        let mut routes = HashMap::new();
        for r in &config.route_policies {
            let agent = agent_for(&r.route_name, &r.chains)?;
            routes.insert(
                r.route_name.clone(),
                Arc::new(RoutePlan::new(&r.route_name, &r.chains, agent)),
            );
        }
        let default = match &config.default_policy {
            Some(d) => Some(Arc::new(RoutePlan::new(
                DEFAULT_ROUTE,
                d,
                agent_for(DEFAULT_ROUTE, d)?,
            ))),
            None => None,
        };
        Ok(Self {
            config,
            version,
            routes,
            default,
            agents: agents.into_iter().collect(),
        })
    }

    /// Has each agent (or only `agent`) compile the chains it will run, so
    /// the first requests after a start, a reload or an agent restart do not
    /// pay for compiling within their deadline.
    pub async fn warm_up(&self, agent: Option<&str>) {
        let mut by_agent: BTreeMap<&str, (Arc<AgentHandle>, Vec<ChainToPrepare>)> = BTreeMap::new();
        for plan in self.routes.values().chain(self.default.iter()) {
            let name = plan.agent.name();
            if agent.is_some_and(|a| a != name) {
                continue;
            }
            let entry = by_agent
                .entry(name)
                .or_insert_with(|| (plan.agent.clone(), Vec::new()));
            for (phase, policies) in [
                (PolicyPhase::Request, &plan.request),
                (PolicyPhase::Response, &plan.response),
            ] {
                if !policies.is_empty() {
                    entry.1.push(ChainToPrepare {
                        phase: phase as i32,
                        policies: policies.clone(),
                    });
                }
            }
        }
        for (_, (handle, chains)) in by_agent {
            handle.prepare_chains(chains).await;
        }
    }

    /// The plan for `route`: its own, else the default policy's, else none.
    pub fn plan(&self, route: Option<&str>) -> Option<&Arc<RoutePlan>> {
        route
            .and_then(|r| self.routes.get(r))
            .or(self.default.as_ref())
    }

    /// The agents of this configuration, by name.
    pub fn agents(&self) -> impl Iterator<Item = &Arc<AgentHandle>> {
        self.agents.values()
    }

    /// Routes (and the default policy) whose agent lacks one of their policies.
    pub fn invalid_routes(&self) -> Vec<InvalidRoute> {
        let mut out: Vec<InvalidRoute> = self
            .routes
            .values()
            .chain(self.default.iter())
            .filter_map(|p| match p.state() {
                RouteState::Invalid(reason) => Some(InvalidRoute {
                    route: p.route.clone(),
                    agent: p.agent.name().to_string(),
                    reason,
                }),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.route.cmp(&b.route));
        out
    }

    /// Logs every invalid route of `agent` (or of all agents).
    pub fn log_invalid_routes(&self, agent: Option<&str>) {
        for r in self.invalid_routes() {
            if agent.is_none_or(|a| a == r.agent) {
                tracing::error!(route = %r.route, agent = %r.agent, reason = %r.reason, "route invalid: its requests are denied with 500");
            }
        }
    }
}
