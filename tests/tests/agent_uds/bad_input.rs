//! Requests the agent must refuse with a clear error while it keeps serving.

use super::*;

#[tokio::test]
async fn unknown_policy_is_skipped_unless_fail_on_unknown() -> anyhow::Result<()> {
    let chain = || {
        vec![
            policy("geoFence", &[("countries", "[\"NO\"]")]),
            policy("allowAll", &[]),
        ]
    };
    let req = || {
        request_phase(
            USERS,
            chain(),
            request_context("GET", "/api/v1/users", "10.0.5.1", &[]),
        )
    };

    let lenient = AgentProcess::start(&options(policy_data(None))).await?;
    let mut client = lenient.client().await?;
    let r = execute(&mut client, req()).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert!(r.instructions.is_empty(), "{r:?}");
    assert_eq!(
        r.outcome_list(),
        vec![
            (
                "geoFence",
                StatusCode::Ok,
                "unknown policy `geoFence` skipped"
            ),
            ("allowAll", StatusCode::Ok, "allowed"),
        ]
    );

    let strict = AgentProcess::start(&AgentOptions {
        fail_on_unknown: true,
        ..options(policy_data(None))
    })
    .await?;
    let mut client = strict.client().await?;
    let r = execute(&mut client, req()).await?;
    assert_eq!(assert_policy_error(&r, 500)?, "unknown policy `geoFence`");
    assert_eq!(r.policy_name(), "geoFence");
    assert_eq!(
        r.outcome_list(),
        vec![(
            "geoFence",
            StatusCode::PolicyError,
            "unknown policy `geoFence`"
        )]
    );
    // on_failure cannot let an unknown policy through on a strict agent.
    let mut lax = req();
    lax.policies[0].on_failure = "continue".into();
    let r = execute(&mut client, lax).await?;
    assert_eq!(assert_policy_error(&r, 500)?, "unknown policy `geoFence`");
    assert_still_serving(&mut client).await?;
    Ok(())
}

#[tokio::test]
async fn malformed_requests_get_a_clear_error_and_the_agent_keeps_serving() -> anyhow::Result<()> {
    let mut agent = AgentProcess::start(&AgentOptions {
        max_body_size_bytes: 4096,
        ..options(policy_data(None))
    })
    .await?;
    let mut client = agent.client().await?;
    let good_key = [("X-API-Key", ALICE_KEY)];

    // Metadata that does not satisfy the schema names the policy and the field.
    let mut req = users_get("10.0.6.1", &good_key);
    req.policies[1] = policy(
        "rateLimit",
        &[("requests_per_second", "fast"), ("burst", "20")],
    );
    let r = execute(&mut client, req).await?;
    let message = assert_policy_error(&r, 500)?;
    assert!(
        message.starts_with("invalid metadata for `rateLimit`: "),
        "{message}"
    );
    assert!(message.contains("/requests_per_second"), "{message}");
    assert!(message.contains("\"fast\""), "{message}");
    assert_eq!(r.policy_name(), "rateLimit");
    assert_eq!(
        r.outcome_list()
            .iter()
            .map(|o| (o.0, o.1))
            .collect::<Vec<_>>(),
        vec![
            ("apiKeyAuth", StatusCode::Ok),
            ("rateLimit", StatusCode::PolicyError)
        ]
    );
    let body: Value =
        serde_json::from_slice(&r.immediate().map(|i| i.body.clone()).unwrap_or_default())?;
    assert_eq!(
        body,
        json!({"error": "policy error", "policy": "rateLimit"})
    );
    assert_still_serving(&mut client).await?;

    let mut req = users_get("10.0.6.1", &good_key);
    req.policies[0] = policy(
        "apiKeyAuth",
        &[("header", "X-API-Key"), ("required", "yes")],
    );
    let r = execute(&mut client, req).await?;
    let message = assert_policy_error(&r, 500)?;
    assert!(
        message.starts_with("invalid metadata for `apiKeyAuth`: "),
        "{message}"
    );
    assert!(message.contains("/required"), "{message}");
    assert!(message.contains("'header'"), "{message}");
    assert_eq!(r.policy_name(), "apiKeyAuth");
    assert_still_serving(&mut client).await?;

    // Bodies over max_body_size_bytes: 413, in either phase.
    let mut req = users_get("10.0.6.1", &good_key);
    if let Some(ctx) = req.context.as_mut() {
        ctx.body = vec![b'a'; 5000];
    }
    let r = execute(&mut client, req).await?;
    assert_eq!(
        assert_policy_error(&r, 413)?,
        "request body is 5000 bytes, over the limit of 4096 bytes (`max_body_size_bytes`)"
    );
    assert_eq!(r.meta("error_code"), Some("body_too_large"));
    let body: Value =
        serde_json::from_slice(&r.immediate().map(|i| i.body.clone()).unwrap_or_default())?;
    assert_eq!(body["code"], "body_too_large");
    let r = execute(
        &mut client,
        response_phase(
            USERS,
            users_response_chain(),
            request_context("GET", "/api/v1/users", "10.0.6.1", &[]),
            response_context(200, &[("Content-Type", "application/json")], &[b' '; 4097]),
            Vec::new(),
        ),
    )
    .await?;
    assert_eq!(
        assert_policy_error(&r, 413)?,
        "response body is 4097 bytes, over the limit of 4096 bytes (`max_body_size_bytes`)"
    );
    assert_still_serving(&mut client).await?;

    // JSON nested 500 levels deep, in either phase.
    let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
    let mut req = users_get(
        "10.0.6.1",
        &[
            ("X-API-Key", ALICE_KEY),
            ("Content-Type", "application/json"),
        ],
    );
    if let Some(ctx) = req.context.as_mut() {
        ctx.method = "POST".into();
        ctx.body = deep.clone().into_bytes();
    }
    let r = execute(&mut client, req).await?;
    assert_eq!(
        assert_policy_error(&r, 400)?,
        "invalid request: request body: JSON nested 128 levels deep or more"
    );
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(500), "}".repeat(500));
    let r = execute(
        &mut client,
        response_phase(
            USERS,
            users_response_chain(),
            request_context("GET", "/api/v1/users", "10.0.6.1", &[]),
            response_context(
                200,
                &[("Content-Type", "application/json")],
                deep_objects.as_bytes(),
            ),
            Vec::new(),
        ),
    )
    .await?;
    assert_eq!(
        assert_policy_error(&r, 400)?,
        "invalid request: response body: JSON nested 128 levels deep or more"
    );
    assert_still_serving(&mut client).await?;

    // An on_failure value that does not exist.
    let mut req = users_get("10.0.6.1", &good_key);
    req.policies[1].on_failure = "ignore".into();
    let r = execute(&mut client, req).await?;
    assert_eq!(
        assert_policy_error(&r, 400)?,
        "invalid request: policy `rateLimit`: on_failure must be deny, continue or skip_remaining, got `ignore`"
    );
    assert_eq!(r.meta("error_code"), Some("invalid_request"));
    assert_still_serving(&mut client).await?;

    // A negative deadline.
    let mut req = users_get("10.0.6.1", &good_key);
    req.deadline_ms = -5;
    let r = execute(&mut client, req).await?;
    assert_eq!(
        assert_policy_error(&r, 400)?,
        "invalid request: deadline_ms must not be negative, got -5"
    );
    assert_still_serving(&mut client).await?;

    // A phase that does not exist.
    let mut req = users_get("10.0.6.1", &good_key);
    req.phase = 7;
    let r = execute(&mut client, req).await?;
    assert_eq!(
        assert_policy_error(&r, 400)?,
        "invalid request: unknown phase `7`"
    );

    // A policy in the wrong phase.
    let r = execute(
        &mut client,
        request_phase(
            USERS,
            users_response_chain(),
            request_context("GET", "/api/v1/users", "10.0.6.1", &[]),
        ),
    )
    .await?;
    assert_eq!(
        assert_policy_error(&r, 500)?,
        "policy `addSecurityHeaders` does not run in the request phase"
    );

    assert_still_serving(&mut client).await?;
    assert!(agent.is_running(), "stderr:\n{}", agent.stderr_log());
    Ok(())
}

/// Regression: with `X-API-Key` and `x-api-key` both present, the decision
/// used to depend on hash order (the same request was allowed about half the
/// time and denied the other half).
#[tokio::test]
async fn header_names_differing_only_in_case_are_refused() -> anyhow::Result<()> {
    let agent = AgentProcess::start(&options(policy_data(None))).await?;
    let mut client = agent.client().await?;
    for i in 0..20 {
        let r = execute(
            &mut client,
            users_get(
                &format!("10.0.9.{i}"),
                &[("X-API-Key", ALICE_KEY), ("x-api-key", UNKNOWN_KEY)],
            ),
        )
        .await?;
        assert_eq!(
            assert_policy_error(&r, 400)?,
            "invalid request: request header `x-api-key` is given more than once (names differ only in case)"
        );
    }
    let r = execute(
        &mut client,
        response_phase(
            USERS,
            users_response_chain(),
            request_context("GET", "/api/v1/users", "10.0.9.1", &[]),
            response_context(
                200,
                &[
                    ("Content-Type", "application/json"),
                    ("content-type", "text/plain"),
                ],
                br#"{"internal_id":1}"#,
            ),
            Vec::new(),
        ),
    )
    .await?;
    assert_eq!(
        assert_policy_error(&r, 400)?,
        "invalid request: response header `content-type` is given more than once (names differ only in case)"
    );
    assert_still_serving(&mut client).await?;
    Ok(())
}
