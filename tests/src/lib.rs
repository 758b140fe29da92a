//! Helpers for policy-engine's cross-process tests.
//!
//! [`AgentProcess`] runs the real `policy-agent` binary on a temporary Unix
//! socket with a generated `agent-config.yaml` and data directory; the
//! protocol helpers build `PolicyRequest`s and read `PolicyResponse`s; the
//! token helpers sign JWTs and hash API keys. The tests themselves live in
//! `tests/`.

mod agent_process;
pub mod envoy;
pub mod opa;
pub mod otlp;
pub mod promtool;
mod protocol;
pub mod stack;
mod tokens;

pub use agent_process::{AGENT_BIN_ENV, AgentOptions, AgentProcess, agent_binary, connect_uds};
pub use protocol::{
    ResponseExt, policy, request_context, request_phase, response_context, response_phase,
};
pub use tokens::{RsaSigner, b64url, hs256_token, now_seconds, sha256_hex, unsigned_token};
