#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! The error table of spec §3.5 through whole streams, with a scriptable
//! agent on a temp Unix socket: agent down, agent timeout (kernel-side and
//! the agent's TIMEOUT status), invalid answers, agent errors, retries on
//! connection errors only, and the chain state carried to the response.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use policy_proto::agent::{
    HeaderInstruction, Instruction, InstructionType, PolicyPhase, PolicyResponse, ResponseStatus,
    StatusCode, instruction::Payload,
};

const ROUTES: &str = r#"  route_policies:
    - route_name: "/r"
      request_policy_chain:
        - policy: "p"
      response_policy_chain:
        - policy: "q"
"#;

fn ok(instructions: Vec<Instruction>, state: &str) -> PolicyResponse {
    PolicyResponse {
        status: Some(ResponseStatus {
            code: StatusCode::Ok as i32,
            policy_name: String::new(),
        }),
        instructions,
        state_json: state.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn set_header(k: &str, v: &str) -> Instruction {
    Instruction {
        r#type: InstructionType::SetHeader as i32,
        payload: Some(Payload::Header(HeaderInstruction {
            key: k.into(),
            value: v.into(),
        })),
    }
}

async fn kernel_for(dir: &Path, socket: &Path, timeout_ms: u64, fail_open: bool) -> RunningKernel {
    let config = write_config(dir, &kernel_yaml(socket, timeout_ms, fail_open, ROUTES));
    start_kernel(&config, test_options()).await
}

async fn first_answer(
    kernel: &RunningKernel,
) -> envoy_types::pb::envoy::service::ext_proc::v3::ProcessingResponse {
    let mut stream = Stream::open(kernel.ext_proc).await;
    stream.send(request_headers(Some("/r"), &[], true)).await
}

#[tokio::test]
async fn state_and_request_changes_reach_the_response_phase() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fake.sock");
    let fake = FakeAgent::new(&["p", "q"], |req, _| async move {
        Ok(if req.phase == PolicyPhase::Request as i32 {
            ok(
                vec![set_header("X-User-ID", "alice")],
                r#"{"user":"alice"}"#,
            )
        } else {
            ok(vec![set_header("x-seen", "1")], "{}")
        })
    });
    let _agent = fake.serve(&socket).await;
    let kernel = kernel_for(dir.path(), &socket, 2000, false).await;

    let mut stream = Stream::open(kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(
            Some("/r"),
            &[("x-api-key", "secret")],
            true,
        ))
        .await;
    assert_eq!(
        set_headers(common(&answer, "request_headers"))["x-user-id"],
        "alice"
    );
    let answer = stream
        .send(response_headers(
            201,
            &[("content-type", "text/plain")],
            true,
        ))
        .await;
    assert_eq!(
        set_headers(common(&answer, "response_headers"))["x-seen"],
        "1"
    );

    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    let (req, resp) = (&calls[0], &calls[1]);
    assert_eq!(req.route, "/r");
    assert_eq!(req.policies[0].name, "p");
    let ctx = req.context.as_ref().unwrap();
    assert_eq!(
        (ctx.method.as_str(), ctx.path.as_str()),
        ("GET", "/api/v1/users?limit=5")
    );
    assert_eq!(ctx.query_params["limit"], "5");
    assert_eq!(ctx.client_ip, "198.51.100.7");
    assert!(req.state_json.is_empty());
    assert_eq!(resp.phase, PolicyPhase::Response as i32);
    assert_eq!(resp.policies[0].name, "q");
    assert_eq!(
        resp.state_json, br#"{"user":"alice"}"#,
        "state carried from the request phase"
    );
    assert_eq!(resp.request_id, req.request_id);
    let seen = resp.context.as_ref().unwrap();
    assert_eq!(
        seen.headers["x-user-id"], "alice",
        "the response phase sees the forwarded request"
    );
    let r = resp.response.as_ref().unwrap();
    assert_eq!(r.status_code, 201);
    assert_eq!(r.headers["content-type"], "text/plain");
}

#[tokio::test]
async fn chains_go_over_the_call_stream_and_unary_to_an_agent_without_it() {
    for unary_only in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fake.sock");
        let mut fake = FakeAgent::new(&["p", "q"], |_, _| async move {
            Ok(ok(vec![set_header("x-seen", "1")], "{}"))
        });
        if unary_only {
            fake = fake.unary_only();
        }
        let _agent = fake.serve(&socket).await;
        let kernel = kernel_for(dir.path(), &socket, 2000, false).await;
        for _ in 0..3 {
            let answer = first_answer(&kernel).await;
            assert_eq!(
                set_headers(common(&answer, "request_headers"))["x-seen"],
                "1",
                "unary only: {unary_only}"
            );
        }
        assert_eq!(fake.calls().len(), 3, "unary only: {unary_only}");
        assert_eq!(
            fake.streamed(),
            if unary_only { 0 } else { 3 },
            "unary only: {unary_only}"
        );
    }
}

#[tokio::test]
async fn agent_down_denies_with_503_unless_fail_open() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    let kernel = kernel_for(dir.path(), &socket, 200, false).await;
    let answer = first_answer(&kernel).await;
    assert_agent_unavailable(&answer, false);
    assert_eq!(metric(kernel.metrics, UNAVAILABLE_TOTAL).await, 1.0);
    drop(kernel);

    let dir = tempfile::tempdir().unwrap();
    let kernel = kernel_for(dir.path(), &dir.path().join("nobody.sock"), 200, true).await;
    assert_agent_unavailable(&first_answer(&kernel).await, true);
}

#[tokio::test]
async fn an_agent_that_dies_with_the_call_under_way_is_unavailable_not_an_error() {
    // Over the call stream, and over unary calls (an agent without the
    // stream); with and without fail_open.
    for (unary, fail_open) in [(false, false), (false, true), (true, false), (true, true)] {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("dying.sock");
        let mut dying = FakeAgent::new(&["p", "q"], |_, _| {
            std::future::pending::<Result<PolicyResponse, tonic::Status>>()
        });
        if unary {
            dying = dying.unary_only();
        }
        let agent = dying.serve_killable(&socket);
        let kernel = kernel_for(dir.path(), &socket, 5000, fail_open).await;
        let mut stream = Stream::open(kernel.ext_proc).await;
        let answer =
            tokio::spawn(async move { stream.send(request_headers(Some("/r"), &[], true)).await });
        // The call reached the agent, which dies before it answers.
        for _ in 0..500 {
            if !dying.calls().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(dying.calls().len(), 1, "the call never reached the agent");
        agent.kill().await;
        let answer = answer.await.unwrap();
        assert_agent_unavailable(&answer, fail_open);
        assert_eq!(
            metric(kernel.metrics, UNAVAILABLE_TOTAL).await,
            1.0,
            "unary: {unary}"
        );
    }
}

/// The kernel's count of requests answered for an unavailable agent.
const UNAVAILABLE_TOTAL: &str = "policy_kernel_requests_total{route=\"/r\",agent=\"default-agent\",status=\"agent_unavailable\"}";

/// The answer to a request the agent could not take: 503, or passed
/// unchanged under `fail_open`.
fn assert_agent_unavailable(
    answer: &envoy_types::pb::envoy::service::ext_proc::v3::ProcessingResponse,
    fail_open: bool,
) {
    if fail_open {
        let c = common(answer, "request_headers");
        assert!(c.header_mutation.is_none(), "fail_open continues unchanged");
    } else {
        assert_eq!(immediate_status(answer), 503);
        assert_eq!(immediate(answer).details, "agent_unavailable");
    }
}

#[tokio::test]
async fn agent_that_comes_up_later_is_discovered_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("late.sock");
    let kernel = kernel_for(dir.path(), &socket, 500, false).await;
    assert_eq!(immediate_status(&first_answer(&kernel).await), 503);
    let fake = FakeAgent::new(&["p", "q"], |_, _| async { Ok(ok(vec![], "{}")) });
    let _agent = fake.serve(&socket).await;
    eventually("the late agent to be discovered", || async {
        kernel.handle.readiness().ready
    })
    .await;
    common(&first_answer(&kernel).await, "request_headers");
}

#[tokio::test]
async fn a_new_policy_revision_is_rediscovered_while_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("rev.sock");
    let fake = FakeAgent::new(&["q"], |_, _| async { Ok(ok(vec![], "{}")) });
    let _agent = fake.serve(&socket).await;
    let kernel = kernel_for(dir.path(), &socket, 500, true).await;
    let r = kernel.handle.readiness();
    assert_eq!(
        r.invalid_routes[0].reason,
        "agent does not support policy `p`"
    );
    assert_eq!(immediate_status(&first_answer(&kernel).await), 500);

    fake.set_policies(&["p", "q"], "r2");
    eventually("the new revision to be discovered", || async {
        kernel.handle.readiness().ready
    })
    .await;
    common(&first_answer(&kernel).await, "request_headers");
}

/// The fake agent runs on this test's runtime of one worker, where a call
/// that completes at once is answered in place: one that waits must still
/// not hold up the calls behind it on the same stream.
#[tokio::test]
async fn a_waiting_call_does_not_hold_up_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fake.sock");
    let fake = FakeAgent::new(&["p", "q"], |_, index| async move {
        if index == 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            return Ok(ok(vec![set_header("x-call", "slow")], "{}"));
        }
        Ok(ok(vec![set_header("x-call", "fast")], "{}"))
    });
    let _agent = fake.serve(&socket).await;
    let kernel = kernel_for(dir.path(), &socket, 2000, false).await;
    let slow = tokio::spawn({
        let ext_proc = kernel.ext_proc;
        async move {
            let mut stream = Stream::open(ext_proc).await;
            let answer = stream.send(request_headers(Some("/r"), &[], true)).await;
            (std::time::Instant::now(), answer)
        }
    });
    eventually("the slow call to reach the agent", || async {
        !fake.calls().is_empty()
    })
    .await;
    let fast = first_answer(&kernel).await;
    let fast_at = std::time::Instant::now();
    assert_eq!(
        set_headers(common(&fast, "request_headers"))["x-call"],
        "fast"
    );
    let (slow_at, slow) = slow.await.unwrap();
    assert_eq!(
        set_headers(common(&slow, "request_headers"))["x-call"],
        "slow"
    );
    assert!(fast_at < slow_at, "the fast call waited for the slow one");
    assert_eq!(fake.streamed(), 2, "both calls went over the call stream");
}

#[tokio::test]
async fn agent_timeouts_follow_fail_open_and_are_not_retried() {
    for fail_open in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("slow.sock");
        let fake = FakeAgent::new(&["p", "q"], |_, _| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(ok(vec![], "{}"))
        });
        let _agent = fake.serve(&socket).await;
        let kernel = kernel_for(dir.path(), &socket, 100, fail_open).await;
        let answer = first_answer(&kernel).await;
        if fail_open {
            common(&answer, "request_headers");
        } else {
            assert_eq!(immediate_status(&answer), 503);
            assert_eq!(immediate(&answer).details, "agent_timeout");
        }
        assert_eq!(fake.calls().len(), 1, "a timeout is never retried");
        assert_eq!(
            metric(
                kernel.metrics,
                "policy_kernel_agent_timeouts_total{agent=\"default-agent\"}"
            )
            .await,
            1.0
        );
    }
}

#[tokio::test]
async fn agent_timeout_status_is_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("t.sock");
    let fake = FakeAgent::new(&["p", "q"], |_, _| async {
        let mut r = ok(vec![], "");
        r.status = Some(ResponseStatus {
            code: StatusCode::Timeout as i32,
            policy_name: String::new(),
        });
        Ok(r)
    });
    let _agent = fake.serve(&socket).await;
    let kernel = kernel_for(dir.path(), &socket, 2000, false).await;
    assert_eq!(immediate_status(&first_answer(&kernel).await), 503);
    assert_eq!(
        metric(
            kernel.metrics,
            "policy_kernel_agent_timeouts_total{agent=\"default-agent\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn invalid_agent_answers_are_500() {
    let bad: Vec<fn() -> PolicyResponse> = vec![
        || PolicyResponse::default(), // no status
        || {
            ok(
                vec![Instruction {
                    r#type: 99,
                    payload: None,
                }],
                "{}",
            )
        },
        || ok(vec![], "[1, 2]"),
        || ok(vec![set_header("bad header", "v")], "{}"),
    ];
    for make in bad {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bad.sock");
        let fake = FakeAgent::new(&["p", "q"], move |_, _| async move { Ok(make()) });
        let _agent = fake.serve(&socket).await;
        let kernel = kernel_for(dir.path(), &socket, 2000, true).await;
        let answer = first_answer(&kernel).await;
        assert_eq!(
            immediate_status(&answer),
            500,
            "fail_open does not cover a broken answer"
        );
        assert_eq!(immediate(&answer).details, "invalid_agent_response");
    }
}

#[tokio::test]
async fn policy_error_without_a_reply_is_500_and_denied_is_403() {
    for (code, status) in [
        (StatusCode::PolicyError, 500),
        (StatusCode::PolicyDenied, 403),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("e.sock");
        let fake = FakeAgent::new(&["p", "q"], move |_, _| async move {
            let mut r = ok(vec![], "{}");
            r.status = Some(ResponseStatus {
                code: code as i32,
                policy_name: "p".into(),
            });
            Ok(r)
        });
        let _agent = fake.serve(&socket).await;
        let kernel = kernel_for(dir.path(), &socket, 2000, true).await;
        assert_eq!(immediate_status(&first_answer(&kernel).await), status);
    }
}

#[tokio::test]
async fn only_connection_errors_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("flaky.sock");
    let flaky = FakeAgent::new(&["p", "q"], |_, i| async move {
        if i == 0 {
            Err(tonic::Status::unavailable("connection refused"))
        } else {
            Ok(ok(vec![set_header("x-attempt", "2")], "{}"))
        }
    });
    let _agent = flaky.serve(&socket).await;
    let kernel = kernel_for(dir.path(), &socket, 2000, false).await;
    let answer = first_answer(&kernel).await;
    assert_eq!(
        set_headers(common(&answer, "request_headers"))["x-attempt"],
        "2"
    );
    assert_eq!(
        flaky.calls().len(),
        2,
        "retried once after a connection error"
    );
    drop(kernel);

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("broken.sock");
    let broken = FakeAgent::new(&["p", "q"], |_, _| async {
        Err(tonic::Status::internal("boom"))
    });
    let _agent = broken.serve(&socket).await;
    let kernel = kernel_for(dir.path(), &socket, 2000, true).await;
    let answer = first_answer(&kernel).await;
    assert_eq!(immediate_status(&answer), 500);
    assert_eq!(immediate(&answer).details, "agent_error");
    assert_eq!(
        broken.calls().len(),
        1,
        "an agent error is an answer: not retried"
    );
}

/// A call stream that cannot be opened (the agent's exit cut the connection
/// while it was being opened: `CANCELLED`) means the call was not sent: an
/// unavailable agent, retried, then 503, or passed under `fail_open`; not
/// the 500 of an agent error.
#[tokio::test]
async fn a_call_stream_that_cannot_be_opened_is_an_unavailable_agent() {
    for fail_open in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cut.sock");
        let fake = FakeAgent::new(&["p", "q"], |_, _| async { Ok(ok(vec![], "{}")) })
            .failing_stream_open(tonic::Code::Cancelled);
        let _agent = fake.serve(&socket).await;
        let kernel = kernel_for(dir.path(), &socket, 2000, fail_open).await;
        assert_agent_unavailable(&first_answer(&kernel).await, fail_open);
        assert_eq!(
            metric(kernel.metrics, UNAVAILABLE_TOTAL).await,
            1.0,
            "fail_open: {fail_open}"
        );
        assert!(fake.calls().is_empty(), "the call never reached the agent");
    }
}
