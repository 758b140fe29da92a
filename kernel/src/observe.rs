//! `/health/live`, `/health/ready` and `/metrics` on the metrics port
//! (spec §7.1, §9.2), served with hyper over HTTP/1.1.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::kernel::State;
use crate::reload::ReloadStatus;
use crate::snapshot::InvalidRoute;

/// One agent in the readiness detail.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    pub name: String,
    pub socket_path: String,
    /// `GetAgentConfig` succeeded at least once.
    pub discovered: bool,
    pub healthy: bool,
    /// The name and version the agent advertises.
    pub advertised_name: Option<String>,
    pub version: Option<String>,
    /// The agent's metadata (engine, policy revision, limits).
    pub metadata: std::collections::BTreeMap<String, String>,
    pub policies: Vec<String>,
    pub error: Option<String>,
}

/// The readiness of spec §9.2 with its detail.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// Every agent discovered and healthy, and no invalid route.
    pub ready: bool,
    pub config_version: u64,
    pub fail_open: bool,
    pub agents: Vec<AgentStatus>,
    pub invalid_routes: Vec<InvalidRoute>,
    pub last_reload: Option<ReloadStatus>,
}

pub(crate) fn readiness(state: &State) -> Readiness {
    let snapshot = state.snapshot.load();
    let agents: Vec<AgentStatus> = snapshot
        .agents()
        .map(|a| {
            let discovery = a.discovery();
            let mut policies: Vec<String> = discovery
                .as_ref()
                .map(|d| d.policies.keys().cloned().collect())
                .unwrap_or_default();
            policies.sort();
            AgentStatus {
                name: a.name().to_string(),
                socket_path: a.entry().socket_path.display().to_string(),
                discovered: discovery.is_some(),
                healthy: a.is_healthy(),
                advertised_name: discovery.as_ref().map(|d| d.agent_name.clone()),
                version: discovery.as_ref().map(|d| d.version.clone()),
                metadata: discovery
                    .as_ref()
                    .map(|d| {
                        d.metadata
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
                policies,
                error: a.last_error(),
            }
        })
        .collect();
    let invalid_routes = snapshot.invalid_routes();
    Readiness {
        ready: agents.iter().all(|a| a.discovered && a.healthy) && invalid_routes.is_empty(),
        config_version: snapshot.version,
        fail_open: snapshot.config.fail_open,
        agents,
        invalid_routes,
        last_reload: state.last_reload.load_full().map(|r| r.as_ref().clone()),
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn answer(state: &State, method: &Method, path: &str) -> hyper::Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let known = ["/health/live", "/health/ready", "/metrics"];
    if !known.contains(&path) {
        return reply(StatusCode::NOT_FOUND, TEXT, "not found\n");
    }
    if method != Method::GET && method != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
    }
    match path {
        "/health/live" => reply(StatusCode::OK, TEXT, "ok\n"),
        "/health/ready" => {
            let r = readiness(state);
            let status = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = serde_json::to_vec(&r).unwrap_or_else(|_| b"{\"ready\":false}".to_vec());
            reply(status, "application/json", body)
        }
        _ => reply(
            StatusCode::OK,
            crate::exposition::CONTENT_TYPE,
            state.metrics.encode(),
        ),
    }
}

/// Serves the endpoints on `listener` until aborted.
pub(crate) async fn serve(state: Arc<State>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let r = answer(&state, req.method(), req.uri().path());
                    async move { Ok::<_, Infallible>(r) }
                });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}
