//! Building kernel → agent requests and reading the agent's answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use policy_proto::agent::instruction::Payload;
use policy_proto::agent::{
    ImmediateResponse, InstructionType, Policy, PolicyPhase, PolicyRequest, PolicyResponse,
    RequestContext, ResponseContext, StatusCode,
};

/// A chain entry: `name` with metadata given as protocol strings (JSON for
/// values whose schema type is not `string`).
pub fn policy(name: &str, metadata: &[(&str, &str)]) -> Policy {
    Policy {
        name: name.to_string(),
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        on_failure: String::new(),
    }
}

/// A request context for `method path` from `client_ip` with `headers`.
pub fn request_context(
    method: &str,
    path: &str,
    client_ip: &str,
    headers: &[(&str, &str)],
) -> RequestContext {
    RequestContext {
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        body: Vec::new(),
        method: method.to_string(),
        path: path.to_string(),
        scheme: "http".into(),
        authority: "api.example.com".into(),
        query_params: HashMap::new(),
        client_ip: client_ip.to_string(),
    }
}

fn next_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("req-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A request-phase `PolicyRequest` for `route`.
pub fn request_phase(route: &str, policies: Vec<Policy>, context: RequestContext) -> PolicyRequest {
    PolicyRequest {
        request_id: next_request_id(),
        policies,
        context: Some(context),
        deadline_ms: 0,
        phase: PolicyPhase::Request as i32,
        response: None,
        state_json: Vec::new(),
        route: route.to_string(),
        ..Default::default()
    }
}

/// A response-phase `PolicyRequest` for `route`, carrying `state_json` from
/// the request phase.
pub fn response_phase(
    route: &str,
    policies: Vec<Policy>,
    context: RequestContext,
    response: ResponseContext,
    state_json: Vec<u8>,
) -> PolicyRequest {
    PolicyRequest {
        request_id: next_request_id(),
        policies,
        context: Some(context),
        deadline_ms: 0,
        phase: PolicyPhase::Response as i32,
        response: Some(response),
        state_json,
        route: route.to_string(),
        ..Default::default()
    }
}

/// A response context with `status_code`, `headers` and `body`.
pub fn response_context(
    status_code: i32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> ResponseContext {
    ResponseContext {
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        body: body.to_vec(),
        status_code,
    }
}

/// Reading a `PolicyResponse`.
pub trait ResponseExt {
    /// The chain's status code.
    fn code(&self) -> StatusCode;
    /// The policy that produced the status (empty when the chain ran through).
    fn policy_name(&self) -> &str;
    /// The only immediate response, if the response has exactly one.
    fn immediate(&self) -> Option<&ImmediateResponse>;
    /// Every `SET_HEADER` as (key, value), in order.
    fn set_headers(&self) -> Vec<(&str, &str)>;
    /// Every `SET_BODY` body, in order.
    fn set_bodies(&self) -> Vec<&[u8]>;
    /// The instruction types, in order.
    fn instruction_types(&self) -> Vec<InstructionType>;
    /// The response metadata value of `key`.
    fn meta(&self, key: &str) -> Option<&str>;
    /// The returned chain state (`{}` when empty).
    fn state(&self) -> serde_json::Value;
    /// The outcomes as (policy, code, message).
    fn outcome_list(&self) -> Vec<(&str, StatusCode, &str)>;
}

impl ResponseExt for PolicyResponse {
    fn code(&self) -> StatusCode {
        self.status
            .as_ref()
            .map(|s| s.code())
            .unwrap_or(StatusCode::Ok)
    }

    fn policy_name(&self) -> &str {
        self.status
            .as_ref()
            .map(|s| s.policy_name.as_str())
            .unwrap_or("")
    }

    fn immediate(&self) -> Option<&ImmediateResponse> {
        let all: Vec<&ImmediateResponse> = self
            .instructions
            .iter()
            .filter_map(|i| match &i.payload {
                Some(Payload::ImmediateResponse(r)) => Some(r),
                _ => None,
            })
            .collect();
        match all.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    fn set_headers(&self) -> Vec<(&str, &str)> {
        self.instructions
            .iter()
            .filter(|i| i.r#type() == InstructionType::SetHeader)
            .filter_map(|i| match &i.payload {
                Some(Payload::Header(h)) => Some((h.key.as_str(), h.value.as_str())),
                _ => None,
            })
            .collect()
    }

    fn set_bodies(&self) -> Vec<&[u8]> {
        self.instructions
            .iter()
            .filter(|i| i.r#type() == InstructionType::SetBody)
            .filter_map(|i| match &i.payload {
                Some(Payload::Body(b)) => Some(b.body.as_slice()),
                _ => None,
            })
            .collect()
    }

    fn instruction_types(&self) -> Vec<InstructionType> {
        self.instructions.iter().map(|i| i.r#type()).collect()
    }

    fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    fn state(&self) -> serde_json::Value {
        if self.state_json.is_empty() {
            return serde_json::json!({});
        }
        serde_json::from_slice(&self.state_json).unwrap_or_else(|e| {
            serde_json::Value::String(format!(
                "<state_json is not JSON ({e}): {}>",
                String::from_utf8_lossy(&self.state_json)
            ))
        })
    }

    fn outcome_list(&self) -> Vec<(&str, StatusCode, &str)> {
        self.outcomes
            .iter()
            .map(|o| (o.policy_name.as_str(), o.code(), o.message.as_str()))
            .collect()
    }
}
