//! The `default_policy` chain (allowAll).

use super::*;

#[tokio::test]
async fn allows_everything() -> anyhow::Result<()> {
    let agent = AgentProcess::start(&options(policy_data(None))).await?;
    let mut client = agent.client().await?;
    let r = execute(
        &mut client,
        request_phase(
            "/static/logo.png",
            default_request_chain(),
            request_context(
                "POST",
                "/static/logo.png",
                "10.0.3.1",
                &[("Content-Type", "image/png")],
            ),
        ),
    )
    .await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert!(r.instructions.is_empty(), "{r:?}");
    assert_eq!(
        r.outcome_list(),
        vec![("allowAll", StatusCode::Ok, "allowed")]
    );
    assert_eq!(r.state(), json!({}));
    Ok(())
}
