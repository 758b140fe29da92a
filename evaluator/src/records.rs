//! Decision records: what the agent writes for every evaluated phase
//! (DESIGN §6), built from the request and the response it answers with,
//! secrets masked before anything leaves this module.

use std::time::Duration;

use journal_client::{BuiltinCall, DecisionRecord, Masker, PolicyOutcome, RequestSummary, Verdict};
use policy_proto::agent::{
    InstructionType, PolicyPhase, PolicyRequest, PolicyResponse, RequestContext, StatusCode,
    instruction,
};

use crate::builtins::RecordedCall;

/// Metadata fields of a chain entry that name a header carrying a secret
/// (`apiKeyAuth.header_name`, `rateLimit.api_key_header`).
const SECRET_HEADER_FIELDS: &[&str] = &["header_name", "api_key_header"];

/// What is the same for every record of an agent.
#[derive(Debug, Clone)]
pub struct RecordSettings {
    pub agent_id: String,
    /// `dev`, `staging`, `prod`, …
    pub environment: String,
    /// Headers masked in addition to the built-in list.
    pub masked_headers: Vec<String>,
}

/// The record of one evaluated phase; the local log assigns `boot_epoch`,
/// `seq` and `prev_hash`.
pub fn build_record(
    settings: &RecordSettings,
    req: &PolicyRequest,
    response: &PolicyResponse,
    recorded: &[RecordedCall],
    bundle_revision: &str,
    duration: Duration,
) -> DecisionRecord {
    let masker = Masker::new(
        settings
            .masked_headers
            .iter()
            .map(String::as_str)
            .chain(chain_secret_headers(req)),
    );
    let empty = RequestContext::default();
    // Borrowed: the context may carry a body of up to `max_body_size_bytes`.
    let context = req.context.as_ref().unwrap_or(&empty);
    let (headers, secrets) = masker.headers(&context.headers);
    let phase = match PolicyPhase::try_from(req.phase) {
        Ok(PolicyPhase::Response) => "response",
        _ => "request",
    };
    let code = response
        .status
        .as_ref()
        .and_then(|s| StatusCode::try_from(s.code).ok())
        .unwrap_or(StatusCode::PolicyError);
    let immediate = response.instructions.iter().find_map(|i| match &i.payload {
        Some(instruction::Payload::ImmediateResponse(r))
            if i.r#type == InstructionType::ImmediateResponse as i32 =>
        {
            Some(r.status_code)
        }
        _ => None,
    });
    let decision = if code == StatusCode::Ok {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    let policies = response
        .outcomes
        .iter()
        .map(|o| PolicyOutcome {
            policy: o.policy_name.clone(),
            status: StatusCode::try_from(o.code)
                .map(|c| c.as_str_name().to_owned())
                .unwrap_or_else(|_| "POLICY_ERROR".to_owned()),
            message: Masker::scrub(&o.message, &secrets),
        })
        .collect();
    let builtins = recorded
        .iter()
        .map(|c| {
            let mut args: Vec<serde_json::Value> = c.args.iter().map(to_json).collect();
            let mut result = to_json(&c.result);
            for v in args.iter_mut().chain(std::iter::once(&mut result)) {
                Masker::scrub_json(v, &secrets);
            }
            BuiltinCall {
                name: c.name.clone(),
                args,
                result,
            }
        })
        .collect();
    DecisionRecord {
        decision_id: uuid::Uuid::now_v7().to_string(),
        agent_id: settings.agent_id.clone(),
        boot_epoch: 0,
        seq: 0,
        timestamp: now_rfc3339(),
        request_id: req.request_id.clone(),
        route: req.route.clone(),
        phase: phase.to_owned(),
        request: RequestSummary {
            method: context.method.clone(),
            path: Masker::scrub(&context.path, &secrets),
            authority: context.authority.clone(),
            client_ip: context.client_ip.clone(),
            headers,
            response_status: req
                .response
                .as_ref()
                .and_then(|r| u32::try_from(r.status_code).ok()),
        },
        principal: principal(response, &req.state_json),
        policies,
        decision,
        http_status: immediate.and_then(|s| u32::try_from(s).ok()),
        reason: if decision == Verdict::Allow {
            String::new()
        } else {
            Masker::scrub(&response.message, &secrets)
        },
        decided_by: response
            .status
            .as_ref()
            .map(|s| s.policy_name.clone())
            .filter(|p| !p.is_empty()),
        enforcement: "enforce".to_owned(),
        environment: settings.environment.clone(),
        bundle_revision: bundle_revision.to_owned(),
        config_version: req.config_version.clone(),
        mode: "normal".to_owned(),
        audit: response.metadata.get("audit").is_some_and(|a| a == "full"),
        duration_us: u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
        builtins,
        prev_hash: String::new(),
    }
}

/// A record of an operator's action on the agent itself (phase `control`),
/// such as turning emergency mode on or off; it joins the decision records'
/// hash chain.
pub fn control_record(
    settings: &RecordSettings,
    route: &str,
    operator: &str,
    reason: &str,
    bundle_revision: &str,
) -> DecisionRecord {
    DecisionRecord {
        decision_id: uuid::Uuid::now_v7().to_string(),
        agent_id: settings.agent_id.clone(),
        boot_epoch: 0,
        seq: 0,
        timestamp: now_rfc3339(),
        request_id: String::new(),
        route: route.to_owned(),
        phase: "control".to_owned(),
        request: RequestSummary::default(),
        principal: Some(operator.to_owned()),
        policies: Vec::new(),
        decision: Verdict::Allow,
        http_status: None,
        reason: reason.to_owned(),
        decided_by: None,
        enforcement: "enforce".to_owned(),
        environment: settings.environment.clone(),
        bundle_revision: bundle_revision.to_owned(),
        config_version: String::new(),
        mode: "normal".to_owned(),
        audit: true,
        duration_us: 0,
        builtins: Vec::new(),
        prev_hash: String::new(),
    }
}

/// The secret header values of the request (the built-in list, `extra`
/// and the chain's own secret headers), to scrub from text that leaves the
/// agent other than in a record (span attributes).
pub(crate) fn secret_values(req: &PolicyRequest, extra: &[String]) -> Vec<String> {
    let Some(context) = req.context.as_ref() else {
        return Vec::new();
    };
    let masker = Masker::new(
        extra
            .iter()
            .map(String::as_str)
            .chain(chain_secret_headers(req)),
    );
    masker.headers(&context.headers).1
}

/// The headers a chain's own metadata names as secrets.
fn chain_secret_headers(req: &PolicyRequest) -> impl Iterator<Item = &str> {
    req.policies.iter().flat_map(|p| {
        SECRET_HEADER_FIELDS
            .iter()
            .filter_map(|f| p.metadata.get(*f).map(String::as_str))
    })
}

/// `state.user` after the phase, else before it (the response phase).
fn principal(response: &PolicyResponse, state_before: &[u8]) -> Option<String> {
    [response.state_json.as_slice(), state_before]
        .into_iter()
        .filter(|s| !s.is_empty())
        .find_map(|s| {
            let state: serde_json::Value = serde_json::from_slice(s).ok()?;
            state.get("user")?.as_str().map(str::to_owned)
        })
}

fn to_json(v: &regorus::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Now as RFC 3339 UTC with nanoseconds.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;

    use policy_proto::agent::{
        Instruction, Policy, PolicyOutcome as ProtoOutcome, RequestContext, ResponseStatus,
    };

    use super::*;

    fn settings() -> RecordSettings {
        RecordSettings {
            agent_id: "agent-1".into(),
            environment: "staging".into(),
            masked_headers: vec!["x-tenant-secretish".into()],
        }
    }

    fn request(headers: &[(&str, &str)]) -> PolicyRequest {
        PolicyRequest {
            request_id: "r-1".into(),
            route: "/api/v1/users".into(),
            config_version: "sha256:abc".into(),
            policies: vec![Policy {
                name: "apiKeyAuth".into(),
                metadata: HashMap::from([("header_name".into(), "X-Custom-Key".into())]),
                on_failure: String::new(),
            }],
            context: Some(RequestContext {
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                method: "GET".into(),
                path: "/api/v1/users".into(),
                client_ip: "203.0.113.7".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_denial_names_policy_status_reason_and_masks_secrets() {
        let req = request(&[("x-custom-key", "k-secret-1"), ("accept", "*/*")]);
        let response = PolicyResponse {
            status: Some(ResponseStatus {
                code: StatusCode::PolicyDenied as i32,
                policy_name: "apiKeyAuth".into(),
            }),
            message: "invalid API key".into(),
            instructions: vec![Instruction {
                r#type: InstructionType::ImmediateResponse as i32,
                payload: Some(instruction::Payload::ImmediateResponse(
                    policy_proto::agent::ImmediateResponse {
                        status_code: 403,
                        ..Default::default()
                    },
                )),
            }],
            outcomes: vec![ProtoOutcome {
                policy_name: "apiKeyAuth".into(),
                code: StatusCode::PolicyDenied as i32,
                message: "invalid API key".into(),
            }],
            ..Default::default()
        };
        let r = build_record(
            &settings(),
            &req,
            &response,
            &[],
            "rev-1",
            Duration::from_micros(42),
        );
        assert_eq!(r.decision, Verdict::Deny);
        assert_eq!(r.http_status, Some(403));
        assert_eq!(r.reason, "invalid API key");
        assert_eq!(r.decided_by.as_deref(), Some("apiKeyAuth"));
        assert_eq!(r.policies[0].status, "POLICY_DENIED");
        assert_eq!(r.request.headers["x-custom-key"], journal_client::MASK);
        assert_eq!(r.request.headers["accept"], "*/*");
        assert_eq!(r.config_version, "sha256:abc");
        assert_eq!(r.environment, "staging");
        assert_eq!(r.duration_us, 42);
        let json = String::from_utf8(r.to_json().unwrap()).unwrap();
        assert!(!json.contains("k-secret-1"), "{json}");
    }

    #[test]
    fn an_allowed_request_carries_the_principal_and_audit_mark() {
        let req = request(&[]);
        let response = PolicyResponse {
            status: Some(ResponseStatus {
                code: StatusCode::Ok as i32,
                policy_name: String::new(),
            }),
            state_json: br#"{"user":"alice"}"#.to_vec(),
            metadata: HashMap::from([("audit".into(), "full".into())]),
            ..Default::default()
        };
        let r = build_record(&settings(), &req, &response, &[], "rev", Duration::ZERO);
        assert_eq!(r.decision, Verdict::Allow);
        assert_eq!(r.principal.as_deref(), Some("alice"));
        assert!(r.audit);
        assert!(r.reason.is_empty());
        assert_eq!(r.http_status, None);
    }
}
