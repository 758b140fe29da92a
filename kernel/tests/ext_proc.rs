#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! Whole ext_proc streams through the kernel to the real policy agent on a
//! temp Unix socket: allow with header mutation, 401/403/429 denials, the
//! response phase with a body transform, the default policy, the route
//! header fallback, request-body routes, and one answer per message.

mod common;

use common::*;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::HeaderSendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::ProcessingRequest;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Answer;
use serde_json::json;

struct Setup {
    _dir: tempfile::TempDir,
    _agent: RunningAgent,
    kernel: RunningKernel,
}

/// The real agent and a kernel with `routes`; `mode_override` as told.
async fn setup_with(routes: &str, mode_override: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let agent = start_agent(&socket).await;
    let mut yaml = kernel_yaml(&socket, 5000, false, routes);
    if mode_override {
        yaml = with_mode_override(&yaml);
    }
    let config = write_config(dir.path(), &yaml);
    let kernel = start_kernel(&config, test_options()).await;
    Setup {
        _dir: dir,
        _agent: agent,
        kernel,
    }
}

/// Alice's request headers on `/api/v1/users`, with Envoy saying it sends
/// no request body and buffers the response body (the route's
/// per-route `processing_mode`).
fn users_headers_response_body_buffered() -> ProcessingRequest {
    with_protocol(
        request_headers(Some("/api/v1/users"), &[("x-api-key", ALICE_KEY)], true),
        BodySendMode::None,
        BodySendMode::Buffered,
    )
}

/// The kernel's count of `/api/v1/users` requests whose chain never got
/// the body it needs.
const BODY_MISSING_TOTAL: &str = "policy_kernel_requests_total{route=\"/api/v1/users\",agent=\"default-agent\",status=\"body_missing\"}";

async fn setup(routes: &str) -> Setup {
    setup_with(routes, false).await
}

#[tokio::test]
async fn allowed_request_gets_header_mutation_then_response_body_is_transformed() {
    let s = setup_with(&users_routes(), true).await;
    let mut stream = Stream::open(s.kernel.ext_proc).await;

    let answer = stream
        .send(request_headers(
            Some("/api/v1/users"),
            &[("x-api-key", ALICE_KEY)],
            true,
        ))
        .await;
    let c = common(&answer, "request_headers");
    assert_eq!(
        set_headers(c).get("x-user-id").map(String::as_str),
        Some("alice")
    );
    assert!(
        !set_headers(c).contains_key("x-api-key"),
        "never echo the key"
    );
    let mode = answer.mode_override.expect("mode_override");
    assert_eq!(mode.response_header_mode, HeaderSendMode::Send as i32);
    assert_eq!(
        mode.response_body_mode,
        BodySendMode::Buffered as i32,
        "responseBodyTransform needs the body"
    );
    assert_eq!(mode.request_body_mode, BodySendMode::None as i32);

    let body = br#"{"id":1,"internal_id":7,"name":"x","items":[{"internal_id":2,"v":3}]}"#;
    let len = body.len().to_string();
    let answer = stream
        .send(response_headers(
            200,
            &[
                ("content-type", "application/json"),
                ("content-length", &len),
            ],
            false,
        ))
        .await;
    let c = common(&answer, "response_headers");
    assert!(
        c.header_mutation.is_none(),
        "the response chain waits for the body"
    );
    assert_eq!(
        answer.mode_override.map(|m| m.response_body_mode),
        Some(BodySendMode::Buffered as i32)
    );

    let answer = stream.send(response_body(body)).await;
    let c = common(&answer, "response_body");
    let headers = set_headers(c);
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let new = new_body(c).expect("body mutation");
    assert_eq!(headers["content-length"], new.len().to_string());
    let parsed: serde_json::Value = serde_json::from_slice(&new).unwrap();
    assert_eq!(parsed, json!({"id": 1, "name": "x", "items": [{"v": 3}]}));

    assert_eq!(
        metric(
            s.kernel.metrics,
            "policy_kernel_requests_total{route=\"/api/v1/users\",agent=\"default-agent\",status=\"allowed\"}"
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn denials_are_immediate_responses_401_403_429() {
    let limited = r#"    - route_name: "/limited"
      request_policy_chain:
        - policy: "rateLimit"
          metadata:
            requests_per_second: 0.001
            burst: 1
"#;
    let s = setup(&format!("{USERS_ROUTE}{limited}{DEFAULT_ALLOW}")).await;

    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(Some("/api/v1/users"), &[], true))
        .await;
    assert_eq!(immediate_status(&answer), 401);
    assert_eq!(immediate_headers(&answer)["www-authenticate"], "API-Key");
    assert_eq!(immediate(&answer).body, br#"{"error":"API key required"}"#);
    assert_eq!(immediate(&answer).details, "policy_denied:apiKeyAuth");

    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(
            Some("/api/v1/users"),
            &[("x-api-key", "wrong")],
            true,
        ))
        .await;
    assert_eq!(immediate_status(&answer), 403);

    let mut first = Stream::open(s.kernel.ext_proc).await;
    common(
        &first
            .send(request_headers(Some("/limited"), &[], true))
            .await,
        "request_headers",
    );
    let mut second = Stream::open(s.kernel.ext_proc).await;
    let answer = second
        .send(request_headers(Some("/limited"), &[], true))
        .await;
    assert_eq!(immediate_status(&answer), 429);
    assert!(immediate_headers(&answer).contains_key("retry-after"));

    assert_eq!(
        metric(
            s.kernel.metrics,
            "policy_kernel_requests_total{route=\"/api/v1/users\",agent=\"default-agent\",status=\"denied\"}"
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn unknown_route_uses_the_default_policy_or_continues() {
    let s = setup_with(&users_routes(), true).await;
    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(Some("/not/configured"), &[], true))
        .await;
    let c = common(&answer, "request_headers");
    assert!(c.header_mutation.is_none());
    assert_eq!(
        answer.mode_override.map(|m| m.response_header_mode),
        Some(HeaderSendMode::Skip as i32),
        "the default policy has no response chain"
    );
    assert_eq!(
        metric(
            s.kernel.metrics,
            "policy_kernel_requests_total{route=\"default\",agent=\"default-agent\",status=\"allowed\"}"
        )
        .await,
        1.0
    );

    let s = setup(USERS_ROUTE).await;
    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let answer = stream.send(request_headers(None, &[], true)).await;
    common(&answer, "request_headers");
    assert_eq!(
        metric(
            s.kernel.metrics,
            "policy_kernel_requests_total{route=\"none\",agent=\"\",status=\"no_policy\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn route_header_is_the_fallback_and_the_attribute_wins() {
    let s = setup(&users_routes()).await;
    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(
            None,
            &[("x-route-name", "/api/v1/users")],
            true,
        ))
        .await;
    assert_eq!(
        immediate_status(&answer),
        401,
        "the header named the users route"
    );

    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(
            Some("/other"),
            &[("x-route-name", "/api/v1/users")],
            true,
        ))
        .await;
    common(&answer, "request_headers");
}

#[tokio::test]
async fn every_message_gets_one_answer_of_its_type() {
    let s = setup(&users_routes()).await;
    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(
            Some("/api/v1/users"),
            &[("x-api-key", ALICE_KEY)],
            false,
        ))
        .await;
    common(&answer, "request_headers");
    // Envoy may send a body and trailers the route does not need.
    common(&stream.send(request_body(b"ignored")).await, "request_body");
    assert!(matches!(
        stream.send(request_trailers()).await.response,
        Some(Answer::RequestTrailers(_))
    ));
    // A response without a body runs the chain at headers time.
    let answer = stream.send(response_headers(204, &[], true)).await;
    let c = common(&answer, "response_headers");
    assert_eq!(set_headers(c)["x-frame-options"], "DENY");
    assert!(matches!(
        stream.send(response_trailers()).await.response,
        Some(Answer::ResponseTrailers(_))
    ));
}

const BODY_ROUTE: &str = r#"  route_policies:
    - route_name: "/upload"
      request_body: true
      request_policy_chain:
        - policy: "apiKeyAuth"
"#;

#[tokio::test]
async fn request_body_routes_decide_on_the_buffered_body() {
    let s = setup_with(BODY_ROUTE, true).await;
    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(Some("/upload"), &[], false))
        .await;
    common(&answer, "request_headers");
    assert_eq!(
        answer.mode_override.map(|m| m.request_body_mode),
        Some(BodySendMode::Buffered as i32)
    );
    let answer = stream.send(request_body(b"{\"a\":1}")).await;
    assert_eq!(
        immediate_status(&answer),
        401,
        "decided when the body arrived"
    );

    // Envoy that does not honour the override sends response headers next:
    // the undecided request is answered with 500, never let through.
    let mut stream = Stream::open(s.kernel.ext_proc).await;
    common(
        &stream
            .send(request_headers(
                Some("/upload"),
                &[("x-api-key", ALICE_KEY)],
                false,
            ))
            .await,
        "request_headers",
    );
    let answer = stream.send(response_headers(200, &[], true)).await;
    assert_eq!(immediate_status(&answer), 500);
    assert_eq!(immediate(&answer).details, "body_missing");

    // Without a body the chain runs at headers time.
    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let answer = stream
        .send(request_headers(
            Some("/upload"),
            &[("x-api-key", ALICE_KEY)],
            true,
        ))
        .await;
    assert_eq!(
        set_headers(common(&answer, "request_headers"))["x-user-id"],
        "alice"
    );
}

#[tokio::test]
async fn envoy_processing_modes_decide_without_mode_override() {
    let s = setup(&users_routes()).await;
    // Envoy buffers this route's response body (per-route processing_mode).
    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let first = users_headers_response_body_buffered();
    let answer = stream.send(first).await;
    assert_eq!(
        set_headers(common(&answer, "request_headers"))["x-user-id"],
        "alice"
    );
    assert!(answer.mode_override.is_none(), "mode_override is opt-in");
    let answer = stream
        .send(response_headers(
            200,
            &[("content-type", "application/json")],
            false,
        ))
        .await;
    assert!(
        common(&answer, "response_headers")
            .header_mutation
            .is_none()
    );
    let answer = stream
        .send(response_body(br#"{"id":1,"internal_id":2}"#))
        .await;
    let c = common(&answer, "response_body");
    assert_eq!(set_headers(c)["x-frame-options"], "DENY");
    assert!(
        !set_headers(c).contains_key("content-length"),
        "none to fix"
    );
    assert_eq!(new_body(c).unwrap(), br#"{"id":1}"#);

    // Envoy would not send the body the transform needs: deny before
    // upstream rather than leak `internal_id`.
    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let first = with_protocol(
        request_headers(Some("/api/v1/users"), &[("x-api-key", ALICE_KEY)], true),
        BodySendMode::None,
        BodySendMode::None,
    );
    let answer = stream.send(first).await;
    assert_eq!(immediate_status(&answer), 500);
    assert_eq!(immediate(&answer).details, "body_missing");
    assert_eq!(metric(s.kernel.metrics, BODY_MISSING_TOTAL).await, 1.0);

    // Routes that need no body are unaffected by the modes.
    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let first = with_protocol(
        request_headers(Some("/x"), &[], true),
        BodySendMode::None,
        BodySendMode::None,
    );
    common(&stream.send(first).await, "request_headers");
}

#[tokio::test]
async fn a_stream_ended_before_the_response_body_counts_body_missing() {
    // Envoy said it would buffer the response body, answered the response
    // headers, then ended the stream (the upstream reset, a local reply):
    // the transform never ran, and the kernel says so once the stream ends.
    let s = setup(&users_routes()).await;
    let mut stream = Stream::open(s.kernel.ext_proc).await;
    let first = users_headers_response_body_buffered();
    common(&stream.send(first).await, "request_headers");
    let answer = stream
        .send(response_headers(
            200,
            &[("content-type", "application/json")],
            false,
        ))
        .await;
    common(&answer, "response_headers");
    assert_eq!(metric(s.kernel.metrics, BODY_MISSING_TOTAL).await, 0.0);
    stream.close().await;
    assert_eq!(metric(s.kernel.metrics, BODY_MISSING_TOTAL).await, 1.0);
}
