//! Logs of `policy-kernel` and `policy-agent` (spec §7.2), on stderr.
//!
//! `json`: one object per line with `timestamp` (RFC 3339, UTC), `level`
//! (`error`, `warn`, `info`, `debug`, `trace`), `component` (`kernel`,
//! `agent`), `request_id` (the event's own, else the innermost span's that
//! has one, else absent), `message`, `target` (the emitting module) and
//! `metadata` (every other field of the event). `pretty`: tracing's
//! human-readable lines. The level filter is `RUST_LOG` when set, else the
//! configured level.

use std::fmt;
use std::io::IsTerminal as _;

use serde_json::{Map, Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (spec §7.2).
    Json,
    /// tracing's human-readable lines.
    Pretty,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!("unknown log format `{other}` (json or pretty)")),
        }
    }
}

/// Installs the process's logger for `component` (`kernel`, `agent`).
/// Does nothing when one is already installed.
pub fn init(component: &'static str, format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(RequestIdLayer);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .event_format(JsonLine { component }),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colours for a terminal only: not as escape codes in a
                    // log file or a collector.
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
    };
}

/// A span's `request_id`, kept by [`RequestIdLayer`].
struct RequestId(String);

/// Keeps the `request_id` field of every span (recorded at creation or
/// later) where [`JsonLine`] finds it.
struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut found = RequestIdField(None);
        attrs.record(&mut found);
        if let (Some(rid), Some(span)) = (found.0, ctx.span(id)) {
            span.extensions_mut().insert(RequestId(rid));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut found = RequestIdField(None);
        values.record(&mut found);
        if let (Some(rid), Some(span)) = (found.0, ctx.span(id)) {
            let mut ext = span.extensions_mut();
            ext.remove::<RequestId>();
            ext.insert(RequestId(rid));
        }
    }
}

/// Finds a non-empty `request_id` field.
struct RequestIdField(Option<String>);

impl Visit for RequestIdField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "request_id" && !value.is_empty() {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "request_id" {
            let text = format!("{value:?}");
            let text = text.trim_matches('"');
            if !text.is_empty() {
                self.0 = Some(text.to_string());
            }
        }
    }
}

/// An event's fields: the message, the request id, the rest.
#[derive(Default)]
struct EventFields {
    message: Option<String>,
    request_id: Option<String>,
    metadata: Map<String, Value>,
}

impl EventFields {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::String(s)) => self.message = Some(s),
            ("message", other) => self.message = Some(other.to_string()),
            ("request_id", Value::String(s)) if !s.is_empty() => self.request_id = Some(s),
            ("request_id", _) => {}
            (name, value) => {
                self.metadata.insert(name.to_string(), value);
            }
        }
    }
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, json!(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, json!(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, json!(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// The JSON line of spec §7.2.
struct JsonLine {
    component: &'static str,
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let request_id = fields.request_id.or_else(|| {
            ctx.event_scope().and_then(|scope| {
                scope
                    .into_iter()
                    .find_map(|span| span.extensions().get::<RequestId>().map(|r| r.0.clone()))
            })
        });
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(timestamp));
        line.insert(
            "level".into(),
            Value::String(meta.level().as_str().to_ascii_lowercase()),
        );
        line.insert("component".into(), Value::String(self.component.into()));
        if let Some(rid) = request_id {
            line.insert("request_id".into(), Value::String(rid));
        }
        line.insert(
            "message".into(),
            Value::String(fields.message.unwrap_or_default()),
        );
        line.insert("target".into(), Value::String(meta.target().into()));
        line.insert("metadata".into(), Value::Object(fields.metadata));
        writeln!(writer, "{}", Value::Object(line))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(run: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(RequestIdLayer).with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || sink.clone())
                .event_format(JsonLine {
                    component: "kernel",
                }),
        );
        tracing::subscriber::with_default(subscriber, run);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn json_lines_have_the_spec_fields() {
        let out = lines(|| {
            tracing::warn!(
                agent = "default-agent",
                attempt = 2_u64,
                "agent call failed"
            );
        });
        assert_eq!(out.len(), 1);
        let line = &out[0];
        assert_eq!(line["level"], "warn");
        assert_eq!(line["component"], "kernel");
        assert_eq!(line["message"], "agent call failed");
        assert_eq!(
            line["metadata"],
            json!({"agent": "default-agent", "attempt": 2})
        );
        assert!(line.get("request_id").is_none(), "{line}");
        let ts = line["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
    }

    #[test]
    fn the_request_id_comes_from_the_event_or_its_spans() {
        let out = lines(|| {
            let span = tracing::info_span!("stream", request_id = tracing::field::Empty);
            let _in = span.enter();
            tracing::info!("before the id is known");
            span.record("request_id", "req-1");
            let inner = tracing::info_span!("agent call");
            let _inner = inner.enter();
            tracing::info!("inside a child span");
            tracing::info!(request_id = "req-2", "the event's own id wins");
        });
        assert!(out[0].get("request_id").is_none(), "{}", out[0]);
        assert_eq!(out[1]["request_id"], "req-1");
        assert_eq!(out[2]["request_id"], "req-2");
        assert_eq!(out[2]["metadata"], json!({}));
    }
}
