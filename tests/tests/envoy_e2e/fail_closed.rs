//! Fail closed: with the agent gone every chain is denied with 503
//! (`fail_open: false`), nothing reaches the upstream, and once the agent
//! is back the kernel uses it again without a restart.

use anyhow::ensure;
use policy_engine_tests::stack::{ADMIN_ROUTE, eventually};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_down_means_503_and_its_return_means_service() -> anyhow::Result<()> {
    let mut stack = Stack::start(options()).await?;
    let id = test_id("before");
    let r = stack.send(&users_get(&id, Some(ALICE_KEY))).await?;
    expect_status(&stack, "before the agent stops", &r, 200)?;

    stack.stop_agent();
    // Every route needs the agent, the default policy too.
    for round in 0..3 {
        let id = test_id("down");
        for request in [
            users_get(&id, Some(ALICE_KEY)),
            HttpRequest::get("/public/info").header("x-test-id", &id),
            HttpRequest::get(&format!("{ADMIN_ROUTE}/x")).header("x-test-id", &id),
        ] {
            let what = format!("{} with the agent down (round {round})", request.path);
            let r = stack.send(&request).await?;
            expect_status(&stack, &what, &r, 503)?;
            expect_error_body(&what, &r, "agent_unavailable")?;
        }
        expect_upstream_saw(&stack, "requests with the agent down", &id, 0)?;
    }
    let metrics = stack.metrics().await?;
    let unavailable = metrics
        .value(
            "policy_kernel_requests_total",
            &[
                ("route", USERS_ROUTE),
                ("agent", "default-agent"),
                ("status", "agent_unavailable"),
            ],
        )
        .unwrap_or(0.0);
    ensure!(
        unavailable == 3.0,
        "want 3 agent_unavailable users requests, got {unavailable}:\n{}",
        metrics.text
    );

    stack.restart_agent().await?;
    let stack = &stack;
    // The restarted agent compiles each chain again on first use, so the
    // first requests may still time out; the kernel must get there alone.
    eventually("requests allowed again", CHANGE_DEADLINE, || async move {
        let r = stack
            .send(&users_get(&test_id("back"), Some(ALICE_KEY)))
            .await?;
        ensure!(r.status == 200, "{}", r.summary());
        let r = stack.get("/public/info").await?;
        ensure!(r.status == 200, "{}", r.summary());
        Ok(())
    })
    .await
    .map_err(|e| e.context(stack.logs(30)))?;
    // And it stays that way.
    for _ in 0..5 {
        let id = test_id("after");
        let r = stack.send(&users_get(&id, Some(ALICE_KEY))).await?;
        expect_status(stack, "after the agent is back", &r, 200)?;
        expect_upstream_saw(stack, "after the agent is back", &id, 1)?;
        let r = stack.get("/public/info").await?;
        expect_status(stack, "default route after the agent is back", &r, 200)?;
    }
    eventually("/health/ready 200 again", CHANGE_DEADLINE, || async move {
        let (status, detail) = stack.readiness().await?;
        ensure!(
            status == 200 && detail["ready"] == true,
            "{status} {detail}"
        );
        Ok(())
    })
    .await?;
    Ok(())
}
