#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! Chains prepared ahead of traffic are not compiled again by requests, and
//! concurrent first requests for one chain compile it once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use policy_agent::{Agent, AgentConfig};
use policy_proto::agent::{Policy, PolicyPhase, PolicyRequest, RequestContext};

fn agent() -> Agent {
    Agent::with_data(
        AgentConfig::with_defaults("t", std::path::Path::new("/nonexistent.sock")),
        serde_json::json!({}),
    )
    .unwrap()
}

fn policies() -> Vec<Policy> {
    vec![Policy {
        name: "addSecurityHeaders".into(),
        metadata: HashMap::from([("headers".into(), r#"{"X-A": "1"}"#.into())]),
        on_failure: "deny".into(),
    }]
}

#[test]
fn prepared_chains_are_reused_by_requests() {
    let agent = agent();
    agent
        .prepare(PolicyPhase::Response as i32, &policies())
        .unwrap();
    assert_eq!(agent.stats().chains_compiled.load(Ordering::Relaxed), 1);
    let exec = agent.execute(&PolicyRequest {
        policies: policies(),
        phase: PolicyPhase::Response as i32,
        context: Some(RequestContext::default()),
        ..Default::default()
    });
    assert!(exec.error.is_none(), "{:?}", exec.error);
    assert_eq!(
        agent.stats().chains_compiled.load(Ordering::Relaxed),
        1,
        "no second compile"
    );
    let err = agent.prepare(7, &policies()).unwrap_err();
    assert_eq!(err.to_string(), "invalid request: unknown phase `7`");
}

#[test]
fn concurrent_first_requests_compile_once() {
    let agent = Arc::new(agent());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let agent = agent.clone();
            std::thread::spawn(move || {
                agent.execute(&PolicyRequest {
                    policies: policies(),
                    phase: PolicyPhase::Response as i32,
                    ..Default::default()
                })
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap().error.is_none());
    }
    assert_eq!(agent.stats().chains_compiled.load(Ordering::Relaxed), 1);
}
