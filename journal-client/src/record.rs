//! The decision record (DESIGN §6): one per evaluated phase, written by the
//! agent, chained per agent by SHA-256, stored by the journal as the exact
//! bytes the agent hashed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `prev_hash` of an agent's first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The final decision of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    /// Denied by policy but let through (enforcement `warn`).
    Warn,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Warn => "warn",
            Self::Deny => "deny",
        }
    }
}

/// What the request looked like, with secrets masked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestSummary {
    pub method: String,
    pub path: String,
    pub authority: String,
    pub client_ip: String,
    /// Lower-case names; secret values replaced by [`crate::MASK`].
    pub headers: BTreeMap<String, String>,
    /// Upstream status in the response phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<u32>,
}

/// One policy of the chain and what it returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyOutcome {
    pub policy: String,
    /// `OK`, `POLICY_DENIED`, `POLICY_ERROR` or `SKIPPED`.
    pub status: String,
    pub message: String,
}

/// A non-deterministic builtin call and its result, for replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuiltinCall {
    pub name: String,
    pub args: Vec<serde_json::Value>,
    pub result: serde_json::Value,
}

/// The record of one decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// UUIDv7.
    pub decision_id: String,
    pub agent_id: String,
    pub boot_epoch: u64,
    pub seq: u64,
    /// RFC 3339, UTC, nanoseconds.
    pub timestamp: String,
    /// The kernel's request id (Envoy's `x-request-id` when present).
    pub request_id: String,
    pub route: String,
    /// `request` or `response`.
    pub phase: String,
    pub request: RequestSummary,
    /// Who the chain authenticated (`state.user`), if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    pub policies: Vec<PolicyOutcome>,
    pub decision: Verdict,
    /// Status of the immediate response sent to the client; `None` when the
    /// request went on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u32>,
    /// The deciding policy's message (empty when allowed).
    pub reason: String,
    /// The policy that stopped the chain, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// `enforce` or `warn`.
    pub enforcement: String,
    pub environment: String,
    pub bundle_revision: String,
    pub config_version: String,
    /// `normal`, `degraded:<tier>` or `emergency`.
    pub mode: String,
    /// Whether a policy (auditLog) asked for a full audit record.
    pub audit: bool,
    /// Evaluation time of the chain, microseconds.
    pub duration_us: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builtins: Vec<BuiltinCall>,
    pub prev_hash: String,
}

impl DecisionRecord {
    /// The bytes that are hashed, stored and shipped.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Parses the bytes of a stored record.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Lower-case hex SHA-256 of `bytes`: a record's `hash`.
pub fn record_hash(bytes: &[u8]) -> String {
    // aws-lc's SHA-256 (SHA-NI/AVX where available): on every decision's path.
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> DecisionRecord {
        DecisionRecord {
            decision_id: "0190b6c4-0000-7000-8000-000000000000".into(),
            agent_id: "agent-1".into(),
            boot_epoch: 1,
            seq: 1,
            timestamp: "2026-11-23T00:00:00.000000000Z".into(),
            request_id: "r1".into(),
            route: "/api/v1/users".into(),
            phase: "request".into(),
            request: RequestSummary::default(),
            principal: Some("alice".into()),
            policies: vec![],
            decision: Verdict::Allow,
            http_status: None,
            reason: String::new(),
            decided_by: None,
            enforcement: "enforce".into(),
            environment: "dev".into(),
            bundle_revision: "builtin".into(),
            config_version: "1".into(),
            mode: "normal".into(),
            audit: false,
            duration_us: 12,
            builtins: vec![],
            prev_hash: GENESIS_HASH.into(),
        }
    }

    #[test]
    fn json_round_trip_is_byte_stable() {
        let r = sample();
        let bytes = r.to_json().unwrap();
        let back = DecisionRecord::from_json(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.to_json().unwrap(), bytes);
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .contains(r#""decision":"allow""#)
        );
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            record_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(GENESIS_HASH.len(), 64);
    }
}
