//! API keys and tokens never reach the agent's log.

use super::*;

#[tokio::test]
async fn api_keys_and_tokens_never_reach_the_log() -> anyhow::Result<()> {
    let signer = RsaSigner::generate()?;
    let other_signer = RsaSigner::generate()?;
    let agent = AgentProcess::start(&AgentOptions {
        log_level: "debug".into(),
        ..options(policy_data(Some(&signer.public_key_pem()?)))
    })
    .await?;
    let mut client = agent.client().await?;

    let admin = signer.sign(&claims("alice", &["admin"], 600))?;
    let reader = signer.sign(&claims("bob", &["reader"], 600))?;
    let forged = other_signer.sign(&claims("mallory", &["admin"], 600))?;
    let expired = signer.sign(&claims("alice", &["admin"], -3600))?;
    let unsigned = unsigned_token(&claims("alice", &["admin"], 600))?;

    for key in [ALICE_KEY, UNKNOWN_KEY] {
        let r = execute(&mut client, users_get("10.0.8.1", &[("X-API-Key", key)])).await?;
        assert_ne!(r.code(), StatusCode::PolicyError, "{r:?}");
        // A failing chain after the key was read.
        let mut req = users_get("10.0.8.1", &[("X-API-Key", key)]);
        req.policies[1] = policy("rateLimit", &[("requests_per_second", "fast")]);
        execute(&mut client, req).await?;
    }
    for token in [&admin, &reader, &forged, &expired, &unsigned] {
        let r = execute(&mut client, admin_get(Some(&format!("Bearer {token}")))).await?;
        assert_ne!(r.code(), StatusCode::PolicyError, "{r:?}");
    }
    // The key in a request that fails before evaluation.
    let mut req = users_get("10.0.8.1", &[("X-API-Key", ALICE_KEY)]);
    req.deadline_ms = -1;
    execute(&mut client, req).await?;

    let log = agent.stderr_log();
    assert!(
        log.contains("policy-agent listening"),
        "stderr is not captured:\n{log}"
    );
    assert!(
        log.contains("chain evaluated"),
        "debug events are not logged:\n{log}"
    );
    for (what, secret) in [
        ("API key", ALICE_KEY),
        ("unknown API key", UNKNOWN_KEY),
        ("admin token", admin.as_str()),
        ("reader token", reader.as_str()),
        ("forged token", forged.as_str()),
        ("expired token", expired.as_str()),
        ("unsigned token", unsigned.as_str()),
    ] {
        assert!(
            !log.contains(secret),
            "{what} `{secret}` is in the agent's log:\n{log}"
        );
        // Nor any part of a token after its (shared) header segment.
        for part in secret.split('.').skip(1).filter(|p| p.len() > 16) {
            assert!(
                !log.contains(part),
                "part of the {what} is in the agent's log:\n{log}"
            );
        }
    }
    Ok(())
}
