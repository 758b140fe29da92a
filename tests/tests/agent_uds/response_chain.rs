//! The `/api/v1/users` response chain (addSecurityHeaders +
//! responseBodyTransform) and chain state carried from the request phase to
//! the response phase.

use super::*;

#[tokio::test]
async fn adds_security_headers_and_removes_internal_id() -> anyhow::Result<()> {
    let agent = AgentProcess::start(&options(policy_data(None))).await?;
    let mut client = agent.client().await?;
    let request = || {
        request_context(
            "GET",
            "/api/v1/users/7",
            "10.0.2.1",
            &[("X-API-Key", ALICE_KEY)],
        )
    };
    let respond = |content_type: &str, body: &[u8]| {
        response_phase(
            USERS,
            users_response_chain(),
            request(),
            response_context(200, &[("Content-Type", content_type)], body),
            br#"{"user":"alice"}"#.to_vec(),
        )
    };
    let security_headers = vec![
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
    ];

    let body = json!({
        "id": 7,
        "internal_id": "u-7",
        "name": "Ann",
        "note": "the value internal_id stays",
        "internal_ids": [1, 2],
        "profile": {
            "internal_id": 70,
            "email": "ann@example.com",
            "address": {"internal_id": null, "city": "Oslo"}
        },
        "orders": [
            {"internal_id": 1, "sku": "A"},
            {"sku": "B", "lines": [{"internal_id": "l-1", "qty": 2}, [{"internal_id": 3, "x": true}]]}
        ]
    });
    let r = execute(
        &mut client,
        respond("application/json", &serde_json::to_vec(&body)?),
    )
    .await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert_eq!(r.set_headers(), security_headers);
    assert_eq!(
        r.instruction_types(),
        vec![
            InstructionType::SetHeader,
            InstructionType::SetHeader,
            InstructionType::SetBody
        ]
    );
    let [new_body] = r.set_bodies()[..] else {
        panic!("one SET_BODY expected: {r:?}");
    };
    assert_eq!(
        serde_json::from_slice::<Value>(new_body)?,
        json!({
            "id": 7,
            "name": "Ann",
            "note": "the value internal_id stays",
            "internal_ids": [1, 2],
            "profile": {"email": "ann@example.com", "address": {"city": "Oslo"}},
            "orders": [
                {"sku": "A"},
                {"sku": "B", "lines": [{"qty": 2}, [{"x": true}]]}
            ]
        })
    );
    assert_eq!(r.state(), json!({"user": "alice"}));

    // A top-level array.
    let r = execute(
        &mut client,
        respond(
            "application/json; charset=utf-8",
            br#"[{"internal_id":1,"a":1},{"b":[{"internal_id":2}]}]"#,
        ),
    )
    .await?;
    let [new_body] = r.set_bodies()[..] else {
        panic!("one SET_BODY expected: {r:?}");
    };
    assert_eq!(
        serde_json::from_slice::<Value>(new_body)?,
        json!([{"a": 1}, {"b": [{}]}])
    );

    // JSON without the field: headers only.
    let r = execute(
        &mut client,
        respond("application/json", br#"{"id":1,"tags":["internal_id"]}"#),
    )
    .await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert_eq!(r.set_headers(), security_headers);
    assert!(r.set_bodies().is_empty(), "{r:?}");

    // Bodies that are not JSON are left untouched: text, and malformed JSON.
    for (content_type, body) in [
        ("text/plain", &b"internal_id=42; name=Ann"[..]),
        ("application/json", &b"{\"internal_id\": 42,"[..]),
        ("text/html", &b"<p>{\"internal_id\": 1}</p>"[..]),
    ] {
        let r = execute(&mut client, respond(content_type, body)).await?;
        assert_eq!(r.code(), StatusCode::Ok, "{content_type}: {r:?}");
        assert_eq!(r.set_headers(), security_headers, "{content_type}");
        assert_eq!(
            r.instruction_types(),
            vec![InstructionType::SetHeader, InstructionType::SetHeader],
            "{content_type}: {r:?}"
        );
        assert_eq!(
            r.outcome_list(),
            vec![
                (
                    "addSecurityHeaders",
                    StatusCode::Ok,
                    "security headers added"
                ),
                (
                    "responseBodyTransform",
                    StatusCode::Ok,
                    "response body is not JSON"
                ),
            ],
            "{content_type}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn request_phase_state_reaches_the_response_phase() -> anyhow::Result<()> {
    let signer = RsaSigner::generate()?;
    let agent = AgentProcess::start(&options(policy_data(Some(&signer.public_key_pem()?)))).await?;
    let mut client = agent.client().await?;

    // /api/v1/admin: the JWT's claims and user, then auditLog in the response phase.
    let admin_claims = claims("alice", &["admin"], 600);
    let authorization = format!("Bearer {}", signer.sign(&admin_claims)?);
    let req = admin_get(Some(&authorization));
    let context = req.context.clone().unwrap_or_default();
    let r = execute(&mut client, req).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    let state = r.state_json.clone();
    let response = response_context(
        200,
        &[("Content-Type", "application/json")],
        br#"{"ok":true}"#,
    );
    let r = execute(
        &mut client,
        response_phase(
            ADMIN,
            admin_response_chain(),
            context.clone(),
            response.clone(),
            state,
        ),
    )
    .await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert_eq!(
        r.metadata,
        HashMap::from([
            ("audit".into(), "full".into()),
            ("audit_request_body".into(), "false".into()),
            ("audit_response_body".into(), "true".into()),
        ])
    );
    assert_eq!(r.state(), json!({"claims": admin_claims, "user": "alice"}));
    assert_eq!(
        r.outcome_list(),
        vec![("auditLog", StatusCode::Ok, "audit")]
    );
    // Without the state the response phase knows no user.
    let r = execute(
        &mut client,
        response_phase(ADMIN, admin_response_chain(), context, response, Vec::new()),
    )
    .await?;
    assert_eq!(r.state(), json!({}));

    // /api/v1/users: the API key's user.
    let req = users_get("10.0.4.1", &[("X-API-Key", ALICE_KEY)]);
    let context = req.context.clone().unwrap_or_default();
    let r = execute(&mut client, req).await?;
    assert_eq!(r.state(), json!({"user": "alice"}));
    let r = execute(
        &mut client,
        response_phase(
            USERS,
            users_response_chain(),
            context,
            response_context(
                200,
                &[("Content-Type", "application/json")],
                br#"{"internal_id":1}"#,
            ),
            r.state_json.clone(),
        ),
    )
    .await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert_eq!(r.state(), json!({"user": "alice"}));

    // State that is not a JSON object is a clear error.
    let mut bad = response_phase(
        USERS,
        users_response_chain(),
        request_context("GET", "/api/v1/users", "10.0.4.1", &[]),
        response_context(200, &[], b""),
        b"[\"user\"]".to_vec(),
    );
    bad.request_id = "bad-state".into();
    let r = execute(&mut client, bad).await?;
    assert_eq!(
        assert_policy_error(&r, 400)?,
        "invalid request: state_json must be a JSON object"
    );
    assert_eq!(r.request_id, "bad-state");
    Ok(())
}
