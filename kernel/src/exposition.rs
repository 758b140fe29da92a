//! The Prometheus text exposition format 0.0.4 of a `prometheus-client`
//! registry.
//!
//! `prometheus-client` writes OpenMetrics 1.0 text, which differs from the
//! classic format that `promtool check metrics` (and every Prometheus
//! version) reads:
//!
//! - a counter's family is named without `_total` (`# TYPE x counter`,
//!   sample `x_total`), so a classic parser finds samples without `HELP`
//!   and `TYPE` (promtool: "no help text");
//! - the exposition ends with `# EOF`, and may carry `# UNIT` lines;
//! - `HELP` escapes `"` as `\"`, which the classic format does not.
//!
//! [`encode`] rewrites those three things and leaves every sample line as
//! it is (names, labels and values are written the same way in both
//! formats). The registry holds counters, gauges and histograms only.

use prometheus_client::registry::Registry;

/// The `Content-Type` of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `registry` in the Prometheus text format 0.0.4.
pub fn encode(registry: &Registry) -> String {
    let mut openmetrics = String::new();
    if prometheus_client::encoding::text::encode_registry(&mut openmetrics, registry).is_err() {
        // Writing to a String cannot fail; keep whatever was written.
        tracing::warn!("metrics encoding failed");
    }
    from_openmetrics(&openmetrics)
}

/// Rewrites OpenMetrics text (of counters, gauges and histograms) as
/// Prometheus text 0.0.4.
fn from_openmetrics(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // A family's HELP comes before its TYPE, which decides its name.
    let mut help: Option<(&str, &str)> = None;
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, doc));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (kind, suffix) = match kind {
                "counter" if !name.ends_with("_total") => ("counter", "_total"),
                "unknown" => ("untyped", ""),
                other => (other, ""),
            };
            if let Some((help_name, doc)) = help.take().filter(|(n, _)| *n == name) {
                out.push_str("# HELP ");
                out.push_str(help_name);
                out.push_str(suffix);
                out.push(' ');
                out.push_str(&doc.replace("\\\"", "\""));
                out.push('\n');
            }
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push_str(suffix);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_declared_with_their_sample_name_and_eof_is_dropped() {
        let text = "# HELP a_requests Requests \\\"seen\\\" \\\\ here.\n\
                    # TYPE a_requests counter\n\
                    a_requests_total{route=\"/x\"} 2\n\
                    # HELP b_seconds Time.\n\
                    # TYPE b_seconds histogram\n\
                    # UNIT b_seconds seconds\n\
                    b_seconds_sum 0.5\n\
                    b_seconds_count 1\n\
                    b_seconds_bucket{le=\"+Inf\"} 1\n\
                    # HELP c Things.\n\
                    # TYPE c gauge\n\
                    c 1.0\n\
                    # EOF\n";
        assert_eq!(
            from_openmetrics(text),
            "# HELP a_requests_total Requests \"seen\" \\\\ here.\n\
             # TYPE a_requests_total counter\n\
             a_requests_total{route=\"/x\"} 2\n\
             # HELP b_seconds Time.\n\
             # TYPE b_seconds histogram\n\
             b_seconds_sum 0.5\n\
             b_seconds_count 1\n\
             b_seconds_bucket{le=\"+Inf\"} 1\n\
             # HELP c Things.\n\
             # TYPE c gauge\n\
             c 1.0\n"
        );
    }
}
