//! Reload: a changed config takes effect without a restart and without a
//! failed request; an invalid one is rejected, counted, and the previous
//! one stays in force.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context as _, ensure};
use policy_engine_tests::stack::{MetricsText, eventually, http};

use super::*;

/// What one request of the trickle got: its status, `x-reloaded` and (when
/// not 200) its body, or a transport error.
type Outcome = Result<(u16, Option<String>, String), String>;

/// Alice's users requests sent one at a time, every 20 ms, until stopped.
struct Trickle {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<Outcome>>,
}

impl Trickle {
    fn start(listener: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (stop_flag, counter) = (stop.clone(), sent.clone());
        let task = tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while !stop_flag.load(Ordering::Relaxed) {
                let request = users_get(&test_id("trickle"), Some(ALICE_KEY));
                outcomes.push(match http::send(listener, &request).await {
                    Ok(r) => Ok((
                        r.status,
                        r.header("x-reloaded").map(str::to_string),
                        if r.status == 200 {
                            String::new()
                        } else {
                            r.text()
                        },
                    )),
                    Err(e) => Err(format!("{e:#}")),
                });
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            outcomes
        });
        Self { stop, sent, task }
    }

    /// Waits until `more` further requests have completed.
    async fn wait_for(&self, more: usize) -> anyhow::Result<()> {
        let target = self.sent.load(Ordering::Relaxed) + more;
        let sent = self.sent.clone();
        eventually("trickle requests", CHANGE_DEADLINE, || {
            let n = sent.load(Ordering::Relaxed);
            async move {
                ensure!(n >= target, "{n} of {target} sent");
                Ok(())
            }
        })
        .await
    }

    async fn finish(self) -> anyhow::Result<Vec<Outcome>> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

fn reloads(metrics: &MetricsText, status: &str) -> f64 {
    metrics
        .value("policy_kernel_config_reload_total", &[("status", status)])
        .unwrap_or(-1.0)
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
async fn sighup_reload_applies_a_new_config_and_rejects_an_invalid_one() -> anyhow::Result<()> {
    // SIGHUP only (no file watch), so each signal is exactly one reload;
    // a bucket the trickle cannot empty.
    let mut stack = Stack::start(StackOptions {
        users_requests_per_second: 10_000.0,
        users_burst: 10_000,
        watch_interval_ms: 0,
        ..options()
    })
    .await?;
    let traffic = Trickle::start(stack.listener());
    // The trickle runs on the old config first, then through each reload.
    traffic.wait_for(10).await?;

    // A valid change: one more security header.
    let mut config = stack.kernel_config().clone();
    security_headers(&mut config)?["X-Reloaded"] = json!("yes");
    stack.write_kernel_config(config)?;
    stack.sighup_kernel()?;
    let stack_ref = &stack;
    eventually(
        "X-Reloaded: yes after SIGHUP",
        CHANGE_DEADLINE,
        || async move {
            let r = stack_ref
                .send(&users_get(&test_id("probe"), Some(ALICE_KEY)))
                .await?;
            ensure!(
                r.status == 200 && r.header("x-reloaded") == Some("yes"),
                "{}",
                r.summary()
            );
            Ok(())
        },
    )
    .await?;
    traffic.wait_for(10).await?;
    let metrics = stack.metrics().await?;
    ensure!(
        reloads(&metrics, "success") == 1.0 && reloads(&metrics, "failure") == 0.0,
        "one SIGHUP, one successful reload:\n{}",
        metrics.text
    );
    let (status, detail) = stack.readiness().await?;
    ensure!(
        status == 200
            && detail["config_version"] == 2
            && detail["last_reload"]["status"] == "success",
        "readiness after the reload: {status} {detail}"
    );

    // An invalid change: rejected, counted, the previous config stays.
    let valid = serde_yaml_ng::to_string(stack.kernel_config())?;
    let invalid = valid.replacen(
        "policy_kernel:\n",
        "policy_kernel:\n  no_such_setting: 1\n",
        1,
    );
    ensure!(invalid != valid, "could not make the config invalid");
    stack.write_kernel_config_text(&invalid)?;
    stack.sighup_kernel()?;
    let stack_ref = &stack;
    eventually(
        "the failed reload counted",
        CHANGE_DEADLINE,
        || async move {
            let m = stack_ref.metrics().await?;
            ensure!(reloads(&m, "failure") == 1.0, "{}", m.text);
            Ok(())
        },
    )
    .await?;
    traffic.wait_for(10).await?;
    let metrics = stack.metrics().await?;
    ensure!(
        reloads(&metrics, "success") == 1.0,
        "the invalid config must not count as a success:\n{}",
        metrics.text
    );
    let (status, detail) = stack.readiness().await?;
    let error = detail["last_reload"]["error"].as_str().unwrap_or_default();
    ensure!(
        status == 200
            && detail["config_version"] == 2
            && detail["last_reload"]["status"] == "failure"
            && error.contains("kernel-config.yaml")
            && error.contains("no_such_setting"),
        "readiness after the rejected reload: {status} {detail}"
    );
    for _ in 0..5 {
        let r = stack
            .send(&users_get(&test_id("kept"), Some(ALICE_KEY)))
            .await?;
        expect_status(&stack, "after the rejected reload", &r, 200)?;
        ensure!(
            r.header("x-reloaded") == Some("yes"),
            "the previous (reloaded) config must stay in force:\n{}",
            r.summary()
        );
    }

    let outcomes = traffic.finish().await?;
    let failures: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok((200, _, _))))
        .collect();
    ensure!(
        outcomes.len() >= 30 && failures.is_empty(),
        "{} of {} trickle requests failed during the reloads: {failures:?}\n{}",
        failures.len(),
        outcomes.len(),
        stack.logs(30)
    );
    // Sequential requests: once one sees the new config, all later ones do.
    let first_new = outcomes
        .iter()
        .position(|o| matches!(o, Ok((_, Some(_), _))))
        .unwrap_or(outcomes.len());
    ensure!(
        first_new > 0
            && outcomes[first_new..]
                .iter()
                .all(|o| matches!(o, Ok((_, Some(v), _)) if v == "yes")),
        "X-Reloaded should switch on once and stay: {outcomes:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_reloaded_without_a_signal() -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions {
        watch_interval_ms: 200,
        ..options()
    })
    .await?;
    let r = stack.get("/public/info").await?;
    expect_status(&stack, "default policy before the change", &r, 200)?;

    // Tighten the default policy: an API key is required everywhere.
    let mut config = stack.kernel_config().clone();
    *config
        .pointer_mut("/policy_kernel/default_policy/request_policy_chain")
        .context("no default policy")? = json!([
        {"policy": "apiKeyAuth", "metadata": {"header_name": "X-API-Key", "required": true}}
    ]);
    stack.write_kernel_config(config)?;
    let stack = &stack;
    eventually(
        "the default policy requires a key",
        CHANGE_DEADLINE,
        || async move {
            let r = stack.get("/public/info").await?;
            ensure!(r.status == 401, "{}", r.summary());
            Ok(())
        },
    )
    .await?;
    let r = stack
        .send(&HttpRequest::get("/public/info").header("x-api-key", ALICE_KEY))
        .await?;
    expect_status(stack, "default policy with Alice's key", &r, 200)?;
    let metrics = stack.metrics().await?;
    ensure!(
        reloads(&metrics, "success") >= 1.0 && reloads(&metrics, "failure") == 0.0,
        "the file change should count as a successful reload:\n{}",
        metrics.text
    );
    Ok(())
}
