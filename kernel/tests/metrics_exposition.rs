#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! `/metrics` of a real kernel with a real agent core behind it, after
//! traffic: the kernel's and the agent's metrics of spec §7.1 (the agent's
//! from its health answers, with an `agent` label), in the Prometheus text
//! format that `promtool check metrics` accepts.

mod common;

use common::*;

#[tokio::test]
async fn kernel_and_agent_metrics_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let _agent = start_agent(&socket).await;
    let config = write_config(
        dir.path(),
        &kernel_yaml(&socket, 5000, false, &users_routes()),
    );
    let kernel = start_kernel(&config, test_options()).await;

    // Allowed (request then response phase), denied, and the default route.
    let mut stream = Stream::open(kernel.ext_proc).await;
    stream
        .send(request_headers(
            Some("/api/v1/users"),
            &[("x-api-key", ALICE_KEY)],
            true,
        ))
        .await;
    stream
        .send(response_headers(
            200,
            &[("content-type", "application/json")],
            false,
        ))
        .await;
    stream
        .send(response_body(br#"{"id":1,"internal_id":2}"#))
        .await;
    let mut stream = Stream::open(kernel.ext_proc).await;
    let denied = stream
        .send(request_headers(Some("/api/v1/users"), &[], true))
        .await;
    assert_eq!(immediate_status(&denied), 401);
    let mut stream = Stream::open(kernel.ext_proc).await;
    stream
        .send(request_headers(Some("/other"), &[], true))
        .await;

    let agent = "agent=\"default-agent\"";
    let expected = [
        format!("policy_agent_executions_total{{{agent},policy=\"apiKeyAuth\",status=\"ok\"}} 1\n"),
        format!(
            "policy_agent_executions_total{{{agent},policy=\"apiKeyAuth\",status=\"denied\"}} 1\n"
        ),
        format!("policy_agent_executions_total{{{agent},policy=\"rateLimit\",status=\"ok\"}} 1\n"),
        format!("policy_agent_executions_total{{{agent},policy=\"allowAll\",status=\"ok\"}} 1\n"),
        format!(
            "policy_agent_executions_total{{{agent},policy=\"responseBodyTransform\",status=\"ok\"}} 1\n"
        ),
        format!(
            "policy_agent_execution_duration_seconds_count{{{agent},policy=\"apiKeyAuth,rateLimit\"}} 2\n"
        ),
        format!(
            "policy_agent_execution_duration_seconds_count{{{agent},policy=\"addSecurityHeaders,responseBodyTransform\"}} 1\n"
        ),
        format!("policy_agent_context_size_bytes_count{{{agent},type=\"request\"}} 3\n"),
        format!("policy_agent_context_size_bytes_count{{{agent},type=\"response\"}} 1\n"),
    ];
    let addr = kernel.metrics;
    let expected = &expected;
    // The kernel learns the agent's counts at its next health check.
    eventually(
        "the agent's metrics in the kernel's /metrics",
        move || async move {
            let (_, text) = scrape(addr).await;
            expected.iter().all(|e| text.contains(e.as_str()))
        },
    )
    .await;
    let (content_type, text) = scrape(addr).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for e in expected {
        assert!(text.contains(e.as_str()), "missing {e} in\n{text}");
    }
    for needle in [
        "# TYPE policy_kernel_requests_total counter\n",
        "# TYPE policy_kernel_request_duration_seconds histogram\n",
        "# TYPE policy_kernel_agent_health gauge\n",
        "# TYPE policy_kernel_agent_timeouts_total counter\n",
        "# TYPE policy_kernel_config_reload_total counter\n",
        "# TYPE policy_agent_executions_total counter\n",
        "# TYPE policy_agent_execution_duration_seconds histogram\n",
        "# TYPE policy_agent_context_size_bytes histogram\n",
        "# HELP policy_agent_execution_duration_seconds ",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(
        !text.contains("policy_agent_policy_failures_total"),
        "no policy failed:\n{text}"
    );
    promtool_check(&text);
    kernel.stop().await.unwrap();
}
