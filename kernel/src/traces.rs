//! The kernel's spans (engine specification §7.3): `ext_proc`, one per
//! ext_proc stream (one HTTP exchange), the child of the request's W3C
//! `traceparent` header when Envoy forwards one (a new trace otherwise),
//! and one `agent_call` per evaluated phase, whose context goes to the
//! agent in `PolicyRequest.trace_context` (see `policy_agent::traces`).
//!
//! A stream traces only when the process does ([`StreamTrace::open`]
//! answers `None` otherwise, and nothing else is done per request).

use std::collections::HashMap;
use std::time::SystemTime;

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use policy_agent::traces;
use policy_proto::agent::RequestContext;

use crate::decision::{Outcome, Phase};

/// The `ext_proc` span of one stream, started when the request headers
/// arrive (its start time is the stream's opening).
pub(crate) struct StreamTrace {
    tracer: &'static SdkTracer,
    opened: SystemTime,
    root: Option<Context>,
    /// The outcome of the last evaluated phase.
    last: Option<Outcome>,
}

/// What identifies the exchange on the root span.
pub(crate) struct Exchange<'a> {
    pub request: &'a RequestContext,
    pub request_id: &'a str,
    pub route: &'a str,
    pub config_version: &'a str,
}

impl StreamTrace {
    /// At stream open: `None` when the kernel does not trace.
    pub(crate) fn open() -> Option<Self> {
        let tracer = traces::kernel_tracer()?;
        Some(Self {
            tracer,
            opened: SystemTime::now(),
            root: None,
            last: None,
        })
    }

    /// Starts the root span (once per stream) as the child of the
    /// request's `traceparent` (and `tracestate`) header.
    pub(crate) fn start(&mut self, exchange: &Exchange<'_>) {
        if self.root.is_some() {
            return;
        }
        let parent = traces::extract(&exchange.request.headers);
        let path = exchange.request.path.split('?').next().unwrap_or_default();
        let span = self
            .tracer
            .span_builder("ext_proc")
            .with_kind(SpanKind::Server)
            .with_start_time(self.opened)
            .with_attributes([
                KeyValue::new("request_id", exchange.request_id.to_string()),
                KeyValue::new("policy.route", exchange.route.to_string()),
                KeyValue::new("policy.config_version", exchange.config_version.to_string()),
                KeyValue::new("http.request.method", exchange.request.method.clone()),
                KeyValue::new("url.path", path.to_string()),
                KeyValue::new("server.address", exchange.request.authority.clone()),
            ])
            .start_with_context(self.tracer, &parent);
        self.root = Some(parent.with_span(span));
    }

    /// The root context; a root without a parent when the stream had no
    /// request headers (a response-only processing mode).
    fn root(&mut self) -> &Context {
        self.root.get_or_insert_with(|| {
            let span = self
                .tracer
                .span_builder("ext_proc")
                .with_kind(SpanKind::Server)
                .with_start_time(self.opened)
                .start(self.tracer);
            Context::new().with_span(span)
        })
    }

    /// Starts the `agent_call` span of `phase`.
    pub(crate) fn agent_call(&mut self, phase: Phase, agent: &str, route: &str) -> AgentCallTrace {
        let tracer = self.tracer;
        let parent = self.root().clone();
        let span = tracer
            .span_builder("agent_call")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("policy.agent", agent.to_string()),
                KeyValue::new("policy.route", route.to_string()),
                KeyValue::new("policy.phase", phase_name(phase)),
            ])
            .start_with_context(tracer, &parent);
        AgentCallTrace {
            cx: parent.with_span(span),
        }
    }

    /// Notes the outcome of an evaluated phase for the root span.
    pub(crate) fn decided(&mut self, outcome: Outcome) {
        self.last = Some(outcome);
    }

    /// Ends the root span.
    pub(crate) fn finish(&mut self) {
        let Some(root) = self.root.take() else {
            return;
        };
        let span = root.span();
        if let Some(outcome) = self.last {
            span.set_attribute(KeyValue::new("policy.decision", outcome.code()));
            if is_failure(outcome) {
                span.set_status(Status::error(outcome.code()));
            }
        }
        span.end();
    }
}

/// The `agent_call` span of one phase.
pub(crate) struct AgentCallTrace {
    cx: Context,
}

impl AgentCallTrace {
    /// The W3C Trace Context for `PolicyRequest.trace_context`.
    pub(crate) fn carrier(&self) -> HashMap<String, String> {
        traces::inject(&self.cx)
    }

    /// Ends the span with the phase's outcome; `error`: why the call gave
    /// no usable answer.
    pub(crate) fn end(self, outcome: Outcome, error: Option<&str>) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("policy.decision", outcome.code()));
        if is_failure(outcome) {
            span.set_status(Status::error(
                error.map_or_else(|| outcome.code().to_string(), str::to_string),
            ));
        }
        span.end();
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Request => "request",
        Phase::Response => "response",
    }
}

/// Outcomes where no policy decided: the kernel or the agent failed.
fn is_failure(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::AgentTimeout
            | Outcome::AgentUnavailable
            | Outcome::AgentError
            | Outcome::InvalidResponse
            | Outcome::InvalidRoute
            | Outcome::BodyMissing
    )
}
