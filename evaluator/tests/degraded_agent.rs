#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! Degraded mode in the agent core, with its journal server unreachable
//! from the start: the agent degrades after `enter_after`; without cached
//! data every tier denies; with a snapshot on disk (an agent restarted
//! during a partition) the rbac/whitelist chains run on it, and a chain with
//! a policy of tier `complex` is denied with 503 and its tier.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use policy_agent::{Agent, AgentConfig};
use policy_proto::agent::{Policy, PolicyPhase, PolicyRequest, RequestContext, StatusCode};

const KEY: &str = "pe_live_degraded_test_key";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// An agent whose journal server (a closed port) never answers.
fn agent(dir: &Path) -> Agent {
    try_agent(dir).unwrap()
}

const EMERGENCY_TOKEN: &str = "break-glass-token-for-tests";

fn try_agent(dir: &Path) -> Result<Agent, policy_agent::SetupError> {
    try_agent_with(dir, "")
}

/// Like [`try_agent`], with extra lines in the `degraded` section.
fn try_agent_with(dir: &Path, degraded_extra: &str) -> Result<Agent, policy_agent::SetupError> {
    let certs = dir.join("certs");
    journal_client::devcerts::write_dev_set(&certs, &[], &["t"]).unwrap();
    let paths = journal_client::devcerts::client_paths(&certs, "t");
    let yaml = format!(
        r#"agent_core:
  name: t
  socket_path: t.sock
  journal:
    local_log:
      dir: log
    server:
      endpoint: "https://127.0.0.1:9"
      ca_cert: "{ca}"
      cert: "{cert}"
      key: "{key}"
      backoff_initial_ms: 50
      backoff_max_ms: 200
    data_sync_interval_ms: 100
    degraded:
      enter_after_ms: 100
      exit_after_ms: 100
{degraded_extra}"#,
        ca = paths.ca.display(),
        cert = paths.cert.display(),
        key = paths.key.display(),
    );
    let config_path = dir.join("agent-config.yaml");
    let config = AgentConfig::parse(&config_path, &yaml).unwrap();
    let data = serde_json::json!({"policy_data": {"apiKeyAuth": {"keys": {
        sha256_hex(KEY): {"user_id": "alice"}
    }}}});
    Agent::with_data(config, data)
}

fn request(policies: &[&str], api_key: Option<&str>) -> PolicyRequest {
    let mut headers = HashMap::new();
    if let Some(k) = api_key {
        headers.insert("x-api-key".to_string(), k.to_string());
    }
    PolicyRequest {
        request_id: "r".into(),
        route: "/api/v1/users".into(),
        policies: policies
            .iter()
            .map(|name| Policy {
                name: (*name).into(),
                metadata: if *name == "rateLimit" {
                    HashMap::from([
                        ("requests_per_second".to_string(), "1000".to_string()),
                        ("burst".to_string(), "1000".to_string()),
                    ])
                } else {
                    HashMap::new()
                },
                on_failure: "deny".into(),
            })
            .collect(),
        phase: PolicyPhase::Request as i32,
        context: Some(RequestContext {
            method: "GET".into(),
            path: "/api/v1/users".into(),
            headers,
            client_ip: "10.0.0.1".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn immediate_status(exec: &policy_agent::Execution) -> Option<i32> {
    exec.response
        .instructions
        .iter()
        .find_map(|i| match &i.payload {
            Some(policy_proto::agent::instruction::Payload::ImmediateResponse(r)) => {
                Some(r.status_code)
            }
            _ => None,
        })
}

async fn wait_degraded(agent: &Agent) {
    let state = agent.journal().unwrap().degraded().unwrap();
    let started = Instant::now();
    while state.status().mode != policy_degraded::Mode::Degraded {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never degraded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cached_data_every_tier_denies() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path());
    agent.journal().unwrap().start_client();
    wait_degraded(&agent).await;
    let exec = agent.execute(&request(&["apiKeyAuth", "rateLimit"], Some(KEY)));
    assert_eq!(
        exec.error.as_ref().map(|e| e.code()),
        Some("degraded_denied")
    );
    assert_eq!(immediate_status(&exec), Some(503));
    assert!(
        exec.response.message.contains("ever synced"),
        "{}",
        exec.response.message
    );
    assert_eq!(exec.response.metadata["degraded_tier"], "rbac");
    assert!(
        exec.sync_required,
        "a degraded decision waits for its record"
    );
    let state = agent.journal().unwrap().degraded().unwrap();
    assert_eq!(state.status().snapshot_version, None);
    // The sync task's first attempt (a refused connection) is counted.
    let started = Instant::now();
    while state.status().sync_failures == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no failed sync counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.journal().unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_runs_cached_tiers_and_denies_complex_ones() {
    let dir = tempfile::tempdir().unwrap();
    // The snapshot an earlier run of this agent synced a moment ago.
    std::fs::create_dir_all(dir.path().join("log")).unwrap();
    std::fs::write(
        dir.path().join("log").join(policy_agent::degraded::SNAPSHOT_FILE),
        serde_json::to_vec(&serde_json::json!({
            "version": 4,
            "data": {
                "role_bindings": {"alice": ["reader"]},
                "command_whitelists": {"diagnostics": ["uptime", "df -h"]},
                "platform_admins": ["root-operator"],
                "approvals": {},
            },
            "synced_at": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
            "updated_at": "2026-11-23T00:00:00Z",
            "updated_by": "policyctl",
        }))
        .unwrap(),
    )
    .unwrap();
    let agent = agent(dir.path());
    agent.journal().unwrap().start_client();
    wait_degraded(&agent).await;

    // rbac + whitelist: evaluated as usual.
    let ok = agent.execute(&request(&["apiKeyAuth", "rateLimit"], Some(KEY)));
    assert!(ok.error.is_none(), "{:?}", ok.error);
    assert_eq!(
        ok.response.status.as_ref().unwrap().code,
        StatusCode::Ok as i32
    );
    assert_eq!(ok.response.metadata["degraded_tier"], "rbac");
    let missing = agent.execute(&request(&["apiKeyAuth"], None));
    assert_eq!(immediate_status(&missing), Some(401));
    assert_eq!(missing.response.metadata["degraded_tier"], "rbac");
    let whitelist = agent.execute(&request(&["allowAll"], None));
    assert!(whitelist.error.is_none());
    assert_eq!(whitelist.response.metadata["degraded_tier"], "whitelist");

    // A policy the agent does not know is tier complex: denied, 503.
    let complex = agent.execute(&request(&["apiKeyAuth", "customRule"], Some(KEY)));
    assert_eq!(
        complex.error.as_ref().map(|e| e.code()),
        Some("degraded_denied")
    );
    assert_eq!(immediate_status(&complex), Some(503));
    assert_eq!(
        complex.response.status.as_ref().unwrap().code,
        StatusCode::PolicyDenied as i32
    );
    assert_eq!(complex.response.metadata["degraded_tier"], "complex");
    assert!(
        complex.response.message.contains("customRule"),
        "{}",
        complex.response.message
    );

    // The synced document is the policies' `data.synced`: a whitelisted
    // command and a platform admin run (tiers whitelist and admin), a
    // two-person approval is denied without evaluation.
    let mut cmd = request(&["commandWhitelist"], None);
    cmd.policies[0].metadata =
        HashMap::from([("whitelist".to_string(), "diagnostics".to_string())]);
    cmd.context
        .as_mut()
        .unwrap()
        .headers
        .insert("x-command".into(), "uptime".into());
    let listed = agent.execute(&cmd);
    assert!(listed.error.is_none(), "{:?}", listed.error);
    assert_eq!(
        listed.response.status.as_ref().unwrap().code,
        StatusCode::Ok as i32,
        "{:?}",
        listed.response
    );
    assert_eq!(listed.response.metadata["degraded_tier"], "whitelist");
    cmd.context
        .as_mut()
        .unwrap()
        .headers
        .insert("x-command".into(), "rm -rf /".into());
    assert_eq!(immediate_status(&agent.execute(&cmd)), Some(403));
    let mut admin = request(&["platformAdmin"], None);
    admin.state_json = br#"{"user": "root-operator"}"#.to_vec();
    let ok = agent.execute(&admin);
    assert_eq!(
        ok.response.status.as_ref().unwrap().code,
        StatusCode::Ok as i32,
        "{:?}",
        ok.response
    );
    assert_eq!(ok.response.metadata["degraded_tier"], "admin");
    admin.state_json = br#"{"user": "alice"}"#.to_vec();
    assert_eq!(immediate_status(&agent.execute(&admin)), Some(403));
    let mut two = request(&["twoPersonApproval"], None);
    two.policies[0].metadata = HashMap::from([
        ("operation".to_string(), "drain-node".to_string()),
        ("required_role".to_string(), "approver".to_string()),
    ]);
    let denied = agent.execute(&two);
    assert_eq!(
        denied.error.as_ref().map(|e| e.code()),
        Some("degraded_denied")
    );
    assert_eq!(denied.response.metadata["degraded_tier"], "two_person");

    let status = agent.journal().unwrap().degraded().unwrap().status();
    assert_eq!(status.snapshot_version, Some(4));
    let count = |tier: policy_degraded::Tier, outcome: &str| {
        status.decisions.get(&(tier, outcome)).copied().unwrap_or(0)
    };
    assert_eq!(count(policy_degraded::Tier::Rbac, "allow"), 1);
    assert_eq!(count(policy_degraded::Tier::Rbac, "deny"), 1);
    assert_eq!(count(policy_degraded::Tier::Whitelist, "allow"), 2);
    assert_eq!(count(policy_degraded::Tier::Whitelist, "deny"), 1);
    assert_eq!(count(policy_degraded::Tier::Admin, "allow"), 1);
    assert_eq!(count(policy_degraded::Tier::Admin, "deny"), 1);
    assert_eq!(count(policy_degraded::Tier::TwoPerson, "deny"), 1);
    assert_eq!(count(policy_degraded::Tier::Complex, "deny"), 1);
    agent.journal().unwrap().shutdown().await;
}

#[test]
fn a_corrupt_snapshot_stops_the_agent_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("log")).unwrap();
    std::fs::write(
        dir.path()
            .join("log")
            .join(policy_agent::degraded::SNAPSHOT_FILE),
        b"{half a file",
    )
    .unwrap();
    let Err(err) = try_agent(dir.path()) else {
        panic!("the agent started on a corrupt snapshot");
    };
    assert!(err.to_string().contains("is not a snapshot"), "{err}");
}

#[test]
fn degraded_settings_need_a_server() {
    let yaml = "agent_core:\n  name: t\n  socket_path: t.sock\n  journal:\n    local_log:\n      dir: log\n    degraded:\n      enter_after_ms: 100\n";
    let err = AgentConfig::parse(Path::new("/tmp/agent-config.yaml"), yaml).unwrap_err();
    assert!(err.to_string().contains("needs `server`"), "{err}");
    let yaml = yaml.replace("enter_after_ms: 100", "enter_after: 100");
    assert!(AgentConfig::parse(Path::new("/tmp/agent-config.yaml"), &yaml).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_mode_needs_the_token_ends_by_itself_and_is_recorded() {
    use policy_agent::degraded::{EmergencyChange, EmergencyError};
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "      emergency:\n        token_sha256: \"{}\"\n        max_ttl_s: 60\n",
        sha256_hex(EMERGENCY_TOKEN)
    );
    let agent = try_agent_with(dir.path(), &extra).unwrap();
    agent.journal().unwrap().start_client();
    wait_degraded(&agent).await;
    let complex = request(&["allowAll", "customRule"], None);
    assert_eq!(
        agent.execute(&complex).error.as_ref().map(|e| e.code()),
        Some("degraded_denied")
    );

    let change = |enable: bool, token: &'static str, ttl: u64| EmergencyChange {
        enable,
        reason: "node drain during the outage",
        ttl: Duration::from_secs(ttl),
        operator: "oncall-ana",
        token,
    };
    assert_eq!(
        agent.set_emergency(&change(true, "wrong", 1)),
        Err(EmergencyError::BadToken)
    );
    assert_eq!(
        agent.set_emergency(&change(true, "", 1)),
        Err(EmergencyError::BadToken)
    );
    assert!(matches!(
        agent.set_emergency(&change(true, EMERGENCY_TOKEN, 61)),
        Err(EmergencyError::Invalid(m)) if m.contains("60 s")
    ));
    let mut no_reason = change(true, EMERGENCY_TOKEN, 1);
    no_reason.reason = " ";
    assert!(matches!(
        agent.set_emergency(&no_reason),
        Err(EmergencyError::Invalid(_))
    ));
    let seq_before = agent.journal().unwrap().stats().last_seq;

    // On: the complex chain runs (the unknown policy is skipped as in
    // normal mode), recorded and synced first.
    let on = agent
        .set_emergency(&change(true, EMERGENCY_TOKEN, 1))
        .unwrap()
        .unwrap();
    assert_eq!(on.operator, "oncall-ana");
    let status = agent.journal().unwrap().degraded().unwrap().status();
    assert!(status.emergency.is_some());
    let exec = agent.execute(&complex);
    assert!(exec.error.is_none(), "{:?}", exec.error);
    assert_eq!(exec.response.metadata["mode"], "emergency");
    assert!(exec.sync_required);
    // The change and the decision are in the local log's hash chain.
    assert_eq!(agent.journal().unwrap().stats().last_seq, seq_before + 2);

    // It ends by itself.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        agent.execute(&complex).error.as_ref().map(|e| e.code()),
        Some("degraded_denied")
    );
    let status = agent.journal().unwrap().degraded().unwrap().status();
    assert!(status.emergency.is_none());
    assert_eq!(status.emergency_decisions, 1);

    // Off before its time.
    agent
        .set_emergency(&change(true, EMERGENCY_TOKEN, 60))
        .unwrap();
    assert!(
        agent
            .set_emergency(&change(false, EMERGENCY_TOKEN, 0))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        agent.execute(&complex).error.as_ref().map(|e| e.code()),
        Some("degraded_denied")
    );
    agent.journal().unwrap().shutdown().await;

    // An agent without emergency settings refuses.
    let dir = tempfile::tempdir().unwrap();
    let plain = try_agent(dir.path()).unwrap();
    assert_eq!(
        plain.set_emergency(&change(true, EMERGENCY_TOKEN, 1)),
        Err(EmergencyError::NotConfigured)
    );
}
