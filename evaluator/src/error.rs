//! Errors of the agent core.

use std::path::PathBuf;

/// Why the agent could not start or load its policies.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{file}: {reason}")]
    Config { file: PathBuf, reason: String },
    #[error("{file}: field `{field}`: {reason}")]
    ConfigField {
        file: PathBuf,
        field: String,
        reason: String,
    },
    #[error("data file {file}: {reason}")]
    Data { file: PathBuf, reason: String },
    #[error("built-in policy: {0}")]
    Annotation(#[from] policy_rego::AnnotationError),
    #[error("policy `{policy}`: invalid metadata schema: {reason}")]
    Schema { policy: String, reason: String },
    #[error("loading Rego `{path}`: {reason}")]
    Rego { path: String, reason: String },
    #[error("socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("decision journal: {reason}")]
    Journal { reason: String },
}

/// Why a chain could not be evaluated. Each variant has a stable code that
/// appears in responses, decision records and metric labels.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EvalError {
    #[error("evaluation exceeded its deadline of {deadline_ms} ms")]
    Timeout { deadline_ms: u64 },
    #[error("{what} body is {size} bytes, over the limit of {limit} bytes (`max_body_size_bytes`)")]
    BodyTooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error(
        "chain state is {size} bytes, over the limit of {limit} bytes (`max_state_size_bytes`)"
    )]
    StateTooLarge { size: usize, limit: usize },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("compiling chain: {0}")]
    Compile(String),
    #[error("evaluating chain: {0}")]
    Engine(String),
    #[error("the chain's decision is undefined")]
    Undefined,
    #[error("the chain's decision is malformed: {0}")]
    MalformedDecision(String),
    #[error("the policy engine panicked: {0}")]
    Panic(String),
    /// The decision's record could not be written (local log full or
    /// failing, or not synced in time on an `audit: strict` route): fail closed.
    #[error("decision record not written ({code}): {reason}")]
    RecordNotWritten { code: &'static str, reason: String },
    /// Degraded mode (the journal is unreachable) does not let this chain
    /// run: a tier that needs the journal, or cached data too old.
    #[error("{reason}")]
    DegradedDenied { tier: &'static str, reason: String },
}

impl EvalError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::StateTooLarge { .. } => "state_too_large",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Compile(_) => "compile_error",
            Self::Engine(_) => "engine_error",
            Self::Undefined => "undefined_decision",
            Self::MalformedDecision(_) => "malformed_decision",
            Self::Panic(_) => "engine_panic",
            Self::RecordNotWritten { .. } => "record_not_written",
            Self::DegradedDenied { .. } => "degraded_denied",
        }
    }

    /// The HTTP status an immediate response for this error carries.
    pub fn http_status(&self) -> i32 {
        match self {
            Self::BodyTooLarge { .. } => 413,
            Self::InvalidRequest(_) => 400,
            Self::Timeout { .. } => 504,
            Self::RecordNotWritten { .. } | Self::DegradedDenied { .. } => 503,
            _ => 500,
        }
    }
}
