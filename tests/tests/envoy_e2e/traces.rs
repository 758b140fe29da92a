//! OpenTelemetry traces (spec §7.3) through the real Envoy: kernel and agent
//! export every trace to a real OTLP/gRPC receiver in the test process, and
//! a request that arrives with a W3C `traceparent` yields one trace: the
//! kernel's `ext_proc` span as the child of the caller's span, one
//! `agent_call` per phase under it, the agent's `policy_chain` under each
//! call (its context sent in `PolicyRequest.trace_context`), and one
//! `policy <name>` span per policy that ran.

use anyhow::{Context as _, bail, ensure};
use policy_engine_tests::otlp::{OtlpReceiver, ReceivedSpan};
use policy_engine_tests::sha256_hex;
use policy_engine_tests::stack::{AGENT_NAME, eventually};

use super::*;

/// How long kernel and agent may take to export a finished trace.
const EXPORT_DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_request_is_one_trace_through_kernel_and_agent() -> anyhow::Result<()> {
    traced_requests(false).await
}

/// The same spans with the agent core inside the kernel: exported by the
/// kernel process, under the `policy-agent` instrumentation scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_agent_makes_the_same_spans() -> anyhow::Result<()> {
    traced_requests(true).await
}

/// What one phase of a trace should show: its name and, in order, each
/// policy that ran with its status.
struct ExpectedPhase {
    phase: &'static str,
    decision: &'static str,
    policies: &'static [(&'static str, &'static str)],
}

async fn traced_requests(embedded_agent: bool) -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let stack = Stack::start(StackOptions {
        otlp_endpoint: Some(receiver.endpoint()),
        embedded_agent,
        ..options()
    })
    .await?;
    let agent_service = if embedded_agent {
        "policy-kernel"
    } else {
        "policy-agent"
    };

    // Allowed: both phases run their whole chain.
    let (trace_id, parent) = trace_ids(&test_id("traced-allowed"));
    let id = test_id("traced-alice");
    let request = users_get(&id, Some(ALICE_KEY))
        .header("traceparent", &format!("00-{trace_id}-{parent}-01"));
    let r = stack.send(&request).await?;
    expect_status(&stack, "traced request with Alice's key", &r, 200)?;
    let spans = wait_for_trace(&receiver, &stack, &trace_id, 9).await?;
    check_trace(
        &spans,
        &parent,
        agent_service,
        &[
            ExpectedPhase {
                phase: "request",
                decision: "allowed",
                policies: &[("apiKeyAuth", "OK"), ("rateLimit", "OK")],
            },
            ExpectedPhase {
                phase: "response",
                decision: "allowed",
                policies: &[
                    ("addSecurityHeaders", "OK"),
                    ("responseBodyTransform", "OK"),
                ],
            },
        ],
    )
    .with_context(|| format!("allowed request, spans:\n{}", describe(&spans)))?;

    // Denied by the first policy: the chain stops there, so one policy
    // span, and there is no response phase.
    let (trace_id, parent) = trace_ids(&test_id("traced-denied"));
    let id = test_id("traced-badkey");
    let request = users_get(&id, Some(UNKNOWN_KEY))
        .header("traceparent", &format!("00-{trace_id}-{parent}-01"));
    let r = stack.send(&request).await?;
    expect_status(&stack, "traced request with an unknown key", &r, 403)?;
    let spans = wait_for_trace(&receiver, &stack, &trace_id, 4).await?;
    check_trace(
        &spans,
        &parent,
        agent_service,
        &[ExpectedPhase {
            phase: "request",
            decision: "denied",
            policies: &[("apiKeyAuth", "POLICY_DENIED")],
        }],
    )
    .with_context(|| format!("denied request, spans:\n{}", describe(&spans)))?;
    let denial = spans
        .iter()
        .find(|s| s.name() == "policy apiKeyAuth")
        .context("checked above")?;
    ensure!(
        denial.attr("policy.message").as_deref() == Some("Invalid API key"),
        "the denying policy's span should carry its message: {denial:?}"
    );
    // The unknown key itself is a secret: no span carries it.
    for span in &spans {
        ensure!(
            !format!("{:?}", span.span.attributes).contains(UNKNOWN_KEY),
            "a span carries the API key: {span:?}"
        );
    }

    // Not sampled by the caller: the kernel follows the caller's decision,
    // and so does the agent, whatever the sampling rate.
    let (trace_id, parent) = trace_ids(&test_id("untraced"));
    let id = test_id("untraced-alice");
    let request = users_get(&id, Some(ALICE_KEY))
        .header("traceparent", &format!("00-{trace_id}-{parent}-00"));
    let r = stack.send(&request).await?;
    expect_status(&stack, "unsampled request", &r, 200)?;
    // Another sampled trace, sent after it, arrives; the unsampled one never does.
    let (later, later_parent) = trace_ids(&test_id("traced-after"));
    let request = users_get(&test_id("traced-after"), Some(ALICE_KEY))
        .header("traceparent", &format!("00-{later}-{later_parent}-01"));
    stack.send(&request).await?;
    wait_for_trace(&receiver, &stack, &later, 9).await?;
    let unsampled = receiver.trace(&trace_id);
    ensure!(
        unsampled.is_empty(),
        "an unsampled request was exported:\n{}",
        describe(&unsampled)
    );
    Ok(())
}

/// A trace id and a parent span id (lower-case hex) unique to `seed`.
fn trace_ids(seed: &str) -> (String, String) {
    let hash = sha256_hex(seed);
    (hash[..32].to_string(), hash[32..48].to_string())
}

/// Waits until `count` spans of `trace_id` have arrived.
async fn wait_for_trace(
    receiver: &OtlpReceiver,
    stack: &Stack,
    trace_id: &str,
    count: usize,
) -> anyhow::Result<Vec<ReceivedSpan>> {
    eventually(
        &format!("{count} spans of trace {trace_id}"),
        EXPORT_DEADLINE,
        || {
            let spans = receiver.trace(trace_id);
            async move {
                if spans.len() < count {
                    bail!("{} so far:\n{}", spans.len(), describe(&spans));
                }
                Ok(spans)
            }
        },
    )
    .await
    .with_context(|| stack.logs(30))
}

/// One line per span: name, ids, service and scope.
fn describe(spans: &[ReceivedSpan]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} span={} parent={} service={} scope={}\n",
                s.name(),
                s.span_id(),
                s.parent_span_id(),
                s.service,
                s.scope
            )
        })
        .collect()
}

/// Exactly one span named `name` among `spans`.
fn only<'a>(spans: &[&'a ReceivedSpan], what: &str) -> anyhow::Result<&'a ReceivedSpan> {
    match spans {
        [one] => Ok(one),
        other => bail!("want one {what}, found {}", other.len()),
    }
}

fn check_attr(span: &ReceivedSpan, key: &str, want: &str) -> anyhow::Result<()> {
    let got = span.attr(key);
    ensure!(
        got.as_deref() == Some(want),
        "span `{}`: attribute `{key}` is {got:?}, want {want:?}",
        span.name()
    );
    Ok(())
}

/// The whole trace of one request through the users route.
fn check_trace(
    spans: &[ReceivedSpan],
    parent: &str,
    agent_service: &str,
    phases: &[ExpectedPhase],
) -> anyhow::Result<()> {
    let named =
        |name: &str| -> Vec<&ReceivedSpan> { spans.iter().filter(|s| s.name() == name).collect() };
    let policy_count: usize = phases.iter().map(|p| p.policies.len()).sum();
    ensure!(
        spans.len() == 1 + 2 * phases.len() + policy_count,
        "want {} spans, got {}",
        1 + 2 * phases.len() + policy_count,
        spans.len()
    );

    let root = only(&named("ext_proc"), "ext_proc span")?;
    ensure!(
        root.parent_span_id() == parent,
        "ext_proc should be the child of the caller's span {parent}, its parent is `{}`",
        root.parent_span_id()
    );
    ensure!(
        root.service == "policy-kernel" && root.scope == "policy-kernel",
        "ext_proc from {}/{}",
        root.service,
        root.scope
    );
    check_attr(root, "policy.route", USERS_ROUTE)?;
    check_attr(root, "url.path", USERS_ROUTE)?;
    check_attr(root, "http.request.method", "GET")?;
    check_attr(
        root,
        "policy.decision",
        phases.last().map_or("", |p| p.decision),
    )?;
    let request_id = root.attr("request_id").unwrap_or_default();
    ensure!(!request_id.is_empty(), "ext_proc has no request_id");

    let calls = named("agent_call");
    ensure!(
        calls.len() == phases.len(),
        "want {} agent_call spans, got {}",
        phases.len(),
        calls.len()
    );
    let chains = named("policy_chain");
    for expected in phases {
        let call = only(
            &calls
                .iter()
                .copied()
                .filter(|c| c.attr("policy.phase").as_deref() == Some(expected.phase))
                .collect::<Vec<_>>(),
            &format!("{} agent_call", expected.phase),
        )?;
        ensure!(
            call.parent_span_id() == root.span_id(),
            "{} agent_call should be the child of ext_proc",
            expected.phase
        );
        ensure!(
            call.service == "policy-kernel",
            "agent_call from {}",
            call.service
        );
        check_attr(call, "policy.agent", AGENT_NAME)?;
        check_attr(call, "policy.decision", expected.decision)?;

        let chain = only(
            &chains
                .iter()
                .copied()
                .filter(|c| c.parent_span_id() == call.span_id())
                .collect::<Vec<_>>(),
            &format!("policy_chain under the {} agent_call", expected.phase),
        )?;
        ensure!(
            chain.service == agent_service && chain.scope == "policy-agent",
            "policy_chain from {}/{}",
            chain.service,
            chain.scope
        );
        check_attr(chain, "policy.phase", expected.phase)?;
        check_attr(chain, "policy.route", USERS_ROUTE)?;
        check_attr(chain, "policy.agent", AGENT_NAME)?;
        check_attr(chain, "request_id", &request_id)?;

        let mut policies: Vec<&ReceivedSpan> = spans
            .iter()
            .filter(|s| s.parent_span_id() == chain.span_id())
            .collect();
        policies.sort_by_key(|s| s.attr("policy.index").and_then(|i| i.parse::<u32>().ok()));
        ensure!(
            policies.len() == expected.policies.len(),
            "{} phase: want {} policy spans, got {}",
            expected.phase,
            expected.policies.len(),
            policies.len()
        );
        for (span, (name, status)) in policies.iter().zip(expected.policies) {
            ensure!(
                span.name() == format!("policy {name}"),
                "policy span `{}`, want `policy {name}`",
                span.name()
            );
            check_attr(span, "policy.name", name)?;
            check_attr(span, "policy.status", status)?;
            check_attr(span, "policy.phase", expected.phase)?;
            check_attr(span, "policy.route", USERS_ROUTE)?;
            check_attr(span, "policy.agent", AGENT_NAME)?;
            check_attr(span, "policy.timing", "chain")?;
            ensure!(
                span.scope == "policy-agent",
                "policy span from scope {}",
                span.scope
            );
            // The chain's one evaluation: it starts with the chain span.
            ensure!(
                span.span.start_time_unix_nano == chain.span.start_time_unix_nano
                    && span.span.end_time_unix_nano <= chain.span.end_time_unix_nano,
                "policy span `{}` should cover the chain's evaluation",
                span.name()
            );
        }
    }
    Ok(())
}
