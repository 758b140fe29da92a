//! `/metrics` (the §7.1 names of the kernel and of the agent, labels from
//! the configuration, accepted by `promtool check metrics`) after real
//! traffic, and `/health/*` while healthy and after the agent stops.

use anyhow::ensure;
use policy_engine_tests::stack::{ADMIN_ROUTE, eventually};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_follow_traffic_and_the_agent() -> anyhow::Result<()> {
    let mut stack = Stack::start(options()).await?;

    let live = stack.kernel_get("/health/live").await?;
    ensure!(
        live.status == 200 && live.text() == "ok\n",
        "{}",
        live.summary()
    );
    let (status, ready) = stack.readiness().await?;
    let policies = ready["agents"][0]["policies"].clone();
    ensure!(
        status == 200
            && ready["ready"] == true
            && ready["fail_open"] == false
            && ready["config_version"] == 1
            && ready["invalid_routes"] == json!([])
            && ready["agents"][0]["name"] == "default-agent"
            && ready["agents"][0]["discovered"] == true
            && ready["agents"][0]["healthy"] == true
            && [
                "apiKeyAuth",
                "rateLimit",
                "addSecurityHeaders",
                "responseBodyTransform",
                "jwtValidation",
                "roleCheck",
                "auditLog",
                "allowAll"
            ]
            .iter()
            .all(|p| policies.as_array().is_some_and(|ps| ps.contains(&json!(p)))),
        "/health/ready while healthy: {status} {ready}"
    );

    // Traffic: 2 allowed users requests (request and response phase each),
    // 1 denied users request, 1 denied admin request, 2 default requests,
    // and one with a made-up route name.
    for _ in 0..2 {
        let r = stack
            .send(&users_get(&test_id("m"), Some(ALICE_KEY)))
            .await?;
        expect_status(&stack, "users with a key", &r, 200)?;
    }
    let r = stack.send(&users_get(&test_id("m"), None)).await?;
    expect_status(&stack, "users without a key", &r, 401)?;
    let r = stack.get(&format!("{ADMIN_ROUTE}/x")).await?;
    expect_status(&stack, "admin without a token", &r, 401)?;
    for _ in 0..2 {
        let r = stack
            .send(&HttpRequest::get("/made/up?route=1").header("x-route-name", "/made/up"))
            .await?;
        expect_status(&stack, "unrouted", &r, 200)?;
    }

    // The agent's own counts reach /metrics with its next health check.
    let agent_expected = [
        ("apiKeyAuth", "ok", 2.0),
        ("apiKeyAuth", "denied", 1.0),
        ("rateLimit", "ok", 2.0),
        ("jwtValidation", "denied", 1.0),
        ("roleCheck", "ok", 0.0),
        ("allowAll", "ok", 2.0),
        ("addSecurityHeaders", "ok", 2.0),
        ("responseBodyTransform", "ok", 2.0),
    ];
    let stack_ref = &stack;
    eventually(
        "the agent's metrics in the kernel's /metrics",
        CHANGE_DEADLINE,
        || async move {
            let m = stack_ref.metrics().await?;
            for (policy, status, want) in agent_expected {
                let got = m.value(
                    "policy_agent_executions_total",
                    &[
                        ("agent", "default-agent"),
                        ("policy", policy),
                        ("status", status),
                    ],
                );
                ensure!(got == Some(want), "{policy} {status}: {got:?}");
            }
            Ok(())
        },
    )
    .await?;

    let response = stack.kernel_get("/metrics").await?;
    ensure!(
        response.status == 200
            && response.header("content-type") == Some("text/plain; version=0.0.4; charset=utf-8")
            && !response.text().contains("# EOF"),
        "/metrics: {}",
        response.summary()
    );
    policy_engine_tests::promtool::check_metrics(&response.text())?;
    let m = policy_engine_tests::stack::MetricsText::parse(&response.text());
    for (name, kind) in [
        ("policy_kernel_requests_total", "counter"),
        ("policy_kernel_request_duration_seconds", "histogram"),
        ("policy_kernel_agent_health", "gauge"),
        ("policy_kernel_agent_timeouts_total", "counter"),
        ("policy_kernel_config_reload_total", "counter"),
        ("policy_agent_executions_total", "counter"),
        ("policy_agent_execution_duration_seconds", "histogram"),
        ("policy_agent_context_size_bytes", "histogram"),
    ] {
        ensure!(
            m.declares(name, kind),
            "no `# TYPE {name} {kind}` in\n{}",
            m.text
        );
    }
    let agent = ("agent", "default-agent");
    let expected = [
        (
            "policy_kernel_requests_total",
            vec![("route", USERS_ROUTE), agent, ("status", "allowed")],
            4.0,
        ),
        (
            "policy_kernel_requests_total",
            vec![("route", USERS_ROUTE), agent, ("status", "denied")],
            1.0,
        ),
        (
            "policy_kernel_requests_total",
            vec![("route", ADMIN_ROUTE), agent, ("status", "denied")],
            1.0,
        ),
        (
            "policy_kernel_requests_total",
            vec![("route", "default"), agent, ("status", "allowed")],
            2.0,
        ),
        (
            "policy_kernel_request_duration_seconds_count",
            vec![("route", USERS_ROUTE), agent],
            5.0,
        ),
        (
            "policy_kernel_request_duration_seconds_count",
            vec![("route", ADMIN_ROUTE), agent],
            1.0,
        ),
        (
            "policy_kernel_request_duration_seconds_count",
            vec![("route", "default"), agent],
            2.0,
        ),
        ("policy_kernel_agent_health", vec![agent], 1.0),
        (
            "policy_agent_execution_duration_seconds_count",
            vec![agent, ("policy", "apiKeyAuth,rateLimit")],
            3.0,
        ),
        (
            "policy_agent_execution_duration_seconds_count",
            vec![agent, ("policy", "jwtValidation,roleCheck")],
            1.0,
        ),
        (
            "policy_agent_execution_duration_seconds_count",
            vec![
                agent,
                ("policy", "addSecurityHeaders,responseBodyTransform"),
            ],
            2.0,
        ),
        (
            "policy_agent_context_size_bytes_count",
            vec![agent, ("type", "request")],
            6.0,
        ),
        (
            "policy_agent_context_size_bytes_count",
            vec![agent, ("type", "response")],
            2.0,
        ),
        ("policy_kernel_agent_timeouts_total", vec![agent], 0.0),
        (
            "policy_kernel_config_reload_total",
            vec![("status", "success")],
            0.0,
        ),
        (
            "policy_kernel_config_reload_total",
            vec![("status", "failure")],
            0.0,
        ),
    ];
    for (name, labels, want) in expected {
        let got = m.value(name, &labels);
        ensure!(
            got == Some(want),
            "{name}{labels:?}: want {want}, got {got:?} in\n{}",
            m.text
        );
    }
    let buckets = m.find(
        "policy_kernel_request_duration_seconds_bucket",
        &[("route", USERS_ROUTE), agent],
    );
    ensure!(
        buckets.len() > 2
            && buckets
                .iter()
                .any(|b| b.labels.get("le").map(String::as_str) == Some("+Inf") && b.value == 5.0),
        "users duration buckets: {buckets:?}"
    );
    let sum = m
        .value(
            "policy_kernel_request_duration_seconds_sum",
            &[("route", USERS_ROUTE), agent],
        )
        .unwrap_or(0.0);
    ensure!(sum > 0.0 && sum < 10.0, "users duration sum {sum}");
    for s in m
        .samples
        .iter()
        .filter(|s| s.name.starts_with("policy_kernel_request"))
    {
        let route = s
            .labels
            .get("route")
            .map(String::as_str)
            .unwrap_or_default();
        ensure!(
            [USERS_ROUTE, ADMIN_ROUTE, "default"].contains(&route)
                && s.labels.get("agent").map(String::as_str) == Some("default-agent"),
            "labels must come from the configuration: {s:?}"
        );
    }

    // The agent stops: not ready (503 with the reason), still live.
    stack.stop_agent();
    let stack = &stack;
    let detail = eventually(
        "/health/ready 503 without the agent",
        CHANGE_DEADLINE,
        || async move {
            let (status, detail) = stack.readiness().await?;
            ensure!(status == 503, "{status} {detail}");
            Ok(detail)
        },
    )
    .await?;
    let agent_detail = &detail["agents"][0];
    ensure!(
        detail["ready"] == false
            && agent_detail["name"] == "default-agent"
            && agent_detail["healthy"] == false
            && agent_detail["error"]
                .as_str()
                .is_some_and(|e| e.contains("unavailable")),
        "/health/ready must say why: {detail}"
    );
    let live = stack.kernel_get("/health/live").await?;
    ensure!(
        live.status == 200,
        "/health/live without the agent: {}",
        live.summary()
    );
    let m = stack.metrics().await?;
    ensure!(
        m.value("policy_kernel_agent_health", &[agent]) == Some(0.0),
        "agent health gauge after the agent stopped:\n{}",
        m.text
    );
    Ok(())
}
