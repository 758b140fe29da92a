//! The request context as the Rego input document, and the chain's decision
//! document back as a protocol response.

use std::collections::HashMap;

use policy_proto::agent::{
    BodyInstruction, ContinueRequest, HeaderInstruction, ImmediateResponse, Instruction,
    InstructionType, PolicyOutcome, PolicyPhase, PolicyRequest, PolicyResponse, ResponseStatus,
    StateInstruction, StatusCode, instruction::Payload,
};
use regorus::Value;

use crate::error::EvalError;

/// Limits applied while building the input.
#[derive(Debug, Clone, Copy)]
pub struct InputLimits {
    pub max_body_size_bytes: usize,
    pub max_state_size_bytes: usize,
}

/// An object of distinct keys (built without an intermediate map).
fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::object_from_entries(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

fn string_map(m: &HashMap<String, String>) -> Value {
    Value::object_from_entries(
        m.iter()
            .map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str())))
            .collect(),
    )
}

/// Headers with lower-case names. Two names that differ only in case are
/// refused: which value won would depend on hash order, so the same request
/// could be allowed once and denied the next time.
fn header_map(what: &str, m: &HashMap<String, String>) -> Result<Value, EvalError> {
    let mut entries: Vec<(String, &str)> = m
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(EvalError::InvalidRequest(format!(
            "{what} header `{}` is given more than once (names differ only in case)",
            w[0].0
        )));
    }
    Ok(Value::object_from_entries(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), Value::from(v)))
            .collect(),
    ))
}

/// The body as policies see it: parsed JSON when the content type is JSON
/// (and the body parses), otherwise the text; `""` when empty.
fn body_value(
    what: &'static str,
    body: &[u8],
    headers: &HashMap<String, String>,
) -> Result<Value, EvalError> {
    if body.is_empty() {
        return Ok(Value::from(""));
    }
    let is_json = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .is_some_and(|(_, v)| {
            let v = v.to_ascii_lowercase();
            let mime = v.split(';').next().unwrap_or("").trim();
            mime == "application/json" || mime.ends_with("+json")
        });
    if is_json {
        // Straight into the policy value: no `serde_json::Value` between.
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => return Ok(v),
            Err(e) if e.to_string().contains("recursion limit") => {
                return Err(EvalError::InvalidRequest(format!(
                    "{what} body: JSON nested 128 levels deep or more"
                )));
            }
            Err(_) => {}
        }
    }
    Ok(Value::from(String::from_utf8_lossy(body).into_owned()))
}

/// Query parameters from the path when the request does not carry them.
fn query_from_path(path: &str) -> HashMap<String, String> {
    let Some((_, query)) = path.split_once('?') else {
        return HashMap::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escaped = (b == b'%')
            .then(|| Some(hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?))
            .flatten();
        match (b, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Builds the input document of DESIGN §4 for `req`.
pub fn build_input(req: &PolicyRequest, limits: InputLimits) -> Result<Value, EvalError> {
    let default_ctx = Default::default();
    let ctx = req.context.as_ref().unwrap_or(&default_ctx);
    if ctx.body.len() > limits.max_body_size_bytes {
        return Err(EvalError::BodyTooLarge {
            what: "request",
            size: ctx.body.len(),
            limit: limits.max_body_size_bytes,
        });
    }
    if req.state_json.len() > limits.max_state_size_bytes {
        return Err(EvalError::StateTooLarge {
            size: req.state_json.len(),
            limit: limits.max_state_size_bytes,
        });
    }
    let state = if req.state_json.is_empty() {
        Value::new_object()
    } else {
        match serde_json::from_slice::<Value>(&req.state_json) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Err(EvalError::InvalidRequest(
                    "state_json must be a JSON object".into(),
                ));
            }
        }
    };
    let query = if ctx.query_params.is_empty() {
        string_map(&query_from_path(&ctx.path))
    } else {
        string_map(&ctx.query_params)
    };
    let request = obj([
        ("method", Value::from(ctx.method.as_str())),
        ("path", Value::from(ctx.path.as_str())),
        ("scheme", Value::from(ctx.scheme.as_str())),
        ("authority", Value::from(ctx.authority.as_str())),
        ("headers", header_map("request", &ctx.headers)?),
        ("query_params", query),
        ("body", body_value("request", &ctx.body, &ctx.headers)?),
        ("client_ip", Value::from(ctx.client_ip.as_str())),
    ]);
    let is_response = req.phase == PolicyPhase::Response as i32;
    let response = match (&req.response, is_response) {
        (Some(r), _) => {
            if r.body.len() > limits.max_body_size_bytes {
                return Err(EvalError::BodyTooLarge {
                    what: "response",
                    size: r.body.len(),
                    limit: limits.max_body_size_bytes,
                });
            }
            obj([
                ("status_code", Value::from(i64::from(r.status_code))),
                ("headers", header_map("response", &r.headers)?),
                ("body", body_value("response", &r.body, &r.headers)?),
            ])
        }
        (None, true) => obj([
            ("status_code", Value::from(0)),
            ("headers", Value::new_object()),
            ("body", Value::from("")),
        ]),
        (None, false) => Value::new_object(),
    };
    Ok(obj([
        ("route", Value::from(req.route.as_str())),
        (
            "phase",
            Value::from(if is_response { "response" } else { "request" }),
        ),
        ("request", request),
        ("response", response),
        ("state", state),
    ]))
}

/// A field of the decision document: `None` when absent.
fn field<'a>(doc: &'a Value, key: &str) -> Option<&'a Value> {
    // Decisions, outcomes and instructions are objects of a few fields: a
    // scan finds one without building a key value (an allocation) for it.
    match doc {
        Value::Object(o) => o
            .iter()
            .find_map(|(k, v)| matches!(k, Value::String(s) if s.as_ref() == key).then_some(v)),
        _ => None,
    }
}

fn malformed(what: impl std::fmt::Display) -> EvalError {
    EvalError::MalformedDecision(what.to_string())
}

/// A string field; `default` when absent, an error for any other type.
fn string_field(doc: &Value, key: &str, default: Option<&str>) -> Result<String, EvalError> {
    match (field(doc, key), default) {
        (Some(Value::String(s)), _) => Ok(s.to_string()),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => Err(malformed(format!("missing field `{key}`"))),
        (Some(other), _) => Err(malformed(format!(
            "field `{key}` must be a string, got {other}"
        ))),
    }
}

/// An array field; empty when absent, an error for any other type.
fn array_field<'a>(doc: &'a Value, key: &str) -> Result<&'a [Value], EvalError> {
    match field(doc, key) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a.as_slice()),
        Some(other) => Err(malformed(format!(
            "field `{key}` must be an array, got {other}"
        ))),
    }
}

fn to_json(v: &Value) -> Result<serde_json::Value, EvalError> {
    serde_json::to_value(v).map_err(malformed)
}

fn status_code(s: &str) -> StatusCode {
    match s {
        "OK" | "SKIPPED" => StatusCode::Ok,
        "POLICY_DENIED" => StatusCode::PolicyDenied,
        _ => StatusCode::PolicyError,
    }
}

/// JSON text of a value (numbers, arrays and objects as OPA prints them).
fn json_text(v: &Value) -> Result<String, EvalError> {
    serde_json::to_string(v).map_err(malformed)
}

/// A value as header text: strings as they are, null as empty, anything
/// else as JSON.
fn text(v: &Value) -> Result<String, EvalError> {
    match v {
        Value::String(s) => Ok(s.to_string()),
        Value::Null | Value::Undefined => Ok(String::new()),
        other => json_text(other),
    }
}

/// A body: a string as its bytes, anything else as JSON.
fn body_bytes(v: &Value) -> Result<Vec<u8>, EvalError> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        other => json_text(other).map(String::into_bytes),
    }
}

/// One instruction of the decision document, read field by field.
fn instruction(v: &Value) -> Result<Instruction, EvalError> {
    let bad = |what: &str| EvalError::MalformedDecision(format!("instruction {what}: {v}"));
    let text_field = |k: &str| field(v, k).map_or(Ok(String::new()), text);
    let body_field = |k: &str| field(v, k).map_or(Ok(Vec::new()), body_bytes);
    let kind = match field(v, "type") {
        Some(Value::String(t)) => t.as_ref(),
        _ => return Err(bad("without a type")),
    };
    let (ty, payload) = match kind {
        "SET_HEADER" | "REMOVE_HEADER" => {
            let key = text_field("key")?;
            if key.is_empty() {
                return Err(bad("without a key"));
            }
            let ty = if kind == "SET_HEADER" {
                InstructionType::SetHeader
            } else {
                InstructionType::RemoveHeader
            };
            (
                ty,
                Payload::Header(HeaderInstruction {
                    key,
                    value: text_field("value")?,
                }),
            )
        }
        "SET_BODY" => (
            InstructionType::SetBody,
            Payload::Body(BodyInstruction {
                body: body_field("body")?,
            }),
        ),
        "SET_STATE" => (
            InstructionType::SetState,
            Payload::State(StateInstruction {
                key: text_field("key")?,
                value_json: match field(v, "value") {
                    None => "null".to_string(),
                    Some(value) => json_text(value)?,
                },
            }),
        ),
        "IMMEDIATE_RESPONSE" => {
            let status_code = match field(v, "status_code") {
                Some(Value::Number(n)) => n.as_i64(),
                _ => None,
            }
            .and_then(|s| i32::try_from(s).ok())
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| bad("with a status_code outside 100-599"))?;
            let headers = match field(v, "headers") {
                Some(Value::Object(h)) => h
                    .iter()
                    .map(|(k, v)| Ok((text(k)?, text(v)?)))
                    .collect::<Result<_, EvalError>>()?,
                _ => HashMap::new(),
            };
            (
                InstructionType::ImmediateResponse,
                Payload::ImmediateResponse(ImmediateResponse {
                    status_code,
                    headers,
                    body: body_field("body")?,
                }),
            )
        }
        "CONTINUE" => (
            InstructionType::Continue,
            Payload::ContinueRequest(ContinueRequest {}),
        ),
        other => return Err(bad(&format!("of unknown type `{other}`"))),
    };
    Ok(Instruction {
        r#type: ty as i32,
        payload: Some(payload),
    })
}

/// Turns a chain's decision document into the protocol response.
pub fn decision_to_response(
    request_id: &str,
    decision: &Value,
    max_state_size_bytes: usize,
) -> Result<PolicyResponse, EvalError> {
    decision_to_response_with_skips(request_id, decision, max_state_size_bytes).map(|(r, _)| r)
}

/// [`decision_to_response`], and which outcomes were `SKIPPED` (bit `i` for
/// outcome `i`, the first 64): the protocol reports them as `OK`.
pub(crate) fn decision_to_response_with_skips(
    request_id: &str,
    decision: &Value,
    max_state_size_bytes: usize,
) -> Result<(PolicyResponse, u64), EvalError> {
    if !matches!(decision, Value::Object(_)) {
        return Err(malformed(format!(
            "decision must be an object, got {decision}"
        )));
    }
    let status = string_field(decision, "status", None)?;
    let policy_name = string_field(decision, "policy_name", Some(""))?;
    let message = string_field(decision, "message", Some(""))?;
    let instructions = array_field(decision, "instructions")?
        .iter()
        .map(instruction)
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = match field(decision, "metadata") {
        None => HashMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match k {
                Value::String(k) => Ok((k.to_string(), value_text(v)?)),
                other => Err(malformed(format!("metadata key {other} is not a string"))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(malformed(format!(
                "metadata must be an object, got {other}"
            )));
        }
    };
    let state_json = match field(decision, "state") {
        None | Some(Value::Null) => b"{}".to_vec(),
        Some(state) => serde_json::to_vec(state).map_err(malformed)?,
    };
    if state_json.len() > max_state_size_bytes {
        return Err(EvalError::StateTooLarge {
            size: state_json.len(),
            limit: max_state_size_bytes,
        });
    }
    let mut skipped = 0u64;
    let outcomes = array_field(decision, "outcomes")?
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let status = string_field(o, "status", None)?;
            if status == "SKIPPED" && i < 64 {
                skipped |= 1 << i;
            }
            Ok(PolicyOutcome {
                code: status_code(&status) as i32,
                policy_name: string_field(o, "policy", None)?,
                message: string_field(o, "message", Some(""))?,
            })
        })
        .collect::<Result<Vec<_>, EvalError>>()?;
    let response = PolicyResponse {
        request_id: request_id.to_string(),
        instructions,
        status: Some(ResponseStatus {
            code: status_code(&status) as i32,
            policy_name,
        }),
        message,
        metadata,
        state_json,
        outcomes,
    };
    Ok((response, skipped))
}

/// A metadata value as text: strings as they are, null as empty, anything
/// else as JSON.
fn value_text(v: &Value) -> Result<String, EvalError> {
    Ok(match v {
        Value::String(s) => s.to_string(),
        Value::Null => String::new(),
        other => to_json(other)?.to_string(),
    })
}

/// The response for a chain that could not be evaluated: `TIMEOUT` for a
/// deadline, otherwise `POLICY_ERROR` with an immediate error response.
pub fn error_response(request_id: &str, err: &EvalError) -> PolicyResponse {
    let code = match err {
        EvalError::Timeout { .. } => StatusCode::Timeout,
        EvalError::DegradedDenied { .. } => StatusCode::PolicyDenied,
        _ => StatusCode::PolicyError,
    };
    let mut headers = HashMap::from([("content-type".to_string(), "application/json".to_string())]);
    let mut body = serde_json::json!({"error": err.to_string(), "code": err.code()});
    let mut metadata = HashMap::from([("error_code".to_string(), err.code().to_string())]);
    if let EvalError::DegradedDenied { tier, .. } = err {
        headers.insert("x-policy-degraded".to_string(), (*tier).to_string());
        body["tier"] = serde_json::json!(tier);
        metadata.insert("degraded_tier".to_string(), (*tier).to_string());
    }
    PolicyResponse {
        request_id: request_id.to_string(),
        instructions: vec![Instruction {
            r#type: InstructionType::ImmediateResponse as i32,
            payload: Some(Payload::ImmediateResponse(ImmediateResponse {
                status_code: err.http_status(),
                headers,
                body: body.to_string().into_bytes(),
            })),
        }],
        status: Some(ResponseStatus {
            code: code as i32,
            policy_name: String::new(),
        }),
        message: err.to_string(),
        metadata,
        state_json: Vec::new(),
        outcomes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_proto::agent::RequestContext;

    const LIMITS: InputLimits = InputLimits {
        max_body_size_bytes: 1024,
        max_state_size_bytes: 64,
    };

    fn request(body: &[u8], content_type: &str) -> PolicyRequest {
        PolicyRequest {
            context: Some(RequestContext {
                headers: HashMap::from([("Content-Type".into(), content_type.into())]),
                body: body.to_vec(),
                path: "/a?x=1&y=a%20b".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn json_bodies_are_parsed_and_headers_lower_cased() {
        let input = build_input(
            &request(br#"{"a": 1}"#, "application/json; charset=utf-8"),
            LIMITS,
        )
        .unwrap();
        let json = serde_json::to_value(&input).unwrap();
        assert_eq!(json["request"]["body"]["a"], 1);
        assert_eq!(
            json["request"]["headers"]["content-type"],
            "application/json; charset=utf-8"
        );
        assert_eq!(json["request"]["query_params"]["y"], "a b");
        assert_eq!(json["phase"], "request");
    }

    #[test]
    fn json_bodies_parse_as_through_a_json_document() {
        // Parsed straight into the policy value, a body reads as it would
        // parsed first as a JSON document: numbers of every kind, escapes,
        // nesting, duplicate keys (the last one wins).
        let body = br#"{"n": [0, -1, 1.5, 1e3, 18446744073709551615, 18446744073709551616,
            -9223372036854775808, 0.1, 12345678901234567890123],
            "s": "a\u00e9\"\\", "deep": {"a": [{"b": null, "c": true}, []], "e": {}},
            "dup": 1, "dup": 2}"#;
        let input = build_input(&request(body, "application/json"), LIMITS).unwrap();
        let expected = Value::from(serde_json::from_slice::<serde_json::Value>(body).unwrap());
        assert_eq!(input["request"]["body"], expected);
        assert_eq!(input["request"]["body"]["dup"], Value::from(2u64));

        let mut req = request(b"", "text/plain");
        req.state_json = br#"{"count": 3, "keys": ["a"]}"#.to_vec();
        let input = build_input(&req, LIMITS).unwrap();
        assert_eq!(
            input["state"],
            Value::from(serde_json::json!({"count": 3, "keys": ["a"]}))
        );
    }

    #[test]
    fn non_json_bodies_stay_text() {
        let input = build_input(&request(b"{not json", "application/json"), LIMITS).unwrap();
        assert_eq!(
            serde_json::to_value(&input).unwrap()["request"]["body"],
            "{not json"
        );
        let input = build_input(&request(b"\xff\xfe", "text/plain"), LIMITS).unwrap();
        assert_eq!(
            serde_json::to_value(&input).unwrap()["request"]["body"],
            "\u{fffd}\u{fffd}"
        );
    }

    #[test]
    fn header_names_differing_only_in_case_are_refused() {
        let mut req = request(b"", "text/plain");
        if let Some(ctx) = req.context.as_mut() {
            ctx.headers.insert("X-API-Key".into(), "a".into());
            ctx.headers.insert("x-api-key".into(), "b".into());
        }
        let err = build_input(&req, LIMITS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid request: request header `x-api-key` is given more than once (names differ only in case)"
        );
    }

    #[test]
    fn limits_and_deep_nesting_are_clear_errors() {
        let err = build_input(&request(&[b'a'; 2000], "text/plain"), LIMITS).unwrap_err();
        assert_eq!(err.code(), "body_too_large");
        assert_eq!(err.http_status(), 413);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let err = build_input(&request(deep.as_bytes(), "application/json"), LIMITS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid request: request body: JSON nested 128 levels deep or more"
        );
        let mut req = request(b"", "text/plain");
        req.state_json = vec![b' '; 100];
        assert_eq!(
            build_input(&req, LIMITS).unwrap_err().code(),
            "state_too_large"
        );
        req.state_json = b"[1]".to_vec();
        assert_eq!(
            build_input(&req, LIMITS).unwrap_err().code(),
            "invalid_request"
        );
    }

    #[test]
    fn malformed_instructions_are_rejected() {
        let decision = Value::from(serde_json::json!({
            "status": "OK", "instructions": [{"type": "IMMEDIATE_RESPONSE", "status_code": 9000}]
        }));
        let err = decision_to_response("r", &decision, 100).unwrap_err();
        assert_eq!(err.code(), "malformed_decision");
        let decision =
            Value::from(serde_json::json!({"status": "OK", "instructions": [{"type": "EXPLODE"}]}));
        assert!(decision_to_response("r", &decision, 100).is_err());
    }

    #[test]
    fn decision_documents_are_read_field_by_field() {
        let decision = Value::from(serde_json::json!({
            "status": "POLICY_DENIED", "policy_name": "p", "message": "no",
            "metadata": {"n": 2, "s": "x", "z": null},
            "state": {"user": "u"},
            "outcomes": [{"policy": "p", "status": "POLICY_DENIED"}],
            "extra": true,
        }));
        let r = decision_to_response("r", &decision, 100).unwrap();
        assert_eq!(r.status.unwrap().code, StatusCode::PolicyDenied as i32);
        assert_eq!(r.message, "no");
        assert_eq!(r.metadata["n"], "2");
        assert_eq!(r.metadata["s"], "x");
        assert_eq!(r.metadata["z"], "");
        assert_eq!(r.state_json, br#"{"user":"u"}"#);
        assert_eq!(r.outcomes[0].policy_name, "p");
        assert_eq!(r.outcomes[0].message, "");
        for bad in [
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!({"status": 1}),
            serde_json::json!({"status": "OK", "message": null}),
            serde_json::json!({"status": "OK", "instructions": {}}),
            serde_json::json!({"status": "OK", "metadata": []}),
            serde_json::json!({"status": "OK", "outcomes": [1]}),
            serde_json::json!({"status": "OK", "outcomes": [{"policy": "p"}]}),
        ] {
            let err = decision_to_response("r", &Value::from(bad.clone()), 100).unwrap_err();
            assert_eq!(err.code(), "malformed_decision", "{bad}");
        }
        let big = Value::from(serde_json::json!({"status": "OK", "state": {"k": "v".repeat(200)}}));
        assert_eq!(
            decision_to_response("r", &big, 100).unwrap_err().code(),
            "state_too_large"
        );
    }
}
