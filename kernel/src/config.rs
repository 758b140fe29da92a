//! `kernel-config.yaml` in the shape of the engine specification §3.2,
//! parsed strictly (unknown fields are errors) and validated before use.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// Why a kernel config was rejected: the file, the field and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {reason}")]
    Parse { file: PathBuf, reason: String },
    #[error("{file}: field `{field}`: {reason}")]
    Field {
        file: PathBuf,
        field: String,
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    policy_kernel: KernelConfig,
}

/// The whole kernel configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelConfig {
    /// `sha256:<12 hex digits>` of the configuration file's text, sent with
    /// every decision so its record names the configuration that decided.
    #[serde(skip)]
    pub digest: String,
    #[serde(default)]
    pub server: ServerConfig,
    pub agents: Vec<AgentEntry>,
    #[serde(default)]
    pub route_policies: Vec<RouteEntry>,
    #[serde(default)]
    pub default_policy: Option<PolicyChains>,
    #[serde(default)]
    pub observability: ObservabilityConfig,
    /// Allow requests when an agent is unavailable or times out (default false: deny).
    #[serde(default)]
    pub fail_open: bool,
    /// The agent core `policy-kernel --embedded-agent` runs in this process:
    /// what an agent-config.yaml holds under `agent_core` (its `socket_path`
    /// may be left out). Read once at start.
    #[serde(default)]
    pub embedded_agent: Option<serde_yaml_ng::Value>,
}

/// The ext_proc listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address (default `0.0.0.0`).
    pub address: String,
    /// Listen port (default 9001).
    pub port: u16,
    /// Concurrent ext_proc streams (default 1000).
    pub max_concurrent_streams: u32,
    /// Request header naming the route when Envoy does not send the
    /// `xds.route_name` attribute (default `x-route-name`; lower-case).
    pub route_header: String,
    /// Envoy's ext_proc filter has `allow_mode_override: true`: the kernel
    /// asks per stream for exactly the bodies and response headers each
    /// route needs (default false: Envoy's processing modes decide).
    pub mode_override: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            address: "0.0.0.0".into(),
            port: 9001,
            max_concurrent_streams: 1000,
            route_header: "x-route-name".into(),
            mode_override: false,
        }
    }
}

/// An agent the kernel sends chains to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    pub name: String,
    pub socket_path: PathBuf,
    /// Per-call timeout in milliseconds (default 500, at most 5000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Health check period in milliseconds (default 5000).
    #[serde(default = "default_health_ms")]
    pub health_check_interval_ms: u64,
}

fn default_timeout_ms() -> u64 {
    500
}
fn default_health_ms() -> u64 {
    5000
}

/// Retries of an agent call that produced no result.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, including the first (default 1: no retry).
    pub max_attempts: u32,
    /// Pause between attempts in milliseconds (default 100).
    pub backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            backoff_ms: 100,
        }
    }
}

/// One policy of a chain.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChainEntry {
    pub policy: String,
    /// Policy metadata; validated by the agent against the policy's schema.
    #[serde(default = "empty_object")]
    pub metadata: Value,
    /// `deny` (default), `continue` or `skip_remaining`.
    #[serde(default = "default_on_failure")]
    pub on_failure: String,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}
fn default_on_failure() -> String {
    "deny".into()
}

impl ChainEntry {
    /// Metadata as the protocol's string map: strings as they are, other
    /// values as JSON.
    pub fn metadata_strings(&self) -> BTreeMap<String, String> {
        self.metadata
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let s = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), s)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Request and response chains.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicyChains {
    /// Agent that runs the chains (default: the first agent).
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub request_policy_chain: Vec<ChainEntry>,
    #[serde(default)]
    pub response_policy_chain: Vec<ChainEntry>,
    /// Run the request chain on the buffered request body instead of at
    /// request headers (default false: request policies see no body).
    #[serde(default)]
    pub request_body: bool,
    /// Run the response chain on the buffered response body (default: true
    /// when the response chain rewrites the body, see
    /// [`PolicyChains::needs_response_body`]; set it for policies that only
    /// read the body, e.g. `auditLog` with `log_response_body`).
    #[serde(default)]
    pub response_body: Option<bool>,
    /// `standard` (default): the decision is answered once its record is in
    /// the agent's local log; `strict`: only once that record is synced to
    /// disk (group commit).
    #[serde(default)]
    pub audit: AuditLevel,
}

/// How durable a route's decision record must be before the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditLevel {
    #[default]
    Standard,
    Strict,
}

/// `sha256:<first 12 hex digits>` of `text`.
fn digest(text: &str) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(text.as_bytes());
    format!("sha256:{}", &hex::encode(hash)[..12])
}

/// Policies that read or rewrite the response body.
const RESPONSE_BODY_POLICIES: &[&str] = &["responseBodyTransform"];

impl PolicyChains {
    /// Whether the response chain runs on the buffered response body: the
    /// explicit `response_body`, else true when the chain has a policy that
    /// rewrites the body (`responseBodyTransform`).
    pub fn needs_response_body(&self) -> bool {
        self.response_body.unwrap_or_else(|| {
            self.response_policy_chain
                .iter()
                .any(|e| RESPONSE_BODY_POLICIES.contains(&e.policy.as_str()))
        })
    }
}

/// A route and its chains.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    pub route_name: String,
    #[serde(flatten)]
    pub chains: PolicyChains,
}

/// Metrics, logs and traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// Port of `/metrics` and `/health/*` (default 9090).
    pub metrics_port: u16,
    /// `error`, `warn`, `info`, `debug` or `trace` (default `info`).
    pub log_level: String,
    pub tracing: TracingConfig,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            metrics_port: 9090,
            log_level: "info".into(),
            tracing: TracingConfig::default(),
        }
    }
}

/// OpenTelemetry traces (spec §7.3), exported over OTLP/gRPC. Read once
/// at start (a reload does not change them).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Export spans (default false).
    pub enabled: bool,
    /// Fraction of new traces sampled, 0.0 to 1.0 (default 0.0): a request
    /// whose `traceparent` is sampled (or not) follows that decision.
    pub sampling_rate: f64,
    /// The collector, `http://host:port` (default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    /// or OTEL_EXPORTER_OTLP_ENDPOINT, else `http://127.0.0.1:4317`).
    pub otlp_endpoint: Option<String>,
}

impl TracingConfig {
    /// The validated settings.
    pub fn settings(
        &self,
    ) -> Result<policy_agent::traces::TraceSettings, policy_agent::traces::InvalidTraceSetting>
    {
        policy_agent::traces::TraceSettings::try_new(
            self.enabled,
            self.sampling_rate,
            self.otlp_endpoint.clone(),
        )
    }
}

impl KernelConfig {
    /// The agent configuration of the `embedded_agent` section, read from
    /// `path` (relative paths in it are relative to the kernel config).
    pub fn embedded_agent_config(
        &self,
        path: &Path,
    ) -> Result<Option<policy_agent::AgentConfig>, ConfigError> {
        let Some(section) = &self.embedded_agent else {
            return Ok(None);
        };
        let field = |field: &str, reason: String| ConfigError::Field {
            file: path.into(),
            field: format!("policy_kernel.embedded_agent{field}"),
            reason,
        };
        let serde_yaml_ng::Value::Mapping(map) = section else {
            return Err(field(
                "",
                "must be a mapping (an agent_core section)".into(),
            ));
        };
        let mut map = map.clone();
        let socket_key = serde_yaml_ng::Value::from("socket_path");
        if !map.contains_key(&socket_key) {
            // Unused in process; the agent core requires one.
            let name = map
                .get(serde_yaml_ng::Value::from("name"))
                .and_then(serde_yaml_ng::Value::as_str)
                .unwrap_or_default();
            let socket = self
                .agents
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.socket_path.display().to_string())
                .unwrap_or_else(|| "embedded.sock".into());
            map.insert(socket_key, socket.into());
        }
        let mut file = serde_yaml_ng::Mapping::new();
        file.insert("agent_core".into(), serde_yaml_ng::Value::Mapping(map));
        let text = serde_yaml_ng::to_string(&file)
            .map_err(|e| field("", format!("cannot be read: {e}")))?;
        policy_agent::AgentConfig::parse(path, &text)
            .map(Some)
            .map_err(|e| match e {
                policy_agent::SetupError::ConfigField {
                    field: f, reason, ..
                } => field(
                    &format!(".{}", f.strip_prefix("agent_core.").unwrap_or(&f)),
                    reason,
                ),
                other => field(
                    "",
                    other.to_string().replace("agent_core", "embedded_agent"),
                ),
            })
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Parse {
            file: path.into(),
            reason: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text`, read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: File = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse {
            file: path.into(),
            reason: e.to_string(),
        })?;
        let mut config = file.policy_kernel;
        config.validate(path)?;
        config.digest = digest(text);
        // Relative socket paths are relative to the config file, as in the
        // agent's config, so both name the same socket.
        let base = path.parent().unwrap_or(Path::new(""));
        for agent in &mut config.agents {
            if agent.socket_path.is_relative() {
                agent.socket_path = base.join(&agent.socket_path);
            }
        }
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let field = |field: String, reason: &str| ConfigError::Field {
            file: path.into(),
            field: format!("policy_kernel.{field}"),
            reason: reason.into(),
        };
        if self.server.address.parse::<std::net::IpAddr>().is_err() {
            return Err(field("server.address".into(), "must be an IP address"));
        }
        if self.server.max_concurrent_streams == 0 {
            return Err(field(
                "server.max_concurrent_streams".into(),
                "must be at least 1",
            ));
        }
        if !is_header_name(&self.server.route_header)
            || self.server.route_header.to_ascii_lowercase() != self.server.route_header
        {
            return Err(field(
                "server.route_header".into(),
                "must be a lower-case HTTP header name",
            ));
        }
        if self.agents.is_empty() {
            return Err(field("agents".into(), "at least one agent is required"));
        }
        let mut names = HashSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            if a.name.trim().is_empty() {
                return Err(field(format!("agents[{i}].name"), "must not be empty"));
            }
            if !names.insert(a.name.as_str()) {
                return Err(field(format!("agents[{i}].name"), "duplicate agent name"));
            }
            if !(1..=5000).contains(&a.timeout_ms) {
                return Err(field(
                    format!("agents[{i}].timeout_ms"),
                    "must be between 1 and 5000",
                ));
            }
            if a.retry.max_attempts == 0 {
                return Err(field(
                    format!("agents[{i}].retry.max_attempts"),
                    "must be at least 1",
                ));
            }
            if a.health_check_interval_ms == 0 {
                return Err(field(
                    format!("agents[{i}].health_check_interval_ms"),
                    "must be at least 1",
                ));
            }
        }
        let check_chains = |prefix: String, chains: &PolicyChains| -> Result<(), ConfigError> {
            if let Some(agent) = &chains.agent
                && !names.contains(agent.as_str())
            {
                return Err(field(
                    format!("{prefix}.agent"),
                    &format!("unknown agent `{agent}`"),
                ));
            }
            for (kind, chain) in [
                ("request_policy_chain", &chains.request_policy_chain),
                ("response_policy_chain", &chains.response_policy_chain),
            ] {
                for (j, e) in chain.iter().enumerate() {
                    let at = format!("{prefix}.{kind}[{j}]");
                    if e.policy.trim().is_empty() {
                        return Err(field(format!("{at}.policy"), "must not be empty"));
                    }
                    if !e.metadata.is_object() {
                        return Err(field(format!("{at}.metadata"), "must be a mapping"));
                    }
                    if !["deny", "continue", "skip_remaining"].contains(&e.on_failure.as_str()) {
                        return Err(field(
                            format!("{at}.on_failure"),
                            "must be deny, continue or skip_remaining",
                        ));
                    }
                }
            }
            Ok(())
        };
        let mut routes = HashSet::new();
        for (i, r) in self.route_policies.iter().enumerate() {
            if r.route_name.is_empty() {
                return Err(field(
                    format!("route_policies[{i}].route_name"),
                    "must not be empty",
                ));
            }
            if !routes.insert(r.route_name.as_str()) {
                return Err(field(
                    format!("route_policies[{i}].route_name"),
                    "duplicate route",
                ));
            }
            check_chains(format!("route_policies[{i}]"), &r.chains)?;
        }
        if let Some(d) = &self.default_policy {
            check_chains("default_policy".into(), d)?;
        }
        if !["error", "warn", "info", "debug", "trace"]
            .contains(&self.observability.log_level.as_str())
        {
            return Err(field(
                "observability.log_level".into(),
                "must be one of error, warn, info, debug, trace",
            ));
        }
        if let Err(e) = self.observability.tracing.settings() {
            return Err(field(
                format!("observability.tracing.{}", e.field),
                &e.reason,
            ));
        }
        Ok(())
    }
}

/// An RFC 9110 token (header field name).
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = include_str!("../../deploy/kernel-config.yaml");

    #[test]
    fn spec_example_parses() {
        let c = KernelConfig::parse(Path::new("k.yaml"), SPEC).unwrap();
        assert_eq!(c.server.port, 9001);
        assert_eq!(c.route_policies.len(), 2);
        assert_eq!(c.route_policies[0].route_name, "/api/v1/users");
        let md = c.route_policies[0].chains.request_policy_chain[0].metadata_strings();
        assert_eq!(md["required"], "true");
        assert_eq!(md["header_name"], "X-API-Key");
        let d = c.default_policy.unwrap();
        assert_eq!(d.request_policy_chain[0].policy, "allowAll");
    }

    #[test]
    fn errors_name_file_field_and_reason() {
        let bad = SPEC.replace("timeout_ms: 500", "timeout_ms: 0");
        let err = KernelConfig::parse(Path::new("k.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "k.yaml: field `policy_kernel.agents[0].timeout_ms`: must be between 1 and 5000"
        );
        let bad = SPEC.replace("max_concurrent_streams", "max_streams");
        let err = KernelConfig::parse(Path::new("k.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("k.yaml: ") && err.contains("max_streams"),
            "{err}"
        );
        let bad = SPEC.replace(
            "    - route_name: \"/api/v1/admin\"",
            "    - route_name: \"/api/v1/admin\"\n      agent: ghost",
        );
        let err = KernelConfig::parse(Path::new("k.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("route_policies[1].agent") && err.contains("unknown agent `ghost`"),
            "{err}"
        );
    }

    #[test]
    fn tracing_settings_are_checked() {
        let c = KernelConfig::parse(Path::new("k.yaml"), SPEC).unwrap();
        let t = c.observability.tracing.settings().unwrap();
        assert!(t.enabled);
        assert_eq!(t.sampling_rate, 0.01);
        assert_eq!(t.otlp_endpoint, None);
        let with = |line: &str| {
            SPEC.replace(
                "      # otlp_endpoint: \"http://127.0.0.1:4317\"",
                &format!("      otlp_endpoint: \"{line}\""),
            )
        };
        let c = KernelConfig::parse(Path::new("k.yaml"), &with("http://otel:4317")).unwrap();
        assert_eq!(
            c.observability.tracing.settings().unwrap().endpoint(),
            "http://otel:4317"
        );
        let err = KernelConfig::parse(Path::new("k.yaml"), &with("https://otel:4317"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("k.yaml: field `policy_kernel.observability.tracing.otlp_endpoint`: ")
                && err.contains("https is not supported"),
            "{err}"
        );
        let bad = SPEC.replace("sampling_rate: 0.01", "sampling_rate: 2");
        let err = KernelConfig::parse(Path::new("k.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "k.yaml: field `policy_kernel.observability.tracing.sampling_rate`: must be between 0.0 and 1.0"
        );
    }

    #[test]
    fn server_settings_are_checked() {
        let bad = SPEC.replace("address: \"0.0.0.0\"", "address: \"nowhere\"");
        let err = KernelConfig::parse(Path::new("k.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "k.yaml: field `policy_kernel.server.address`: must be an IP address"
        );
        let bad = SPEC.replace("port: 9001", "port: 9001\n    route_header: \"X Route\"");
        let err = KernelConfig::parse(Path::new("k.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.route_header"), "{err}");
        let ok = SPEC.replace(
            "port: 9001",
            "port: 9001\n    route_header: \"x-envoy-route\"",
        );
        let c = KernelConfig::parse(Path::new("k.yaml"), &ok).unwrap();
        assert_eq!(c.server.route_header, "x-envoy-route");
    }

    #[test]
    fn body_needs_follow_the_chain_unless_explicit() {
        let c = KernelConfig::parse(Path::new("k.yaml"), SPEC).unwrap();
        assert_eq!(c.server.route_header, "x-route-name");
        let users = &c.route_policies[0].chains;
        assert!(
            users.needs_response_body(),
            "responseBodyTransform reads the body"
        );
        assert!(!users.request_body);
        let admin = &c.route_policies[1].chains;
        assert!(
            !admin.needs_response_body(),
            "auditLog only reads the body: routes opt in"
        );
        let text = SPEC.replace(
            "      response_policy_chain:\n        - policy: \"auditLog\"",
            "      response_body: true\n      request_body: true\n      response_policy_chain:\n        - policy: \"auditLog\"",
        );
        let c = KernelConfig::parse(Path::new("k.yaml"), &text).unwrap();
        assert!(c.route_policies[1].chains.needs_response_body());
        assert!(c.route_policies[1].chains.request_body);
        assert!(!c.default_policy.unwrap().needs_response_body());
    }
}
