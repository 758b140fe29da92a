//! The benchmark's setup and the operations it times.
//!
//! Everything is checked once before anything is timed: every case must
//! allow (each policy `OK`) on every path, the interpreter must agree with the
//! VM, and the chain the benchmark evaluates directly must be the very chain
//! the agent compiled for the request.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use policy_agent::chain::{ChainSpec, OnFailure, StepKind};
use policy_agent::{
    Agent, AgentConfig, CompiledChain, EnginePath, InputLimits, PolicySet, build_input,
    decision_to_response, evaluate,
};
use policy_kernel::{ChainEntry, KernelConfig};
use policy_proto::agent::{Policy, PolicyPhase, PolicyRequest, RequestContext, StatusCode};
use policy_rego::Phase;
use regorus::Value;
use serde_json::json;

use crate::credentials::{RsaSigner, sha256_hex};

/// The spec routes, as the kernel is configured with them.
pub const KERNEL_CONFIG: &str = include_str!("../../deploy/kernel-config.yaml");

/// API keys in `data.policy_data.apiKeyAuth.keys`.
pub const API_KEYS: usize = 1_000;

/// The key the `/api/v1/users` request presents (one of the [`API_KEYS`]).
const VALID_KEY_INDEX: usize = 737;

/// `rateLimit`'s rate and burst in the benchmark: high enough never to deny.
const NEVER_LIMITED: u64 = 1_000_000_000;

/// One timed slice of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `build_input(&PolicyRequest, limits)` alone.
    InputBuild,
    /// `evaluate` of the VM-compiled chain on a prebuilt input (a clone).
    EvalVm,
    /// `evaluate` of the same chain compiled for the interpreter.
    EvalInterpreter,
    /// The whole `Agent::execute(&PolicyRequest)`: chain lookup, input
    /// build, VM evaluation and response conversion.
    DecisionVmTotal,
    /// `decision_to_response` of the chain's decision document alone.
    ResponseBuild,
}

impl Op {
    /// Every operation, in table order.
    pub const ALL: [Op; 5] = [
        Op::InputBuild,
        Op::EvalVm,
        Op::EvalInterpreter,
        Op::DecisionVmTotal,
        Op::ResponseBuild,
    ];

    /// The name used for criterion ids and table columns.
    pub fn name(self) -> &'static str {
        match self {
            Op::InputBuild => "input_build",
            Op::EvalVm => "eval_vm",
            Op::EvalInterpreter => "eval_interpreter",
            Op::DecisionVmTotal => "decision_vm_total",
            Op::ResponseBuild => "response_build",
        }
    }

    /// The operation called `name`, if any.
    pub fn try_from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// One spec route's request phase.
pub struct Case {
    /// Short id: `users` or `admin`.
    pub name: &'static str,
    /// The route, e.g. `/api/v1/users`.
    pub route: String,
    /// The request as the kernel sends it.
    pub request: PolicyRequest,
    /// `build_input` of `request`, for the evaluation-only operations.
    pub input: Value,
    /// The chain's decision document, for [`Op::ResponseBuild`].
    pub decision: Value,
    /// The chain the agent compiled for `request` (bytecode VM).
    pub vm: Arc<CompiledChain>,
    /// The same chain compiled for the interpreter.
    pub interpreter: Arc<CompiledChain>,
}

/// The agent and the cases of one benchmark run.
pub struct Fixture {
    agent: Agent,
    data: serde_json::Value,
    set: Arc<PolicySet>,
    limits: InputLimits,
    timeout: Duration,
    cases: Vec<Case>,
}

impl Fixture {
    /// Builds the agent and both spec-route cases, and checks that every
    /// operation succeeds and allows.
    pub fn try_new() -> anyhow::Result<Self> {
        Self::try_with_config(|_| {})
    }

    /// Like [`Fixture::try_new`], with the agent's configuration adjusted by
    /// `adjust` (for example, a decision journal).
    pub fn try_with_config(adjust: impl FnOnce(&mut AgentConfig)) -> anyhow::Result<Self> {
        let kernel = KernelConfig::parse(Path::new("deploy/kernel-config.yaml"), KERNEL_CONFIG)
            .context("parsing deploy/kernel-config.yaml")?;
        let signer = RsaSigner::generate()?;
        let now = unix_seconds();
        let token = signer.sign(&json!({
            "iss": "https://auth.example.com",
            "aud": "api-service",
            "sub": "admin-7",
            "roles": ["admin"],
            "iat": now,
            "exp": now + 24 * 3600,
        }))?;
        let keys: serde_json::Map<String, serde_json::Value> = (0..API_KEYS)
            .map(|i| {
                (
                    sha256_hex(&api_key(i)),
                    json!({"user_id": format!("user-{i:04}")}),
                )
            })
            .collect();
        let data = json!({"policy_data": {
            "apiKeyAuth": {"keys": keys},
            "jwtValidation": {"public_key_pem": signer.public_key_pem()?},
        }});
        let mut config =
            AgentConfig::with_defaults("bench-agent", Path::new("/nonexistent/bench.sock"));
        adjust(&mut config);
        let limits = InputLimits {
            max_body_size_bytes: config.max_body_size_bytes,
            max_state_size_bytes: config.max_state_size_bytes,
        };
        let timeout = config.request_timeout;
        let agent = Agent::with_data(config, data.clone()).context("building the agent")?;
        let set = agent.policies();

        let users = request(
            "/api/v1/users",
            kernel_chain(&kernel, "/api/v1/users")?,
            ("x-api-key", api_key(VALID_KEY_INDEX)),
        );
        let admin = request(
            "/api/v1/admin",
            kernel_chain(&kernel, "/api/v1/admin")?,
            ("authorization", format!("Bearer {token}")),
        );
        let mut fixture = Self {
            agent,
            data,
            set,
            limits,
            timeout,
            cases: Vec::new(),
        };
        for (name, req) in [("users", users), ("admin", admin)] {
            let case = fixture
                .case(name, req)
                .with_context(|| format!("case `{name}`"))?;
            fixture.cases.push(case);
        }
        Ok(fixture)
    }

    /// The cases, `users` then `admin`.
    pub fn cases(&self) -> &[Case] {
        &self.cases
    }

    /// The agent under test.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The agent's data: the hashed API keys and the RSA public key.
    pub fn data(&self) -> &serde_json::Value {
        &self.data
    }

    /// Runs `op` once on `case`; whether it succeeded. The result goes
    /// through `black_box` so the work cannot be optimised away.
    pub fn run(&self, case: &Case, op: Op) -> bool {
        match op {
            Op::InputBuild => black_box(build_input(black_box(&case.request), self.limits)).is_ok(),
            Op::EvalVm => black_box(evaluate(
                &self.set,
                &case.vm,
                case.input.clone(),
                self.timeout,
            ))
            .is_ok(),
            Op::EvalInterpreter => black_box(evaluate(
                &self.set,
                &case.interpreter,
                case.input.clone(),
                self.timeout,
            ))
            .is_ok(),
            Op::DecisionVmTotal => black_box(self.agent.execute(black_box(&case.request)))
                .error
                .is_none(),
            Op::ResponseBuild => black_box(decision_to_response(
                &case.request.request_id,
                &case.decision,
                self.limits.max_state_size_bytes,
            ))
            .is_ok(),
        }
    }

    /// Compiles and checks one case.
    fn case(&self, name: &'static str, request: PolicyRequest) -> anyhow::Result<Case> {
        // The agent compiles the request's chain on first use.
        let execution = self.agent.execute(&request);
        if let Some(err) = &execution.error {
            bail!("Agent::execute failed: {err}");
        }
        ensure!(
            execution.engine == Some(EnginePath::Vm),
            "Agent::execute did not run on the VM ({:?})",
            execution.engine
        );
        check_allowed(
            "Agent::execute",
            &execution.response,
            request.policies.len(),
        )?;

        // The same chain, built from the request as the agent builds it: it
        // must come out of the agent's cache, not be compiled again.
        let spec = chain_spec(&self.set, &request)?;
        let compiled_before = self.set.stats().chains_compiled.load(Ordering::Relaxed);
        let vm = self
            .set
            .compile(spec.fingerprint() & !(1 << 63), &spec)
            .context("compiling the chain for the VM")?;
        ensure!(
            self.set.stats().chains_compiled.load(Ordering::Relaxed) == compiled_before,
            "the benchmark's chain differs from the one the agent compiled"
        );
        ensure!(
            vm.is_vm(),
            "the chain runs on the interpreter: {:?}",
            vm.fallback_reason()
        );
        let interpreter = self
            .set
            .compile_interpreted(&spec)
            .context("compiling the chain for the interpreter")?;
        ensure!(!interpreter.is_vm(), "compile_interpreted gave a VM chain");

        let input = build_input(&request, self.limits).context("build_input")?;
        let on_vm = evaluate(&self.set, &vm, input.clone(), self.timeout)
            .context("evaluating on the VM")?;
        let on_interpreter = evaluate(&self.set, &interpreter, input.clone(), self.timeout)
            .context("evaluating on the interpreter")?;
        ensure!(
            on_vm.path == EnginePath::Vm,
            "VM chain evaluated on {:?}",
            on_vm.path
        );
        ensure!(
            on_interpreter.path == EnginePath::Interpreter,
            "interpreter chain evaluated on {:?}",
            on_interpreter.path
        );
        let vm_response = decision_to_response(
            &request.request_id,
            &on_vm.decision,
            self.limits.max_state_size_bytes,
        )
        .context("converting the VM decision")?;
        let interpreter_response = decision_to_response(
            &request.request_id,
            &on_interpreter.decision,
            self.limits.max_state_size_bytes,
        )
        .context("converting the interpreter decision")?;
        check_allowed("VM evaluation", &vm_response, request.policies.len())?;
        check_allowed(
            "interpreter evaluation",
            &interpreter_response,
            request.policies.len(),
        )?;
        // Rate-limit metadata (remaining tokens) differs between calls; the
        // rest of the decision must not.
        ensure!(
            vm_response.instructions == interpreter_response.instructions
                && vm_response.outcomes == interpreter_response.outcomes
                && vm_response.state_json == interpreter_response.state_json,
            "the interpreter's decision differs from the VM's:\nvm: {vm_response:?}\ninterpreter: {interpreter_response:?}"
        );
        Ok(Case {
            name,
            route: request.route.clone(),
            request,
            input,
            decision: on_vm.decision,
            vm,
            interpreter,
        })
    }
}

/// The `i`-th API key of the data (plaintext; data holds its SHA-256).
fn api_key(i: usize) -> String {
    format!("bench-key-{i:04}-a1b2c3d4e5f6")
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `deploy/kernel-config.yaml` with every `rateLimit` raised to
/// [`NEVER_LIMITED`] requests per second and burst, as the benchmark's
/// requests carry it: the configuration to `policyctl compile` for an
/// evaluation of the same chains outside the agent.
pub fn never_limited_kernel_config() -> anyhow::Result<String> {
    let mut config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(KERNEL_CONFIG).context("parsing deploy/kernel-config.yaml")?;
    let routes = config
        .get_mut("policy_kernel")
        .and_then(|k| k.get_mut("route_policies"))
        .and_then(serde_yaml_ng::Value::as_sequence_mut)
        .context("deploy/kernel-config.yaml has no `policy_kernel.route_policies`")?;
    let mut raised = 0;
    for route in routes {
        let Some(chain) = route
            .get_mut("request_policy_chain")
            .and_then(serde_yaml_ng::Value::as_sequence_mut)
        else {
            continue;
        };
        for entry in chain {
            if entry.get("policy").and_then(serde_yaml_ng::Value::as_str) != Some("rateLimit") {
                continue;
            }
            let metadata = entry
                .get_mut("metadata")
                .and_then(serde_yaml_ng::Value::as_mapping_mut)
                .context("a `rateLimit` entry without a metadata mapping")?;
            for field in ["requests_per_second", "burst"] {
                metadata.insert(field.into(), NEVER_LIMITED.into());
            }
            raised += 1;
        }
    }
    ensure!(
        raised > 0,
        "deploy/kernel-config.yaml has no `rateLimit` to raise"
    );
    serde_yaml_ng::to_string(&config).context("writing the kernel configuration")
}

/// The request chain of `route` in the kernel configuration, as protocol
/// policies (metadata values as strings, non-strings as JSON), with the rate
/// limit raised so that it never denies.
fn kernel_chain(kernel: &KernelConfig, route: &str) -> anyhow::Result<Vec<Policy>> {
    let entry = kernel
        .route_policies
        .iter()
        .find(|r| r.route_name == route)
        .with_context(|| format!("route `{route}` is not in deploy/kernel-config.yaml"))?;
    Ok(entry
        .chains
        .request_policy_chain
        .iter()
        .map(|e| {
            let mut e: ChainEntry = e.clone();
            if e.policy == "rateLimit"
                && let Some(md) = e.metadata.as_object_mut()
            {
                md.insert("requests_per_second".into(), json!(NEVER_LIMITED));
                md.insert("burst".into(), json!(NEVER_LIMITED));
            }
            Policy {
                name: e.policy.clone(),
                metadata: e.metadata_strings().into_iter().collect(),
                on_failure: e.on_failure.clone(),
            }
        })
        .collect())
}

/// A request-phase `PolicyRequest` for `route` with typical Envoy headers
/// plus `credential`.
fn request(route: &str, policies: Vec<Policy>, credential: (&str, String)) -> PolicyRequest {
    let mut headers: HashMap<String, String> = [
        ("host", "api.example.com"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "0b7c6f0e-7d1e-4c2a-9a57-3f1b2d9e8c41"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    headers.insert(credential.0.to_string(), credential.1);
    PolicyRequest {
        request_id: "0b7c6f0e-7d1e-4c2a-9a57-3f1b2d9e8c41".into(),
        policies,
        context: Some(RequestContext {
            headers,
            body: Vec::new(),
            method: "GET".into(),
            path: route.into(),
            scheme: "https".into(),
            authority: "api.example.com".into(),
            query_params: HashMap::new(),
            client_ip: "203.0.113.7".into(),
        }),
        deadline_ms: 0,
        phase: PolicyPhase::Request as i32,
        response: None,
        state_json: Vec::new(),
        route: route.into(),
        audit_strict: false,
        config_version: "sha256:000000000000".into(),
        trace_context: HashMap::new(),
    }
}

/// The request's chain, built from its policies exactly as `Agent` does.
fn chain_spec(set: &PolicySet, req: &PolicyRequest) -> anyhow::Result<ChainSpec> {
    let fail_on_unknown = false; // AgentConfig::with_defaults
    let mut steps = Vec::with_capacity(req.policies.len());
    for p in &req.policies {
        let on_failure = OnFailure::try_parse(&p.on_failure)
            .with_context(|| format!("policy `{}`: on_failure `{}`", p.name, p.on_failure))?;
        let metadata = set.registry().decode_metadata(&p.name, &p.metadata);
        let step = set.registry().step(
            &p.name,
            metadata,
            on_failure,
            Phase::Request,
            fail_on_unknown,
        );
        if let StepKind::Fixed { result } = &step.kind {
            bail!("policy `{}` does not run: {result}", p.name);
        }
        steps.push(step);
    }
    Ok(ChainSpec {
        phase: Phase::Request,
        steps,
    })
}

/// Fails unless the chain allowed with every one of its `policies` `OK`.
fn check_allowed(
    what: &str,
    response: &policy_proto::agent::PolicyResponse,
    policies: usize,
) -> anyhow::Result<()> {
    let code = response.status.as_ref().map(|s| s.code);
    let all_ok = response.outcomes.len() == policies
        && response
            .outcomes
            .iter()
            .all(|o| o.code == StatusCode::Ok as i32);
    ensure!(
        code == Some(StatusCode::Ok as i32) && all_ok,
        "{what} did not allow: status {code:?}, message `{}`, outcomes {:?}",
        response.message,
        response.outcomes
    );
    Ok(())
}
