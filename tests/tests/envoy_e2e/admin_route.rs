//! `/api/v1/admin`: jwtValidation then roleCheck on the request, auditLog
//! (read-only) on the response.

use anyhow::ensure;
use policy_engine_tests::stack::ADMIN_ROUTE;
use policy_engine_tests::{RsaSigner, now_seconds, unsigned_token};

use super::*;

fn claims(sub: &str, roles: &[&str], exp_offset_seconds: i64) -> Value {
    let now = now_seconds();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "roles": roles,
        "iat": now - 30,
        "nbf": now - 30,
        "exp": now + exp_offset_seconds,
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn admin_get(id: &str, authorization: Option<&str>) -> HttpRequest {
    HttpRequest::get(&format!("{ADMIN_ROUTE}/settings"))
        .header("x-test-id", id)
        .header_opt("authorization", authorization)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_route_requires_a_valid_admin_jwt() -> anyhow::Result<()> {
    let signer = RsaSigner::generate()?;
    let other_signer = RsaSigner::generate()?;
    let stack = Stack::start(StackOptions {
        jwt_public_key_pem: Some(signer.public_key_pem()?),
        ..options()
    })
    .await?;
    let bearer = |t: String| format!("Bearer {t}");

    // Every rejected token: 401 with the Bearer challenge and the reason.
    let unauthenticated: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "token missing"),
        (
            "expired an hour ago",
            Some(bearer(signer.sign(&claims("alice", &["admin"], -3600))?)),
            "token expired",
        ),
        (
            "signed with another key",
            Some(bearer(other_signer.sign(&claims(
                "alice",
                &["admin"],
                600,
            ))?)),
            "invalid signature",
        ),
        (
            "wrong issuer",
            Some(bearer(signer.sign(&with(
                claims("alice", &["admin"], 600),
                "iss",
                json!("https://evil.example.com"),
            ))?)),
            "issuer mismatch",
        ),
        (
            "wrong audience",
            Some(bearer(signer.sign(&with(
                claims("alice", &["admin"], 600),
                "aud",
                json!("another-service"),
            ))?)),
            "audience mismatch",
        ),
        (
            "alg none",
            Some(bearer(unsigned_token(&claims("alice", &["admin"], 600))?)),
            "unsigned token rejected",
        ),
    ];
    for (what, authorization, reason) in unauthenticated {
        let id = test_id("admin-401");
        let r = stack
            .send(&admin_get(&id, authorization.as_deref()))
            .await?;
        expect_status(&stack, what, &r, 401)?;
        ensure!(
            r.header("www-authenticate") == Some("Bearer error=\"invalid_token\""),
            "{what}: want the Bearer challenge:\n{}",
            r.summary()
        );
        expect_error_body(what, &r, reason)?;
        expect_upstream_saw(&stack, what, &id, 0)?;
    }

    // A valid token without the admin role (Bob: reader by claim and binding).
    let id = test_id("admin-403");
    let token = bearer(signer.sign(&claims("bob", &["reader"], 600))?);
    let r = stack.send(&admin_get(&id, Some(&token))).await?;
    expect_status(&stack, "valid token without the admin role", &r, 403)?;
    expect_error_body("valid token without the admin role", &r, "forbidden")?;
    expect_upstream_saw(&stack, "valid token without the admin role", &id, 0)?;

    // Alice's admin token: through, response untouched (auditLog only
    // reads it: no security headers, internal_id kept).
    let id = test_id("admin-200");
    let token = bearer(signer.sign(&claims("alice", &["admin"], 600))?);
    let r = stack.send(&admin_get(&id, Some(&token))).await?;
    expect_status(&stack, "admin token", &r, 200)?;
    expect_upstream_saw(&stack, "admin token", &id, 1)?;
    let body = r.json()?;
    ensure!(
        body["internal_id"] == "usr-7f3a" && body["path"] == "/api/v1/admin/settings",
        "admin route: the upstream's body should pass unchanged:\n{}",
        r.summary()
    );
    ensure!(
        r.header("x-frame-options").is_none() && r.header("x-content-type-options").is_none(),
        "admin route has no addSecurityHeaders:\n{}",
        r.summary()
    );
    Ok(())
}
