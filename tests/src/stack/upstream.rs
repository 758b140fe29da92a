//! The demo upstream behind Envoy: an in-test HTTP/1.1 server (hyper) on
//! `127.0.0.1:0` that records every request it gets and answers JSON with
//! `internal_id` fields at the top level and nested in objects and arrays,
//! plus the request headers it received (`received_headers`).
//!
//! `?pad=N` adds a `padding` string of N bytes (for body-size limits).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Lower-case names; repeated headers joined with `,`.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    /// The value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The running upstream; stops when dropped.
pub struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Binds `127.0.0.1:0` and serves in the background.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the demo upstream")?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(listener, seen.clone()));
        Ok(Self { addr, seen, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, oldest first.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The requests whose header `name` has `value` (tests tag each request
    /// with a unique `x-test-id`).
    pub fn seen_with(&self, name: &str, value: &str) -> Vec<SeenRequest> {
        self.seen()
            .into_iter()
            .filter(|r| r.header(name) == Some(value))
            .collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, seen: Arc<Mutex<Vec<SeenRequest>>>) {
    // Dropping the set (when this task is aborted) aborts the connections.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let seen = seen.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, seen.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections.
        while connections.try_join_next().is_some() {}
    }
}

async fn answer(
    req: hyper::Request<Incoming>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|old| {
                old.push(',');
                old.push_str(&v);
            })
            .or_insert(v);
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let document = document(&path, parts.method.as_str(), &headers, body.len());
    if let Ok(mut s) = seen.lock() {
        s.push(SeenRequest {
            method: parts.method.to_string(),
            path,
            headers,
            body,
        });
    }
    let mut response = hyper::Response::new(Full::new(Bytes::from(document.to_string())));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The JSON the upstream answers for `path`.
pub fn document(
    path: &str,
    method: &str,
    headers: &BTreeMap<String, String>,
    body_len: usize,
) -> Value {
    let mut doc = json!({
        "internal_id": "usr-7f3a",
        "name": "Alice Example",
        "method": method,
        "path": path,
        "request_body_bytes": body_len,
        "received_headers": headers,
        "profile": {
            "internal_id": 4711,
            "email": "alice@example.com",
            "address": {"internal_id": "addr-1", "city": "Lisbon"}
        },
        "items": [
            {"internal_id": 1, "sku": "A-1"},
            {"sku": "B-2"}
        ]
    });
    let pad = path
        .split_once('?')
        .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("pad=")))
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(n) = pad {
        doc["padding"] = Value::String("x".repeat(n));
    }
    doc
}
