#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! The `policy-kernel` binary as a process: exit code 2 with file, field
//! and reason for a bad config; JSON logs; SIGHUP reloads; SIGTERM stops
//! cleanly with exit code 0.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_policy-kernel");

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("`kill` must be installed (procps)");
    assert!(status.success());
}

#[tokio::test]
async fn invalid_config_exits_2_naming_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &kernel_yaml(&dir.path().join("a.sock"), 9000, false, ""),
    );
    let out = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&config.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("field `policy_kernel.agents[0].timeout_ms`: must be between 1 and 5000"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let _agent = start_agent(&socket).await;
    let config = write_config(
        dir.path(),
        &kernel_yaml(&socket, 5000, false, &users_routes()),
    );
    let mut child = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json", "--watch-interval-ms", "0"])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();

    // The JSON log line "listening" names both addresses.
    let (ext_proc, metrics) = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("kernel exited before listening");
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["message"] == "listening" {
                // The log format of spec §7.2.
                assert_eq!(v["component"], "kernel", "{v}");
                assert_eq!(v["level"], "info", "{v}");
                assert!(v["timestamp"].as_str().is_some(), "{v}");
                let fields = &v["metadata"];
                assert!(
                    fields["ext_proc"]
                        .as_str()
                        .unwrap()
                        .starts_with("127.0.0.1:")
                );
                let ext_proc: SocketAddr = fields["ext_proc"].as_str().unwrap().parse().unwrap();
                let metrics: SocketAddr = fields["metrics"].as_str().unwrap().parse().unwrap();
                return (ext_proc, metrics);
            }
        }
    })
    .await
    .unwrap();
    let lines = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push(l);
        }
        all
    });

    eventually("readiness", || async {
        http_get(metrics, "/health/ready").await.0 == 200
    })
    .await;
    let version = |body: String| {
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["config_version"].clone()
    };
    assert_eq!(version(http_get(metrics, "/health/ready").await.1), 1);

    // A denied request: its log line names the request and the route.
    let denied = Stream::open(ext_proc)
        .await
        .send(request_headers(
            Some("/api/v1/users"),
            &[("x-request-id", "rid-logged-1")],
            true,
        ))
        .await;
    assert_eq!(immediate_status(&denied), 401);

    write_config(
        dir.path(),
        &kernel_yaml(&socket, 4000, false, &users_routes()),
    );
    signal(pid, "-HUP");
    eventually("the SIGHUP reload", || async {
        version(http_get(metrics, "/health/ready").await.1) == 2
    })
    .await;

    signal(pid, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let lines = lines.await.unwrap();
    let denied = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "denied")
        .unwrap_or_else(|| panic!("no `denied` line in {lines:?}"));
    assert_eq!(denied["request_id"], "rid-logged-1", "{denied}");
    assert_eq!(denied["metadata"]["route"], "/api/v1/users", "{denied}");
    let logs = lines.join("\n");
    assert!(logs.contains("configuration reloaded"), "{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(!logs.contains(ALICE_KEY));
}

/// Runs the kernel with `args` on a config of `body`; its exit code and stderr.
async fn run_kernel(dir: &std::path::Path, body: &str, args: &[&str]) -> (Option<i32>, String) {
    let config = write_config(dir, &kernel_yaml(&dir.join("a.sock"), 500, false, body));
    let out = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn embedded_agent_config_errors_exit_2_with_the_field() {
    let dir = tempfile::tempdir().unwrap();

    // The flag without a section or file.
    let (code, stderr) = run_kernel(dir.path(), "", &["--embedded-agent"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--embedded-agent needs a `policy_kernel.embedded_agent` section"),
        "{stderr}"
    );

    // A section with an invalid field, named under embedded_agent.
    let section = "  embedded_agent:\n    name: \"default-agent\"\n    server:\n      max_concurrent_requests: 0\n";
    let (code, stderr) = run_kernel(dir.path(), section, &["--embedded-agent"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "field `policy_kernel.embedded_agent.server.max_concurrent_requests`: must be at least 1"
        ),
        "{stderr}"
    );

    // An agent that no `agents` entry names.
    let section = "  embedded_agent:\n    name: \"other-agent\"\n";
    let (code, stderr) = run_kernel(dir.path(), section, &["--embedded-agent"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("the embedded agent `other-agent` is not listed"),
        "{stderr}"
    );

    // A missing agent config file.
    let missing = dir.path().join("missing-agent-config.yaml");
    let (code, stderr) = run_kernel(
        dir.path(),
        "",
        &["--embedded-agent", missing.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("missing-agent-config.yaml"), "{stderr}");
}
