//! `agent-config.yaml` (engine specification §4.1.5, plus `data` and
//! `rate_limit` sections), parsed strictly and validated before anything binds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::SetupError;
use crate::journal::{JournalSettings, RawJournal};
use crate::traces::TraceSettings;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    agent_core: RawAgentCore,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgentCore {
    /// Agent name advertised in `GetAgentConfig`.
    name: String,
    /// Unix socket the agent listens on.
    socket_path: PathBuf,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    policies: RawPolicies,
    #[serde(default)]
    observability: RawObservability,
    #[serde(default)]
    resource_limits: RawLimits,
    /// Files or directories of JSON/YAML data, merged into `data`.
    #[serde(default)]
    data: Vec<PathBuf>,
    #[serde(default)]
    rate_limit: RawRateLimit,
    /// Decision records: local log, journal server (absent: no records).
    #[serde(default)]
    journal: Option<RawJournal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    /// Requests evaluated at once (default 1000).
    max_concurrent_requests: u32,
    /// Longest a chain may run, in milliseconds (default 5000).
    request_timeout_ms: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 1000,
            request_timeout_ms: 5000,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawPolicies {
    /// Fail a chain that names a policy the agent does not have (default false: skip it).
    fail_on_unknown: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawObservability {
    /// `error`, `warn`, `info`, `debug` or `trace` (default `info`).
    log_level: String,
    /// Count the decision metrics of spec §7.1 and report them in health
    /// answers (default true).
    metrics_enabled: bool,

    tracing: RawTracing,
}

impl Default for RawObservability {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            metrics_enabled: true,
            tracing: RawTracing::default(),
        }
    }
}

/// OpenTelemetry traces (spec §7.3), as in the kernel config. In embedded
/// mode the kernel's section applies and this one is not used.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawTracing {
    /// Export spans over OTLP/gRPC (default false).
    enabled: bool,
    /// Probability that a chain evaluated without a propagated trace
    /// context starts a sampled trace, 0.0 to 1.0 (default 0.0); a
    /// propagated context's own decision is always followed.
    sampling_rate: f64,
    /// The collector, `http://host:port` (default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    /// or OTEL_EXPORTER_OTLP_ENDPOINT, else `http://127.0.0.1:4317`).
    otlp_endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    /// Largest request or response body evaluated, in bytes (default 1 MiB).
    max_body_size_bytes: usize,
    /// Largest chain state, in bytes of JSON (default 64 KiB).
    max_state_size_bytes: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_body_size_bytes: 1_048_576,
            max_state_size_bytes: 65_536,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRateLimit {
    /// Most token buckets kept at once (default 100000).
    max_keys: u64,
    /// Longest an idle bucket is kept, in seconds (default 3600).
    max_idle_seconds: u64,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            max_keys: 100_000,
            max_idle_seconds: 3600,
        }
    }
}

/// A validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    pub socket_path: PathBuf,
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    pub fail_on_unknown: bool,
    pub log_level: String,
    pub metrics_enabled: bool,
    pub max_body_size_bytes: usize,
    pub max_state_size_bytes: usize,
    /// Data paths, resolved against the config file's directory.
    pub data: Vec<PathBuf>,
    pub rate_limit_max_keys: u64,
    pub rate_limit_max_idle: Duration,
    /// Where decision records go; `None`: no records are written.
    pub journal: Option<JournalSettings>,
    /// OpenTelemetry traces (`observability.tracing`).
    pub tracing: TraceSettings,
}

impl AgentConfig {
    /// A configuration with every default, for embedding and tests.
    pub fn with_defaults(name: &str, socket_path: &Path) -> Self {
        Self {
            name: name.into(),
            socket_path: socket_path.into(),
            max_concurrent_requests: 1000,
            request_timeout: Duration::from_millis(5000),
            fail_on_unknown: false,
            log_level: "info".into(),
            metrics_enabled: true,
            max_body_size_bytes: 1_048_576,
            max_state_size_bytes: 65_536,
            data: Vec::new(),
            rate_limit_max_keys: 100_000,
            rate_limit_max_idle: Duration::from_secs(3600),
            journal: None,
            tracing: TraceSettings::default(),
        }
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, SetupError> {
        let text = std::fs::read_to_string(path).map_err(|e| SetupError::Config {
            file: path.into(),
            reason: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text`, read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SetupError> {
        let file: File = serde_yaml_ng::from_str(text).map_err(|e| SetupError::Config {
            file: path.into(),
            reason: e.to_string(),
        })?;
        let raw = file.agent_core;
        let field = |field: &str, reason: &str| SetupError::ConfigField {
            file: path.into(),
            field: format!("agent_core.{field}"),
            reason: reason.into(),
        };
        if raw.name.trim().is_empty() {
            return Err(field("name", "must not be empty"));
        }
        if raw.socket_path.as_os_str().is_empty() {
            return Err(field("socket_path", "must not be empty"));
        }
        if raw.server.max_concurrent_requests == 0 {
            return Err(field(
                "server.max_concurrent_requests",
                "must be at least 1",
            ));
        }
        if !(1..=60_000).contains(&raw.server.request_timeout_ms) {
            return Err(field(
                "server.request_timeout_ms",
                "must be between 1 and 60000",
            ));
        }
        if !["error", "warn", "info", "debug", "trace"]
            .contains(&raw.observability.log_level.as_str())
        {
            return Err(field(
                "observability.log_level",
                "must be one of error, warn, info, debug, trace",
            ));
        }
        if raw.resource_limits.max_body_size_bytes == 0 {
            return Err(field(
                "resource_limits.max_body_size_bytes",
                "must be at least 1",
            ));
        }
        if raw.resource_limits.max_state_size_bytes == 0 {
            return Err(field(
                "resource_limits.max_state_size_bytes",
                "must be at least 1",
            ));
        }
        if raw.rate_limit.max_keys == 0 {
            return Err(field("rate_limit.max_keys", "must be at least 1"));
        }
        let tracing = {
            let t = raw.observability.tracing;
            TraceSettings::try_new(t.enabled, t.sampling_rate, t.otlp_endpoint)
                .map_err(|e| field(&format!("observability.tracing.{}", e.field), &e.reason))?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let journal = match raw.journal {
            Some(j) => Some(j.validate(path, &raw.name)?),
            None => None,
        };
        Ok(Self {
            name: raw.name,
            socket_path: base.join(raw.socket_path),
            max_concurrent_requests: raw.server.max_concurrent_requests as usize,
            request_timeout: Duration::from_millis(raw.server.request_timeout_ms),
            fail_on_unknown: raw.policies.fail_on_unknown,
            log_level: raw.observability.log_level,
            metrics_enabled: raw.observability.metrics_enabled,
            max_body_size_bytes: raw.resource_limits.max_body_size_bytes,
            max_state_size_bytes: raw.resource_limits.max_state_size_bytes,
            data: raw.data.into_iter().map(|p| base.join(p)).collect(),
            rate_limit_max_keys: raw.rate_limit.max_keys,
            rate_limit_max_idle: Duration::from_secs(raw.rate_limit.max_idle_seconds.max(1)),
            journal,
            tracing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
agent_core:
  name: "default-agent"
  socket_path: "/var/run/policy-engine/agents/default.sock"
  server:
    max_concurrent_requests: 1000
    request_timeout_ms: 5000
  policies:
    fail_on_unknown: false
  observability:
    log_level: "info"
    metrics_enabled: true
  resource_limits:
    max_body_size_bytes: 1048576  # 1MB
    max_state_size_bytes: 65536   # 64KB
  data: [data]
"#;

    #[test]
    fn spec_example_parses() {
        let c = AgentConfig::parse(Path::new("/etc/pe/agent-config.yaml"), SPEC).unwrap();
        assert_eq!(c.name, "default-agent");
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.max_body_size_bytes, 1_048_576);
        assert_eq!(c.data, vec![PathBuf::from("/etc/pe/data")]);
    }

    #[test]
    fn unknown_field_names_file_and_field() {
        let text = SPEC.replace("fail_on_unknown", "fail_on_unknwn");
        let err = AgentConfig::parse(Path::new("a.yaml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("a.yaml: "), "{err}");
        assert!(err.contains("fail_on_unknwn"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let text = SPEC.replace("request_timeout_ms: 5000", "request_timeout_ms: 0");
        let err = AgentConfig::parse(Path::new("a.yaml"), &text)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "a.yaml: field `agent_core.server.request_timeout_ms`: must be between 1 and 60000"
        );
        let text = SPEC.replace("\"info\"", "\"loud\"");
        let err = AgentConfig::parse(Path::new("a.yaml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("observability.log_level"), "{err}");
    }

    #[test]
    fn tracing_is_off_by_default_and_validated() {
        let c = AgentConfig::parse(Path::new("a.yaml"), SPEC).unwrap();
        assert_eq!(c.tracing, TraceSettings::default());
        let on = SPEC.replace(
            "metrics_enabled: true",
            "metrics_enabled: true\n    tracing: {enabled: true, sampling_rate: 0.25, otlp_endpoint: \"http://collector:4317\"}",
        );
        let c = AgentConfig::parse(Path::new("a.yaml"), &on).unwrap();
        assert!(c.tracing.enabled);
        assert_eq!(c.tracing.sampling_rate, 0.25);
        assert_eq!(c.tracing.endpoint(), "http://collector:4317");
        let err = AgentConfig::parse(Path::new("a.yaml"), &on.replace("0.25", "1.5"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "a.yaml: field `agent_core.observability.tracing.sampling_rate`: must be between 0.0 and 1.0"
        );
        let err = AgentConfig::parse(
            Path::new("a.yaml"),
            &on.replace("http://collector:4317", "collector:4317"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("a.yaml: field `agent_core.observability.tracing.otlp_endpoint`: "),
            "{err}"
        );
    }
}
