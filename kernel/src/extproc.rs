//! The ext_proc v3 service: per stream (one HTTP exchange) an `Exchange`,
//! driven by the stream's response body as Envoy's HTTP/2 stream polls it,
//! which answers every message with exactly one response of the matching type
//! and never ends a stream early to deny (Envoy would let the request
//! through); a deny is always an `immediate_response`.
//!
//! Body handling: a chain runs at headers time unless its route needs the
//! body (`request_body: true`, or a response body policy); then the headers
//! are answered with CONTINUE and the chain runs on the first (buffered)
//! body message. Which bodies Envoy sends is its `processing_mode` (per
//! route), reported on the first message as `protocol_config`; with
//! `server.mode_override: true` the kernel instead asks per stream with a
//! `mode_override` (Envoy needs `allow_mode_override: true`). A route that
//! needs a body Envoy will not send is denied with 500 (`body_missing`)
//! before the request goes upstream — a response transform is never skipped
//! silently. Without `protocol_config` (older Envoy) the kernel waits for
//! the body and answers 500 if response headers come first.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::{
    BodySendMode, HeaderSendMode,
};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessor;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Message;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpBody, HttpHeaders, ProcessingRequest, ProcessingResponse, ProtocolConfiguration,
};
use envoy_types::pb::google::protobuf::Struct;
use futures_util::Stream;
use policy_proto::agent::{PolicyPhase, PolicyRequest, RequestContext, ResponseContext};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::agents::CallError;
use crate::context::{client_ip, header_map, request_context, response_context, route_name};
use crate::convert::{body_response, headers_response, immediate_response, trailers_response};
use crate::decision::{
    Answer, Mutations, Outcome, Phase, Verdict, failure_verdict, interpret, kernel_reply,
};
use crate::kernel::State;
use crate::metrics::Metrics;
use crate::snapshot::{NO_ROUTE, RoutePlan, RouteState, Snapshot};
use crate::traces::{self, StreamTrace};

/// The tonic service.
pub struct ExtProcService {
    state: Arc<State>,
}

impl ExtProcService {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// The answers of one stream, produced as Envoy's HTTP/2 stream polls for
/// them.
type Answers = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for ExtProcService {
    type ProcessStream = Answers;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let inbound = request.into_inner();
        // INVARIANT: a stream uses the snapshot in force when it opened,
        // so a reload never changes an exchange half-way.
        let exchange = Exchange::new(self.state.snapshot.load_full(), self.state.metrics.clone());
        // At debug level only: a span per stream costs more than the rest of
        // the kernel's own work on a request (its fields formatted, entered
        // and left at every poll); the stream's events at info and above
        // carry `request_id` and `route` themselves.
        let span = tracing::debug_span!(
            "ext_proc",
            request_id = tracing::field::Empty,
            route = tracing::field::Empty,
            config_version = exchange.snapshot.version
        );
        // The response body reads and answers the messages itself (no task
        // and no channel per stream): the first answer is then ready when
        // the gRPC response headers are, and both leave in one write, which
        // saves Envoy a read and a wakeup on every request. The stream ends
        // when Envoy ends its side or breaks it; dropping the exchange then
        // closes it (`Drop`).
        let answers = futures_util::stream::unfold(
            (inbound, exchange, span),
            |(mut inbound, mut exchange, span)| async move {
                let answer = next_answer(&mut inbound, &mut exchange)
                    .instrument(span.clone())
                    .await?;
                Some((Ok(answer), (inbound, exchange, span)))
            },
        );
        Ok(Response::new(Box::pin(answers)))
    }
}

/// The answer to Envoy's next message that wants one (observability-mode
/// messages want none), or `None` once Envoy has ended or broken the stream.
async fn next_answer(
    inbound: &mut Streaming<ProcessingRequest>,
    exchange: &mut Exchange,
) -> Option<ProcessingResponse> {
    loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(status) => {
                tracing::debug!(code = ?status.code(), "stream ended by Envoy");
                return None;
            }
        };
        if msg.observability_mode {
            // Envoy ignores answers in observability mode.
            continue;
        }
        if let Some(answer) = exchange.handle(msg).await {
            return Some(answer);
        }
    }
}

/// The state of one stream.
struct Exchange {
    snapshot: Arc<Snapshot>,
    metrics: Arc<Metrics>,
    resolved: bool,
    plan: Option<Arc<RoutePlan>>,
    request_id: String,
    request: RequestContext,
    response: ResponseContext,
    /// Chain state from the request phase, sent with the response phase.
    state_json: Vec<u8>,
    /// The phase whose chain waits for its body.
    pending: Option<Phase>,
    /// Envoy's body modes for this stream, from the first message.
    protocol: Option<ProtocolConfiguration>,
    /// The stream's spans, when the kernel traces.
    trace: Option<StreamTrace>,
}

/// Merges the top-level attributes with the deprecated per-message ones.
fn attributes_of(msg: &ProcessingRequest, h: Option<&HttpHeaders>) -> HashMap<String, Struct> {
    let mut attrs = h.map(|h| h.attributes.clone()).unwrap_or_default();
    attrs.extend(msg.attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
    attrs
}

fn apply(ctx: &mut RequestContext, m: &Mutations) {
    for k in &m.remove_headers {
        ctx.headers.remove(k);
    }
    for (k, v) in &m.set_headers {
        ctx.headers.insert(k.clone(), v.clone());
    }
    if let Some(b) = &m.body {
        ctx.body = b.clone();
    }
}

impl Exchange {
    fn new(snapshot: Arc<Snapshot>, metrics: Arc<Metrics>) -> Self {
        Self {
            snapshot,
            metrics,
            resolved: false,
            plan: None,
            request_id: String::new(),
            request: RequestContext::default(),
            response: ResponseContext::default(),
            state_json: Vec::new(),
            pending: None,
            protocol: None,
            trace: StreamTrace::open(),
        }
    }

    /// One answer per message that carries a request; `None` for messages
    /// without one (flow-control only).
    async fn handle(&mut self, msg: ProcessingRequest) -> Option<ProcessingResponse> {
        if self.protocol.is_none() {
            self.protocol = msg.protocol_config;
        }
        let attributes = match &msg.request {
            Some(Message::RequestHeaders(h) | Message::ResponseHeaders(h)) => {
                attributes_of(&msg, Some(h))
            }
            _ => attributes_of(&msg, None),
        };
        Some(match msg.request? {
            Message::RequestHeaders(h) => self.on_request_headers(h, &attributes).await,
            Message::ResponseHeaders(h) => self.on_response_headers(h, &attributes).await,
            Message::RequestBody(b) => self.on_body(Phase::Request, b).await,
            Message::ResponseBody(b) => self.on_body(Phase::Response, b).await,
            Message::RequestTrailers(_) => self.on_trailers(Phase::Request).await,
            Message::ResponseTrailers(_) => self.on_trailers(Phase::Response).await,
        })
    }

    /// The route for log lines: the plan's, or the no-route label.
    fn route_label(&self) -> &str {
        self.plan.as_ref().map_or(NO_ROUTE, |p| p.route.as_str())
    }

    /// Picks the plan once per stream, from the first message that names a route.
    fn resolve(&mut self, attributes: &HashMap<String, Struct>, headers: &HashMap<String, String>) {
        if self.resolved {
            return;
        }
        self.resolved = true;
        let name = route_name(
            attributes,
            headers,
            &self.snapshot.config.server.route_header,
        );
        self.plan = self.snapshot.plan(name.as_deref()).cloned();
        let label = self.plan.as_ref().map_or(NO_ROUTE, |p| p.route.as_str());
        tracing::Span::current().record("route", label);
    }

    fn fail_open(&self) -> bool {
        self.snapshot.config.fail_open
    }

    /// Whether Envoy will send the body of `phase`: yes when the kernel
    /// asks for it with `mode_override`, else what `protocol_config` says;
    /// `None` when Envoy did not say.
    fn body_arrives(&self, phase: Phase) -> Option<bool> {
        if self.snapshot.config.server.mode_override {
            return Some(true);
        }
        let p = self.protocol.as_ref()?;
        let mode = match phase {
            Phase::Request => p.request_body_mode,
            Phase::Response => p.response_body_mode,
        };
        Some(mode != BodySendMode::None as i32)
    }

    /// The `mode_override` for a headers answer, when enabled.
    fn mode_override(&self) -> Option<ProcessingMode> {
        self.snapshot
            .config
            .server
            .mode_override
            .then(|| self.mode())
    }

    /// What Envoy should send next for this stream.
    fn mode(&self) -> ProcessingMode {
        let plan = self.plan.as_ref();
        let response_chain = plan.is_some_and(|p| !p.response.is_empty());
        let body = |needed: bool| if needed { BodySendMode::Buffered } else { BodySendMode::None } as i32;
        ProcessingMode {
            request_header_mode: HeaderSendMode::Send as i32,
            response_header_mode: if response_chain {
                HeaderSendMode::Send
            } else {
                HeaderSendMode::Skip
            } as i32,
            request_body_mode: body(self.pending == Some(Phase::Request)),
            response_body_mode: body(response_chain && plan.is_some_and(|p| p.response_body)),
            request_trailer_mode: HeaderSendMode::Skip as i32,
            response_trailer_mode: HeaderSendMode::Skip as i32,
        }
    }

    async fn on_request_headers(
        &mut self,
        h: HttpHeaders,
        attributes: &HashMap<String, Struct>,
    ) -> ProcessingResponse {
        let headers = header_map(h.headers.as_ref());
        self.resolve(attributes, &headers);
        let ip = client_ip(&headers, attributes);
        self.request = request_context(headers, ip);
        self.request_id = match self.request.headers.get("x-request-id") {
            Some(id) if !id.is_empty() && id.len() <= 128 => id.clone(),
            _ => uuid::Uuid::now_v7().to_string(),
        };
        tracing::Span::current().record("request_id", self.request_id.as_str());
        if let Some(trace) = &mut self.trace {
            trace.start(&traces::Exchange {
                request: &self.request,
                request_id: &self.request_id,
                route: self.plan.as_ref().map_or(NO_ROUTE, |p| p.route.as_str()),
                config_version: &self.snapshot.config.digest,
            });
        }
        let Some(plan) = self.plan.clone() else {
            self.metrics.record(NO_ROUTE, "", Outcome::NoPolicy, None);
            return headers_response(Phase::Request, &Mutations::default(), self.mode_override());
        };
        if let RouteState::Invalid(reason) = plan.state() {
            tracing::error!(request_id = %self.request_id, route = self.route_label(), agent = %plan.agent.name(), %reason, "request to an invalid route denied");
            self.metrics
                .record(&plan.route, plan.agent.name(), Outcome::InvalidRoute, None);
            return immediate_response(&kernel_reply(500, Outcome::InvalidRoute.code()));
        }
        let needs = [
            (
                Phase::Request,
                plan.request_body && !plan.request.is_empty() && !h.end_of_stream,
            ),
            (
                Phase::Response,
                plan.response_body && !plan.response.is_empty(),
            ),
        ];
        for (phase, needed) in needs {
            if needed && self.body_arrives(phase) == Some(false) {
                tracing::error!(
                    request_id = %self.request_id, route = self.route_label(), phase = ?phase,
                    "route needs the body but Envoy's processing mode sends none: set its body mode to BUFFERED (or server.mode_override with allow_mode_override)"
                );
                self.metrics
                    .record(&plan.route, plan.agent.name(), Outcome::BodyMissing, None);
                return immediate_response(&kernel_reply(500, Outcome::BodyMissing.code()));
            }
        }
        if plan.request.is_empty() {
            return headers_response(Phase::Request, &Mutations::default(), self.mode_override());
        }
        if plan.request_body && !h.end_of_stream {
            self.pending = Some(Phase::Request);
            return headers_response(Phase::Request, &Mutations::default(), self.mode_override());
        }
        let verdict = self.run(Phase::Request).await;
        self.answer_headers(Phase::Request, verdict)
    }

    async fn on_response_headers(
        &mut self,
        h: HttpHeaders,
        attributes: &HashMap<String, Struct>,
    ) -> ProcessingResponse {
        let headers = header_map(h.headers.as_ref());
        self.resolve(attributes, &headers);
        if self.pending == Some(Phase::Request) {
            self.pending = None;
            let plan = self.plan.as_ref();
            tracing::error!(
                request_id = %self.request_id, route = self.route_label(), "request chain not run: Envoy sent no request body (set allow_mode_override: true or request_body_mode: BUFFERED)"
            );
            self.metrics.record(
                plan.map_or(NO_ROUTE, |p| p.route.as_str()),
                plan.map_or("", |p| p.agent.name()),
                Outcome::BodyMissing,
                None,
            );
            return immediate_response(&kernel_reply(500, Outcome::BodyMissing.code()));
        }
        self.response = response_context(headers);
        let Some(plan) = self.plan.clone().filter(|p| !p.response.is_empty()) else {
            return headers_response(Phase::Response, &Mutations::default(), None);
        };
        if plan.response_body && !h.end_of_stream {
            self.pending = Some(Phase::Response);
            return headers_response(Phase::Response, &Mutations::default(), self.mode_override());
        }
        let verdict = self.run(Phase::Response).await;
        self.answer_headers(Phase::Response, verdict)
    }

    async fn on_body(&mut self, phase: Phase, b: HttpBody) -> ProcessingResponse {
        if self.pending != Some(phase) {
            return body_response(phase, &Mutations::default(), false);
        }
        self.pending = None;
        let had_content_length = match phase {
            Phase::Request => {
                self.request.body = b.body;
                self.request.headers.contains_key("content-length")
            }
            Phase::Response => {
                self.response.body = b.body;
                self.response.headers.contains_key("content-length")
            }
        };
        match self.run(phase).await {
            Verdict::Respond(r) => immediate_response(&r),
            Verdict::Continue(m) => {
                if phase == Phase::Request {
                    apply(&mut self.request, &m);
                }
                body_response(phase, &m, had_content_length)
            }
        }
    }

    async fn on_trailers(&mut self, phase: Phase) -> ProcessingResponse {
        if self.pending == Some(phase) {
            // Trailers before any body: the chain runs without one; changes
            // to headers can no longer be applied.
            self.pending = None;
            match self.run(phase).await {
                Verdict::Respond(r) => return immediate_response(&r),
                Verdict::Continue(m) if !m.is_empty() => {
                    tracing::warn!(request_id = %self.request_id, route = self.route_label(), "chain changes dropped: trailers arrived before the body");
                }
                Verdict::Continue(_) => {}
            }
        }
        trailers_response(phase)
    }

    fn answer_headers(&mut self, phase: Phase, verdict: Verdict) -> ProcessingResponse {
        match verdict {
            Verdict::Respond(r) => immediate_response(&r),
            Verdict::Continue(m) => {
                if phase == Phase::Request {
                    apply(&mut self.request, &m);
                }
                let mode = if phase == Phase::Request {
                    self.mode_override()
                } else {
                    None
                };
                headers_response(phase, &m, mode)
            }
        }
    }

    /// Runs the plan's chain for `phase` on the agent and maps the result
    /// through the error table.
    async fn run(&mut self, phase: Phase) -> Verdict {
        let Some(plan) = self.plan.clone() else {
            return Verdict::pass();
        };
        let agent = plan.agent.name();
        let fail_open = self.fail_open();
        match plan.state() {
            RouteState::Valid => {}
            RouteState::Invalid(reason) => {
                tracing::error!(request_id = %self.request_id, route = self.route_label(), %agent, %reason, "request to an invalid route denied");
                self.metrics
                    .record(&plan.route, agent, Outcome::InvalidRoute, None);
                return failure_verdict(Outcome::InvalidRoute, fail_open);
            }
            RouteState::Undiscovered => {
                tracing::error!(request_id = %self.request_id, route = self.route_label(), %agent, "agent not discovered yet");
                self.metrics
                    .record(&plan.route, agent, Outcome::AgentUnavailable, None);
                return failure_verdict(Outcome::AgentUnavailable, fail_open);
            }
        }
        let (policies, proto_phase) = match phase {
            Phase::Request => (plan.request.clone(), PolicyPhase::Request),
            Phase::Response => (plan.response.clone(), PolicyPhase::Response),
        };
        // The request context is kept for the response phase only when there is one.
        let context = if phase == Phase::Request && plan.response.is_empty() {
            std::mem::take(&mut self.request)
        } else {
            self.request.clone()
        };
        let call = self
            .trace
            .as_mut()
            .map(|t| t.agent_call(phase, agent, &plan.route));
        let req = PolicyRequest {
            trace_context: call.as_ref().map(|c| c.carrier()).unwrap_or_default(),
            request_id: self.request_id.clone(),
            policies,
            context: Some(context),
            deadline_ms: i64::try_from(plan.agent.entry().timeout_ms).unwrap_or(i64::MAX),
            phase: proto_phase as i32,
            response: (phase == Phase::Response).then(|| std::mem::take(&mut self.response)),
            state_json: match phase {
                Phase::Request => Vec::new(),
                Phase::Response => std::mem::take(&mut self.state_json),
            },
            route: plan.route.clone(),
            audit_strict: plan.audit_strict,
            config_version: self.snapshot.config.digest.clone(),
        };
        let started = Instant::now();
        let result = plan.agent.execute(req).await;
        let took = started.elapsed();
        let mut failure = None;
        let (verdict, outcome) = match result {
            Ok(resp) => match interpret(&resp) {
                Ok(Answer::Decision(d)) => {
                    if phase == Phase::Request {
                        self.state_json = d.state_json;
                    }
                    if d.outcome != Outcome::Allowed {
                        tracing::info!(request_id = %self.request_id, route = self.route_label(), decision = d.outcome.code(), policy = %d.policy, "denied");
                    }
                    (d.verdict, d.outcome)
                }
                Ok(Answer::Timeout) => {
                    tracing::warn!(request_id = %self.request_id, route = self.route_label(), %agent, "agent reported a timeout");
                    (
                        failure_verdict(Outcome::AgentTimeout, fail_open),
                        Outcome::AgentTimeout,
                    )
                }
                Err(e) => {
                    tracing::error!(request_id = %self.request_id, route = self.route_label(), %agent, error = %e, "invalid agent response");
                    failure = Some(e.to_string());
                    (
                        failure_verdict(Outcome::InvalidResponse, fail_open),
                        Outcome::InvalidResponse,
                    )
                }
            },
            Err(e) => {
                let outcome = match e {
                    CallError::Timeout { .. } => Outcome::AgentTimeout,
                    CallError::Unavailable { .. }
                    | CallError::Overloaded { .. }
                    | CallError::Lost { .. } => Outcome::AgentUnavailable,
                    CallError::Failed { .. } => Outcome::AgentError,
                };
                if outcome == Outcome::AgentTimeout {
                    tracing::warn!(request_id = %self.request_id, route = self.route_label(), error = %e, fail_open, "agent timed out");
                } else {
                    tracing::error!(request_id = %self.request_id, route = self.route_label(), error = %e, fail_open, "agent call failed");
                }
                failure = Some(e.to_string());
                (failure_verdict(outcome, fail_open), outcome)
            }
        };
        self.metrics.record(&plan.route, agent, outcome, Some(took));
        if let Some(call) = call {
            call.end(outcome, failure.as_deref());
        }
        if let Some(trace) = &mut self.trace {
            trace.decided(outcome);
        }
        tracing::debug!(
            phase = ?phase,
            decision = outcome.code(),
            micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            "phase decided"
        );
        verdict
    }
}

/// The end of a stream, however it ended: Envoy closed its side, broke the
/// stream or stopped reading answers.
impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(trace) = &mut self.trace {
            trace.finish();
        }
        if self.pending == Some(Phase::Response) {
            tracing::error!(
                request_id = %self.request_id, route = self.route_label(), "response chain not run: Envoy sent no response body (set allow_mode_override: true or response_body_mode: BUFFERED)"
            );
            let plan = self.plan.as_ref();
            self.metrics.record(
                plan.map_or(NO_ROUTE, |p| p.route.as_str()),
                plan.map_or("", |p| p.agent.name()),
                Outcome::BodyMissing,
                None,
            );
        }
    }
}
