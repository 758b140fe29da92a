//! Helpers for the kernel's integration tests: a real in-process agent on a
//! temp Unix socket, a scriptable fake agent, the kernel on `127.0.0.1:0`,
//! an ext_proc client and ext_proc message builders.
#![allow(dead_code)]

mod agents;

pub use agents::*;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
pub use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Msg;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Answer;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    CommonResponse, HttpBody, HttpHeaders, HttpTrailers, ImmediateResponse, ProcessingRequest,
    ProcessingResponse, ProtocolConfiguration, body_mutation,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use policy_kernel::{Kernel, KernelError, KernelHandle, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

/// Polls `check` until it holds, failing after 15 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- kernel -----------------------------------------------------------------

/// A kernel config with one agent named `default-agent`, both listeners on
/// port 0, and `body` (routes, default policy) appended.
pub fn kernel_yaml(socket: &Path, timeout_ms: u64, fail_open: bool, body: &str) -> String {
    format!(
        r#"policy_kernel:
  server:
    address: "127.0.0.1"
    port: 0
  agents:
    - name: "default-agent"
      socket_path: "{}"
      timeout_ms: {timeout_ms}
      retry:
        max_attempts: 2
        backoff_ms: 10
      health_check_interval_ms: 100
  fail_open: {fail_open}
  observability:
    metrics_port: 0
{body}"#,
        socket.display()
    )
}

/// `yaml` with `server.mode_override: true`.
pub fn with_mode_override(yaml: &str) -> String {
    yaml.replacen("    port: 0\n", "    port: 0\n    mode_override: true\n", 1)
}

/// The spec's `/api/v1/users` route (rate limit raised so tests never hit
/// it), opening the `route_policies` list.
pub const USERS_ROUTE: &str = r#"  route_policies:
    - route_name: "/api/v1/users"
      request_policy_chain:
        - policy: "apiKeyAuth"
          metadata:
            header_name: "X-API-Key"
            required: true
        - policy: "rateLimit"
          metadata:
            requests_per_second: 1000
            burst: 1000
      response_policy_chain:
        - policy: "addSecurityHeaders"
          metadata:
            headers:
              X-Content-Type-Options: "nosniff"
              X-Frame-Options: "DENY"
        - policy: "responseBodyTransform"
          metadata:
            remove_fields: ["internal_id"]
"#;

/// An `allowAll` default policy.
pub const DEFAULT_ALLOW: &str = r#"  default_policy:
    request_policy_chain:
      - policy: "allowAll"
    response_policy_chain: []
"#;

/// [`USERS_ROUTE`] and [`DEFAULT_ALLOW`].
pub fn users_routes() -> String {
    format!("{USERS_ROUTE}{DEFAULT_ALLOW}")
}

/// A kernel serving in the background.
pub struct RunningKernel {
    pub ext_proc: SocketAddr,
    pub metrics: SocketAddr,
    pub handle: KernelHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), KernelError>>>,
}

impl RunningKernel {
    /// Shuts down and returns how `serve` ended.
    pub async fn stop(mut self) -> Result<(), KernelError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .unwrap()
            .unwrap()
    }
}

impl Drop for RunningKernel {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Options for tests: no SIGHUP, file watch every 50 ms, short grace.
pub fn test_options() -> Options {
    Options {
        reload_on_sighup: false,
        watch_interval: Some(Duration::from_millis(50)),
        shutdown_grace: Duration::from_secs(2),
        ..Options::default()
    }
}

pub async fn start_kernel(config: &Path, options: Options) -> RunningKernel {
    let kernel = Kernel::bind_with(config, options).await.unwrap();
    let ext_proc = kernel.ext_proc_addr().unwrap();
    let metrics = kernel.metrics_addr().unwrap();
    let handle = kernel.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kernel.serve(async {
        let _ = stopped.await;
    }));
    RunningKernel {
        ext_proc,
        metrics,
        handle,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A temp dir with `kernel.yaml` written from `yaml`.
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("kernel.yaml");
    // Write then rename, as config management tools do, so the watcher never
    // reads a half-written file.
    let tmp = dir.join("kernel.yaml.tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

// --- ext_proc client ----------------------------------------------------------

/// One ext_proc stream, as Envoy opens per HTTP exchange.
pub struct Stream {
    tx: mpsc::Sender<ProcessingRequest>,
    rx: tonic::Streaming<ProcessingResponse>,
}

impl Stream {
    pub async fn open(addr: SocketAddr) -> Self {
        let mut client = ExternalProcessorClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(8);
        let rx = client
            .process(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Self { tx, rx }
    }

    /// Sends one message and returns the one answer it gets.
    pub async fn send(&mut self, msg: ProcessingRequest) -> ProcessingResponse {
        self.tx.send(msg).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.rx.message())
            .await
            .expect("no answer within 20 s")
            .unwrap()
            .expect("stream closed without an answer")
    }

    /// Ends the client's side, as Envoy does after its last message, and
    /// waits for the kernel to end its side with no further answer.
    pub async fn close(self) {
        let Self { tx, mut rx } = self;
        drop(tx);
        let last = tokio::time::timeout(Duration::from_secs(20), rx.message())
            .await
            .expect("stream not ended within 20 s")
            .unwrap();
        assert!(last.is_none(), "an answer after the last message: {last:?}");
    }
}

fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
    HeaderMap {
        headers: headers
            .iter()
            .map(|(k, v)| HeaderValue {
                key: (*k).into(),
                raw_value: v.as_bytes().to_vec(),
                ..Default::default()
            })
            .collect(),
    }
}

/// `attributes["envoy.filters.http.ext_proc"]["xds.route_name"] = route`.
pub fn route_attributes(route: &str) -> HashMap<String, Struct> {
    let fields = HashMap::from([(
        "xds.route_name".to_string(),
        Value {
            kind: Some(Kind::StringValue(route.into())),
        },
    )]);
    HashMap::from([("envoy.filters.http.ext_proc".to_string(), Struct { fields })])
}

/// Request headers for `GET /api/v1/users?limit=5` plus `extra`, naming
/// `route` in the attributes when given.
pub fn request_headers(
    route: Option<&str>,
    extra: &[(&str, &str)],
    end_of_stream: bool,
) -> ProcessingRequest {
    let mut headers = vec![
        (":method", "GET"),
        (":path", "/api/v1/users?limit=5"),
        (":scheme", "http"),
        (":authority", "api.example.com"),
        ("x-forwarded-for", "198.51.100.7"),
    ];
    headers.extend_from_slice(extra);
    ProcessingRequest {
        attributes: route.map(route_attributes).unwrap_or_default(),
        request: Some(Msg::RequestHeaders(HttpHeaders {
            headers: Some(header_map(&headers)),
            end_of_stream,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// `req` carrying Envoy's `protocol_config` (first message of a stream).
pub fn with_protocol(
    mut req: ProcessingRequest,
    request_body: BodySendMode,
    response_body: BodySendMode,
) -> ProcessingRequest {
    req.protocol_config = Some(ProtocolConfiguration {
        request_body_mode: request_body as i32,
        response_body_mode: response_body as i32,
        send_body_without_waiting_for_header_response: false,
    });
    req
}

pub fn response_headers(
    status: u16,
    extra: &[(&str, &str)],
    end_of_stream: bool,
) -> ProcessingRequest {
    let status = status.to_string();
    let mut headers = vec![(":status", status.as_str())];
    headers.extend_from_slice(extra);
    ProcessingRequest {
        request: Some(Msg::ResponseHeaders(HttpHeaders {
            headers: Some(header_map(&headers)),
            end_of_stream,
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn request_body(body: &[u8]) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(Msg::RequestBody(HttpBody {
            body: body.to_vec(),
            end_of_stream: true,
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn response_body(body: &[u8]) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(Msg::ResponseBody(HttpBody {
            body: body.to_vec(),
            end_of_stream: true,
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn request_trailers() -> ProcessingRequest {
    ProcessingRequest {
        request: Some(Msg::RequestTrailers(HttpTrailers::default())),
        ..Default::default()
    }
}

pub fn response_trailers() -> ProcessingRequest {
    ProcessingRequest {
        request: Some(Msg::ResponseTrailers(HttpTrailers::default())),
        ..Default::default()
    }
}

// --- reading answers ------------------------------------------------------------

/// The immediate response, or a panic naming what came instead.
pub fn immediate(resp: &ProcessingResponse) -> &ImmediateResponse {
    match &resp.response {
        Some(Answer::ImmediateResponse(i)) => i,
        other => panic!("expected an immediate response, got {other:?}"),
    }
}

pub fn immediate_status(resp: &ProcessingResponse) -> i32 {
    immediate(resp)
        .status
        .as_ref()
        .map(|s| s.code)
        .unwrap_or_default()
}

/// Lower-case name → value of an immediate response's headers.
pub fn immediate_headers(resp: &ProcessingResponse) -> HashMap<String, String> {
    immediate(resp)
        .headers
        .as_ref()
        .map(|m| set_headers_of(&m.set_headers))
        .unwrap_or_default()
}

fn set_headers_of(
    set: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
) -> HashMap<String, String> {
    set.iter()
        .filter_map(|o| o.header.as_ref())
        .map(|h| {
            (
                h.key.clone(),
                String::from_utf8_lossy(&h.raw_value).into_owned(),
            )
        })
        .collect()
}

/// The common response of a headers or body answer, checking its type.
pub fn common<'a>(resp: &'a ProcessingResponse, kind: &str) -> &'a CommonResponse {
    let (got, common) = match &resp.response {
        Some(Answer::RequestHeaders(h)) => ("request_headers", h.response.as_ref()),
        Some(Answer::ResponseHeaders(h)) => ("response_headers", h.response.as_ref()),
        Some(Answer::RequestBody(b)) => ("request_body", b.response.as_ref()),
        Some(Answer::ResponseBody(b)) => ("response_body", b.response.as_ref()),
        other => panic!("expected a {kind} answer, got {other:?}"),
    };
    assert_eq!(got, kind, "answer of the wrong type: {resp:?}");
    static EMPTY: std::sync::OnceLock<CommonResponse> = std::sync::OnceLock::new();
    common.unwrap_or_else(|| EMPTY.get_or_init(CommonResponse::default))
}

/// Headers set by a common response.
pub fn set_headers(c: &CommonResponse) -> HashMap<String, String> {
    c.header_mutation
        .as_ref()
        .map(|m| set_headers_of(&m.set_headers))
        .unwrap_or_default()
}

/// The replacement body of a common response.
pub fn new_body(c: &CommonResponse) -> Option<Vec<u8>> {
    match c.body_mutation.as_ref()?.mutation.as_ref()? {
        body_mutation::Mutation::Body(b) => Some(b.clone()),
        _ => None,
    }
}

// --- HTTP ---------------------------------------------------------------------

/// `GET path` on the metrics port: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `GET /metrics`: the `Content-Type` and the body.
pub async fn scrape(addr: SocketAddr) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = "GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (content_type, body.to_string())
}

/// Runs `promtool check metrics` (Prometheus's own linter of the text
/// exposition) on `text` and fails with its findings; fails with the install
/// hint when promtool is missing.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed (this test checks /metrics with it): \
             apt-get install -y --no-install-recommends prometheus"
        ),
        Err(e) => panic!("starting promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- /metrics:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// The value of the metric sample line starting with `prefix`, or 0.
pub async fn metric(addr: SocketAddr, prefix: &str) -> f64 {
    let (_, text) = http_get(addr, "/metrics").await;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
