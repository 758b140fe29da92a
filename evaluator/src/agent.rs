//! The agent core: turns a `PolicyRequest` into a `PolicyResponse` by
//! compiling (once) and evaluating the request's chain on the current
//! policy snapshot.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use policy_degraded::{Tier, Verdict};
use policy_proto::agent::{
    GetAgentConfigResponse, PolicyInfo as ProtoPolicyInfo, PolicyPhase, PolicyRequest,
    PolicyResponse,
};
use policy_rego::Phase;

use crate::builtins::{NativeBuiltins, RateLimiter, RateLimiterConfig, RecordedCall};
use crate::chain::{ChainSpec, OnFailure};
use crate::config::AgentConfig;
use crate::context::{InputLimits, build_input, decision_to_response_with_skips, error_response};
use crate::degraded::{Decision, DegradedState, Emergency, EmergencyChange, EmergencyError};
use crate::error::{EvalError, SetupError};
use crate::journal::{Journal, RecordError};
use crate::metrics::Progress;
use crate::policyset::{CompiledChain, EngineStats, PolicySet};
use crate::records::build_record;
use crate::registry::PolicyRegistry;
use crate::worker::{self, EnginePath};

/// What one execution produced, for the caller's records and metrics.
#[derive(Debug)]
pub struct Execution {
    pub response: PolicyResponse,
    /// How the chain was evaluated; `None` when it failed before evaluation.
    pub engine: Option<EnginePath>,
    pub error: Option<EvalError>,
    pub recorded: Vec<RecordedCall>,
    pub duration: Duration,
    /// Seq of the decision record in the local log (`None`: no journal, or
    /// the record was dropped because the log is full in drop mode).
    pub record_seq: Option<u64>,
    /// The answer must wait for [`Agent::wait_synced`] on `record_seq`
    /// (`audit: strict`).
    pub sync_required: bool,
}

/// The agent core.
pub struct Agent {
    config: AgentConfig,
    policies: RwLock<Arc<PolicySet>>,
    /// The data of the config's files (or the last `replace_data`), before
    /// the journal-synced document is added as `data.synced`.
    base_data: RwLock<serde_json::Value>,
    builtins: NativeBuiltins,
    stats: Arc<EngineStats>,
    journal: Option<Journal>,
}

impl Agent {
    /// An agent with the built-in policies and the data of `config`.
    pub fn try_new(config: AgentConfig) -> Result<Self, SetupError> {
        let data = crate::data::load_data(&config.data)?;
        Self::with_data(config, data)
    }

    /// An agent with the built-in policies and `data`.
    pub fn with_data(config: AgentConfig, data: serde_json::Value) -> Result<Self, SetupError> {
        let limiter = RateLimiter::new(RateLimiterConfig {
            max_keys: config.rate_limit_max_keys,
            max_idle: config.rate_limit_max_idle,
        });
        let builtins = NativeBuiltins::new(Arc::new(limiter));
        let stats = Arc::new(EngineStats::default());
        let registry = Arc::new(PolicyRegistry::builtin()?);
        let journal = match &config.journal {
            Some(settings) => Some(Journal::open(settings.clone())?),
            None => None,
        };
        let full = with_synced(&data, journal.as_ref());
        let revision = content_revision(&registry, &full);
        let set = PolicySet::try_new(registry, full, builtins.clone(), &revision, stats.clone())?;
        Ok(Self {
            config,
            policies: RwLock::new(Arc::new(set)),
            base_data: RwLock::new(data),
            builtins,
            stats,
            journal,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The policy snapshot in use.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies.read().clone()
    }

    /// Replaces the data (a new snapshot; in-flight requests finish on theirs).
    pub fn replace_data(&self, data: serde_json::Value) -> Result<(), SetupError> {
        *self.base_data.write() = data;
        self.rebuild()
    }

    /// Rebuilds the policy snapshot from the base data and the current
    /// journal-synced document.
    fn rebuild(&self) -> Result<(), SetupError> {
        let registry = self.policies().registry.clone();
        let data = with_synced(&self.base_data.read(), self.journal.as_ref());
        let revision = content_revision(&registry, &data);
        let set = PolicySet::try_new(
            registry,
            data,
            self.builtins.clone(),
            &revision,
            self.stats.clone(),
        )?;
        *self.policies.write() = Arc::new(set);
        Ok(())
    }

    /// Puts each newly synced degraded-mode document into the policy data
    /// (`data.synced`) until the agent stops. Needs a tokio runtime; returns
    /// at once without a journal server.
    pub async fn follow_synced_data(self: Arc<Self>) {
        let Some(mut versions) = self
            .journal
            .as_ref()
            .and_then(|j| j.degraded())
            .map(|d| d.versions.subscribe())
        else {
            return;
        };
        versions.mark_unchanged();
        while versions.changed().await.is_ok() {
            let version = *versions.borrow_and_update();
            match self.rebuild() {
                Ok(()) => {
                    tracing::info!(version, revision = %self.policies().revision(), "policy data updated with the synced document");
                }
                Err(e) => {
                    tracing::error!(version, error = %e, "synced document not applied: policies keep the previous data");
                }
            }
        }
    }

    /// Engine counters (compiled chains, VM fallbacks, evaluations, panics)
    /// and the decision metrics of spec §7.1.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The discovery answer of spec §3.3.
    pub fn agent_config(&self) -> GetAgentConfigResponse {
        let set = self.policies();
        let supported_policies = set
            .registry()
            .iter()
            .map(|p| ProtoPolicyInfo {
                name: p.info.name.clone(),
                version: p.info.version.clone(),
                description: p.info.description.clone(),
                metadata_schema: p.info.schema.to_string(),
                supported_phases: p
                    .info
                    .phases
                    .iter()
                    .map(|ph| match ph {
                        Phase::Request => PolicyPhase::Request as i32,
                        Phase::Response => PolicyPhase::Response as i32,
                    })
                    .collect(),
            })
            .collect();
        GetAgentConfigResponse {
            agent_name: self.config.name.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            supported_policies,
            agent_metadata: HashMap::from([
                ("engine".to_string(), "regorus".to_string()),
                ("policy_revision".to_string(), set.revision().to_string()),
                (
                    "max_body_size_bytes".to_string(),
                    self.config.max_body_size_bytes.to_string(),
                ),
                (
                    "max_state_size_bytes".to_string(),
                    self.config.max_state_size_bytes.to_string(),
                ),
            ]),
        }
    }

    /// Runs the chain of `req`; every failure becomes a response, never a panic.
    pub fn execute(&self, req: &PolicyRequest) -> Execution {
        let started = Instant::now();
        let set = self.policies();
        let special = self.special_mode(&set, req);
        let mut progress = Progress::default();
        let result = match &special {
            Some((_, Decision::Degraded(Verdict::Deny { tier, reason }))) => {
                Err(EvalError::DegradedDenied {
                    tier: tier.as_str(),
                    reason: reason.clone(),
                })
            }
            _ => self.run(&set, req, &mut progress),
        };
        let duration = started.elapsed();
        if self.config.metrics_enabled {
            self.stats.metrics.count(
                set.registry(),
                req,
                &progress,
                result.as_ref().map(|(r, ..)| r.outcomes.as_slice()),
                duration,
            );
        }
        let mut exec = match result {
            Ok((response, engine, recorded)) => Execution {
                response,
                engine: Some(engine),
                error: None,
                recorded,
                duration,
                record_seq: None,
                sync_required: false,
            },
            Err(err) => {
                tracing::debug!(request_id = %req.request_id, code = err.code(), error = %err, "chain failed");
                Execution {
                    response: error_response(&req.request_id, &err),
                    engine: None,
                    error: Some(err),
                    recorded: Vec::new(),
                    duration,
                    record_seq: None,
                    sync_required: false,
                }
            }
        };
        match &special {
            Some((state, Decision::Degraded(verdict))) => {
                let tier = verdict.tier();
                exec.response
                    .metadata
                    .insert("degraded_tier".to_string(), tier.as_str().to_string());
                let allowed = exec
                    .response
                    .status
                    .as_ref()
                    .is_some_and(|s| s.code == policy_proto::agent::StatusCode::Ok as i32);
                state.count(tier, allowed);
            }
            Some((state, Decision::Emergency)) => {
                exec.response
                    .metadata
                    .insert("mode".to_string(), "emergency".to_string());
                state
                    .emergency_decisions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            _ => {}
        }
        if let Some(journal) = &self.journal {
            let mut record = build_record(
                &journal.settings.records,
                req,
                &exec.response,
                &exec.recorded,
                set.revision(),
                duration,
            );
            match &special {
                Some((_, Decision::Degraded(verdict))) => {
                    record.mode = format!("degraded:{}", verdict.tier().as_str());
                }
                Some((_, Decision::Emergency)) => record.mode = "emergency".to_string(),
                _ => {}
            }
            match journal.append(record) {
                Ok(None) if special.is_some() => {
                    self.fail_closed(&mut exec, req, &RecordError::DroppedWhileDegraded);
                }
                Ok(seq) => {
                    exec.record_seq = seq;
                    // A degraded or emergency decision is on disk before it
                    // is answered.
                    exec.sync_required = (req.audit_strict || special.is_some()) && seq.is_some();
                }
                Err(e) => self.fail_closed(&mut exec, req, &e),
            }
        }
        exec
    }

    /// In degraded or emergency mode, the degraded-mode state and what the
    /// request's chain may do; `None` in normal mode (or without a journal
    /// server).
    fn special_mode(
        &self,
        set: &PolicySet,
        req: &PolicyRequest,
    ) -> Option<(Arc<DegradedState>, Decision)> {
        let state = self.journal.as_ref()?.degraded()?;
        let steps = || {
            req.policies
                .iter()
                .map(|p| {
                    let tier = set
                        .registry()
                        .get(&p.name)
                        .map_or(Tier::Complex, |r| r.info.tier);
                    (p.name.as_str(), tier)
                })
                .collect()
        };
        match state.decide(steps) {
            Decision::Normal => None,
            other => Some((state.clone(), other)),
        }
    }

    /// Turns emergency (break-glass) mode on or off. The change is a record
    /// in the decision journal, synced before it takes effect; without a
    /// record there is no change.
    pub fn set_emergency(
        &self,
        change: &EmergencyChange<'_>,
    ) -> Result<Option<Emergency>, EmergencyError> {
        let Some(journal) = self.journal.as_ref() else {
            return Err(EmergencyError::NotConfigured);
        };
        let Some(state) = journal.degraded() else {
            return Err(EmergencyError::NotConfigured);
        };
        let next = match state.check_emergency(change) {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(operator = %change.operator, enable = change.enable, error = %e, "emergency change refused");
                return Err(e);
            }
        };
        let reason = match &next {
            Some(e) => format!(
                "emergency mode enabled by {} until {}: {}",
                e.operator,
                e.until_wall
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                e.reason
            ),
            None => format!("emergency mode disabled by {}", change.operator),
        };
        let mut record = crate::records::control_record(
            &journal.settings.records,
            "emergency",
            change.operator,
            &reason,
            self.policies().revision(),
        );
        record.mode = "emergency".to_string();
        let seq = journal
            .append(record)
            .map_err(|e| EmergencyError::NotRecorded(e.to_string()))?
            .ok_or_else(|| EmergencyError::NotRecorded("the local log is full".into()))?;
        journal
            .wait_synced(seq)
            .map_err(|e| EmergencyError::NotRecorded(e.to_string()))?;
        tracing::warn!(operator = %change.operator, %reason, "emergency mode changed");
        state.install_emergency(next.clone());
        Ok(next)
    }

    /// Waits until the record `seq` is synced to disk (`audit: strict`);
    /// blocks, so call it off the async workers.
    pub fn wait_synced(&self, seq: u64) -> Result<(), RecordError> {
        match &self.journal {
            Some(j) => j.wait_synced(seq),
            None => Ok(()),
        }
    }

    /// Replaces `exec`'s answer with a 503 deny because its record was not
    /// written or synced.
    pub fn fail_closed(&self, exec: &mut Execution, req: &PolicyRequest, e: &RecordError) {
        tracing::error!(request_id = %req.request_id, route = %req.route, code = e.code(), error = %e, "decision denied: its record was not written");
        let err = EvalError::RecordNotWritten {
            code: e.code(),
            reason: e.to_string(),
        };
        exec.response = error_response(&req.request_id, &err);
        exec.error = Some(err);
        exec.sync_required = false;
    }

    /// The decision journal, when configured.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// Compiles the chain of `policies` for `phase` ahead of traffic.
    pub fn prepare(
        &self,
        phase: i32,
        policies: &[policy_proto::agent::Policy],
    ) -> Result<(), EvalError> {
        let set = self.policies();
        let phase = match PolicyPhase::try_from(phase) {
            Ok(PolicyPhase::Request) => Phase::Request,
            Ok(PolicyPhase::Response) => Phase::Response,
            Err(_) => {
                return Err(EvalError::InvalidRequest(format!(
                    "unknown phase `{phase}`"
                )));
            }
        };
        let req = PolicyRequest {
            policies: policies.to_vec(),
            phase: phase_number(phase),
            ..Default::default()
        };
        self.chain(&set, &req, phase).map(|_| ())
    }

    /// Evaluates the request's chain, noting in `progress` how far it got.
    fn run(
        &self,
        set: &PolicySet,
        req: &PolicyRequest,
        progress: &mut Progress,
    ) -> Result<(PolicyResponse, EnginePath, Vec<RecordedCall>), EvalError> {
        let timeout = self.deadline(req)?;
        let phase = match PolicyPhase::try_from(req.phase) {
            Ok(PolicyPhase::Request) => Phase::Request,
            Ok(PolicyPhase::Response) => Phase::Response,
            Err(_) => {
                return Err(EvalError::InvalidRequest(format!(
                    "unknown phase `{}`",
                    req.phase
                )));
            }
        };
        let chain: &Arc<CompiledChain> = progress.chain.insert(self.chain(set, req, phase)?);
        let input = build_input(
            req,
            InputLimits {
                max_body_size_bytes: self.config.max_body_size_bytes,
                max_state_size_bytes: self.config.max_state_size_bytes,
            },
        )?;
        progress.evaluated = true;
        let eval = worker::evaluate(set, chain, input, timeout)?;
        let (response, skipped) = decision_to_response_with_skips(
            &req.request_id,
            &eval.decision,
            self.config.max_state_size_bytes,
        )?;
        progress.skipped = skipped;
        Ok((response, eval.path, eval.recorded))
    }

    fn deadline(&self, req: &PolicyRequest) -> Result<Duration, EvalError> {
        match req.deadline_ms {
            0 => Ok(self.config.request_timeout),
            ms if ms < 0 => Err(EvalError::InvalidRequest(format!(
                "deadline_ms must not be negative, got {ms}"
            ))),
            ms => Ok(Duration::from_millis(ms.unsigned_abs()).min(self.config.request_timeout)),
        }
    }

    /// The compiled chain for the request's policies, compiled on first use.
    fn chain(
        &self,
        set: &PolicySet,
        req: &PolicyRequest,
        phase: Phase,
    ) -> Result<Arc<CompiledChain>, EvalError> {
        let key = request_chain_key(req);
        if let Some(c) = set.cached(key) {
            return Ok(c);
        }
        let mut steps = Vec::with_capacity(req.policies.len());
        for p in &req.policies {
            let on_failure = OnFailure::try_parse(&p.on_failure).ok_or_else(|| {
                EvalError::InvalidRequest(format!(
                    "policy `{}`: on_failure must be deny, continue or skip_remaining, got `{}`",
                    p.name, p.on_failure
                ))
            })?;
            let metadata = set.registry().decode_metadata(&p.name, &p.metadata);
            steps.push(set.registry().step(
                &p.name,
                metadata,
                on_failure,
                phase,
                self.config.fail_on_unknown,
            ));
        }
        set.compile(key, &ChainSpec { phase, steps })
    }
}

fn phase_number(phase: Phase) -> i32 {
    match phase {
        Phase::Request => PolicyPhase::Request as i32,
        Phase::Response => PolicyPhase::Response as i32,
    }
}

/// A key for the request's raw chain (names, metadata strings, on_failure,
/// phase), so the hot path skips decoding and validating metadata.
fn request_chain_key(req: &PolicyRequest) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    req.phase.hash(&mut h);
    for p in &req.policies {
        p.name.hash(&mut h);
        p.on_failure.hash(&mut h);
        let mut md: Vec<(&String, &String)> = p.metadata.iter().collect();
        md.sort_unstable();
        md.hash(&mut h);
    }
    // Keep raw keys apart from content fingerprints.
    h.finish() | 1 << 63
}

/// `data` with the journal-synced degraded-mode document as `synced` (the
/// key is reserved: the synced document wins).
fn with_synced(data: &serde_json::Value, journal: Option<&Journal>) -> serde_json::Value {
    let Some(snapshot) = journal
        .and_then(|j| j.degraded())
        .and_then(|d| d.snapshot.current())
    else {
        return data.clone();
    };
    let mut out = data.clone();
    if let Some(obj) = out.as_object_mut() {
        obj.insert("synced".to_string(), snapshot.data.clone());
    }
    out
}

fn content_revision(registry: &PolicyRegistry, data: &serde_json::Value) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in registry.iter() {
        h.update(p.path.as_bytes());
        h.update(p.source.as_bytes());
    }
    h.update(data.to_string().as_bytes());
    format!("sha256:{}", &hex::encode(h.finalize())[..16])
}
