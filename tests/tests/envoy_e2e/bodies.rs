//! Bodies over the agent's `max_body_size_bytes` on a route whose chain
//! runs on the body: a clear deny (the agent's 413), never a pass-through
//! and never an untransformed response. Bodies over Envoy's own buffer
//! limit (1 MiB, the listener's default) never reach the kernel: Envoy
//! denies them itself.

use anyhow::ensure;
use policy_engine_tests::stack::{UPLOAD_PATH, UPLOAD_ROUTE};

use super::*;

/// The agent's limit in this test.
const LIMIT: usize = 64 * 1024;

fn json_of_size(bytes: usize) -> Vec<u8> {
    let body = json!({"internal_id": "big", "data": "y".repeat(bytes)});
    body.to_string().into_bytes()
}

/// A 413 from the agent: `{"error": "... over the limit ...", "code": "body_too_large"}`.
fn expect_too_large(stack: &Stack, what: &str, r: &HttpResponse) -> anyhow::Result<()> {
    expect_status(stack, what, r, 413)?;
    let body = r.json()?;
    ensure!(
        body["code"] == "body_too_large"
            && body["error"]
                .as_str()
                .is_some_and(|e| e.contains(&LIMIT.to_string())),
        "{what}: want the agent's body_too_large error naming the limit:\n{}",
        r.summary()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_agent_limit_are_denied() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        agent_max_body_size_bytes: LIMIT,
        ..options()
    })
    .await?;

    // Request body route: a small body goes through, whole.
    let id = test_id("upload-small");
    let small = json_of_size(1024);
    let r = stack
        .send(
            &HttpRequest::post(UPLOAD_PATH, "application/json", small.clone())
                .header("x-test-id", &id),
        )
        .await?;
    expect_status(&stack, "small upload", &r, 200)?;
    let seen = stack.upstream().seen_with("x-test-id", &id);
    ensure!(
        seen.len() == 1 && seen.iter().all(|s| s.body == small),
        "the upstream should get the small body whole: {:?}",
        seen.iter().map(|s| s.body.len()).collect::<Vec<_>>()
    );

    // A JSON body over the limit: 413, and it never reaches the upstream.
    let id = test_id("upload-big");
    let r = stack
        .send(
            &HttpRequest::post(UPLOAD_PATH, "application/json", json_of_size(4 * LIMIT))
                .header("x-test-id", &id),
        )
        .await?;
    expect_too_large(&stack, "upload over the limit", &r)?;
    expect_upstream_saw(&stack, "upload over the limit", &id, 0)?;

    // Response body route (/api/v1/users transforms the body): a response
    // over the limit is replaced by the 413, never passed untransformed.
    let id = test_id("users-big");
    let request = HttpRequest::get(&format!("{USERS_ROUTE}?pad={}", 4 * LIMIT))
        .header("x-test-id", &id)
        .header("x-api-key", ALICE_KEY);
    let r = stack.send(&request).await?;
    expect_too_large(&stack, "users response over the limit", &r)?;
    ensure!(
        !r.text().contains("internal_id") && !r.text().contains("xxxx"),
        "the upstream's body must not leak:\n{}",
        r.summary()
    );

    // Over Envoy's 1 MiB buffer: Envoy's own 413 for the request body and
    // 500 for the response body, and neither is passed on.
    let id = test_id("upload-huge");
    let r = stack
        .send(
            &HttpRequest::post(UPLOAD_PATH, "application/json", json_of_size(2 << 20))
                .header("x-test-id", &id),
        )
        .await?;
    expect_status(&stack, "upload over Envoy's buffer", &r, 413)?;
    expect_upstream_saw(&stack, "upload over Envoy's buffer", &id, 0)?;
    let request =
        HttpRequest::get(&format!("{USERS_ROUTE}?pad={}", 2 << 20)).header("x-api-key", ALICE_KEY);
    let r = stack.send(&request).await?;
    expect_status(&stack, "users response over Envoy's buffer", &r, 500)?;
    ensure!(
        !r.text().contains("internal_id") && !r.text().contains("xxxx"),
        "the upstream's body must not leak:\n{}",
        r.summary()
    );
    let m = stack.metrics().await?;
    let too_large = m.value(
        "policy_kernel_requests_total",
        &[
            ("route", UPLOAD_ROUTE),
            ("agent", "default-agent"),
            ("status", "policy_error"),
        ],
    );
    ensure!(
        too_large == Some(1.0),
        "the agent's 413 on `{UPLOAD_ROUTE}` is a policy_error of that route:\n{}",
        m.text
    );

    // Under the limit the same route still works.
    let r = stack
        .send(&users_get(&test_id("users-small"), Some(ALICE_KEY)))
        .await?;
    expect_status(&stack, "users response under the limit", &r, 200)?;
    ensure!(!has_internal_id(&r.json()?), "{}", r.summary());
    Ok(())
}
