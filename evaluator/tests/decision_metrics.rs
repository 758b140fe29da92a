#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! Decisions through the agent core count the metrics of spec §7.1: each
//! policy that ran with its own status, failures with their reason, the
//! chain's duration and the context size of its phase.

use std::collections::HashMap;

use policy_agent::{Agent, AgentConfig, UNKNOWN_POLICY};
use policy_proto::agent::{
    AgentMetrics, Histogram, Policy, PolicyPhase, PolicyRequest, RequestContext, ResponseContext,
};

fn agent(config: AgentConfig) -> Agent {
    Agent::with_data(
        config,
        serde_json::json!({"policy_data": {"apiKeyAuth": {"keys": {}}}}),
    )
    .unwrap()
}

fn config() -> AgentConfig {
    AgentConfig::with_defaults("t", std::path::Path::new("/nonexistent.sock"))
}

fn policy(name: &str, metadata: &[(&str, &str)], on_failure: &str) -> Policy {
    Policy {
        name: name.into(),
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        on_failure: on_failure.into(),
    }
}

fn request(policies: Vec<Policy>) -> PolicyRequest {
    PolicyRequest {
        request_id: "r".into(),
        route: "/r".into(),
        policies,
        phase: PolicyPhase::Request as i32,
        context: Some(RequestContext {
            method: "GET".into(),
            path: "/r".into(),
            headers: HashMap::from([("accept".into(), "*/*".into())]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn executions(m: &AgentMetrics, policy: &str, status: &str) -> u64 {
    m.executions
        .iter()
        .find(|e| e.policy == policy && e.status == status)
        .map_or(0, |e| e.count)
}

fn failures(m: &AgentMetrics, policy: &str, reason: &str) -> u64 {
    m.failures
        .iter()
        .find(|e| e.policy == policy && e.reason == reason)
        .map_or(0, |e| e.count)
}

fn duration<'a>(m: &'a AgentMetrics, chain: &str) -> Option<&'a Histogram> {
    m.execution_durations.iter().find(|h| h.label == chain)
}

fn size<'a>(m: &'a AgentMetrics, phase: &str) -> &'a Histogram {
    m.context_sizes.iter().find(|h| h.label == phase).unwrap()
}

fn total(h: &Histogram) -> u64 {
    h.counts.iter().sum()
}

#[test]
fn policies_that_ran_are_counted_with_their_status_and_later_ones_are_not() {
    let agent = agent(config());
    let req = request(vec![
        policy("allowAll", &[], ""),
        policy("apiKeyAuth", &[("required", "true")], ""),
        policy("roleCheck", &[("allowed_roles", r#"["admin"]"#)], ""),
    ]);
    let exec = agent.execute(&req);
    assert!(exec.error.is_none(), "{:?}", exec.error);
    assert_eq!(
        exec.response.outcomes.len(),
        2,
        "apiKeyAuth stops the chain"
    );

    let m = agent.stats().metrics.snapshot();
    assert_eq!(executions(&m, "allowAll", "ok"), 1);
    assert_eq!(executions(&m, "apiKeyAuth", "denied"), 1);
    for status in ["ok", "denied", "error", "skipped", "timeout"] {
        assert_eq!(executions(&m, "roleCheck", status), 0, "{status}");
    }
    assert!(
        m.executions
            .iter()
            .any(|e| e.policy == "roleCheck" && e.status == "ok"),
        "a compiled chain's policies are listed at zero"
    );
    assert!(m.failures.is_empty(), "a denial is not a failure");

    let d = duration(&m, "allowAll,apiKeyAuth,roleCheck").unwrap();
    assert_eq!(total(d), 1);
    assert_eq!(d.counts.len(), d.upper_bounds.len() + 1);
    assert!(d.sum > 0.0 && d.sum < 5.0, "{}", d.sum);

    let s = size(&m, "request");
    assert_eq!(total(s), 1);
    let expected = prost::Message::encoded_len(req.context.as_ref().unwrap()) as f64;
    assert_eq!(s.sum, expected);
    assert_eq!(total(size(&m, "response")), 0);

    agent.execute(&req);
    let m = agent.stats().metrics.snapshot();
    assert_eq!(executions(&m, "apiKeyAuth", "denied"), 2);
    assert_eq!(
        total(duration(&m, "allowAll,apiKeyAuth,roleCheck").unwrap()),
        2
    );
}

#[test]
fn refused_steps_count_as_failures_with_their_reason() {
    let agent = agent(config());
    let exec = agent.execute(&request(vec![
        policy("allowAll", &[("bogus", "1")], "continue"),
        policy("addSecurityHeaders", &[], "continue"),
        policy("noSuchPolicy", &[], ""),
        policy("allowAll", &[], ""),
    ]));
    assert!(exec.error.is_none(), "{:?}", exec.error);
    let m = agent.stats().metrics.snapshot();
    assert_eq!(executions(&m, "allowAll", "error"), 1);
    assert_eq!(failures(&m, "allowAll", "invalid_metadata"), 1);
    assert_eq!(executions(&m, "allowAll", "ok"), 1);
    assert_eq!(executions(&m, "addSecurityHeaders", "error"), 1);
    assert_eq!(failures(&m, "addSecurityHeaders", "wrong_phase"), 1);
    assert_eq!(executions(&m, UNKNOWN_POLICY, "skipped"), 1);
    assert!(
        m.executions.iter().all(|e| e.policy != "noSuchPolicy"),
        "unknown names do not become labels"
    );
    assert_eq!(
        m.failures.len(),
        2,
        "a skipped policy is no failure: {:?}",
        m.failures
    );
}

#[test]
fn chains_that_cannot_run_count_a_failure_per_policy_and_no_execution() {
    let mut config = config();
    config.max_body_size_bytes = 4;
    let agent = agent(config);
    let mut req = request(vec![
        policy("allowAll", &[], ""),
        policy("apiKeyAuth", &[], ""),
    ]);
    if let Some(ctx) = req.context.as_mut() {
        ctx.body = b"too large".to_vec();
    }
    let exec = agent.execute(&req);
    assert_eq!(exec.error.unwrap().code(), "body_too_large");

    let mut bad = request(vec![policy("allowAll", &[], "")]);
    bad.deadline_ms = -1;
    assert_eq!(agent.execute(&bad).error.unwrap().code(), "invalid_request");

    let m = agent.stats().metrics.snapshot();
    assert_eq!(failures(&m, "allowAll", "body_too_large"), 1);
    assert_eq!(failures(&m, "apiKeyAuth", "body_too_large"), 1);
    assert_eq!(failures(&m, "allowAll", "invalid_request"), 1);
    assert!(
        m.executions.iter().all(|e| e.count == 0),
        "no policy ran: {:?}",
        m.executions
    );
    assert_eq!(
        total(duration(&m, "allowAll,apiKeyAuth").unwrap()),
        0,
        "the chain was not evaluated"
    );
    assert_eq!(total(size(&m, "request")), 2);
}

#[test]
fn the_response_phase_counts_its_whole_context() {
    let agent = agent(config());
    let mut req = request(vec![policy(
        "addSecurityHeaders",
        &[("headers", r#"{"X-A": "1"}"#)],
        "",
    )]);
    req.phase = PolicyPhase::Response as i32;
    req.response = Some(ResponseContext {
        status_code: 200,
        body: vec![b'x'; 3000],
        ..Default::default()
    });
    req.state_json = br#"{"user":"alice"}"#.to_vec();
    let exec = agent.execute(&req);
    assert!(exec.error.is_none(), "{:?}", exec.error);
    let m = agent.stats().metrics.snapshot();
    assert_eq!(executions(&m, "addSecurityHeaders", "ok"), 1);
    let s = size(&m, "response");
    assert_eq!(total(s), 1);
    let expected = prost::Message::encoded_len(req.context.as_ref().unwrap())
        + prost::Message::encoded_len(req.response.as_ref().unwrap())
        + req.state_json.len();
    assert_eq!(s.sum, expected as f64);
    assert_eq!(s.counts[2], 1, "between 1 KiB and 4 KiB: {:?}", s.counts);
    assert_eq!(total(size(&m, "request")), 0);
    assert_eq!(
        total(duration(&m, "addSecurityHeaders").unwrap()),
        1,
        "a one-policy chain is labelled with the policy"
    );
}

#[test]
fn nothing_is_counted_when_metrics_are_disabled() {
    let mut config = config();
    config.metrics_enabled = false;
    let agent = agent(config);
    agent.execute(&request(vec![policy("allowAll", &[], "")]));
    let m = agent.stats().metrics.snapshot();
    assert!(m.executions.iter().all(|e| e.count == 0));
    assert_eq!(total(size(&m, "request")), 0);
}
