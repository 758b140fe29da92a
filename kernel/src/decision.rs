//! Agent answers → verdicts, and the error table of spec §3.5: the one
//! place where an agent answer or a failure becomes what Envoy is told
//! (turned into ext_proc messages by `convert`).

use policy_proto::agent::{InstructionType, PolicyResponse, StatusCode, instruction::Payload};

use crate::config::is_header_name;

/// Which side of the exchange a message or chain belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    Response,
}

/// What Envoy is told for one evaluated phase.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Let the request or response through with these changes.
    Continue(Mutations),
    /// Answer the client now (`immediate_response`).
    Respond(LocalReply),
}

impl Verdict {
    /// Continue without changes.
    pub fn pass() -> Self {
        Self::Continue(Mutations::default())
    }
}

/// Header and body changes, in the order the chain made them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mutations {
    /// Lower-case name and value; each name at most once.
    pub set_headers: Vec<(String, String)>,
    /// Lower-case names.
    pub remove_headers: Vec<String>,
    /// A replacement body.
    pub body: Option<Vec<u8>>,
}

impl Mutations {
    fn set(&mut self, key: &str, value: &str) {
        let key = key.to_ascii_lowercase();
        self.remove_headers.retain(|k| *k != key);
        match self.set_headers.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.set_headers.push((key, value.to_string())),
        }
    }

    fn remove(&mut self, key: &str) {
        let key = key.to_ascii_lowercase();
        self.set_headers.retain(|(k, _)| *k != key);
        if !self.remove_headers.contains(&key) {
            self.remove_headers.push(key);
        }
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.set_headers.is_empty() && self.remove_headers.is_empty() && self.body.is_none()
    }
}

/// A locally generated response.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Envoy's `%RESPONSE_CODE_DETAILS%` (no spaces).
    pub details: String,
}

/// How an evaluated phase ended: the `status` label of
/// `policy_kernel_requests_total` and the `details` of kernel replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The chain allowed (possibly with changes).
    Allowed,
    /// The chain denied (immediate response or POLICY_DENIED).
    Denied,
    /// POLICY_ERROR: a policy failed and its `on_failure` stopped the chain.
    PolicyError,
    /// No answer within `timeout_ms`, or the agent answered TIMEOUT.
    AgentTimeout,
    /// The agent could not be reached (after retries) or is not discovered.
    AgentUnavailable,
    /// The agent answered with a gRPC error.
    AgentError,
    /// The agent's answer broke the protocol.
    InvalidResponse,
    /// The route's agent does not support one of its policies.
    InvalidRoute,
    /// The route needs a body but Envoy did not send it.
    BodyMissing,
    /// No route matched and there is no default policy.
    NoPolicy,
}

impl Outcome {
    /// The stable code used in metrics, logs and reply details.
    pub fn code(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::PolicyError => "policy_error",
            Self::AgentTimeout => "agent_timeout",
            Self::AgentUnavailable => "agent_unavailable",
            Self::AgentError => "agent_error",
            Self::InvalidResponse => "invalid_agent_response",
            Self::InvalidRoute => "invalid_route",
            Self::BodyMissing => "body_missing",
            Self::NoPolicy => "no_policy",
        }
    }
}

/// Why an agent answer was not understood.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResponseError {
    #[error("agent response has no status")]
    MissingStatus,
    #[error("agent response has unknown status code `{0}`")]
    UnknownStatus(i32),
    #[error("instruction {index} has unknown type `{kind}`")]
    UnknownInstruction { index: usize, kind: i32 },
    #[error("instruction {index} ({kind}) has no matching payload")]
    PayloadMismatch { index: usize, kind: &'static str },
    #[error("instruction {index} has invalid header name `{name}`")]
    InvalidHeaderName { index: usize, name: String },
    #[error("instruction {index} sets header `{name}` to a value with control characters")]
    InvalidHeaderValue { index: usize, name: String },
    #[error("instruction {index} has immediate response status `{status}` outside 200-599")]
    StatusOutOfRange { index: usize, status: i32 },
    #[error("malformed state_json: {0}")]
    MalformedState(String),
}

/// An agent answer, understood.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub outcome: Outcome,
    /// Chain state after the phase (a JSON object, or empty).
    pub state_json: Vec<u8>,
    /// The policy that decided, when the agent named one.
    pub policy: String,
}

/// An agent answer: a decision, or the agent's own TIMEOUT.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Decision(Decision),
    Timeout,
}

fn header_name_ok(name: &str) -> bool {
    is_header_name(name.strip_prefix(':').unwrap_or(name))
}

fn header_value_ok(value: &str) -> bool {
    !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// Interprets an agent answer. An immediate response wins over everything
/// else; POLICY_DENIED without one is 403, POLICY_ERROR without one is 500;
/// OK continues with the header and body changes. SET_STATE and CONTINUE
/// change nothing here (the agent folds state into `state_json`).
pub fn interpret(resp: &PolicyResponse) -> Result<Answer, ResponseError> {
    let status = resp.status.as_ref().ok_or(ResponseError::MissingStatus)?;
    let code =
        StatusCode::try_from(status.code).map_err(|_| ResponseError::UnknownStatus(status.code))?;
    if code == StatusCode::Timeout {
        return Ok(Answer::Timeout);
    }
    if !resp.state_json.is_empty() {
        match serde_json::from_slice::<serde_json::Value>(&resp.state_json) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Err(ResponseError::MalformedState("not a JSON object".into())),
            Err(e) => return Err(ResponseError::MalformedState(e.to_string())),
        }
    }
    let mut mutations = Mutations::default();
    let mut reply = None;
    for (index, ins) in resp.instructions.iter().enumerate() {
        let kind = InstructionType::try_from(ins.r#type).map_err(|_| {
            ResponseError::UnknownInstruction {
                index,
                kind: ins.r#type,
            }
        })?;
        let mismatch = || ResponseError::PayloadMismatch {
            index,
            kind: kind.as_str_name(),
        };
        match (kind, &ins.payload) {
            (
                InstructionType::SetHeader | InstructionType::RemoveHeader,
                Some(Payload::Header(h)),
            ) => {
                if !header_name_ok(&h.key) {
                    return Err(ResponseError::InvalidHeaderName {
                        index,
                        name: h.key.clone(),
                    });
                }
                if kind == InstructionType::SetHeader {
                    if !header_value_ok(&h.value) {
                        return Err(ResponseError::InvalidHeaderValue {
                            index,
                            name: h.key.clone(),
                        });
                    }
                    mutations.set(&h.key, &h.value);
                } else {
                    mutations.remove(&h.key);
                }
            }
            (InstructionType::SetBody, Some(Payload::Body(b))) => {
                mutations.body = Some(b.body.clone())
            }
            (InstructionType::ImmediateResponse, Some(Payload::ImmediateResponse(r))) => {
                let status = u16::try_from(r.status_code)
                    .ok()
                    .filter(|s| (200..=599).contains(s))
                    .ok_or(ResponseError::StatusOutOfRange {
                        index,
                        status: r.status_code,
                    })?;
                let mut headers: Vec<(String, String)> = Vec::with_capacity(r.headers.len());
                for (k, v) in &r.headers {
                    if !is_header_name(k) {
                        return Err(ResponseError::InvalidHeaderName {
                            index,
                            name: k.clone(),
                        });
                    }
                    if !header_value_ok(v) {
                        return Err(ResponseError::InvalidHeaderValue {
                            index,
                            name: k.clone(),
                        });
                    }
                    headers.push((k.to_ascii_lowercase(), v.clone()));
                }
                headers.sort();
                if reply.is_none() {
                    reply = Some(LocalReply {
                        status,
                        headers,
                        body: r.body.clone(),
                        details: details(code, &status_policy(resp)),
                    });
                }
            }
            (InstructionType::Continue, Some(Payload::ContinueRequest(_)) | None) => {}
            (InstructionType::SetState, Some(Payload::State(_))) => {}
            _ => return Err(mismatch()),
        }
    }
    let policy = status_policy(resp);
    let (verdict, outcome) = match (reply, code) {
        (Some(r), StatusCode::PolicyError) => (Verdict::Respond(r), Outcome::PolicyError),
        (Some(r), _) => (Verdict::Respond(r), Outcome::Denied),
        (None, StatusCode::PolicyDenied) => (
            Verdict::Respond(kernel_reply(403, &details(code, &policy))),
            Outcome::Denied,
        ),
        (None, StatusCode::PolicyError) => (
            Verdict::Respond(kernel_reply(500, &details(code, &policy))),
            Outcome::PolicyError,
        ),
        (None, _) => (Verdict::Continue(mutations), Outcome::Allowed),
    };
    Ok(Answer::Decision(Decision {
        verdict,
        outcome,
        state_json: resp.state_json.clone(),
        policy,
    }))
}

fn status_policy(resp: &PolicyResponse) -> String {
    resp.status
        .as_ref()
        .map(|s| s.policy_name.clone())
        .unwrap_or_default()
}

/// `policy_denied:apiKeyAuth`, `policy_error`, …: one token, no spaces.
fn details(code: StatusCode, policy: &str) -> String {
    let what = match code {
        StatusCode::PolicyError => "policy_error",
        _ => "policy_denied",
    };
    let policy: String = policy
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_-.".contains(*c))
        .collect();
    if policy.is_empty() {
        what.to_string()
    } else {
        format!("{what}:{policy}")
    }
}

/// A reply the kernel makes itself: JSON `{"error": details}`.
pub fn kernel_reply(status: u16, details: &str) -> LocalReply {
    LocalReply {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::json!({ "error": details })
            .to_string()
            .into_bytes(),
        details: details.to_string(),
    }
}

/// The error table of spec §3.5 for failures that produced no decision:
/// an unavailable or timed-out agent continues when `fail_open`, otherwise
/// 503; everything else (invalid answer, agent error, invalid route, missing
/// body) is 500. Allowed, denied and policy errors are decisions, not here.
pub fn failure_verdict(outcome: Outcome, fail_open: bool) -> Verdict {
    match outcome {
        Outcome::AgentTimeout | Outcome::AgentUnavailable if fail_open => Verdict::pass(),
        Outcome::AgentTimeout | Outcome::AgentUnavailable => {
            Verdict::Respond(kernel_reply(503, outcome.code()))
        }
        Outcome::NoPolicy | Outcome::Allowed => Verdict::pass(),
        _ => Verdict::Respond(kernel_reply(500, outcome.code())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_proto::agent::{
        BodyInstruction, HeaderInstruction, ImmediateResponse as AgentReply, Instruction,
        ResponseStatus as AgentStatus, StateInstruction,
    };
    use std::collections::HashMap;

    fn header(ty: InstructionType, k: &str, v: &str) -> Instruction {
        Instruction {
            r#type: ty as i32,
            payload: Some(Payload::Header(HeaderInstruction {
                key: k.into(),
                value: v.into(),
            })),
        }
    }

    fn reply(status: i32) -> Instruction {
        Instruction {
            r#type: InstructionType::ImmediateResponse as i32,
            payload: Some(Payload::ImmediateResponse(AgentReply {
                status_code: status,
                headers: HashMap::from([("WWW-Authenticate".into(), "API-Key".into())]),
                body: b"{\"error\":\"API key required\"}".to_vec(),
            })),
        }
    }

    fn response(code: StatusCode, policy: &str, instructions: Vec<Instruction>) -> PolicyResponse {
        PolicyResponse {
            status: Some(AgentStatus {
                code: code as i32,
                policy_name: policy.into(),
            }),
            instructions,
            state_json: b"{\"user\":\"alice\"}".to_vec(),
            ..Default::default()
        }
    }

    fn decision(resp: &PolicyResponse) -> Decision {
        match interpret(resp).unwrap() {
            Answer::Decision(d) => d,
            Answer::Timeout => panic!("timeout"),
        }
    }

    #[test]
    fn header_instructions_fold_into_one_mutation() {
        let resp = response(
            StatusCode::Ok,
            "",
            vec![
                header(InstructionType::SetHeader, "X-User-ID", "alice"),
                header(InstructionType::RemoveHeader, "X-Drop", ""),
                header(InstructionType::SetHeader, "x-drop", "back"),
                header(InstructionType::SetHeader, "X-User-ID", "bob"),
                header(InstructionType::RemoveHeader, "x-gone", ""),
                Instruction {
                    r#type: InstructionType::SetState as i32,
                    payload: Some(Payload::State(StateInstruction {
                        key: "user".into(),
                        value_json: "\"bob\"".into(),
                    })),
                },
                Instruction {
                    r#type: InstructionType::Continue as i32,
                    payload: None,
                },
                Instruction {
                    r#type: InstructionType::SetBody as i32,
                    payload: Some(Payload::Body(BodyInstruction {
                        body: b"{}".to_vec(),
                    })),
                },
            ],
        );
        let d = decision(&resp);
        assert_eq!(d.outcome, Outcome::Allowed);
        assert_eq!(d.state_json, b"{\"user\":\"alice\"}");
        let Verdict::Continue(m) = d.verdict else {
            panic!("not continue")
        };
        assert_eq!(
            m.set_headers,
            vec![
                ("x-user-id".into(), "bob".into()),
                ("x-drop".into(), "back".into())
            ]
        );
        assert_eq!(m.remove_headers, vec!["x-gone".to_string()]);
        assert_eq!(m.body.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn immediate_response_wins_and_keeps_status_headers_body() {
        let resp = response(
            StatusCode::PolicyDenied,
            "apiKeyAuth",
            vec![header(InstructionType::SetHeader, "x-a", "1"), reply(401)],
        );
        let d = decision(&resp);
        assert_eq!(d.outcome, Outcome::Denied);
        let Verdict::Respond(r) = d.verdict else {
            panic!("not a reply")
        };
        assert_eq!(r.status, 401);
        assert_eq!(
            r.headers,
            vec![("www-authenticate".into(), "API-Key".into())]
        );
        assert_eq!(r.details, "policy_denied:apiKeyAuth");
    }

    #[test]
    fn denied_and_errors_without_a_reply_get_kernel_replies() {
        let d = decision(&response(StatusCode::PolicyDenied, "roleCheck", vec![]));
        assert_eq!(
            d.verdict,
            Verdict::Respond(kernel_reply(403, "policy_denied:roleCheck"))
        );
        let d = decision(&response(StatusCode::PolicyError, "jwt validation", vec![]));
        assert_eq!(d.outcome, Outcome::PolicyError);
        assert_eq!(
            d.verdict,
            Verdict::Respond(kernel_reply(500, "policy_error:jwtvalidation"))
        );
        // An agent error reply (e.g. 413 body too large) is kept.
        let d = decision(&response(StatusCode::PolicyError, "", vec![reply(413)]));
        assert!(matches!(
            d.verdict,
            Verdict::Respond(LocalReply { status: 413, .. })
        ));
    }

    #[test]
    fn timeout_status_is_a_timeout() {
        assert_eq!(
            interpret(&response(StatusCode::Timeout, "", vec![])),
            Ok(Answer::Timeout)
        );
    }

    #[test]
    fn invalid_answers_are_errors() {
        let mut r = response(StatusCode::Ok, "", vec![]);
        r.status = None;
        assert_eq!(interpret(&r), Err(ResponseError::MissingStatus));
        let mut r = response(StatusCode::Ok, "", vec![]);
        r.status = Some(AgentStatus {
            code: 42,
            policy_name: String::new(),
        });
        assert_eq!(interpret(&r), Err(ResponseError::UnknownStatus(42)));
        let r = response(
            StatusCode::Ok,
            "",
            vec![Instruction {
                r#type: 77,
                payload: None,
            }],
        );
        assert_eq!(
            interpret(&r),
            Err(ResponseError::UnknownInstruction { index: 0, kind: 77 })
        );
        let r = response(
            StatusCode::Ok,
            "",
            vec![Instruction {
                r#type: InstructionType::SetHeader as i32,
                payload: Some(Payload::Body(BodyInstruction::default())),
            }],
        );
        assert!(matches!(
            interpret(&r),
            Err(ResponseError::PayloadMismatch { .. })
        ));
        let r = response(
            StatusCode::Ok,
            "",
            vec![header(InstructionType::SetHeader, "bad name", "v")],
        );
        assert!(matches!(
            interpret(&r),
            Err(ResponseError::InvalidHeaderName { .. })
        ));
        let r = response(
            StatusCode::Ok,
            "",
            vec![header(InstructionType::SetHeader, "x", "a\r\nb: c")],
        );
        assert!(matches!(
            interpret(&r),
            Err(ResponseError::InvalidHeaderValue { .. })
        ));
        let r = response(StatusCode::PolicyDenied, "", vec![reply(101)]);
        assert!(matches!(
            interpret(&r),
            Err(ResponseError::StatusOutOfRange { status: 101, .. })
        ));
        let mut r = response(StatusCode::Ok, "", vec![]);
        r.state_json = b"[1]".to_vec();
        assert!(matches!(
            interpret(&r),
            Err(ResponseError::MalformedState(_))
        ));
        r.state_json = b"{".to_vec();
        assert!(matches!(
            interpret(&r),
            Err(ResponseError::MalformedState(_))
        ));
    }

    #[test]
    fn error_table() {
        for fail_open in [false, true] {
            for o in [Outcome::AgentTimeout, Outcome::AgentUnavailable] {
                let v = failure_verdict(o, fail_open);
                if fail_open {
                    assert_eq!(v, Verdict::pass());
                } else {
                    assert_eq!(v, Verdict::Respond(kernel_reply(503, o.code())));
                }
            }
            for o in [
                Outcome::InvalidResponse,
                Outcome::AgentError,
                Outcome::InvalidRoute,
                Outcome::BodyMissing,
            ] {
                assert_eq!(
                    failure_verdict(o, fail_open),
                    Verdict::Respond(kernel_reply(500, o.code()))
                );
            }
            assert_eq!(
                failure_verdict(Outcome::NoPolicy, fail_open),
                Verdict::pass()
            );
        }
    }
}
