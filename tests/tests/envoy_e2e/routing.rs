//! Which chain a request gets: Envoy's route name (the `xds.route_name`
//! attribute), never a client header; unrouted paths get the default
//! policy (allowAll) and no response processing.

use anyhow::ensure;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_paths_get_the_default_policy_without_response_processing() -> anyhow::Result<()> {
    let stack = Stack::start(options()).await?;
    let before = stack.metrics().await?;
    let default_allowed = |m: &policy_engine_tests::stack::MetricsText| {
        m.value(
            "policy_kernel_requests_total",
            &[
                ("route", "default"),
                ("agent", "default-agent"),
                ("status", "allowed"),
            ],
        )
        .unwrap_or(0.0)
    };
    for path in ["/public/info", "/", "/api/v2/users"] {
        let id = test_id("default");
        let r = stack
            .send(&HttpRequest::get(path).header("x-test-id", &id))
            .await?;
        expect_status(&stack, path, &r, 200)?;
        expect_upstream_saw(&stack, path, &id, 1)?;
        let body = r.json()?;
        ensure!(
            body["internal_id"] == "usr-7f3a" && body["profile"]["internal_id"] == 4711,
            "{path}: no response chain, so internal_id stays:\n{}",
            r.summary()
        );
        ensure!(
            r.header("x-frame-options").is_none(),
            "{path}: no security headers on the default route:\n{}",
            r.summary()
        );
        ensure!(
            body["received_headers"].get("x-user-id").is_none(),
            "{path}: allowAll sets no identity:\n{}",
            r.summary()
        );
    }
    // One evaluated phase per request (the request; Envoy skips the
    // response headers on this route and the kernel has no chain for them).
    let after = stack.metrics().await?;
    ensure!(
        default_allowed(&after) - default_allowed(&before) == 3.0,
        "want 3 more allowed request phases on route `default`:\n{}",
        after.text
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_comes_from_envoy_not_from_the_client() -> anyhow::Result<()> {
    let stack = Stack::start(options()).await?;

    // A users request claiming the admin route still gets the users chain.
    let id = test_id("claims-admin");
    let r = stack
        .send(&users_get(&id, Some(ALICE_KEY)).header("x-route-name", "/api/v1/admin"))
        .await?;
    expect_status(
        &stack,
        "users request with x-route-name: /api/v1/admin",
        &r,
        200,
    )?;
    ensure!(
        r.header("x-frame-options") == Some("DENY") && !has_internal_id(&r.json()?),
        "the users response chain must have run:\n{}",
        r.summary()
    );
    let seen = stack.upstream().seen_with("x-test-id", &id);
    ensure!(
        seen.len() == 1
            && seen
                .iter()
                .all(|s| s.header("x-user-id") == Some("alice")
                    && s.header("x-route-name").is_none()),
        "the upstream should see Alice and no x-route-name (Envoy strips it): {seen:?}"
    );

    // A users request without a key claiming the default route: still 401.
    let id = test_id("claims-default");
    let r = stack
        .send(&users_get(&id, None).header("x-route-name", "default"))
        .await?;
    expect_status(&stack, "users request with x-route-name: default", &r, 401)?;
    expect_upstream_saw(&stack, "users request with x-route-name: default", &id, 0)?;

    // An unrouted request claiming a protected route: still the default.
    for claimed in ["/api/v1/admin", "/api/v1/users"] {
        let id = test_id("claims-protected");
        let r = stack
            .send(
                &HttpRequest::get("/public/info")
                    .header("x-test-id", &id)
                    .header("x-route-name", claimed),
            )
            .await?;
        expect_status(&stack, &format!("/public/info claiming {claimed}"), &r, 200)?;
        ensure!(
            r.header("x-frame-options").is_none(),
            "/public/info claiming {claimed} must not get that route's response chain:\n{}",
            r.summary()
        );
    }

    // Paths that normalize to the admin route get the admin chain.
    for path in [
        "/API/V1/ADMIN",
        "/api/v1//admin",
        "/api/v1/users/../admin",
        "/api/v1/./admin/x",
        "/api/v1/%61dmin",
    ] {
        let id = test_id("normalized");
        let r = stack
            .send(&HttpRequest::get(path).header("x-test-id", &id))
            .await?;
        expect_status(&stack, &format!("GET {path} without a token"), &r, 401)?;
        expect_error_body(path, &r, "token missing")?;
        expect_upstream_saw(&stack, path, &id, 0)?;
    }

    // An escaped slash is redirected to the unescaped path, not routed.
    let r = stack.get("/api/v1%2Fadmin").await?;
    expect_status(&stack, "GET /api/v1%2Fadmin", &r, 307)?;
    ensure!(
        r.header("location") == Some("/api/v1/admin"),
        "want a redirect to /api/v1/admin:\n{}",
        r.summary()
    );

    // The kernel counted these under the configured names only.
    let metrics = stack.metrics().await?;
    let routes: std::collections::BTreeSet<&str> = metrics
        .find("policy_kernel_requests_total", &[])
        .iter()
        .filter_map(|s| s.labels.get("route").map(String::as_str))
        .collect();
    ensure!(
        routes
            .iter()
            .all(|r| ["/api/v1/users", "/api/v1/admin", "default"].contains(r)),
        "route labels must be configured names only, got {routes:?}"
    );
    Ok(())
}
