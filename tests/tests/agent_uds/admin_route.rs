//! `/api/v1/admin` request chain (jwtValidation + roleCheck) with tokens
//! signed by a key generated for the test.

use policy_engine_tests::hs256_token;

use super::*;

#[tokio::test]
async fn validates_the_jwt_then_requires_the_admin_role() -> anyhow::Result<()> {
    let signer = RsaSigner::generate()?;
    let other_signer = RsaSigner::generate()?;
    let public_key_pem = signer.public_key_pem()?;
    let agent = AgentProcess::start(&options(policy_data(Some(&public_key_pem)))).await?;
    let mut client = agent.client().await?;
    let bearer = |t: &str| format!("Bearer {t}");
    let www_authenticate = HashMap::from([(
        "WWW-Authenticate".to_string(),
        "Bearer error=\"invalid_token\"".to_string(),
    )]);

    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "token missing"),
        (
            "not a bearer token",
            Some("Basic YWxpY2U6c2VjcmV0".into()),
            "malformed authorization header",
        ),
        ("malformed", Some(bearer("not-a.jwt")), "malformed token"),
        (
            "expired",
            Some(bearer(&signer.sign(&claims("alice", &["admin"], -3600))?)),
            "token expired",
        ),
        (
            "signed with another key",
            Some(bearer(&other_signer.sign(&claims(
                "alice",
                &["admin"],
                600,
            ))?)),
            "invalid signature",
        ),
        (
            "alg none",
            Some(bearer(&unsigned_token(&claims("alice", &["admin"], 600))?)),
            "unsigned token rejected",
        ),
        (
            "alg none with a signature",
            Some(bearer(&signer.sign_with_header(
                &json!({"alg": "none", "typ": "JWT"}),
                &claims("alice", &["admin"], 600),
            )?)),
            "unsigned token rejected",
        ),
        (
            "HS256 keyed with the RSA public key (algorithm confusion)",
            Some(bearer(&hs256_token(
                public_key_pem.as_bytes(),
                &claims("alice", &["admin"], 600),
            )?)),
            "algorithm not allowed",
        ),
        (
            "another issuer",
            Some(bearer(&signer.sign(&json!({
                "iss": "https://evil.example.com", "aud": AUDIENCE, "sub": "alice",
                "roles": ["admin"], "exp": now_seconds() + 600
            }))?)),
            "issuer mismatch",
        ),
        (
            "another audience",
            Some(bearer(&signer.sign(&json!({
                "iss": ISSUER, "aud": "billing-service", "sub": "alice",
                "roles": ["admin"], "exp": now_seconds() + 600
            }))?)),
            "audience mismatch",
        ),
    ];
    for (case, authorization, message) in cases {
        let r = execute(&mut client, admin_get(authorization.as_deref())).await?;
        let (headers, body) = assert_denied(&r, "jwtValidation", 401, message)?;
        assert_eq!(headers, www_authenticate, "{case}");
        assert_eq!(body, json!({"error": message}), "{case}");
        assert_eq!(
            r.outcome_list().len(),
            1,
            "{case}: roleCheck must not run: {r:?}"
        );
    }

    // A valid token without the admin role: 403 from roleCheck.
    let reader = signer.sign(&claims("bob", &["reader"], 600))?;
    let r = execute(&mut client, admin_get(Some(&bearer(&reader)))).await?;
    let (headers, body) = assert_denied(&r, "roleCheck", 403, "requires one of the roles: admin")?;
    assert!(headers.is_empty(), "{headers:?}");
    assert_eq!(body, json!({"error": "forbidden"}));
    assert_eq!(
        r.outcome_list(),
        vec![
            ("jwtValidation", StatusCode::Ok, "token valid"),
            (
                "roleCheck",
                StatusCode::PolicyDenied,
                "requires one of the roles: admin"
            ),
        ]
    );

    // An admin: OK, with the claims and the user in the state.
    let admin_claims = claims("alice", &["admin", "reader"], 600);
    let admin = signer.sign(&admin_claims)?;
    let r = execute(&mut client, admin_get(Some(&bearer(&admin)))).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert!(r.immediate().is_none(), "{r:?}");
    assert_eq!(r.meta("auth_method"), Some("jwt"));
    assert_eq!(r.state(), json!({"claims": admin_claims, "user": "alice"}));
    assert_eq!(
        r.outcome_list(),
        vec![
            ("jwtValidation", StatusCode::Ok, "token valid"),
            ("roleCheck", StatusCode::Ok, "required roles present"),
        ]
    );
    Ok(())
}
