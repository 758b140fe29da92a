//! The agent's spans of one chain: `policy_chain` and one `policy <name>`
//! per policy that ran.

use std::time::SystemTime;

use journal_client::Masker;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use policy_proto::agent::{PolicyPhase, PolicyRequest, StatusCode};

use super::extract;
use crate::agent::Execution;
use crate::worker::EnginePath;

/// `request` or `response`.
fn phase_name(phase: i32) -> &'static str {
    match PolicyPhase::try_from(phase) {
        Ok(PolicyPhase::Response) => "response",
        _ => "request",
    }
}

/// The agent's `policy_chain` span of one `PolicyRequest`, and after the
/// chain ran, one `policy <name>` span per policy in the answer's outcomes
/// (the policies that ran, in order).
///
/// INVARIANT: a chain is one Rego evaluation, so no policy has a time of
/// its own. Each policy span starts and ends with the chain's evaluation
/// (`Execution::duration`) and says so with `policy.timing = "chain"`:
/// the policy ran within that interval; the interval is not its cost.
pub struct ChainTrace {
    cx: Context,
    started: SystemTime,
}

impl ChainTrace {
    /// Starts the chain span as the child of the request's propagated
    /// context (a new trace without one).
    pub fn start(tracer: &SdkTracer, req: &PolicyRequest, agent: &str) -> Self {
        let parent = extract(&req.trace_context);
        let started = SystemTime::now();
        let span = tracer
            .span_builder("policy_chain")
            .with_kind(SpanKind::Server)
            .with_start_time(started)
            .with_attributes([
                KeyValue::new("request_id", req.request_id.clone()),
                KeyValue::new("policy.agent", agent.to_string()),
                KeyValue::new("policy.route", req.route.clone()),
                KeyValue::new("policy.phase", phase_name(req.phase)),
                KeyValue::new(
                    "policy.count",
                    i64::try_from(req.policies.len()).unwrap_or(i64::MAX),
                ),
            ])
            .start_with_context(tracer, &parent);
        Self {
            cx: parent.with_span(span),
            started,
        }
    }

    /// Ends the chain span with the decision and adds the policy spans.
    /// `masked_headers`: headers masked in addition to the built-in list
    /// (policy messages are scrubbed of secret header values, as in
    /// decision records).
    pub fn end(
        self,
        tracer: &SdkTracer,
        req: &PolicyRequest,
        exec: &Execution,
        agent: &str,
        masked_headers: &[String],
    ) {
        let span = self.cx.span();
        if !span.is_recording() {
            span.end();
            return;
        }
        let response = &exec.response;
        let code = response
            .status
            .as_ref()
            .and_then(|s| StatusCode::try_from(s.code).ok())
            .unwrap_or(StatusCode::PolicyError);
        let mut attributes = vec![
            KeyValue::new("policy.status", code.as_str_name()),
            KeyValue::new(
                "policy.decided_by",
                response
                    .status
                    .as_ref()
                    .map(|s| s.policy_name.clone())
                    .unwrap_or_default(),
            ),
            KeyValue::new(
                "policy.duration_us",
                i64::try_from(exec.duration.as_micros()).unwrap_or(i64::MAX),
            ),
        ];
        if let Some(engine) = exec.engine {
            attributes.push(KeyValue::new(
                "policy.engine",
                match engine {
                    EnginePath::Vm => "vm",
                    EnginePath::Interpreter => "interpreter",
                },
            ));
        }
        for key in ["mode", "degraded_tier"] {
            if let Some(v) = response.metadata.get(key) {
                attributes.push(KeyValue::new(format!("policy.{key}"), v.clone()));
            }
        }
        let secrets = crate::records::secret_values(req, masked_headers);
        if let Some(err) = &exec.error {
            attributes.push(KeyValue::new("policy.error_code", err.code()));
            span.set_status(Status::error(Masker::scrub(&err.to_string(), &secrets)));
        }
        span.set_attributes(attributes);
        let evaluated = self.started + exec.duration;
        let phase = phase_name(req.phase);
        for (index, outcome) in response.outcomes.iter().enumerate() {
            let status = StatusCode::try_from(outcome.code).unwrap_or(StatusCode::PolicyError);
            let message = Masker::scrub(&outcome.message, &secrets);
            let mut policy = tracer
                .span_builder(format!("policy {}", outcome.policy_name))
                .with_kind(SpanKind::Internal)
                .with_start_time(self.started)
                .with_attributes([
                    KeyValue::new("policy.name", outcome.policy_name.clone()),
                    KeyValue::new("policy.status", status.as_str_name()),
                    KeyValue::new("policy.message", message.clone()),
                    KeyValue::new("policy.phase", phase),
                    KeyValue::new("policy.route", req.route.clone()),
                    KeyValue::new("policy.agent", agent.to_string()),
                    KeyValue::new("policy.index", i64::try_from(index).unwrap_or(i64::MAX)),
                    KeyValue::new("policy.timing", "chain"),
                ])
                .start_with_context(tracer, &self.cx);
            if status == StatusCode::PolicyError {
                policy.set_status(Status::error(message));
            }
            policy.end_with_timestamp(evaluated);
        }
        span.end();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashMap;
    use std::time::Duration;

    use opentelemetry::trace::{SpanId, TraceId};
    use policy_proto::agent::{
        Policy, PolicyOutcome, PolicyResponse, RequestContext, ResponseStatus,
    };

    use super::*;
    use crate::traces::tests::{PARENT, TRACE, attr, attr_str, carrier, provider};
    use crate::traces::{AGENT_SCOPE, scoped_tracer};

    fn users_request() -> PolicyRequest {
        PolicyRequest {
            request_id: "req-7".into(),
            route: "/api/v1/users".into(),
            policies: ["apiKeyAuth", "rateLimit", "allowAll"]
                .into_iter()
                .map(|name| Policy {
                    name: name.into(),
                    ..Default::default()
                })
                .collect(),
            context: Some(RequestContext {
                headers: HashMap::from([("x-api-key".to_string(), "pe_secret_42".to_string())]),
                ..Default::default()
            }),
            trace_context: carrier("01"),
            ..Default::default()
        }
    }

    fn denied_by_rate_limit() -> Execution {
        let outcome = |name: &str, code: StatusCode, message: &str| PolicyOutcome {
            policy_name: name.into(),
            code: code as i32,
            message: message.into(),
        };
        Execution {
            response: PolicyResponse {
                request_id: "req-7".into(),
                status: Some(ResponseStatus {
                    code: StatusCode::PolicyDenied as i32,
                    policy_name: "rateLimit".into(),
                }),
                outcomes: vec![
                    outcome("apiKeyAuth", StatusCode::Ok, "key pe_secret_42 accepted"),
                    outcome("rateLimit", StatusCode::PolicyDenied, "rate limit exceeded"),
                ],
                ..Default::default()
            },
            engine: Some(EnginePath::Vm),
            error: None,
            recorded: Vec::new(),
            duration: Duration::from_micros(40),
            record_seq: None,
            sync_required: false,
        }
    }

    #[test]
    fn a_chain_span_is_the_child_of_the_propagated_context_with_one_span_per_policy_that_ran() {
        let (provider, spans) = provider(0.0);
        let tracer = scoped_tracer(&provider, AGENT_SCOPE);
        let req = users_request();
        let trace = ChainTrace::start(&tracer, &req, "default-agent");
        trace.end(&tracer, &req, &denied_by_rate_limit(), "default-agent", &[]);
        let spans = spans.0.lock().unwrap().clone();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(
            names,
            ["policy apiKeyAuth", "policy rateLimit", "policy_chain"]
        );
        let chain = &spans[2];
        assert_eq!(
            chain.span_context.trace_id(),
            TraceId::from_hex(TRACE).unwrap()
        );
        assert_eq!(chain.parent_span_id, SpanId::from_hex(PARENT).unwrap());
        assert!(chain.parent_span_is_remote);
        assert_eq!(chain.span_kind, SpanKind::Server);
        assert_eq!(attr_str(chain, "policy.status"), "POLICY_DENIED");
        assert_eq!(attr_str(chain, "policy.decided_by"), "rateLimit");
        assert_eq!(attr_str(chain, "policy.route"), "/api/v1/users");
        assert_eq!(attr_str(chain, "policy.phase"), "request");
        assert_eq!(attr_str(chain, "policy.engine"), "vm");
        assert_eq!(attr_str(chain, "request_id"), "req-7");
        for (i, (span, status)) in spans[..2].iter().zip(["OK", "POLICY_DENIED"]).enumerate() {
            assert_eq!(span.parent_span_id, chain.span_context.span_id());
            assert_eq!(span.span_context.trace_id(), chain.span_context.trace_id());
            assert_eq!(attr_str(span, "policy.status"), status);
            assert_eq!(attr_str(span, "policy.agent"), "default-agent");
            assert_eq!(attr_str(span, "policy.timing"), "chain");
            assert_eq!(
                attr(span, "policy.index"),
                Some(&opentelemetry::Value::I64(i as i64))
            );
            // The chain's evaluation, not a time of the policy's own.
            assert_eq!(span.start_time, chain.start_time);
            assert_eq!(
                span.end_time.duration_since(span.start_time).unwrap(),
                Duration::from_micros(40)
            );
        }
        assert_eq!(attr_str(&spans[0], "policy.name"), "apiKeyAuth");
        // Secret header values never leave in a span.
        assert_eq!(attr_str(&spans[0], "policy.message"), "key *** accepted");
        assert_eq!(attr_str(&spans[1], "policy.message"), "rate limit exceeded");
    }

    #[test]
    fn an_unsampled_chain_makes_no_policy_spans() {
        let (provider, spans) = provider(1.0);
        let tracer = scoped_tracer(&provider, AGENT_SCOPE);
        let mut req = users_request();
        req.trace_context = carrier("00");
        let trace = ChainTrace::start(&tracer, &req, "default-agent");
        trace.end(&tracer, &req, &denied_by_rate_limit(), "default-agent", &[]);
        assert!(spans.0.lock().unwrap().is_empty());
    }
}
