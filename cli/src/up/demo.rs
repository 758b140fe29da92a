//! What `policyctl up` shows: the agent's answers over its socket, a demo
//! upstream behind Envoy, and the demo requests through Envoy.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use policy_kernel::KernelConfig;
use policy_proto::agent::instruction::Payload;
use policy_proto::agent::policy_agent_client::PolicyAgentClient;
use policy_proto::agent::{
    HealthRequest, Policy, PolicyPhase, PolicyRequest, RequestContext, StatusCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};

use super::procs::{Child, http_get};

/// Connects to the agent's Unix socket.
pub async fn connect(socket: &Path) -> anyhow::Result<PolicyAgentClient<Channel>> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await?;
    Ok(PolicyAgentClient::new(channel))
}

/// Waits until the agent answers `Health` on `socket`.
pub async fn wait_agent(socket: &Path, agent: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        agent.check_running()?;
        if let Ok(mut c) = connect(socket).await
            && c.health(HealthRequest {}).await.is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "policy-agent did not answer on {} within 15 s",
                socket.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends the `/api/v1/users` request chain without and with the demo key
/// straight to the agent, as the kernel would.
pub async fn agent_decisions(socket: &Path, kernel: &KernelConfig) -> anyhow::Result<()> {
    let route = "/api/v1/users";
    let Some(entry) = kernel.route_policies.iter().find(|r| r.route_name == route) else {
        return Ok(());
    };
    let mut client = connect(socket).await?;
    let policies: Vec<Policy> = entry
        .chains
        .request_policy_chain
        .iter()
        .map(|e| Policy {
            name: e.policy.clone(),
            metadata: e.metadata_strings().into_iter().collect(),
            on_failure: e.on_failure.clone(),
        })
        .collect();
    for (label, key) in [
        ("without a key", None),
        ("with X-API-Key: demo-key-alice", Some("demo-key-alice")),
    ] {
        let mut headers = HashMap::new();
        if let Some(k) = key {
            headers.insert("x-api-key".to_string(), k.to_string());
        }
        let response = client
            .execute_policies(PolicyRequest {
                request_id: format!("demo-{}", label.len()),
                policies: policies.clone(),
                context: Some(RequestContext {
                    headers,
                    method: "GET".into(),
                    path: route.into(),
                    scheme: "http".into(),
                    authority: "localhost".into(),
                    client_ip: "127.0.0.1".into(),
                    ..Default::default()
                }),
                phase: PolicyPhase::Request as i32,
                route: route.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let code = response
            .status
            .as_ref()
            .and_then(|s| StatusCode::try_from(s.code).ok())
            .map(|c| c.as_str_name())
            .unwrap_or("UNKNOWN");
        let detail = response
            .instructions
            .iter()
            .filter_map(|i| match &i.payload {
                Some(Payload::ImmediateResponse(r)) => Some(format!("HTTP {}", r.status_code)),
                Some(Payload::Header(h)) => Some(format!("{}: {}", h.key, h.value)),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "agent: GET {route} {label}: {code} ({detail}) {}",
            response.message
        );
    }
    Ok(())
}

/// A demo upstream: answers every request with a JSON body that has
/// `internal_id` fields (top level and nested) and echoes `x-user-id`.
pub async fn start_upstream(addr: &str) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the demo upstream on {addr}"))?;
    let local = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut read = 0;
                while read < buf.len() {
                    match stream.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                    if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..read]).to_ascii_lowercase();
                let user = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-user-id:"))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default();
                let body = serde_json::json!({
                    "users": [{"id": 1, "name": "alice", "internal_id": "u-7f3a"},
                              {"id": 2, "name": "bob", "internal_id": "u-91c2"}],
                    "internal_id": "req-5d1e",
                    "served_to": user,
                })
                .to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(local)
}

/// The demo requests through Envoy, with their answers.
pub async fn http_requests(envoy: &str) -> anyhow::Result<()> {
    for (label, headers) in [
        ("without a key", vec![]),
        (
            "with X-API-Key: demo-key-alice",
            vec![("X-API-Key", "demo-key-alice")],
        ),
    ] {
        let (status, text) = http_get(envoy, "/api/v1/users", &headers).await?;
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        println!("GET /api/v1/users {label}: HTTP {status} {body}");
    }
    Ok(())
}
