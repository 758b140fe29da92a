//! `/api/v1/users` request chain (apiKeyAuth + rateLimit).

use super::*;

#[tokio::test]
async fn authenticates_by_api_key() -> anyhow::Result<()> {
    let agent = AgentProcess::start(&options(policy_data(None))).await?;
    let mut client = agent.client().await?;

    // No key: 401 with WWW-Authenticate, and the rate limiter is not reached.
    let r = execute(&mut client, users_get("10.0.0.1", &[])).await?;
    let (headers, body) = assert_denied(&r, "apiKeyAuth", 401, "API key required")?;
    assert_eq!(
        headers,
        HashMap::from([("WWW-Authenticate".into(), "API-Key".into())])
    );
    assert_eq!(body, json!({"error": "API key required"}));
    assert_eq!(
        r.outcome_list(),
        vec![("apiKeyAuth", StatusCode::PolicyDenied, "API key required")]
    );
    assert_eq!(
        r.instruction_types(),
        vec![InstructionType::ImmediateResponse]
    );

    // An empty key is no key.
    let r = execute(&mut client, users_get("10.0.0.1", &[("X-API-Key", "")])).await?;
    assert_denied(&r, "apiKeyAuth", 401, "API key required")?;

    // A key that is not in the data: 403.
    let r = execute(
        &mut client,
        users_get("10.0.0.1", &[("X-API-Key", UNKNOWN_KEY)]),
    )
    .await?;
    let (headers, body) = assert_denied(&r, "apiKeyAuth", 403, "Invalid API key")?;
    assert!(headers.is_empty(), "{headers:?}");
    assert_eq!(body, json!({"error": "Invalid API key"}));
    assert_eq!(r.outcome_list().len(), 1, "{r:?}");

    // A good key (header name in any case): OK, X-User-ID set, state user.
    let r = execute(
        &mut client,
        users_get("10.0.0.1", &[("x-api-key", ALICE_KEY)]),
    )
    .await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert_eq!(r.policy_name(), "");
    assert_eq!(r.set_headers(), vec![("X-User-ID", "alice")]);
    assert_eq!(
        r.instruction_types(),
        vec![InstructionType::SetHeader, InstructionType::SetState]
    );
    assert!(r.immediate().is_none(), "{r:?}");
    assert_eq!(r.state(), json!({"user": "alice"}));
    assert_eq!(r.meta("auth_method"), Some("api_key"));
    assert_eq!(r.meta("rate_limit_key"), Some("client_ip"));
    assert_eq!(r.meta("rate_limit_limit"), Some("20"));
    assert_eq!(r.meta("rate_limit_remaining"), Some("19"));
    assert_eq!(
        r.outcome_list(),
        vec![
            ("apiKeyAuth", StatusCode::Ok, "API key valid"),
            ("rateLimit", StatusCode::Ok, "within rate limit"),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn answers_429_with_retry_after_once_the_bucket_is_empty() -> anyhow::Result<()> {
    let agent = AgentProcess::start(&options(policy_data(None))).await?;
    let mut client = agent.client().await?;
    let chain = vec![
        policy(
            "apiKeyAuth",
            &[("header_name", "X-API-Key"), ("required", "true")],
        ),
        policy("rateLimit", &[("requests_per_second", "1"), ("burst", "2")]),
    ];
    let get = |ip: &str| {
        request_phase(
            USERS,
            chain.clone(),
            request_context("GET", "/api/v1/users", ip, &[("X-API-Key", ALICE_KEY)]),
        )
    };

    // Compile the chain first, from another client, so the three takes below
    // happen well within one refill period.
    let r = execute(&mut client, get("10.0.1.99")).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");

    for remaining in ["1", "0"] {
        let r = execute(&mut client, get("10.0.1.1")).await?;
        assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
        assert_eq!(r.meta("rate_limit_remaining"), Some(remaining), "{r:?}");
    }
    let r = execute(&mut client, get("10.0.1.1")).await?;
    let (headers, body) = assert_denied(&r, "rateLimit", 429, "rate limit exceeded")?;
    assert_eq!(headers, HashMap::from([("Retry-After".into(), "1".into())]));
    assert_eq!(body, json!({"error": "rate limit exceeded"}));
    assert_eq!(r.meta("rate_limit_limit"), Some("2"));
    assert_eq!(r.meta("rate_limit_remaining"), Some("0"));
    assert_eq!(
        r.outcome_list(),
        vec![
            ("apiKeyAuth", StatusCode::Ok, "API key valid"),
            ("rateLimit", StatusCode::PolicyDenied, "rate limit exceeded"),
        ]
    );

    // Buckets are per client: another client is still allowed.
    let r = execute(&mut client, get("10.0.1.2")).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    Ok(())
}
