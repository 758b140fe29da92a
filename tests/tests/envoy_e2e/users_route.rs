//! `/api/v1/users`: apiKeyAuth and rateLimit on the request, security
//! headers and the `internal_id` removal on the (buffered) response.

use anyhow::{Context as _, ensure};
use policy_engine_tests::stack::upstream::document;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_route_authenticates_transforms_and_rate_limits() -> anyhow::Result<()> {
    users_route(false, false).await
}

/// The same behaviour with the agent core inside the kernel
/// (`policy-kernel --embedded-agent`, no Unix socket hop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_route_behaves_the_same_with_the_embedded_agent() -> anyhow::Result<()> {
    users_route(true, false).await
}

/// The same with the embedded agent on one CPU (`taskset -c 0`): the
/// kernel's one-thread runtime that writes each answer before the next
/// evaluation (`OneCpu::AnswerFirst`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_route_behaves_the_same_with_the_embedded_agent_on_one_cpu() -> anyhow::Result<()> {
    users_route(true, true).await
}

/// The same with the kernel on one CPU in front of its agent: the
/// kernel's one-thread runtime that batches (`OneCpu::Batch`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_route_behaves_the_same_with_the_kernel_on_one_cpu() -> anyhow::Result<()> {
    users_route(false, true).await
}

async fn users_route(embedded_agent: bool, kernel_one_cpu: bool) -> anyhow::Result<()> {
    // A bucket of 3 that refills one token per 100 s: nothing refills
    // while the test runs.
    let stack = Stack::start(StackOptions {
        users_requests_per_second: 0.01,
        users_burst: 3,
        embedded_agent,
        kernel_one_cpu,
        ..options()
    })
    .await?;

    // No key: 401 with the challenge, and the request never goes upstream.
    let id = test_id("nokey");
    let r = stack.send(&users_get(&id, None)).await?;
    expect_status(&stack, "no API key", &r, 401)?;
    ensure!(
        r.header("www-authenticate") == Some("API-Key"),
        "no API key: want `www-authenticate: API-Key`:\n{}",
        r.summary()
    );
    expect_error_body("no API key", &r, "API key required")?;
    expect_upstream_saw(&stack, "no API key", &id, 0)?;

    // Unknown key: 403.
    let id = test_id("badkey");
    let r = stack.send(&users_get(&id, Some(UNKNOWN_KEY))).await?;
    expect_status(&stack, "unknown API key", &r, 403)?;
    expect_error_body("unknown API key", &r, "Invalid API key")?;
    expect_upstream_saw(&stack, "unknown API key", &id, 0)?;

    // Alice's key (token 1 of 3); a client-sent x-user-id is overwritten.
    let id = test_id("alice");
    let request = users_get(&id, Some(ALICE_KEY)).header("x-user-id", "mallory");
    let r = stack.send(&request).await?;
    expect_status(&stack, "Alice's key", &r, 200)?;
    expect_upstream_saw(&stack, "Alice's key", &id, 1)?;
    let seen = stack
        .upstream()
        .seen_with("x-test-id", &id)
        .pop()
        .context("seen above")?;
    ensure!(
        seen.header("x-user-id") == Some("alice"),
        "the upstream should get `x-user-id: alice` (set by apiKeyAuth, replacing the client's), got {:?}",
        seen.headers
    );
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("content-type", "application/json"),
    ] {
        ensure!(
            r.header_all(name) == [value],
            "Alice's key: want exactly one `{name}: {value}`:\n{}",
            r.summary()
        );
    }
    // The body is the upstream's document without any internal_id, every
    // other field intact, and content-length is its real length.
    let body = r.json()?;
    let sent = document(&seen.path, &seen.method, &seen.headers, seen.body.len());
    ensure!(
        has_internal_id(&sent),
        "the demo upstream should send internal_id fields"
    );
    ensure!(
        body == without_internal_ids(&sent),
        "Alice's key: want the upstream document without internal_id:\n{}\ngot:\n{}",
        serde_json::to_string_pretty(&without_internal_ids(&sent))?,
        r.summary()
    );
    ensure!(
        body["profile"]["email"] == "alice@example.com"
            && body["profile"]["address"]["city"] == "Lisbon"
            && body["items"] == json!([{"sku": "A-1"}, {"sku": "B-2"}]),
        "nested fields other than internal_id must stay:\n{}",
        r.summary()
    );
    ensure!(
        r.content_length()? == Some(r.body.len()),
        "content-length must be the transformed body's length ({} bytes):\n{}",
        r.body.len(),
        r.summary()
    );

    // Tokens 2 and 3, then the bucket is empty: 429 with Retry-After, and
    // the limited request never goes upstream.
    for n in 2..=3 {
        let id = test_id("burst");
        let r = stack.send(&users_get(&id, Some(ALICE_KEY))).await?;
        expect_status(&stack, &format!("token {n} of 3"), &r, 200)?;
        expect_upstream_saw(&stack, "within the burst", &id, 1)?;
    }
    for _ in 0..2 {
        let id = test_id("limited");
        let r = stack.send(&users_get(&id, Some(ALICE_KEY))).await?;
        expect_status(&stack, "burst exhausted", &r, 429)?;
        let retry_after: u64 = r
            .header("retry-after")
            .with_context(|| format!("429 without retry-after:\n{}", r.summary()))?
            .parse()
            .with_context(|| format!("retry-after is not whole seconds:\n{}", r.summary()))?;
        ensure!(
            (1..=100).contains(&retry_after),
            "retry-after {retry_after} s: one token per 100 s means 1..=100"
        );
        expect_error_body("burst exhausted", &r, "rate limit exceeded")?;
        expect_upstream_saw(&stack, "burst exhausted", &id, 0)?;
    }
    // Idle polling (ADR 0009): by default only for the kernel in front of
    // an agent, pinned to one CPU.
    let kernel_log = std::fs::read_to_string(stack.dir().join("kernel.log"))?;
    let want = if kernel_one_cpu && !embedded_agent {
        Some("idle polling for 500")
    } else if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) || embedded_agent {
        Some("idle polling off")
    } else {
        None
    };
    if let Some(want) = want {
        ensure!(
            kernel_log.contains(want),
            "kernel log: want {want:?}:\n{}",
            stack.logs(40)
        );
    }
    Ok(())
}
