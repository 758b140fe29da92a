//! `ExecutePoliciesStream`: many calls over one stream, each answered once,
//! under its own id, with what the unary `ExecutePolicies` answers.

use std::collections::HashMap;

use policy_proto::agent::policy_call_result::Outcome;
use policy_proto::agent::{PolicyCall, PolicyCallResult};
use tokio_stream::StreamExt as _;

use super::*;

fn call(id: u64, request: Option<PolicyRequest>) -> PolicyCall {
    PolicyCall { id, request }
}

#[tokio::test]
async fn calls_over_one_stream_are_answered_by_id_as_unary_calls_are() -> anyhow::Result<()> {
    let log = answered_by_id(options(policy_data(None))).await?;
    // Not pinned (on a machine of more than one CPU): no idle polling.
    if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
        assert!(log.contains("idle polling off"), "agent log:\n{log}");
    }
    Ok(())
}

/// On one CPU the agent runs one thread and answers each call where it
/// reads it: the same answers.
#[tokio::test]
async fn an_agent_on_one_cpu_answers_the_stream_alike() -> anyhow::Result<()> {
    let log = answered_by_id(AgentOptions {
        one_cpu: true,
        ..options(policy_data(None))
    })
    .await?;
    // Pinned to one CPU: it polls its idle gaps by default (ADR 0009).
    assert!(
        log.contains("idle polling for 500 µs after each burst of work"),
        "agent log:\n{log}"
    );
    Ok(())
}

/// Runs the calls on an agent started with `options`; its log.
async fn answered_by_id(options: AgentOptions) -> anyhow::Result<String> {
    let agent = AgentProcess::start(&options).await?;
    let mut client = agent.client().await?;

    // Allowed, unauthenticated and forbidden requests, interleaved, from
    // clients of their own (the rate limit is per client IP).
    let mut requests = Vec::new();
    for i in 0..30u64 {
        let ip = format!("10.1.0.{i}");
        let headers: &[(&str, &str)] = match i % 3 {
            0 => &[("X-API-Key", ALICE_KEY)],
            1 => &[],
            _ => &[("X-API-Key", UNKNOWN_KEY)],
        };
        let mut r = users_get(&ip, headers);
        r.request_id = format!("req-{i}");
        requests.push(r);
    }
    // Every call is sent before any answer is read; ids need not be dense.
    let calls: Vec<PolicyCall> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| call(1000 + 7 * i as u64, Some(r.clone())))
        .collect();
    let mut answers = client
        .execute_policies_stream(tokio_stream::iter(calls))
        .await?
        .into_inner();
    let mut by_id: HashMap<u64, PolicyCallResult> = HashMap::new();
    while let Some(answer) = answers.next().await {
        let answer = answer?;
        let id = answer.id;
        assert!(
            by_id.insert(id, answer).is_none(),
            "call {id} answered twice"
        );
    }
    assert_eq!(by_id.len(), requests.len(), "one answer per call");

    for (i, request) in requests.iter().enumerate() {
        let id = 1000 + 7 * i as u64;
        let Some(Outcome::Response(streamed)) = by_id.remove(&id).and_then(|a| a.outcome) else {
            anyhow::bail!("call {id}: no response");
        };
        assert_eq!(streamed.request_id, request.request_id);
        // The same request again, unary, from a fresh client IP state: the
        // answers agree but for the rate limiter's remaining count.
        let mut again = request.clone();
        if let Some(c) = again.context.as_mut() {
            c.client_ip = format!("10.2.0.{i}");
        }
        let unary = execute(&mut client, again).await?;
        assert_eq!(
            streamed.code(),
            unary.code(),
            "call {id}: {streamed:?} / {unary:?}"
        );
        assert_eq!(streamed.message, unary.message, "call {id}");
        assert_eq!(streamed.outcome_list(), unary.outcome_list(), "call {id}");
        assert_eq!(
            streamed.instruction_types(),
            unary.instruction_types(),
            "call {id}"
        );
        let expected = match i % 3 {
            0 => StatusCode::Ok,
            _ => StatusCode::PolicyDenied,
        };
        assert_eq!(streamed.code(), expected, "call {id}: {streamed:?}");
    }
    Ok(agent.stderr_log())
}

#[tokio::test]
async fn a_call_without_a_request_gets_an_error_and_the_stream_goes_on() -> anyhow::Result<()> {
    let agent = AgentProcess::start(&options(policy_data(None))).await?;
    let mut client = agent.client().await?;
    let calls = vec![
        call(1, None),
        call(2, Some(users_get("10.3.0.1", &[("X-API-Key", ALICE_KEY)]))),
    ];
    let mut answers = client
        .execute_policies_stream(tokio_stream::iter(calls))
        .await?
        .into_inner();
    let mut by_id = HashMap::new();
    while let Some(answer) = answers.next().await {
        let answer = answer?;
        by_id.insert(answer.id, answer.outcome);
    }
    match by_id.remove(&1).flatten() {
        Some(Outcome::Error(e)) => {
            assert_eq!(
                tonic::Code::from(e.code),
                tonic::Code::InvalidArgument,
                "{e:?}"
            );
            assert!(e.message.contains("without a request"), "{e:?}");
        }
        other => anyhow::bail!("call 1: an error expected, got {other:?}"),
    }
    match by_id.remove(&2).flatten() {
        Some(Outcome::Response(r)) => assert_eq!(r.code(), StatusCode::Ok, "{r:?}"),
        other => anyhow::bail!("call 2: a response expected, got {other:?}"),
    }
    assert_still_serving(&mut client).await
}
