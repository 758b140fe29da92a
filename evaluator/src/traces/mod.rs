//! OpenTelemetry traces of `policy-kernel` and `policy-agent` (engine
//! specification §7.3), exported over OTLP/gRPC.
//!
//! The spans of one request: the kernel's `ext_proc` (one per ext_proc
//! stream, the child of the request's W3C `traceparent` when it has one),
//! its `agent_call` per evaluated phase, and in the agent a `policy_chain`
//! span, the child of the agent call whose context travels in
//! `PolicyRequest.trace_context`, with one `policy <name>` span per policy
//! that ran (see [`ChainTrace`], in `chain.rs`).
//!
//! Sampling is parent-based: a request whose parent context is sampled (or
//! not) is traced (or not) as its parent says; a new trace is sampled with
//! probability `sampling_rate` of its trace id.
//!
//! One tracer provider per process ([`init`]); when tracing is off nothing
//! is installed and [`kernel_tracer`] / [`agent_tracer`] answer `None`
//! after one atomic load, so the decision path does no other work.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

mod chain;

pub use chain::ChainTrace;

/// Where spans go when neither the configuration nor the environment says.
pub const DEFAULT_OTLP_ENDPOINT: &str = "http://127.0.0.1:4317";

/// Environment variables read, in order, when the configuration names no
/// endpoint (the OpenTelemetry SDKs' own).
pub const ENDPOINT_ENV: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Instrumentation scope of the kernel's spans.
pub const KERNEL_SCOPE: &str = "policy-kernel";
/// Instrumentation scope of the agent's spans (also in embedded mode, where
/// the kernel process exports them).
pub const AGENT_SCOPE: &str = "policy-agent";

/// A validated `observability.tracing` section (kernel and agent alike).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceSettings {
    /// Export spans (default false).
    pub enabled: bool,
    /// Probability that a trace started here is sampled, 0.0 to 1.0.
    pub sampling_rate: f64,
    /// The OTLP/gRPC collector, `http://host:port`; `None`: see
    /// [`TraceSettings::endpoint`].
    pub otlp_endpoint: Option<String>,
}

/// Why a tracing setting was rejected: the field under `tracing` and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct InvalidTraceSetting {
    pub field: &'static str,
    pub reason: String,
}

impl TraceSettings {
    /// Validates the fields of a `tracing` section.
    pub fn try_new(
        enabled: bool,
        sampling_rate: f64,
        otlp_endpoint: Option<String>,
    ) -> Result<Self, InvalidTraceSetting> {
        if !(0.0..=1.0).contains(&sampling_rate) {
            return Err(InvalidTraceSetting {
                field: "sampling_rate",
                reason: "must be between 0.0 and 1.0".into(),
            });
        }
        if let Some(endpoint) = &otlp_endpoint {
            check_endpoint(endpoint).map_err(|reason| InvalidTraceSetting {
                field: "otlp_endpoint",
                reason,
            })?;
        }
        Ok(Self {
            enabled,
            sampling_rate,
            otlp_endpoint,
        })
    }

    /// The collector: the configured one, else the first of [`ENDPOINT_ENV`]
    /// that is set and not empty, else [`DEFAULT_OTLP_ENDPOINT`].
    pub fn endpoint(&self) -> String {
        self.otlp_endpoint
            .clone()
            .or_else(|| {
                ENDPOINT_ENV
                    .iter()
                    .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
            })
            .unwrap_or_else(|| DEFAULT_OTLP_ENDPOINT.to_string())
    }
}

/// Checks that `endpoint` is `http://host:port` (plaintext gRPC to a
/// collector, typically a local one; TLS is not supported).
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let uri: tonic::transport::Uri = endpoint
        .parse()
        .map_err(|e| format!("`{endpoint}` is not a URI: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "`{endpoint}`: https is not supported; use an http:// collector (for example a local OpenTelemetry Collector)"
            ));
        }
        _ => return Err(format!("`{endpoint}` must start with http://")),
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("`{endpoint}` has no host"));
    };
    if authority.host().is_empty() {
        return Err(format!("`{endpoint}` has no host"));
    }
    if !matches!(uri.path(), "" | "/") {
        return Err(format!(
            "`{endpoint}` has a path; OTLP/gRPC endpoints are `http://host:port`"
        ));
    }
    Ok(())
}

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error("OTLP endpoint {reason}")]
    Endpoint { reason: String },
    #[error("cannot build the OTLP exporter for `{endpoint}`: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("traces are already set up in this process")]
    AlreadyInstalled,
}

/// The tracers of this process, once [`init`] installed them.
struct Tracers {
    kernel: SdkTracer,
    agent: SdkTracer,
}

static TRACERS: OnceLock<Tracers> = OnceLock::new();

/// The kernel's tracer; `None` when this process does not trace.
pub fn kernel_tracer() -> Option<&'static SdkTracer> {
    TRACERS.get().map(|t| &t.kernel)
}

/// The agent core's tracer; `None` when this process does not trace.
pub fn agent_tracer() -> Option<&'static SdkTracer> {
    TRACERS.get().map(|t| &t.agent)
}

/// The installed tracer provider; [`Traces::shutdown`] exports what is
/// left before the process exits.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Exports the spans still queued and stops the exporter. Blocks up to
    /// the exporter's timeout, so it runs off the async workers; the tokio
    /// runtime must still be running.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "traces not all exported at shutdown"),
            Err(e) => tracing::warn!(error = %e, "traces not all exported at shutdown"),
        }
    }
}

/// Installs this process's tracer provider for `service` (the resource's
/// `service.name`), exporting batches over OTLP/gRPC; `None` when tracing
/// is off. Must run inside a tokio runtime, which must outlive the
/// returned [`Traces`].
pub fn init(
    service: &'static str,
    settings: &TraceSettings,
) -> Result<Option<Traces>, TracesError> {
    if !settings.enabled {
        return Ok(None);
    }
    if TRACERS.get().is_some() {
        return Err(TracesError::AlreadyInstalled);
    }
    let endpoint = settings.endpoint();
    check_endpoint(&endpoint).map_err(|reason| TracesError::Endpoint { reason })?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|e| TracesError::Exporter {
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler(settings.sampling_rate))
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracers = Tracers {
        kernel: scoped_tracer(&provider, KERNEL_SCOPE),
        agent: scoped_tracer(&provider, AGENT_SCOPE),
    };
    if TRACERS.set(tracers).is_err() {
        let _ = provider.shutdown();
        return Err(TracesError::AlreadyInstalled);
    }
    tracing::info!(
        %endpoint,
        sampling_rate = settings.sampling_rate,
        "traces exported over OTLP/gRPC"
    );
    Ok(Some(Traces { provider }))
}

/// Parent-based: follow a parent's decision, sample new traces by trace id.
pub fn sampler(sampling_rate: f64) -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(sampling_rate)))
}

/// A tracer of `provider` with one of the scopes above and this version.
pub fn scoped_tracer(provider: &SdkTracerProvider, scope: &'static str) -> SdkTracer {
    provider.tracer_with_scope(
        InstrumentationScope::builder(scope)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    )
}

/// The context a W3C Trace Context carrier (`traceparent`, `tracestate`;
/// lower-case keys) names; the empty context when it names none or is
/// malformed.
pub fn extract(carrier: &HashMap<String, String>) -> Context {
    if !carrier.contains_key("traceparent") {
        return Context::new();
    }
    TraceContextPropagator::new().extract(carrier)
}

/// The W3C Trace Context carrier of `cx`'s span (empty without one).
pub fn inject(cx: &Context) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{Span as _, SpanId, TraceContextExt as _, TraceId, Tracer as _};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SpanData, SpanExporter};

    use super::*;

    /// Keeps every exported span (the OTLP wire is tested end to end in
    /// the `tests` crate).
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Collected(pub(crate) Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collected {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    pub(crate) fn provider(rate: f64) -> (SdkTracerProvider, Collected) {
        let spans = Collected::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .with_sampler(sampler(rate))
            .build();
        (provider, spans)
    }

    pub(crate) const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    pub(crate) const PARENT: &str = "00f067aa0ba902b7";

    pub(crate) fn carrier(flags: &str) -> HashMap<String, String> {
        HashMap::from([(
            "traceparent".to_string(),
            format!("00-{TRACE}-{PARENT}-{flags}"),
        )])
    }

    pub(crate) fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a opentelemetry::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    pub(crate) fn attr_str(span: &SpanData, key: &str) -> String {
        attr(span, key)
            .map(|v| v.as_str().into_owned())
            .unwrap_or_default()
    }

    #[test]
    fn endpoints_must_be_plain_http_host_and_port() {
        for ok in [
            "http://127.0.0.1:4317",
            "http://collector:4317/",
            "http://[::1]:4317",
        ] {
            check_endpoint(ok).unwrap();
        }
        for (bad, why) in [
            ("https://collector:4317", "https is not supported"),
            ("collector:4317", "must start with http://"),
            ("http://collector:4317/v1/traces", "has a path"),
            ("not a uri", "is not a URI"),
        ] {
            let err = check_endpoint(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = TraceSettings::try_new(true, -0.1, None).unwrap_err();
        assert_eq!(err.field, "sampling_rate");
        let s = TraceSettings::try_new(true, 1.0, Some("http://c:4317".into())).unwrap();
        assert_eq!(s.endpoint(), "http://c:4317");
    }

    #[test]
    fn trace_context_survives_extract_and_inject() {
        let cx = extract(&carrier("01"));
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_id(), TraceId::from_hex(TRACE).unwrap());
        assert_eq!(sc.span_id(), SpanId::from_hex(PARENT).unwrap());
        assert_eq!(
            inject(&cx)["traceparent"],
            format!("00-{TRACE}-{PARENT}-01")
        );
        assert!(!extract(&HashMap::new()).has_active_span());
        let malformed = HashMap::from([("traceparent".to_string(), "00-xyz".to_string())]);
        assert!(!extract(&malformed).span().span_context().is_valid());
    }

    #[test]
    fn sampling_follows_the_parent_else_the_rate() {
        let (provider, spans) = provider(0.0);
        let tracer = scoped_tracer(&provider, AGENT_SCOPE);
        let sampled = tracer.start_with_context("a", &extract(&carrier("01")));
        let unsampled = tracer.start_with_context("b", &extract(&carrier("00")));
        let root = tracer.start_with_context("c", &Context::new());
        assert!(sampled.is_recording());
        assert!(!unsampled.is_recording());
        assert!(!root.is_recording());
        drop((sampled, unsampled, root));
        let (provider_all, _) = self::provider(1.0);
        let tracer_all = scoped_tracer(&provider_all, AGENT_SCOPE);
        assert!(
            tracer_all
                .start_with_context("d", &Context::new())
                .is_recording()
        );
        assert!(
            !tracer_all
                .start_with_context("e", &extract(&carrier("00")))
                .is_recording()
        );
        assert_eq!(spans.0.lock().unwrap().len(), 1);
    }
}
