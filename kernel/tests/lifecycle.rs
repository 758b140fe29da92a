#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! The kernel over time: `/health/live`, `/health/ready` and `/metrics`,
//! agent health transitions, invalid routes, and config reloads (valid,
//! invalid, new agents, in-flight streams on their old config).

mod common;

use common::*;

const INVALID_ROUTE: &str = r#"    - route_name: "/broken"
      request_policy_chain:
        - policy: "noSuchPolicy"
"#;

#[tokio::test]
async fn health_and_metrics_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let _agent = start_agent(&socket).await;
    let config = write_config(
        dir.path(),
        &kernel_yaml(&socket, 5000, false, &users_routes()),
    );
    let kernel = start_kernel(&config, test_options()).await;

    assert_eq!(
        http_get(kernel.metrics, "/health/live").await,
        (200, "ok\n".to_string())
    );
    let (status, body) = http_get(kernel.metrics, "/health/ready").await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["config_version"], 1);
    assert_eq!(ready["agents"][0]["name"], "default-agent");
    assert_eq!(ready["agents"][0]["healthy"], true);
    assert!(
        ready["agents"][0]["policies"]
            .as_array()
            .unwrap()
            .contains(&"apiKeyAuth".into())
    );
    assert_eq!(ready["invalid_routes"], serde_json::json!([]));
    assert_eq!(http_get(kernel.metrics, "/nope").await.0, 404);

    let mut stream = Stream::open(kernel.ext_proc).await;
    stream
        .send(request_headers(Some("/api/v1/users"), &[], true))
        .await;
    let (status, text) = http_get(kernel.metrics, "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "# TYPE policy_kernel_requests_total counter",
        "policy_kernel_requests_total{route=\"/api/v1/users\",agent=\"default-agent\",status=\"denied\"} 1",
        "# TYPE policy_kernel_request_duration_seconds histogram",
        "policy_kernel_request_duration_seconds_count{route=\"/api/v1/users\",agent=\"default-agent\"} 1",
        "policy_kernel_agent_health{agent=\"default-agent\"} 1",
        "# TYPE policy_kernel_agent_timeouts_total counter",
        "policy_kernel_config_reload_total{status=\"success\"} 0",
        "policy_kernel_config_reload_total{status=\"failure\"} 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    kernel.stop().await.unwrap();
}

#[tokio::test]
async fn readiness_and_requests_follow_agent_health() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let agent = start_agent(&socket).await;
    let config = write_config(
        dir.path(),
        &kernel_yaml(&socket, 1000, false, &users_routes()),
    );
    let kernel = start_kernel(&config, test_options()).await;
    assert!(kernel.handle.readiness().ready);

    agent.stop().await;
    eventually("readiness to drop", || async {
        http_get(kernel.metrics, "/health/ready").await.0 == 503
    })
    .await;
    let r = kernel.handle.readiness();
    assert!(!r.agents[0].healthy && r.agents[0].error.is_some(), "{r:?}");
    assert_eq!(
        metric(
            kernel.metrics,
            "policy_kernel_agent_health{agent=\"default-agent\"}"
        )
        .await,
        0.0
    );
    // Discovered but down: calls fail to connect, are retried, then denied.
    let mut stream = Stream::open(kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(
            Some("/api/v1/users"),
            &[("x-api-key", ALICE_KEY)],
            true,
        ))
        .await;
    assert_eq!(immediate_status(&answer), 503);
    assert_eq!(immediate(&answer).details, "agent_unavailable");

    let _agent = start_agent(&socket).await;
    eventually("readiness to come back", || async {
        http_get(kernel.metrics, "/health/ready").await.0 == 200
    })
    .await;
    let mut stream = Stream::open(kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(
            Some("/api/v1/users"),
            &[("x-api-key", ALICE_KEY)],
            true,
        ))
        .await;
    assert_eq!(
        set_headers(common(&answer, "request_headers"))["x-user-id"],
        "alice"
    );
}

#[tokio::test]
async fn invalid_routes_are_denied_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let _agent = start_agent(&socket).await;
    let routes = format!("{USERS_ROUTE}{INVALID_ROUTE}{DEFAULT_ALLOW}");
    let config = write_config(dir.path(), &kernel_yaml(&socket, 5000, true, &routes));
    let kernel = start_kernel(&config, test_options()).await;

    let (status, body) = http_get(kernel.metrics, "/health/ready").await;
    assert_eq!(status, 503);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["invalid_routes"][0]["route"], "/broken");
    assert_eq!(
        ready["invalid_routes"][0]["reason"],
        "agent does not support policy `noSuchPolicy`"
    );
    let mut stream = Stream::open(kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(Some("/broken"), &[], true))
        .await;
    assert_eq!(
        immediate_status(&answer),
        500,
        "never silently allowed, even with fail_open"
    );
    assert_eq!(immediate(&answer).details, "invalid_route");
    // Other routes keep working.
    let mut stream = Stream::open(kernel.ext_proc).await;
    assert_eq!(
        immediate_status(
            &stream
                .send(request_headers(Some("/api/v1/users"), &[], true))
                .await
        ),
        401
    );

    // Fixing the config makes the kernel ready.
    write_config(
        dir.path(),
        &kernel_yaml(&socket, 5000, true, &users_routes()),
    );
    eventually("the fixed config", || async {
        http_get(kernel.metrics, "/health/ready").await.0 == 200
    })
    .await;
    assert_eq!(kernel.handle.config_version(), 2);
}

#[tokio::test]
async fn reload_swaps_a_valid_config_and_keeps_the_old_on_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let _agent = start_agent(&socket).await;
    let config = write_config(
        dir.path(),
        &kernel_yaml(&socket, 5000, false, &users_routes()),
    );
    let kernel = start_kernel(&config, test_options()).await;

    // An open stream keeps the config it started with.
    let mut in_flight = Stream::open(kernel.ext_proc).await;
    let answer = in_flight
        .send(request_headers(
            Some("/api/v1/users"),
            &[("x-api-key", ALICE_KEY)],
            true,
        ))
        .await;
    common(&answer, "request_headers");

    // New config: /api/v1/users loses its response chain, /open appears.
    let open = r#"  route_policies:
    - route_name: "/api/v1/users"
      request_policy_chain:
        - policy: "apiKeyAuth"
    - route_name: "/open"
      request_policy_chain:
        - policy: "allowAll"
"#;
    write_config(dir.path(), &kernel_yaml(&socket, 5000, false, open));
    eventually("the file watch to reload", || async {
        kernel.handle.config_version() == 2
    })
    .await;
    assert_eq!(
        metric(
            kernel.metrics,
            "policy_kernel_config_reload_total{status=\"success\"}"
        )
        .await,
        1.0
    );

    let answer = in_flight.send(response_headers(200, &[], true)).await;
    assert_eq!(
        set_headers(common(&answer, "response_headers"))["x-frame-options"],
        "DENY",
        "the in-flight stream still runs its old response chain"
    );
    let mut stream = Stream::open(kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(Some("/not/here"), &[], true))
        .await;
    common(&answer, "request_headers");
    assert_eq!(
        metric(
            kernel.metrics,
            "policy_kernel_requests_total{route=\"none\",agent=\"\",status=\"no_policy\"}"
        )
        .await,
        1.0,
        "the new config has no default policy"
    );

    // An invalid config is rejected; the previous one stays.
    let broken = kernel_yaml(&socket, 0, false, open);
    write_config(dir.path(), &broken);
    eventually("the failed reload", || async {
        metric(
            kernel.metrics,
            "policy_kernel_config_reload_total{status=\"failure\"}",
        )
        .await
            == 1.0
    })
    .await;
    assert_eq!(kernel.handle.config_version(), 2);
    let r = kernel.handle.readiness();
    let last = r.last_reload.unwrap();
    assert_eq!(last.status, "failure");
    assert!(last.error.unwrap().contains("agents[0].timeout_ms"));
    assert!(
        r.ready,
        "a rejected reload does not make the kernel unready"
    );
    let mut stream = Stream::open(kernel.ext_proc).await;
    let answer = stream.send(request_headers(Some("/open"), &[], true)).await;
    common(&answer, "request_headers");
    // The explicit reload API reports the same error.
    let err = kernel.handle.reload().await.unwrap_err().to_string();
    assert!(err.contains("must be between 1 and 5000"), "{err}");
}

#[tokio::test]
async fn reload_discovers_new_agents_before_the_swap() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let _agent = start_agent(&socket).await;
    let config = write_config(
        dir.path(),
        &kernel_yaml(&socket, 5000, false, &users_routes()),
    );
    let kernel = start_kernel(&config, test_options()).await;

    let second = dir.path().join("second.sock");
    let fake = FakeAgent::new(&["onlyHere"], |_, _| async {
        Ok(policy_proto::agent::PolicyResponse {
            status: Some(policy_proto::agent::ResponseStatus::default()),
            ..Default::default()
        })
    });
    let _second = fake.serve(&second).await;
    let yaml = kernel_yaml(&socket, 5000, false, "").replace(
        "  fail_open:",
        &format!(
            "    - name: \"second\"\n      socket_path: \"{}\"\n      health_check_interval_ms: 100\n  route_policies:\n    - route_name: \"/second\"\n      agent: \"second\"\n      request_policy_chain:\n        - policy: \"onlyHere\"\n  fail_open:",
            second.display()
        ),
    );
    write_config(dir.path(), &yaml);
    eventually("the reload", || async {
        if let Some(r) = kernel.handle.readiness().last_reload {
            assert_eq!(r.status, "success", "{r:?}\n{yaml}");
        }
        kernel.handle.config_version() == 2
    })
    .await;
    // Discovered before the swap: the route is valid at once.
    let r = kernel.handle.readiness();
    assert!(r.ready, "{r:?}");
    assert_eq!(r.agents.len(), 2);
    let mut stream = Stream::open(kernel.ext_proc).await;
    common(
        &stream
            .send(request_headers(Some("/second"), &[], true))
            .await,
        "request_headers",
    );
    assert_eq!(fake.calls().len(), 1);
}
