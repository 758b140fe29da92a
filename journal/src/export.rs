//! Export formats for stored records (`policyctl journal export`): JSON
//! lines, and OPA decision-log events (`EventV1` of OPA's
//! `v1/plugins/logs/plugin.go`) so that existing OPA log receivers work.

use journal_client::DecisionRecord;
use policy_proto::journal::StoredRecord;
use serde_json::{Map, Value, json};

/// One JSON line: the record's JSON as the agent wrote it, with the journal
/// fields `received_at`, `flag` and `hash` added at the end. A record whose
/// JSON is not an object is exported as `record_raw` (text, lossy) beside
/// the envelope fields.
pub fn to_jsonl_line(stored: &StoredRecord) -> String {
    let env = stored.record.clone().unwrap_or_default();
    let extra = format!(
        r#""received_at":{},"flag":{},"hash":{}}}"#,
        Value::from(stored.received_at.as_str()),
        Value::from(stored.flag.as_str()),
        Value::from(env.hash.as_str()),
    );
    let is_object = serde_json::from_slice::<Value>(&env.record_json).is_ok_and(|v| {
        v.as_object()
            .is_some_and(|o| !o.contains_key("received_at"))
    });
    if is_object && let Ok(text) = std::str::from_utf8(&env.record_json) {
        let body = text.trim_end();
        if let Some(open) = body.strip_suffix('}') {
            let open = open.trim_end();
            let sep = if open.ends_with('{') { "" } else { "," };
            return format!("{open}{sep}{extra}");
        }
    }
    let fallback = json!({
        "agent_id": env.agent_id,
        "boot_epoch": env.boot_epoch,
        "seq": env.seq,
        "prev_hash": env.prev_hash,
        "record_raw": String::from_utf8_lossy(&env.record_json),
    });
    let text = fallback.to_string();
    let open = text.strip_suffix('}').unwrap_or(&text);
    format!("{open},{extra}")
}

/// The record as an OPA decision-log event (`EventV1`):
///
/// | EventV1 field | from |
/// |---|---|
/// | `labels` | `id` (= agent_id), `version`, `agent_id`, `boot_epoch`, `seq`, `environment`, `enforcement`, `config_version`, `request_id`, `journal_flag` (when flagged) |
/// | `decision_id` | `decision_id` |
/// | `bundles` | `{"policy-engine": {"revision": bundle_revision}}` |
/// | `path` | `routes/<route>/<phase>/decision` (OPA's slash form of the data path, without `data/`) |
/// | `input` | the masked request summary |
/// | `result` | `decision`, `http_status`, `reason`, `policies`, `mode`, `decided_by` |
/// | `nd_builtin_cache` | `builtins` as `{name: {json(args): result}}` |
/// | `requested_by` | the client IP |
/// | `timestamp` | `timestamp` |
/// | `metrics` | `timer_rego_query_eval_ns` = `duration_us` × 1000 |
///
/// A record whose JSON does not parse becomes an event with its labels and
/// an `error` (`code` `journal_unparseable_record`).
pub fn to_opa_event(stored: &StoredRecord) -> Value {
    let env = stored.record.clone().unwrap_or_default();
    let mut labels = Map::new();
    labels.insert("id".into(), env.agent_id.clone().into());
    labels.insert(
        "version".into(),
        format!("policy-engine/{}", env!("CARGO_PKG_VERSION")).into(),
    );
    labels.insert("agent_id".into(), env.agent_id.clone().into());
    labels.insert("boot_epoch".into(), env.boot_epoch.to_string().into());
    labels.insert("seq".into(), env.seq.to_string().into());
    if !stored.flag.is_empty() {
        labels.insert("journal_flag".into(), stored.flag.clone().into());
    }
    let record = match DecisionRecord::from_json(&env.record_json) {
        Ok(r) => r,
        Err(e) => {
            return json!({
                "labels": labels,
                "decision_id": "",
                "timestamp": stored.received_at,
                "error": {
                    "code": "journal_unparseable_record",
                    "message": format!("record json does not parse: {e}"),
                },
            });
        }
    };
    labels.insert("environment".into(), record.environment.clone().into());
    labels.insert("enforcement".into(), record.enforcement.clone().into());
    labels.insert(
        "config_version".into(),
        record.config_version.clone().into(),
    );
    labels.insert("request_id".into(), record.request_id.clone().into());

    let mut event = Map::new();
    event.insert("labels".into(), Value::Object(labels));
    event.insert("decision_id".into(), record.decision_id.clone().into());
    event.insert(
        "bundles".into(),
        json!({ "policy-engine": { "revision": record.bundle_revision } }),
    );
    event.insert("path".into(), opa_path(&record.route, &record.phase).into());
    event.insert(
        "input".into(),
        serde_json::to_value(&record.request).unwrap_or(Value::Null),
    );
    event.insert(
        "result".into(),
        json!({
            "decision": record.decision.as_str(),
            "http_status": record.http_status,
            "reason": record.reason,
            "policies": record.policies,
            "mode": record.mode,
            "decided_by": record.decided_by,
        }),
    );
    if !record.builtins.is_empty() {
        let mut cache: Map<String, Value> = Map::new();
        for call in &record.builtins {
            let entry = cache
                .entry(call.name.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                m.insert(
                    Value::from(call.args.clone()).to_string(),
                    call.result.clone(),
                );
            }
        }
        event.insert("nd_builtin_cache".into(), Value::Object(cache));
    }
    if !record.request.client_ip.is_empty() {
        event.insert(
            "requested_by".into(),
            record.request.client_ip.clone().into(),
        );
    }
    event.insert("timestamp".into(), record.timestamp.clone().into());
    event.insert(
        "metrics".into(),
        json!({ "timer_rego_query_eval_ns": record.duration_us.saturating_mul(1000) }),
    );
    Value::Object(event)
}

/// `routes/<route>/<phase>/decision`, the route's slashes kept as path
/// segments (`/api/v1/users` → `routes/api/v1/users/request/decision`).
fn opa_path(route: &str, phase: &str) -> String {
    let route = route.trim_matches('/');
    if route.is_empty() {
        format!("routes/{phase}/decision")
    } else {
        format!("routes/{route}/{phase}/decision")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use policy_proto::journal::RecordEnvelope;

    fn stored(json: &[u8]) -> StoredRecord {
        StoredRecord {
            record: Some(RecordEnvelope {
                agent_id: "agent-1".into(),
                boot_epoch: 2,
                seq: 7,
                prev_hash: "p".into(),
                hash: "h".into(),
                record_json: json.to_vec(),
            }),
            received_at: "2026-11-23T00:00:01Z".into(),
            flag: "seq_gap".into(),
        }
    }

    #[test]
    fn jsonl_keeps_the_record_bytes_and_adds_journal_fields() {
        let line = to_jsonl_line(&stored(br#"{"a":1}"#));
        assert_eq!(
            line,
            r#"{"a":1,"received_at":"2026-11-23T00:00:01Z","flag":"seq_gap","hash":"h"}"#
        );
        let raw = to_jsonl_line(&stored(b"not json"));
        let v: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(v["record_raw"], "not json");
        assert_eq!(v["flag"], "seq_gap");
    }

    #[test]
    fn opa_event_has_eventv1_fields() {
        use journal_client::{BuiltinCall, GENESIS_HASH, RequestSummary, Verdict};
        let record = DecisionRecord {
            decision_id: "0190b6c4-0000-7000-8000-000000000001".into(),
            agent_id: "agent-1".into(),
            boot_epoch: 2,
            seq: 7,
            timestamp: "2026-11-23T10:00:00.123456789Z".into(),
            request_id: "r-1".into(),
            route: "/api/v1/users".into(),
            phase: "request".into(),
            request: RequestSummary {
                method: "GET".into(),
                client_ip: "10.0.0.9".into(),
                ..RequestSummary::default()
            },
            principal: None,
            policies: vec![],
            decision: Verdict::Deny,
            http_status: Some(403),
            reason: "no".into(),
            decided_by: Some("authz".into()),
            enforcement: "enforce".into(),
            environment: "prod".into(),
            bundle_revision: "rev-9".into(),
            config_version: "3".into(),
            mode: "degraded:cache".into(),
            audit: false,
            duration_us: 64,
            builtins: vec![BuiltinCall {
                name: "time.now_ns".into(),
                args: vec![],
                result: json!(1),
            }],
            prev_hash: GENESIS_HASH.into(),
        };
        let mut s = stored(&record.to_json().unwrap());
        s.flag.clear();
        let e = to_opa_event(&s);
        assert_eq!(e["decision_id"], record.decision_id);
        assert_eq!(e["path"], "routes/api/v1/users/request/decision");
        assert_eq!(e["bundles"]["policy-engine"]["revision"], "rev-9");
        assert_eq!(e["labels"]["agent_id"], "agent-1");
        assert_eq!(e["labels"]["boot_epoch"], "2");
        assert_eq!(e["labels"]["environment"], "prod");
        assert!(e["labels"].get("journal_flag").is_none());
        assert_eq!(e["input"]["method"], "GET");
        assert_eq!(e["result"]["decision"], "deny");
        assert_eq!(e["result"]["http_status"], 403);
        assert_eq!(e["result"]["mode"], "degraded:cache");
        assert_eq!(e["nd_builtin_cache"]["time.now_ns"]["[]"], 1);
        assert_eq!(e["requested_by"], "10.0.0.9");
        assert_eq!(e["timestamp"], "2026-11-23T10:00:00.123456789Z");
        assert_eq!(e["metrics"]["timer_rego_query_eval_ns"], 64_000);
        // Labels are strings, as OPA's map[string]string.
        assert!(
            e["labels"]
                .as_object()
                .unwrap()
                .values()
                .all(Value::is_string)
        );
    }

    #[test]
    fn unparseable_records_become_error_events() {
        let e = to_opa_event(&stored(b"{}"));
        assert_eq!(e["error"]["code"], "journal_unparseable_record");
        assert_eq!(e["labels"]["journal_flag"], "seq_gap");
        assert_eq!(
            opa_path("/api/v1/users", "request"),
            "routes/api/v1/users/request/decision"
        );
    }
}
